//! Routing-table diversity (issue 15; libtorrent's `dht_restrict_routing_ips`): one entry per
//! IP address in a table, one per IPv4 /24 or IPv6 /64 in a bucket, loopback and private
//! addresses exempt unless `restrict_local_ips` is set.

mod support;

use std::net::SocketAddr;

use krpc_core::{Config, NodeId, NodeInfo};
use support::{Script, config_with_id, id_with};

/// Our id starts with 0x00: ids starting with 0x80.. all fall in the far bucket (bucket 0).
fn far(i: u8) -> NodeId {
    id_with(&[0x80 | i, i])
}

fn at(id: NodeId, addr: [u8; 4]) -> NodeInfo {
    NodeInfo::new(id, SocketAddr::from((addr, 6881)))
}

fn script(config: Config) -> Script {
    Script::new(Config { k: 8, bootstrap: vec![], ..config_with_id(id_with(&[0])) }.with(config))
}

trait With {
    fn with(self, other: Config) -> Config;
}

impl With for Config {
    /// `self` with the diversity switches of `other`.
    fn with(self, other: Config) -> Config {
        Config {
            restrict_routing_ips: other.restrict_routing_ips,
            restrict_local_ips: other.restrict_local_ips,
            ..self
        }
    }
}

#[test]
fn one_subnet_gets_one_entry_per_bucket_and_one_ip_one_entry_per_table() {
    let mut s = script(Config::default());
    assert!(s.ep.insert_node(s.now, at(far(1), [50, 1, 1, 1])));
    assert!(!s.ep.insert_node(s.now, at(far(2), [50, 1, 1, 2])), "same /24, same bucket");
    assert!(s.ep.insert_node(s.now, at(far(3), [50, 1, 2, 1])), "another /24");
    // Another bucket, the same IP address: one entry per IP in the whole table.
    let near = id_with(&[0x40, 1]);
    assert!(!s.ep.insert_node(s.now, at(near, [50, 1, 1, 1])));
    assert!(s.ep.insert_node(s.now, at(near, [50, 1, 1, 9])), "its /24 has nobody in the bucket it belongs to");
    assert_eq!(s.ep.stats().diversity_refused, 2);
    // A known node refreshing its own entry is no newcomer.
    assert!(s.ep.insert_node(s.now, at(far(1), [50, 1, 1, 1])));
}

#[test]
fn a_sybil_subnet_cannot_fill_a_bucket_unless_the_rules_are_off() {
    let sybils = |s: &mut Script| (1..=8u8).filter(|&i| s.ep.insert_node(s.now, at(far(i), [66, 6, 6, i]))).count();
    assert_eq!(sybils(&mut script(Config::default())), 1);
    assert_eq!(sybils(&mut script(Config { restrict_routing_ips: false, ..Config::default() })), 8);
}

#[test]
fn loopback_and_private_addresses_are_exempt_unless_asked() {
    let local = |s: &mut Script| (1..=8u8).filter(|&i| s.ep.insert_node(s.now, at(far(i), [10, 0, 0, i]))).count();
    assert_eq!(local(&mut script(Config::default())), 8, "a test swarm in one /24");
    assert_eq!(local(&mut script(Config { restrict_local_ips: true, ..Config::default() })), 1);
}

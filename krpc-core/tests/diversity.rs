//! Routing-table diversity (issue 15; libtorrent's `dht_restrict_routing_ips`): one entry per
//! IP address in a table, one per IPv4 /24 or IPv6 /64 in a bucket, loopback and private
//! addresses exempt unless `restrict_local_ips` is set.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use krpc_core::{Config, Event, NodeId, NodeInfo};
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

// ---------------------------------------------------------------------------------------------
// Replacements: a ping/swap check, `Endpoint::swap` and an address check put a node into a
// slot some time after it was first admitted; the rules are checked again at that moment.

/// Long enough for every contact to become questionable (BEP 5: 15 minutes).
const QUIET: Duration = Duration::from_secs(16 * 60);

/// Whether every entry of the table has an IP of its own and no bucket holds two entries of
/// one /24 (the table's own rules, checked from outside).
fn diverse(s: &Script) -> bool {
    let table = s.ep.routing_table();
    let ips: Vec<IpAddr> = table.iter().map(|c| c.addr().ip()).collect();
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    let per_bucket_ok = (0..table.bucket_count()).all(|b| {
        let mut subnets: Vec<[u8; 3]> = table
            .bucket_contacts(b)
            .filter_map(|c| match c.addr().ip() {
                IpAddr::V4(v4) => Some([v4.octets()[0], v4.octets()[1], v4.octets()[2]]),
                IpAddr::V6(_) => None,
            })
            .collect();
        let n = subnets.len();
        subnets.sort();
        subnets.dedup();
        subnets.len() == n
    });
    unique.len() == ips.len() && per_bucket_ok
}

/// An endpoint with `config` (diversity rules and all) and our id `0x00…`.
fn script_with(config: Config) -> Script {
    Script::new(Config { id: Some(id_with(&[0])), bucket_refresh: Duration::from_secs(1_000_000), ..config })
}

/// An endpoint with k = 2 (`auto_ping_swap` as given) whose far bucket holds a (50.1.1.1) and
/// b (50.2.2.2); with `quiet`, both have gone quiet long enough to be questionable. The far
/// bucket is not widened (`wide_buckets` 0), so two fill it.
fn full_far_bucket(auto_ping_swap: bool, quiet: bool) -> (Script, NodeInfo, NodeInfo) {
    let mut s = script_with(Config { k: 2, auto_ping_swap, wide_buckets: 0, ..Config::default() });
    let (a, b) = (at(far(1), [50, 1, 1, 1]), at(far(2), [50, 2, 2, 2]));
    s.insert(&[a, b]);
    if quiet {
        s.advance(QUIET);
    }
    (s, a, b)
}

/// Lets both pings of a ping/swap check time out.
fn both_pings_time_out(s: &mut Script, to: SocketAddr) {
    for _ in 0..2 {
        let ping = s.one_sent();
        assert_eq!(ping.to, to);
        s.advance(Config::default().timeout);
    }
}

#[test]
fn a_ping_swap_check_does_not_put_in_a_candidate_whose_ip_entered_the_table_meanwhile() {
    let (mut s, a, _) = full_far_bucket(true, true);
    let candidate = at(far(3), [60, 0, 0, 1]);
    assert!(!s.ep.insert_node(s.now, candidate), "bucket 0 is full: a check of a starts");
    // While a is pinged, another node at the candidate's IP (another port) enters another bucket.
    let neighbour = NodeInfo::new(id_with(&[0x40, 1]), SocketAddr::from(([60, 0, 0, 1], 7000)));
    assert!(s.ep.insert_node(s.now, neighbour));
    both_pings_time_out(&mut s, a.addr);
    assert!(!s.ep.routing_table().contains(&candidate.id), "one entry per IP");
    assert!(s.ep.routing_table().contains(&a.id), "nothing took a's slot");
    assert!(diverse(&s));
}

#[test]
fn a_ping_swap_check_does_not_put_in_a_candidate_whose_subnet_entered_the_bucket_meanwhile() {
    let (mut s, a, b) = full_far_bucket(true, true);
    let candidate = at(far(3), [60, 0, 0, 1]);
    assert!(!s.ep.insert_node(s.now, candidate));
    // The application drops b; a node of the candidate's /24 takes the free slot.
    assert!(s.ep.remove_node(&b.id));
    assert!(s.ep.insert_node(s.now, at(far(4), [60, 0, 0, 2])));
    both_pings_time_out(&mut s, a.addr);
    assert!(!s.ep.routing_table().contains(&candidate.id), "one entry per /24 in a bucket");
    assert!(diverse(&s));
}

#[test]
fn the_dead_entry_a_swap_replaces_does_not_count_against_its_replacement() {
    // a and the candidate share a /24: with a gone, the candidate breaks no rule.
    let (mut s, a, _) = full_far_bucket(false, true);
    let candidate = at(far(3), [50, 1, 1, 7]);
    assert!(s.ep.swap(s.now, &a.id, candidate));
    assert!(s.ep.routing_table().contains(&candidate.id) && !s.ep.routing_table().contains(&a.id));
    assert!(diverse(&s));
}

#[test]
fn endpoint_swap_refuses_a_candidate_that_would_break_the_rules() {
    let (mut s, a, _) = full_far_bucket(false, false);
    let neighbour = NodeInfo::new(id_with(&[0x40, 1]), SocketAddr::from(([60, 0, 0, 1], 7000)));
    s.insert(&[neighbour]);
    s.advance(QUIET);
    let refused = s.ep.stats().diversity_refused;
    // Same IP as an entry of another bucket, then same /24 as b in this bucket.
    assert!(!s.ep.swap(s.now, &a.id, at(far(3), [60, 0, 0, 1])));
    assert!(!s.ep.swap(s.now, &a.id, at(far(3), [50, 2, 2, 9])));
    assert_eq!(s.ep.stats().diversity_refused, refused + 2);
    assert!(s.ep.routing_table().contains(&a.id));
    assert!(s.ep.swap(s.now, &a.id, at(far(3), [70, 0, 0, 1])), "a diverse candidate is fine");
    assert!(diverse(&s));
}

#[test]
fn an_address_claim_does_not_move_an_entry_onto_an_ip_the_table_holds() {
    let mut s = script_with(Config::default());
    let a = at(far(1), [50, 1, 1, 1]);
    let neighbour = NodeInfo::new(id_with(&[0x40, 1]), SocketAddr::from(([60, 0, 0, 1], 7000)));
    s.insert(&[a, neighbour]);
    let _ = s.events();
    // a's id claimed from the neighbour's IP: a's own address is asked, and stays silent.
    assert!(!s.ep.insert_node(s.now, at(a.id, [60, 0, 0, 1])));
    assert_eq!(s.one_sent().to, a.addr, "one ping, no retry");
    s.advance(Config::default().timeout);
    let table = s.ep.routing_table();
    assert!(table.get(&a.id).is_none_or(|c| c.addr() == a.addr), "the claim did not win");
    assert!(diverse(&s));
    // The entry that stayed silent at its own address is gone, and said so.
    if table.get(&a.id).is_none() {
        assert!(s.events().contains(&Event::NodeRemoved(a)));
    }
}

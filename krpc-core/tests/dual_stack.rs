//! BEP 32: one routing table per address family, both around our one id.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::Dictionary;
use krpc_core::{Config, Event, NodeId, NodeInfo, Peer, Query};
use support::{Script, config_with_id, id_with, query_bytes, sa};

/// Our id starts with 0x00: ids starting with 0x80.. all fall in the far bucket (bucket 0).
fn far(i: u8) -> NodeId {
    id_with(&[0x80 | i, i])
}

fn v4(i: u8) -> NodeInfo {
    NodeInfo::new(far(i), SocketAddr::from(([10, 0, 0, i], 6881)))
}

fn v6(i: u8) -> NodeInfo {
    // Each in its own /64: the diversity rules allow one per /64 in a bucket.
    NodeInfo::new(far(0x40 | i), format!("[2001:db8:{i:x}::1]:6881").parse().unwrap())
}

/// k as given, the far bucket not widened (`wide_buckets` 0), so that k nodes fill it.
fn script(k: usize) -> Script {
    Script::new(Config {
        k,
        dht: Config::dht().dht,
        bootstrap: vec![],
        wide_buckets: 0,
        ..config_with_id(id_with(&[0]))
    })
}

#[test]
fn each_family_has_its_own_table_and_ipv6_nodes_do_not_crowd_out_ipv4_ones() {
    let mut s = script(8);
    for i in 1..=8 {
        assert!(s.ep.insert_node(s.now, v4(i)));
    }
    // A single table would refuse these: bucket 0 already holds 8 (k) IPv4 nodes.
    for i in 1..=8 {
        assert!(s.ep.insert_node(s.now, v6(i)), "IPv6 node {i}");
    }
    assert_eq!(s.ep.routing_table().len(), 8);
    assert_eq!(s.ep.routing_table6().len(), 8);
    assert!(s.ep.routing_table().iter().all(|c| c.addr().is_ipv4()));
    assert!(s.ep.routing_table6().iter().all(|c| c.addr().is_ipv6()));
    assert_eq!(s.ep.routing_table().local_id(), s.ep.routing_table6().local_id());
    // Both full now.
    assert!(!s.ep.insert_node(s.now, v4(9)));
    assert!(!s.ep.insert_node(s.now, v6(9)));
}

#[test]
fn ipv4_mapped_addresses_are_ipv4_nodes() {
    let mut s = script(8);
    let mapped = NodeInfo::new(far(1), sa("[::ffff:10.0.0.1]:6881"));
    assert!(s.ep.insert_node(s.now, mapped));
    assert!(s.ep.routing_table().contains(&far(1)));
    assert!(s.ep.routing_table6().is_empty());
}

#[test]
fn find_node_takes_nodes_from_the_ipv4_table_and_nodes6_from_the_ipv6_table() {
    let mut s = script(8);
    let (a, b) = ((1..=8).map(v4).collect::<Vec<_>>(), (1..=8).map(v6).collect::<Vec<_>>());
    for n in a.iter().chain(&b) {
        assert!(s.ep.insert_node(s.now, *n));
    }
    let target = far(0x41);
    let args = Dictionary::new().with_bytes("target", target.as_bytes()).with_list_of_bytes("want", ["n4", "n6"]);
    let querier = id_with(&[0x11]);
    let from = sa("10.9.9.9:7000");
    s.deliver(from, &query_bytes(b"w", "find_node", &args, Some(&querier), false));
    let reply = s.sent().into_iter().find(|m| m.to == from && !m.is_query()).expect("an answer");
    let values = reply.values();
    let nodes: Vec<NodeInfo> = values.nodes().expect("nodes").collect();
    let nodes6: Vec<NodeInfo> = values.nodes6().expect("nodes6").collect();
    assert_eq!(nodes.len(), 8, "all 8 IPv4 contacts, whatever the IPv6 ones' distance");
    assert_eq!(nodes6.len(), 8);
    assert!(nodes6.iter().all(|n| b.contains(n)));
    assert!(nodes.iter().all(|n| a.contains(n)));
}

#[test]
fn a_lookup_is_seeded_from_both_tables() {
    let mut s = script(8);
    assert!(s.ep.insert_node(s.now, v4(1)));
    assert!(s.ep.insert_node(s.now, v6(1)));
    let target = far(5);
    s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let to: Vec<SocketAddr> = s.sent().iter().filter(|m| m.is_query()).map(|m| m.to).collect();
    assert!(to.contains(&v4(1).addr) && to.contains(&v6(1).addr), "queried {to:?}");
}

#[test]
fn remove_node_removes_a_dual_stack_node_from_both_tables() {
    let mut s = script(8);
    let id = far(3);
    assert!(s.ep.insert_node(s.now, NodeInfo::new(id, sa("10.0.0.3:6881"))));
    assert!(s.ep.insert_node(s.now, NodeInfo::new(id, sa("[2001:db8::3]:6881"))));
    s.events();
    assert!(s.ep.remove_node(&id));
    assert!(!s.ep.routing_table().contains(&id) && !s.ep.routing_table6().contains(&id));
    let removed = s.events().iter().filter(|e| matches!(e, Event::NodeRemoved(_))).count();
    assert_eq!(removed, 2);
}

#[test]
fn a_verified_ipv6_querier_enters_the_ipv6_table() {
    let mut s = script(8);
    let from = sa("[2001:db8::99]:6881");
    let querier = far(0x22);
    s.deliver(from, &query_bytes(b"p1", "ping", &Dictionary::new(), Some(&querier), false));
    let ping = s.sent().into_iter().find(|m| m.is_query() && m.to == from).expect("a verification ping");
    s.reply(&ping, &querier);
    assert!(s.ep.routing_table6().contains(&querier));
    assert!(!s.ep.routing_table().contains(&querier));
    // Its timeouts count against the IPv6 entry.
    let op = s.ep.query(s.now, Peer::node(NodeInfo::new(querier, from)), Query::ping()).unwrap();
    let _ = s.sent();
    s.advance(Duration::from_secs(3));
    assert!(s.events().iter().any(|e| matches!(e, Event::QueryDone { op: o, result: Err(_) } if *o == op)));
    assert_eq!(s.ep.routing_table6().get(&querier).map(|c| c.failures), Some(1));
}

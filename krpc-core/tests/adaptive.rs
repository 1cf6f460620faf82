//! Reachability and adaptive read-only mode (issue 14): what counts as an unsolicited query,
//! when the node becomes a full node, the probe, and the way back to read-only.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::reachability::{CONTACT_MEMORY, FIREWALLED_AFTER, PROBE_ANSWER_WINDOW, PROBE_INTERVAL, REACHABLE_FOR};
use krpc_core::wire::{Dictionary, Entry, Insert, ResponseOut};
use krpc_core::{Config, Event, NodeId, NodeInfo, Peer, Query, Reachability};
use support::{Script, id, id_with, query_bytes, sa};

const OURS: &str = "203.0.113.77:6881";

fn adaptive() -> Config {
    // A fixed id: the vote on our address does not change it, so the tests follow one node.
    Config { id: Some(id(0x42)), bootstrap: vec![], ..Config::adaptive() }
}

fn reply_with_ip(tid: &[u8], responder: &NodeId, ip: SocketAddr) -> Vec<u8> {
    let extra = [Entry { key: b"id", value: Insert::Bytes(responder.as_bytes()), replace: true }];
    let values = Dictionary::new();
    let mut buf = [0u8; 256];
    let r = ResponseOut { transaction_id: tid, values: &values, extra: &extra, ip: Some(ip), version: None };
    let n = r.encode(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// Four voters from distinct /16s say our address is [`OURS`] (BEP 42): confirmed. Returns
/// whether every query we sent for it carried `ro=1`.
fn confirm_address(s: &mut Script) -> bool {
    let mut all_ro = true;
    for (n, v) in ["1.1.0.1:1", "2.2.0.1:1", "3.3.0.1:1", "4.4.0.1:1"].iter().enumerate() {
        s.query(Peer::addr(sa(v)), Query::ping());
        let q = s.one_sent();
        all_ro &= q.message().read_only;
        s.deliver(sa(v), &reply_with_ip(&q.tid(), &id(n as u8 + 1), sa(OURS)));
    }
    assert_eq!(s.ep.external_address()[0], Some(sa(OURS).ip()), "the vote settled");
    all_ro
}

fn find_node_from(s: &mut Script, from: &str, tid: &[u8]) -> Option<support::Sent> {
    let args = Dictionary::new().with_bytes("target", id(0x10).as_bytes());
    s.deliver(sa(from), &query_bytes(tid, "find_node", &args, Some(&id_with(&[0xee, tid[0]])), false));
    s.sent().into_iter().find(|m| m.to == sa(from) && !m.is_query())
}

fn mode_changes(s: &mut Script) -> Vec<bool> {
    s.events()
        .into_iter()
        .filter_map(|e| if let Event::ModeChanged { read_only } = e { Some(read_only) } else { None })
        .collect()
}

#[test]
fn an_adaptive_node_is_read_only_until_a_stranger_reaches_it_and_its_address_is_confirmed() {
    let mut s = Script::new(adaptive());
    assert!(s.ep.is_read_only(), "adaptive mode starts read-only");
    assert!(s.ep.status().read_only);
    assert!(confirm_address(&mut s), "a read-only node's queries carry ro=1 (BEP 43)");
    assert!(find_node_from(&mut s, "4.4.0.1:1", b"a1").is_none(), "a voter we pinged proves nothing");
    assert!(s.ep.is_read_only());
    assert_eq!(s.ep.reachability(), Reachability::Unknown);
    assert_eq!(s.ep.stats().unsolicited_queries, 0);

    // A stranger's query proves it: the node turns full and answers this very query.
    let answer = find_node_from(&mut s, "9.9.9.9:7000", b"a2");
    assert!(answer.is_some(), "the query that proved reachability is answered");
    assert!(!s.ep.is_read_only());
    assert_eq!(s.ep.status().reachability, Reachability::Reachable);
    assert_eq!(s.ep.stats().unsolicited_queries, 1);
    assert_eq!(mode_changes(&mut s), vec![false]);
    // As a full node its queries go without ro=1.
    s.query(Peer::addr(sa("5.5.0.1:1")), Query::ping());
    let q = s.sent().into_iter().find(|m| m.to == sa("5.5.0.1:1")).expect("the ping");
    assert!(!q.message().read_only);
}

#[test]
fn without_a_confirmed_address_a_reachable_node_stays_read_only() {
    let mut s = Script::new(adaptive());
    assert!(find_node_from(&mut s, "9.9.9.9:7000", b"b1").is_none(), "read-only: no answer");
    assert_eq!(s.ep.reachability(), Reachability::Reachable, "reachability is known all the same");
    assert!(s.ep.is_read_only(), "but the id may still change with the vote: stay read-only");
    assert!(mode_changes(&mut s).is_empty());
}

#[test]
fn a_query_from_an_address_we_sent_to_counts_only_after_the_nat_forgot_it() {
    let mut s = Script::new(adaptive());
    confirm_address(&mut s);
    s.query(Peer::addr(sa("8.8.0.1:6881")), Query::ping());
    let _ = s.sent();
    // Another port of the same IP: an address-restricted NAT lets it in too.
    assert!(find_node_from(&mut s, "8.8.0.1:7777", b"c1").is_none());
    assert_eq!(s.ep.stats().unsolicited_queries, 0);
    s.wait(CONTACT_MEMORY);
    assert!(find_node_from(&mut s, "8.8.0.1:7777", b"c2").is_none(), "still within the memory");
    assert_eq!(s.ep.stats().unsolicited_queries, 0);
    s.wait(CONTACT_MEMORY + Duration::from_secs(1));
    assert!(find_node_from(&mut s, "8.8.0.1:7777", b"c3").is_some(), "forgotten: proof, and answered");
    assert_eq!(s.ep.stats().unsolicited_queries, 1);
}

#[test]
fn a_query_from_our_own_external_address_proves_nothing() {
    let mut s = Script::new(adaptive());
    confirm_address(&mut s);
    // Hairpinning: a NAT sends our own packets back from our public address.
    assert!(find_node_from(&mut s, OURS, b"d1").is_none());
    assert_eq!(s.ep.stats().unsolicited_queries, 0);
    assert!(s.ep.is_read_only());
}

#[test]
fn the_probe_looks_up_our_id_without_ro_and_answers_only_the_pings_of_the_nodes_it_asked() {
    let mut s = Script::new(adaptive());
    let table: Vec<NodeInfo> =
        (1..=8u8).map(|i| NodeInfo::new(id_with(&[0x42, i]), SocketAddr::from(([10, 1, 0, i], 6881)))).collect();
    s.insert(&table);
    let _ = s.sent();
    s.advance(Duration::from_secs(60));
    let probes: Vec<_> = s.sent().into_iter().filter(|m| m.is_query()).collect();
    assert!(!probes.is_empty(), "the first maintenance tick probes");
    for p in &probes {
        assert_eq!(p.method(), b"find_node");
        assert_eq!(p.message().as_query().and_then(|q| q.args.target()), Some(id(0x42)), "a lookup of our own id");
        assert!(!p.message().read_only, "a probe goes without ro=1");
    }
    // A node the probe asked verifies us: answered.
    let probed = probes[0].to;
    s.deliver(probed, &query_bytes(b"v1", "ping", &Dictionary::new(), Some(&id(0x77)), false));
    let pong = s.sent().into_iter().find(|m| m.to == probed && !m.is_query());
    assert!(pong.is_some(), "the probed node's ping back is answered");
    // Its other queries are not, nor anybody else's ping (BEP 43).
    assert!(find_node_from(&mut s, &probed.to_string(), b"v2").is_none());
    let other = sa("10.1.0.99:6881");
    s.deliver(other, &query_bytes(b"v3", "ping", &Dictionary::new(), Some(&id(0x78)), false));
    assert!(s.sent().iter().all(|m| m.to != other));
    // Nor the probed node's ping once the window closed.
    s.wait(PROBE_ANSWER_WINDOW);
    s.deliver(probed, &query_bytes(b"v4", "ping", &Dictionary::new(), Some(&id(0x77)), false));
    assert!(s.sent().iter().all(|m| m.to != probed));
    assert!(s.ep.is_read_only());
    // The next probe comes PROBE_INTERVAL after the first; other lookups carry ro=1.
    s.ep.find_node(s.now, id(0x10)).unwrap();
    let lookup: Vec<_> = s.sent().into_iter().filter(|m| m.is_query()).collect();
    assert!(!lookup.is_empty() && lookup.iter().all(|m| m.message().read_only), "{lookup:#?}");
    let mut unmarked = 0;
    for _ in 0..(PROBE_INTERVAL.as_secs() / 60) {
        s.advance(Duration::from_secs(60));
        unmarked += s.sent().iter().filter(|m| m.is_query() && !m.message().read_only).count();
    }
    assert!(unmarked > 0, "a second probe");
}

#[test]
fn a_full_adaptive_node_that_hears_from_no_stranger_goes_back_to_read_only() {
    let mut s = Script::new(adaptive());
    confirm_address(&mut s);
    find_node_from(&mut s, "9.9.9.9:7000", b"e1").expect("turned full");
    assert_eq!(mode_changes(&mut s), vec![false]);
    // Half an hour of silence from strangers, the maintenance ticking every minute.
    let mut elapsed = Duration::ZERO;
    while elapsed <= REACHABLE_FOR {
        s.advance(Duration::from_secs(60));
        let _ = s.sent();
        elapsed += Duration::from_secs(60);
    }
    assert_eq!(s.ep.reachability(), Reachability::Firewalled);
    assert!(s.ep.is_read_only(), "firewalled: read-only again");
    assert_eq!(mode_changes(&mut s), vec![true]);
    assert!(find_node_from(&mut s, "4.4.0.1:1", b"e2").is_none(), "and it answers no more");
}

#[test]
fn a_full_node_without_unsolicited_queries_is_firewalled_after_twenty_minutes() {
    let mut s = Script::new(Config { bootstrap: vec![], ..Config::dht() });
    assert!(!s.ep.is_read_only());
    assert_eq!(s.ep.reachability(), Reachability::Unknown);
    s.advance(FIREWALLED_AFTER - Duration::from_secs(1));
    assert_eq!(s.ep.status().reachability, Reachability::Unknown);
    s.advance(Duration::from_secs(1));
    assert_eq!(s.ep.status().reachability, Reachability::Firewalled);
    assert!(!s.ep.is_read_only(), "a node that is not adaptive keeps its mode");
    assert!(mode_changes(&mut s).is_empty());
    s.incoming_query(sa("9.9.9.9:7000"), b"f1", "ping", Some(&id(0x55)));
    assert_eq!(s.ep.status().reachability, Reachability::Reachable);
}

#[test]
fn a_read_only_node_that_is_not_adaptive_never_probes_and_never_changes_mode() {
    let mut s = Script::new(Config { read_only: true, adaptive_read_only: true, ..adaptive() });
    let table: Vec<NodeInfo> =
        (1..=8u8).map(|i| NodeInfo::new(id_with(&[0x42, i]), SocketAddr::from(([10, 1, 0, i], 6881)))).collect();
    s.insert(&table);
    confirm_address(&mut s);
    for _ in 0..30 {
        s.advance(Duration::from_secs(60));
        assert!(s.sent().iter().filter(|m| m.is_query()).all(|m| m.message().read_only), "every query carries ro=1");
    }
    assert!(find_node_from(&mut s, "9.9.9.9:7000", b"g1").is_none());
    assert!(s.ep.is_read_only());
    assert!(mode_changes(&mut s).is_empty());
    assert_eq!(s.ep.reachability(), Reachability::Reachable, "though it was reached");
}

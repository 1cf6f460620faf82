//! The node layer through the blocking driver: `bootstrap`, `find_node`, `get_peers`,
//! `announce` and `external_address` on a small network of `Config::dht()` nodes on
//! 127.0.0.1 (the same cases as krpc-tokio's tests/dht.rs).
#![allow(clippy::disallowed_methods)] // the test spawns a thread itself

mod common;

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::thread;

use common::LOCAL;
use krpc_std::{Config, Error, Event, Krpc, LookupOutcome, NodeId, Query, QueryError};

/// `n` BEP 5 nodes on 127.0.0.1: the first is the seed every other one bootstraps from.
fn dht_network(n: usize) -> Vec<Krpc> {
    let seed = Krpc::bind(LOCAL, Config::dht()).expect("bind on loopback");
    let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    let mut nodes = vec![seed];
    for _ in 1..n {
        let node = Krpc::bind(LOCAL, config.clone()).expect("bind on loopback");
        let joined = node.bootstrap().expect("bootstrap");
        assert_eq!(joined.outcome, LookupOutcome::Completed);
        assert!(joined.replies >= 1, "{joined:?}");
        nodes.push(node);
    }
    nodes
}

/// Every peer `get_peers` reports, in order, and its summary.
fn get_peers(node: &Krpc, info_hash: NodeId) -> (Vec<SocketAddr>, krpc_std::LookupSummary) {
    let mut found = Vec::new();
    let summary = node
        .get_peers(info_hash, |peer| {
            found.push(peer);
            ControlFlow::Continue(())
        })
        .unwrap();
    (found, summary)
}

fn operations(node: &Krpc) -> usize {
    node.inspect(|endpoint| endpoint.operations()).unwrap()
}

#[test]
fn an_announced_peer_is_found_by_get_peers_from_another_node() {
    let nodes = dht_network(10);
    let info_hash = NodeId::from_array([0x5a; 20]);
    let announcer = &nodes[3];
    let stored = announcer.announce(info_hash, None, false).unwrap();
    assert!((1..=8).contains(&stored), "stored on {stored} nodes");

    let (found, summary) = get_peers(&nodes[7], info_hash);
    // `implied_port`: the stored address is the one the announce came from.
    assert_eq!(found, vec![announcer.local_addr()], "each peer once, though several nodes hold it");
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert!(summary.replies >= stored);
    assert!(!summary.closest.is_empty() && summary.closest.iter().all(|n| n.token.is_some()), "{summary:?}");
    let distances: Vec<_> = summary.closest.iter().map(|n| n.node.id.distance(&info_hash)).collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn an_explicit_port_is_what_others_find() {
    let nodes = dht_network(6);
    let info_hash = NodeId::from_array([0x17; 20]);
    assert!(nodes[1].announce(info_hash, Some(51413), true).unwrap() >= 1);
    let (peers, summary) = get_peers(&nodes[4], info_hash);
    let expected = SocketAddr::new(nodes[1].local_addr().ip(), 51413);
    assert_eq!(peers, vec![expected]);
    assert_eq!(summary.outcome, LookupOutcome::Completed);
}

#[test]
fn break_from_get_peers_ends_the_calls() {
    let nodes = dht_network(6);
    let info_hash = NodeId::from_array([0x23; 20]);
    // Two peers under one info hash: every node that holds them returns both at once.
    assert!(nodes[1].announce(info_hash, Some(1111), false).unwrap() >= 1);
    assert!(nodes[1].announce(info_hash, Some(2222), false).unwrap() >= 1);
    assert_eq!(get_peers(&nodes[4], info_hash).0.len(), 2);
    let mut calls = 0;
    nodes[4]
        .get_peers(info_hash, |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(calls, 1, "no call after Break");
    assert_eq!(operations(&nodes[4]), 0, "the lookup is over");
}

#[test]
fn find_node_finds_the_target_node() {
    let nodes = dht_network(10);
    let target = nodes[5].id();
    let mut visited = 0;
    let summary = nodes[8]
        .find_node(target, |reply| {
            assert!(reply.id().is_some());
            visited += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert_eq!(summary.replies, visited);
    assert_eq!(summary.closest[0].node.id, target, "{summary:?}");
    assert_eq!(summary.closest[0].node.addr, nodes[5].local_addr());
}

#[test]
fn get_peers_of_an_unknown_info_hash_ends_empty_with_tokens() {
    let nodes = dht_network(4);
    let (peers, summary) = get_peers(&nodes[2], NodeId::from_array([0x99; 20]));
    assert!(peers.is_empty());
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert!(summary.closest.iter().any(|n| n.token.is_some()));
}

#[test]
fn announce_without_any_node_fails_with_no_nodes() {
    let alone = Krpc::bind(LOCAL, Config::dht()).unwrap();
    let result = alone.announce(NodeId::from_array([1; 20]), None, false);
    assert!(matches!(result, Err(Error::Query(QueryError::NoNodes))), "{result:?}");
}

#[test]
fn shutdown_resolves_an_announce_and_later_calls() {
    let a = Krpc::bind(LOCAL, Config::dht()).unwrap();
    // Without the node layer or a handler, b answers pings only: the announce stays in its
    // lookup, waiting for b.
    let b = Krpc::bind(LOCAL, Config::default()).unwrap();
    a.query(b.local_addr(), Query::ping()).unwrap();
    let info_hash = NodeId::from_array([2; 20]);
    let announce = thread::spawn({
        let a = a.clone();
        move || a.announce(info_hash, None, false)
    });
    while operations(&a) == 0 {
        thread::yield_now();
    }
    a.shutdown();
    assert!(announce.join().unwrap().unwrap_err().is_shut_down());
    assert!(a.bootstrap().unwrap_err().is_shut_down());
    assert!(a.get_peers(info_hash, |_| ControlFlow::Continue(())).unwrap_err().is_shut_down());
    assert!(a.external_address().unwrap_err().is_shut_down());
}

#[test]
fn node_layer_events_stay_with_their_operation() {
    let nodes = dht_network(4);
    let events = nodes[3].events().unwrap();
    let info_hash = NodeId::from_array([0x44; 20]);
    nodes[1].announce(info_hash, None, false).unwrap();
    assert_eq!(get_peers(&nodes[3], info_hash).0, vec![nodes[1].local_addr()]);
    nodes[3].shutdown();
    for event in events.try_iter() {
        assert!(!matches!(event, Event::Peers { .. } | Event::AnnounceDone { .. }), "{event:?}");
    }
}

#[test]
fn external_address_needs_votes_from_several_networks() {
    let nodes = dht_network(4);
    // Every voter is in 127.0.0.0/16: one network, one vote, no majority yet.
    assert_eq!(nodes[3].external_address().unwrap(), [None, None]);
    let plain = Krpc::bind(LOCAL, Config::default()).unwrap();
    assert_eq!(plain.external_address().unwrap(), [None, None]);
}

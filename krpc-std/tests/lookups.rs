//! `closest`, `populate` and the routing table, on a small network on 127.0.0.1.

mod common;

use std::ops::ControlFlow;
use std::time::Duration;

use common::{LOCAL, black_hole, local, local_with, network, nodes, server};
use krpc_std::{Config, Event, LookupOutcome, NodeId, NodeInfo, Peer, Query, QueryError};

#[test]
fn closest_visits_the_network_and_reports_the_nearest_nodes() {
    let nodes = network(8);
    let bootstrap = nodes[0].local_addr().to_string();
    let client = local().bootstrap_hosts([&bootstrap]).bind(LOCAL).unwrap();
    let target = NodeId::from_array([0x5a; 20]);
    let mut visited = Vec::new();
    let summary = client
        .closest(target, Query::get_peers(&target), |reply| {
            visited.push(reply.from());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert_eq!(summary.replies, visited.len());
    assert!(summary.replies >= 2, "{summary:?}");
    let addrs: Vec<_> = nodes.iter().map(|n| n.local_addr()).collect();
    assert!(visited.iter().all(|a| addrs.contains(a)));
    assert!(!summary.closest.is_empty());
    assert!(summary.closest.windows(2).all(|w| target.distance(&w[0].node.id) < target.distance(&w[1].node.id)));
    for found in &summary.closest {
        let node = nodes.iter().find(|n| n.id() == found.node.id).unwrap();
        assert_eq!(node.local_addr(), found.node.addr);
    }
}

#[test]
fn closest_stops_after_break_with_no_further_callback() {
    let nodes = network(8);
    // A silent bootstrap node (and a long timeout) keeps the lookup from completing on its own:
    // only the `Break` can end it.
    let (_hole, hole) = black_hole();
    let config = Config { timeout: Duration::from_secs(60), ..Config::default() };
    let bootstrap = [nodes[0].local_addr().to_string(), hole.to_string()];
    let client = local_with(config).bootstrap_hosts([&bootstrap[0], &bootstrap[1]]).bind(LOCAL).unwrap();
    let target = NodeId::from_array([0x33; 20]);
    let mut calls = 0;
    let summary = client
        .closest(target, Query::find_node(&target), |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(summary.outcome, LookupOutcome::Stopped);
    assert!(summary.replies >= 1);
}

#[test]
fn populate_fills_the_routing_table_and_blocks_until_done() {
    let nodes = network(6);
    let bootstrap = nodes[0].local_addr().to_string();
    let client = local().bootstrap_hosts([&bootstrap]).bind(LOCAL).unwrap();
    assert!(common::nodes(&client).unwrap().is_empty());
    let id = client.id();
    let summary = client.populate(id, Query::find_node(&id)).unwrap();
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert!(summary.replies >= 1);
    let table = common::nodes(&client).unwrap();
    assert!(table.iter().any(|n| n.addr == nodes[0].local_addr()));
    for node in &table {
        assert!(nodes.iter().any(|n| n.id() == node.id && n.local_addr() == node.addr));
    }
}

#[test]
fn bootstrap_from_localhost_by_name() {
    let server = server(local());
    let host = format!("localhost:{}", server.local_addr().port());
    let client = local().bootstrap_hosts([&host]).bind(LOCAL).unwrap();
    let summary = client.bootstrap().unwrap();
    assert_eq!(summary.replies, 1);
    assert_eq!(nodes(&client).unwrap(), vec![NodeInfo::new(server.id(), server.local_addr())]);
}

#[test]
fn ping_swap_offer_is_an_event_and_swap_replaces_the_dead_node() {
    // k = 1 and ids chosen so that b and c share a bucket of a: c is refused while b is there.
    // The far bucket is not widened (`wide_buckets` 0), so b alone fills it.
    let id = |b: u8| NodeId::from_array([b; 20]);
    let manual = Config {
        id: Some(id(0x00)),
        k: 1,
        wide_buckets: 0,
        auto_ping_swap: false,
        timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let a = local_with(manual).bind(LOCAL).unwrap();
    let b = local_with(Config { id: Some(id(0x80)), ..Config::default() }).bind(LOCAL).unwrap();
    let c = local_with(Config { id: Some(id(0xc0)), ..Config::default() }).bind(LOCAL).unwrap();
    let events = a.events().unwrap();
    let next = || events.recv_timeout(Duration::from_secs(10)).unwrap();

    a.query(b.local_addr(), Query::ping()).unwrap();
    let b_info = NodeInfo::new(b.id(), b.local_addr());
    assert_eq!(next(), Event::NodeAdded(b_info));
    a.query(c.local_addr(), Query::ping()).unwrap();
    let c_info = NodeInfo::new(c.id(), c.local_addr());
    assert_eq!(next(), Event::PingSwap { oldest: vec![b_info], candidate: c_info });

    // The application pings the oldest node; it is gone, and after two failures it is bad.
    b.shutdown();
    for _ in 0..2 {
        let err = a.query(Peer::node(b_info), Query::ping()).unwrap_err();
        assert!(matches!(err, krpc_std::Error::Query(QueryError::Timeout)), "{err:?}");
    }
    assert!(a.swap(b.id(), c_info).unwrap());
    assert_eq!(next(), Event::NodeRemoved(b_info));
    assert_eq!(next(), Event::NodeAdded(c_info));
    assert_eq!(nodes(&a).unwrap(), vec![c_info]);
    assert!(a.remove_node(c.id()).unwrap());
    assert_eq!(next(), Event::NodeRemoved(c_info));
    assert!(nodes(&a).unwrap().is_empty());
}

#[test]
fn add_node_pings_it_into_the_table() {
    let b = local().bind(LOCAL).unwrap();
    let a = local().bind(LOCAL).unwrap();
    let events = a.events().unwrap();
    a.add_node(b.local_addr(), Some(b.id())).unwrap();
    let added = events.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(added, Event::NodeAdded(NodeInfo::new(b.id(), b.local_addr())));
    let stats = a.inspect(|e| *e.stats()).unwrap();
    assert!(stats.queries_out >= 1);
}

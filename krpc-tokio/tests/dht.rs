//! The node layer through the driver: `bootstrap`, `find_node`, `get_peers`, `announce` on a
//! small network of `Config::dht()` nodes on 127.0.0.1.

mod common;

use common::{isolated, silent};
use krpc_tokio::{Config, Error, Event, LookupOutcome, NodeId, QueryError, Rpc};

/// `n` BEP 5 nodes on 127.0.0.1: the first is the seed every other one bootstraps from.
async fn dht_network(n: usize) -> Vec<Rpc> {
    let seed = Rpc::bind("127.0.0.1:0", Config::dht()).await.expect("bind on loopback");
    let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    let mut nodes = vec![seed];
    for _ in 1..n {
        let node = Rpc::bind("127.0.0.1:0", config.clone()).await.expect("bind on loopback");
        let joined = node.bootstrap().await.expect("bootstrap");
        assert_eq!(joined.outcome, LookupOutcome::Completed);
        assert!(joined.replies >= 1, "{joined:?}");
        nodes.push(node);
    }
    nodes
}

async fn operations(rpc: &Rpc) -> usize {
    rpc.inspect(|endpoint| endpoint.operations()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_peer_is_found_by_get_peers_from_another_node() {
    let nodes = dht_network(10).await;
    let info_hash = NodeId::from_array([0x5a; 20]);
    let announcer = &nodes[3];
    let stored = announcer.announce(info_hash, None, false).await.unwrap();
    assert!((1..=8).contains(&stored), "stored on {stored} nodes");

    let mut peers = nodes[7].get_peers(info_hash).await.unwrap();
    let mut found = Vec::new();
    while let Some(peer) = peers.next().await {
        found.push(peer);
    }
    // `implied_port`: the stored address is the one the announce came from.
    assert_eq!(found, vec![announcer.local_addr()], "each peer once, though several nodes hold it");
    assert_eq!(peers.found(), 1);
    let summary = peers.end().unwrap();
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert!(summary.replies >= stored);
    assert!(!summary.closest.is_empty() && summary.closest.iter().all(|n| n.token.is_some()), "{summary:?}");
    let distances: Vec<_> = summary.closest.iter().map(|n| n.node.id.distance(&info_hash)).collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_port_is_what_others_find() {
    let nodes = dht_network(6).await;
    let info_hash = NodeId::from_array([0x17; 20]);
    assert!(nodes[1].announce(info_hash, Some(51413), true).await.unwrap() >= 1);
    let (peers, summary) = nodes[4].get_peers(info_hash).await.unwrap().finish().await;
    let expected = std::net::SocketAddr::new(nodes[1].local_addr().ip(), 51413);
    assert_eq!(peers, vec![expected]);
    assert_eq!(summary.outcome, LookupOutcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_node_finds_the_target_node() {
    let nodes = dht_network(10).await;
    let target = nodes[5].id();
    let mut lookup = nodes[8].find_node(target).await.unwrap();
    let mut visited = 0;
    while let Some(reply) = lookup.next().await {
        assert!(reply.id().is_some());
        visited += 1;
    }
    let summary = lookup.end().unwrap();
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert_eq!(summary.replies, visited);
    assert_eq!(summary.closest[0].node.id, target, "{summary:?}");
    assert_eq!(summary.closest[0].node.addr, nodes[5].local_addr());
}

#[tokio::test]
async fn get_peers_of_an_unknown_info_hash_ends_empty_with_tokens() {
    let nodes = dht_network(4).await;
    let info_hash = NodeId::from_array([0x99; 20]);
    let (peers, summary) = nodes[2].get_peers(info_hash).await.unwrap().finish().await;
    assert!(peers.is_empty());
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    assert!(summary.closest.iter().any(|n| n.token.is_some()));
}

#[tokio::test]
async fn dropping_a_get_peers_stream_stops_the_lookup() {
    let a = Rpc::bind("127.0.0.1:0", Config { bootstrap: vec![], ..Config::dht() }).await.unwrap();
    // Without the node layer and with no one reading `incoming()`, b answers pings only:
    // the lookup waits for it.
    let b = silent(isolated()).await;
    a.ping(b.local_addr()).await.unwrap();
    let info_hash = NodeId::from_array([3; 20]);
    let peers = a.get_peers(info_hash).await.unwrap();
    assert_eq!(operations(&a).await, 1);
    drop(peers);
    assert_eq!(operations(&a).await, 0);

    let mut peers = a.get_peers(info_hash).await.unwrap();
    peers.stop();
    assert_eq!(peers.next().await, None);
    assert_eq!(peers.end().unwrap().outcome, LookupOutcome::Stopped);
}

#[tokio::test]
async fn announce_without_any_node_fails_with_no_nodes() {
    let alone = Rpc::bind("127.0.0.1:0", Config { bootstrap: vec![], ..Config::dht() }).await.unwrap();
    let info_hash = NodeId::from_array([1; 20]);
    assert_eq!(alone.announce(info_hash, None, false).await, Err(Error::Query(QueryError::NoNodes)));
}

#[tokio::test]
async fn shutdown_resolves_an_announce_and_a_bootstrap() {
    let a = Rpc::bind("127.0.0.1:0", Config { bootstrap: vec![], ..Config::dht() }).await.unwrap();
    let b = silent(isolated()).await; // never answers get_peers: the announce stays in its lookup
    a.ping(b.local_addr()).await.unwrap();
    let info_hash = NodeId::from_array([2; 20]);
    let announce = tokio::spawn({
        let a = a.clone();
        async move { a.announce(info_hash, None, false).await }
    });
    while operations(&a).await == 0 {
        tokio::task::yield_now().await;
    }
    a.shutdown().await;
    assert!(announce.await.unwrap().unwrap_err().is_shut_down());
    assert!(a.bootstrap().await.unwrap_err().is_shut_down());
    assert!(a.get_peers(info_hash).await.unwrap_err().is_shut_down());
}

#[tokio::test]
async fn node_layer_events_stay_with_their_operation() {
    let nodes = dht_network(4).await;
    let mut events = nodes[3].events();
    let info_hash = NodeId::from_array([0x44; 20]);
    nodes[1].announce(info_hash, None, false).await.unwrap();
    let (peers, _) = nodes[3].get_peers(info_hash).await.unwrap().finish().await;
    assert_eq!(peers, vec![nodes[1].local_addr()]);
    nodes[3].shutdown().await;
    while let Some(event) = events.next().await {
        assert!(!matches!(event, Event::Peers { .. } | Event::AnnounceDone { .. }), "{event:?}");
    }
}

#[tokio::test]
async fn external_address_needs_votes_from_several_networks() {
    let nodes = dht_network(4).await;
    // Every voter is in 127.0.0.0/16: one network, one vote, no majority yet.
    assert_eq!(nodes[3].external_address().await.unwrap(), [None, None]);
    let plain = silent(isolated()).await;
    assert_eq!(plain.external_address().await.unwrap(), [None, None]);
}

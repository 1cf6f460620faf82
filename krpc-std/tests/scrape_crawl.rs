//! BEP 33 scrape through the blocking driver, on a small network of `Config::dht()` nodes on
//! 127.0.0.1 (the same cases as krpc-tokio's tests/scrape_crawl.rs).

mod common;

use common::LOCAL;
use krpc_std::{Config, Krpc, LookupOutcome, NodeId, Scrape};

/// `n` BEP 5 nodes on 127.0.0.1: the first is the seed every other one bootstraps from.
fn dht_network(n: usize) -> Vec<Krpc> {
    let seed = Krpc::bind(LOCAL, Config::dht()).expect("bind on loopback");
    let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    let mut nodes = vec![seed];
    for _ in 1..n {
        let node = Krpc::bind(LOCAL, config.clone()).expect("bind on loopback");
        assert_eq!(node.bootstrap().expect("bootstrap").outcome, LookupOutcome::Completed);
        nodes.push(node);
    }
    nodes
}

/// Announces `info_hash` from a node of its own on 127.0.0.`host`: BEP 33 counts peers by
/// IP address, so each peer of a scrape test needs an address of its own. The peer's node is
/// returned to be kept: a node gone would leave lookups waiting for it to time out.
fn announce_from(host: u8, network: &[Krpc], info_hash: NodeId, seed: bool) -> Krpc {
    let config = Config { bootstrap: vec![network[0].local_addr()], ..Config::dht() };
    let peer = Krpc::bind(format!("127.0.0.{host}:0"), config).expect("bind on loopback");
    let stored = peer.announce(info_hash, Some(6881), seed).expect("announce");
    assert!(stored >= 1, "127.0.0.{host}: stored nowhere");
    peer
}

#[test]
fn scrape_counts_the_seeds_and_peers_announced_from_distinct_addresses() {
    let nodes = dht_network(8);
    let info_hash = NodeId::from_array([0x33; 20]);
    let seeds: Vec<Krpc> = (11..14).map(|host| announce_from(host, &nodes, info_hash, true)).collect();
    let peers: Vec<Krpc> = (21..23).map(|host| announce_from(host, &nodes, info_hash, false)).collect();
    let scrape = nodes[5].scrape(info_hash).expect("scrape");
    assert_eq!((scrape.seeds, scrape.peers), (3, 2), "{scrape:?}");
    assert!(scrape.responses >= 1, "{scrape:?}");

    // Nothing announced under another info hash: answers, but nothing in them.
    let other = nodes[2].scrape(NodeId::from_array([0x34; 20])).expect("scrape");
    assert_eq!((other.seeds, other.peers), (0, 0), "{other:?}");
    drop((seeds, peers));
}

#[test]
fn scrape_after_shutdown_is_a_shut_down_error() {
    let nodes = dht_network(2);
    nodes[1].shutdown();
    let error: Result<Scrape, _> = nodes[1].scrape(NodeId::from_array([0x33; 20]));
    assert!(error.unwrap_err().is_shut_down());
}

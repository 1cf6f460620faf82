//! BEP 33 scrape and the BEP 51 crawl through the blocking driver, on a small network of `Config::dht()` nodes on
//! 127.0.0.1 (the same cases as krpc-tokio's tests/scrape_crawl.rs).

mod common;

use common::LOCAL;
use std::collections::BTreeSet;

use krpc_std::{Config, CrawlConfig, Error, Krpc, LookupOutcome, NodeId, QueryError, Scrape};

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

/// Five info-hashes, each announced by another node of `nodes`.
fn announce_five(nodes: &[Krpc]) -> BTreeSet<NodeId> {
    let hashes: BTreeSet<NodeId> = (1..=5).map(|i| NodeId::from_array([0x10 * i; 20])).collect();
    for (i, info_hash) in hashes.iter().enumerate() {
        assert!(nodes[i + 1].announce(*info_hash, Some(6881), false).expect("announce") >= 1);
    }
    hashes
}

#[test]
fn crawl_finds_every_announced_info_hash_once_and_ends_at_its_cap() {
    let nodes = dht_network(8);
    let hashes = announce_five(&nodes);
    let crawler = Krpc::bind(LOCAL, Config { bootstrap: vec![nodes[0].local_addr()], ..Config::dht() }).unwrap();
    let crawl = crawler.crawl(CrawlConfig::default().with_max_info_hashes(5)).expect("crawl");
    let (found, stats) = crawl.finish();
    assert_eq!(found.len(), 5, "each info-hash once: {found:?}");
    assert_eq!(found.into_iter().collect::<BTreeSet<_>>(), hashes);
    let stats = stats.expect("the crawl ended with its numbers");
    assert_eq!(stats.unique_info_hashes, 5, "{stats:?}");
    assert!(stats.nodes_visited >= 1 && stats.queries >= stats.nodes_visited, "{stats:?}");
    assert_eq!(crawler.inspect(|endpoint| endpoint.operations()).unwrap(), 0);
}

#[test]
fn a_stopped_or_dropped_crawl_ends_and_leaves_no_operation() {
    let nodes = dht_network(6);
    let hashes = announce_five(&nodes);
    let crawler = Krpc::bind(LOCAL, Config { bootstrap: vec![nodes[0].local_addr()], ..Config::dht() }).unwrap();

    let mut crawl = crawler.crawl(CrawlConfig::default()).expect("crawl");
    assert!(crawl.next().is_some());
    let running = crawl.stats().expect("stats of a running crawl");
    assert!(running.unique_info_hashes >= 1 && running.queries >= 1, "{running:?}");
    crawl.stop();
    while crawl.next().is_some() {}
    assert!(crawl.end().is_some_and(Option::is_some), "ended with its numbers");
    assert_eq!(crawler.inspect(|endpoint| endpoint.operations()).unwrap(), 0);

    // next_timeout: the five, then a wait that runs out while the crawl goes on (its nodes
    // wait out their BEP 51 interval, and nothing else is stored anywhere).
    let mut crawl = crawler.crawl(CrawlConfig::default()).expect("crawl");
    let mut found = BTreeSet::new();
    while found.len() < 5 {
        match crawl.next_timeout(std::time::Duration::from_secs(60)) {
            Some(info_hash) => assert!(found.insert(info_hash), "each info-hash once"),
            None => panic!("the crawl ended or stalled with {found:?}"),
        }
    }
    assert_eq!(crawl.next_timeout(std::time::Duration::from_millis(20)), None);
    assert!(crawl.end().is_none(), "a timeout does not end the crawl");
    assert_eq!(found, hashes);
    drop(crawl);
    // Commands are carried out in order: the stop went before this.
    assert_eq!(crawler.inspect(|endpoint| endpoint.operations()).unwrap(), 0);
}

#[test]
fn crawl_is_refused_without_nodes_or_with_a_zero_rate() {
    let lonely = Krpc::bind(LOCAL, Config::dht()).unwrap();
    let error = lonely.crawl(CrawlConfig::default()).unwrap_err();
    assert!(matches!(error, Error::Query(QueryError::NoNodes)), "{error:?}");
    let nodes = dht_network(2);
    let error = nodes[1].crawl(CrawlConfig::default().with_rate(0)).unwrap_err();
    assert!(matches!(error, Error::Refused(_)), "{error:?}");
}

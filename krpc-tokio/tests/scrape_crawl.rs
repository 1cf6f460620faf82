//! BEP 33 scrape and the BEP 51 crawl through the driver, on a small network of `Config::dht()` nodes on 127.0.0.1
//! (the same cases as krpc-std's tests/scrape_crawl.rs).

use std::collections::BTreeSet;

use krpc_tokio::{Config, CrawlConfig, Error, LookupOutcome, NodeId, QueryError, Rpc};

/// `n` BEP 5 nodes on 127.0.0.1: the first is the seed every other one bootstraps from.
async fn dht_network(n: usize) -> Vec<Rpc> {
    let seed = Rpc::bind("127.0.0.1:0", Config::dht()).await.expect("bind on loopback");
    let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    let mut nodes = vec![seed];
    for _ in 1..n {
        let node = Rpc::bind("127.0.0.1:0", config.clone()).await.expect("bind on loopback");
        assert_eq!(node.bootstrap().await.expect("bootstrap").outcome, LookupOutcome::Completed);
        nodes.push(node);
    }
    nodes
}

/// Announces `info_hash` from a node of its own on 127.0.0.`host`: BEP 33 counts peers by
/// IP address, so each peer of a scrape test needs an address of its own. The peer's node is
/// returned to be kept: a node gone would leave lookups waiting for it to time out.
async fn announce_from(host: u8, network: &[Rpc], info_hash: NodeId, seed: bool) -> Rpc {
    let config = Config { bootstrap: vec![network[0].local_addr()], ..Config::dht() };
    let peer = Rpc::bind(format!("127.0.0.{host}:0"), config).await.expect("bind on loopback");
    let stored = peer.announce(info_hash, Some(6881), seed).await.expect("announce");
    assert!(stored >= 1, "127.0.0.{host}: stored nowhere");
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_counts_the_seeds_and_peers_announced_from_distinct_addresses() {
    let nodes = dht_network(8).await;
    let info_hash = NodeId::from_array([0x33; 20]);
    let mut peers = Vec::new();
    for host in 11..14 {
        peers.push(announce_from(host, &nodes, info_hash, true).await);
    }
    for host in 21..23 {
        peers.push(announce_from(host, &nodes, info_hash, false).await);
    }
    let scrape = nodes[5].scrape(info_hash).await.expect("scrape");
    assert_eq!((scrape.seeds, scrape.peers), (3, 2), "{scrape:?}");
    assert!(scrape.responses >= 1, "{scrape:?}");

    // Nothing announced under another info hash: answers, but nothing in them.
    let other = nodes[2].scrape(NodeId::from_array([0x34; 20])).await.expect("scrape");
    assert_eq!((other.seeds, other.peers), (0, 0), "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_after_shutdown_is_a_shut_down_error() {
    let nodes = dht_network(2).await;
    nodes[1].shutdown().await;
    assert!(nodes[1].scrape(NodeId::from_array([0x33; 20])).await.unwrap_err().is_shut_down());
}

/// Five info-hashes, each announced by another node of `nodes`.
async fn announce_five(nodes: &[Rpc]) -> BTreeSet<NodeId> {
    let hashes: BTreeSet<NodeId> = (1..=5).map(|i| NodeId::from_array([0x10 * i; 20])).collect();
    for (i, info_hash) in hashes.iter().enumerate() {
        assert!(nodes[i + 1].announce(*info_hash, Some(6881), false).await.expect("announce") >= 1);
    }
    hashes
}

async fn operations(rpc: &Rpc) -> usize {
    rpc.inspect(|endpoint| endpoint.operations()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_finds_every_announced_info_hash_once_and_ends_at_its_cap() {
    let nodes = dht_network(8).await;
    let hashes = announce_five(&nodes).await;
    let config = Config { bootstrap: vec![nodes[0].local_addr()], ..Config::dht() };
    let crawler = Rpc::bind("127.0.0.1:0", config).await.unwrap();
    let crawl = crawler.crawl(CrawlConfig::default().with_max_info_hashes(5)).await.expect("crawl");
    let (found, stats) = crawl.finish().await;
    assert_eq!(found.len(), 5, "each info-hash once: {found:?}");
    assert_eq!(found.into_iter().collect::<BTreeSet<_>>(), hashes);
    let stats = stats.expect("the crawl ended with its numbers");
    assert_eq!(stats.unique_info_hashes, 5, "{stats:?}");
    assert!(stats.nodes_visited >= 1 && stats.queries >= stats.nodes_visited, "{stats:?}");
    assert_eq!(operations(&crawler).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_or_dropped_crawl_ends_and_leaves_no_operation() {
    let nodes = dht_network(6).await;
    announce_five(&nodes).await;
    let config = Config { bootstrap: vec![nodes[0].local_addr()], ..Config::dht() };
    let crawler = Rpc::bind("127.0.0.1:0", config).await.unwrap();

    let mut crawl = crawler.crawl(CrawlConfig::default()).await.expect("crawl");
    assert!(crawl.next().await.is_some());
    let running = crawl.stats().await.expect("stats of a running crawl");
    assert!(running.unique_info_hashes >= 1 && running.queries >= 1, "{running:?}");
    crawl.stop();
    while crawl.next().await.is_some() {}
    assert!(crawl.end().is_some_and(Option::is_some), "ended with its numbers");
    assert_eq!(operations(&crawler).await, 0);

    let crawl = crawler.crawl(CrawlConfig::default()).await.expect("crawl");
    drop(crawl);
    // Commands are carried out in order: the stop went before this.
    assert_eq!(operations(&crawler).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_is_refused_without_nodes_or_with_a_zero_rate() {
    let lonely = Rpc::bind("127.0.0.1:0", Config::dht()).await.unwrap();
    let error = lonely.crawl(CrawlConfig::default()).await.unwrap_err();
    assert_eq!(error, Error::Query(QueryError::NoNodes));
    let nodes = dht_network(2).await;
    let error = nodes[1].crawl(CrawlConfig::default().with_rate(0)).await.unwrap_err();
    assert!(matches!(error, Error::Refused(_)), "{error:?}");
}

//! BEP 51 crawl, client side: `Endpoint::crawl` over an in-memory network of DHT nodes, and
//! against scripted peers for what a network of honest nodes never sends.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::dht::DhtConfig;
use krpc_core::wire::Dictionary;
use krpc_core::{CommandError, Config, CrawlConfig, CrawlStats, Event, NodeId, NodeInfo, OpId, Query};
use support::{Net, Script, id_with, random_id, sa};

/// Node `i` of a DHT network whose samples change every `interval`, bootstrapping from node 0.
fn dht_node(i: usize, interval: Duration) -> Config {
    let dht = DhtConfig { sample_interval: interval, ..DhtConfig::default() };
    let bootstrap = if i == 0 { vec![] } else { vec![support::net_addr(0)] };
    Config { bootstrap, dht: Some(dht.into()), ..Config::dht() }
}

/// `n` DHT nodes, joined one after the other; node `n - 1` is left out of the announces and
/// does the crawling.
fn network(n: usize, interval: Duration) -> Net {
    let mut net = Net::new(n, 51, |i| dht_node(i, interval));
    for i in 1..n {
        let now = net.now;
        let op = net.ep(i).bootstrap(now).unwrap();
        net.run_until(Duration::from_secs(60), |net| net.lookup_result(i, op).is_some());
    }
    net
}

/// Announces `count` random info-hashes, each from a node chosen in turn (never the crawler);
/// returns them.
fn announce(net: &mut Net, count: usize, seed: u64) -> HashSet<NodeId> {
    use rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = net.nodes.len();
    let mut hashes = HashSet::new();
    for j in 0..count {
        let hash = random_id(&mut rng);
        let i = j % (n - 1);
        let now = net.now;
        let op = net.ep(i).announce(now, hash, Some(6881), false).unwrap();
        net.run_until(Duration::from_secs(60), |net| {
            net.events
                .iter()
                .any(|(_, node, e)| *node == i && matches!(e, Event::AnnounceDone { op: o, .. } if *o == op))
        });
        hashes.insert(hash);
    }
    hashes
}

fn found(net: &Net, crawler: usize, op: OpId) -> Vec<NodeId> {
    net.events
        .iter()
        .filter(|(_, i, _)| *i == crawler)
        .filter_map(|(_, _, e)| match e {
            Event::CrawlFound { op: o, info_hashes, .. } if *o == op => Some(info_hashes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn done(net: &Net, crawler: usize, op: OpId) -> Option<CrawlStats> {
    net.events.iter().find_map(|(_, i, e)| match e {
        Event::CrawlDone { op: o, stats } if *i == crawler && *o == op => Some(stats.clone()),
        _ => None,
    })
}

/// `sample_infohashes` queries the crawler sent, by destination, with their send times.
fn crawl_queries(net: &Net, crawler: usize) -> Vec<(krpc_core::Instant, SocketAddr)> {
    net.trace
        .iter()
        .filter(|d| d.from == crawler)
        .filter(|d| {
            krpc_core::wire::Message::decode(&d.bytes)
                .is_ok_and(|m| m.as_query().is_some_and(|q| q.method == b"sample_infohashes"))
        })
        .map(|d| (d.at, d.to))
        .collect()
}

#[test]
fn a_crawl_finds_every_announced_info_hash_of_a_small_network_and_reports_each_once() {
    let n = 40;
    let mut net = network(n, Duration::from_secs(21_600));
    let hashes = announce(&mut net, 60, 1);
    let crawler = n - 1;
    let now = net.now;
    let config = CrawlConfig::default().with_rate(50);
    let op = net.ep(crawler).crawl(now, config).unwrap();
    net.run_until(Duration::from_secs(120), |net| found(net, crawler, op).len() >= hashes.len());
    let reported = found(&net, crawler, op);
    let unique: HashSet<NodeId> = reported.iter().copied().collect();
    assert_eq!(unique, hashes, "every announced info-hash, and nothing else");
    assert_eq!(reported.len(), unique.len(), "each reported once");
    let stats = net.ep(crawler).crawl_stats(op).expect("still running: nodes wait for their interval");
    assert_eq!(stats.unique_info_hashes, hashes.len() as u64);
    assert!(stats.samples >= stats.unique_info_hashes);
    assert!(stats.nodes_visited <= (n - 1) as u64, "{stats:?}");
    assert_eq!(stats.unsupported, 0);
    // Stopping ends it with the final numbers, once.
    net.ep(crawler).stop(op).unwrap();
    net.pump();
    let end = done(&net, crawler, op).expect("CrawlDone after stop");
    assert_eq!(end.unique_info_hashes, hashes.len() as u64);
    assert_eq!(net.ep(crawler).crawl_stats(op), None);
    let ends = net.events.iter().filter(|(_, _, e)| matches!(e, Event::CrawlDone { op: o, .. } if *o == op)).count();
    assert_eq!(ends, 1);
}

#[test]
fn no_node_is_asked_again_before_its_interval_and_each_is_asked_again_after_it() {
    let n = 12;
    let interval = Duration::from_secs(120);
    let mut net = network(n, interval);
    announce(&mut net, 10, 2);
    let crawler = n - 1;
    let start = net.trace.len();
    let now = net.now;
    let op = net.ep(crawler).crawl(now, CrawlConfig::default()).unwrap();
    net.run_for(Duration::from_secs(400));
    let queries = crawl_queries(&net, crawler);
    assert!(net.trace.len() > start);
    let mut by_node: BTreeMap<SocketAddr, Vec<krpc_core::Instant>> = BTreeMap::new();
    for (at, to) in &queries {
        by_node.entry(*to).or_default().push(*at);
    }
    assert_eq!(by_node.len(), n - 1, "every other node was asked");
    for (node, times) in &by_node {
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            // The server's interval counts down to its next sample: at most 120 s, and the
            // crawler's floor is 60 s.
            assert!(gap >= Duration::from_secs(60), "{node} asked again after {gap:?}");
        }
        assert!(times.len() >= 2, "{node} was asked again once its interval passed: {times:?}");
    }
    let stats = net.ep(crawler).crawl_stats(op).unwrap();
    assert_eq!(stats.queries as usize, queries.len());
}

#[test]
fn the_rate_cap_holds_in_every_simulated_second() {
    let n = 60;
    let mut net = network(n, Duration::from_secs(21_600));
    let crawler = n - 1;
    let now = net.now;
    let config = CrawlConfig::default().with_rate(5).with_concurrency(8);
    net.ep(crawler).crawl(now, config).unwrap();
    net.run_for(Duration::from_secs(8));
    let queries = crawl_queries(&net, crawler);
    assert!(queries.len() >= 30, "the crawl ran at its rate: {} queries", queries.len());
    // Any window of one second, anchored at each query, holds at most 5.
    for (i, (at, _)) in queries.iter().enumerate() {
        let in_window = queries[i..].iter().take_while(|(t, _)| *t - *at < Duration::from_secs(1)).count();
        assert!(in_window <= 5, "{in_window} queries within a second of {at:?}");
    }
}

#[test]
fn the_cap_on_unique_info_hashes_ends_the_crawl() {
    let n = 30;
    let mut net = network(n, Duration::from_secs(21_600));
    announce(&mut net, 40, 3);
    let crawler = n - 1;
    let now = net.now;
    let config = CrawlConfig::default().with_max_info_hashes(7).with_rate(100);
    let op = net.ep(crawler).crawl(now, config).unwrap();
    net.run_until(Duration::from_secs(60), |net| done(net, crawler, op).is_some());
    let stats = done(&net, crawler, op).unwrap();
    assert_eq!(stats.unique_info_hashes, 7);
    assert_eq!(found(&net, crawler, op).len(), 7, "no more than the cap reported");
    let sent = crawl_queries(&net, crawler).len();
    net.run_for(Duration::from_secs(10));
    assert_eq!(crawl_queries(&net, crawler).len(), sent, "nothing sent after the end");
}

#[test]
fn a_crawl_needs_somewhere_to_start_and_a_usable_configuration() {
    let mut s = Script::new(Config { bootstrap: vec![], ..Config::default() });
    assert_eq!(s.ep.crawl(s.now, CrawlConfig::default()), Err(CommandError::NoNodes));
    s.insert(&[NodeInfo::new(id_with(&[0x80]), sa("10.0.0.1:6881"))]);
    for config in [
        CrawlConfig::default().with_rate(0),
        CrawlConfig::default().with_concurrency(0),
        CrawlConfig::default().with_max_nodes(0),
        CrawlConfig::default().with_max_info_hashes(0),
    ] {
        assert_eq!(s.ep.crawl(s.now, config), Err(CommandError::InvalidConfig));
    }
}

#[test]
fn crawls_and_lookups_share_the_lookup_slots() {
    // Found by the `endpoint` and `sim` fuzz targets (fuzz/regressions/*/
    // lookup_beside_a_crawl_beyond_max_lookups): a crawl counted against `max_lookups` when it
    // started, but a lookup started beside it did not see it, so both ran past the cap.
    let mut s = Script::new(Config { bootstrap: vec![], max_lookups: 1, ..Config::default() });
    s.insert(&[NodeInfo::new(id_with(&[0x80]), sa("10.0.0.1:6881"))]);
    let crawl = s.ep.crawl(s.now, CrawlConfig::default()).expect("the one slot");
    assert_eq!(s.ep.find_node(s.now, id_with(&[0x40])), Err(CommandError::TooManyLookups));
    assert_eq!(s.ep.crawl(s.now, CrawlConfig::default()), Err(CommandError::TooManyLookups));
    s.ep.stop(crawl).expect("stop the crawl");
    assert!(s.ep.find_node(s.now, id_with(&[0x40])).is_ok(), "the slot is free again");
}

/// A scripted crawler in k-rpc parity mode (no node layer) with `nodes` in its table.
fn scripted(nodes: &[NodeInfo]) -> Script {
    let mut s = Script::new(Config { bootstrap: vec![], ..Config::default() });
    s.insert(nodes);
    s.sent();
    s
}

fn samples_reply(s: &mut Script, q: &support::Sent, id: &NodeId, samples: &[u8], interval: i64, nodes: &[NodeInfo]) {
    let values = Dictionary::new().with_bytes("samples", samples).with_int("interval", interval).with_int("num", 9);
    s.reply_with(q, Some(id), &values, nodes);
}

/// The crawl queries sent (table upkeep may send `find_node` and pings beside them).
fn crawl_sent(s: &mut Script) -> Vec<support::Sent> {
    s.sent().into_iter().filter(|m| m.is_query() && m.method() == b"sample_infohashes").collect()
}

fn one_crawl_query(s: &mut Script) -> support::Sent {
    let mut sent = crawl_sent(s);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    sent.remove(0)
}

fn events_of(s: &mut Script) -> (Vec<Vec<NodeId>>, Option<CrawlStats>) {
    let mut found = Vec::new();
    let mut end = None;
    for e in s.events() {
        match e {
            Event::CrawlFound { info_hashes, .. } => found.push(info_hashes),
            Event::CrawlDone { stats, .. } => end = Some(stats),
            _ => {}
        }
    }
    (found, end)
}

#[test]
fn duplicates_are_reported_once_and_learned_nodes_are_asked_in_turn() {
    let a = NodeInfo::new(id_with(&[0x10]), sa("10.0.0.1:6881"));
    let b = NodeInfo::new(id_with(&[0xc0]), sa("10.0.0.2:6881"));
    let mut s = scripted(&[a]);
    let op = s.ep.crawl(s.now, CrawlConfig::default()).unwrap();
    let q = one_crawl_query(&mut s);
    assert_eq!((q.to, q.method()), (a.addr, b"sample_infohashes".to_vec()));
    assert!(q.args().target().is_some(), "a target, which picks the nodes of the answer");
    let h = |b: u8| [b; 20];
    let samples: Vec<u8> = [h(1), h(2), h(1)].concat();
    samples_reply(&mut s, &q, &a.id, &samples, 3600, &[b]);
    let (found, end) = events_of(&mut s);
    assert_eq!(found, vec![vec![NodeId::from_array(h(1)), NodeId::from_array(h(2))]], "the repeat is dropped");
    assert!(end.is_none());
    // The rate cap (20 a second) spaces the next query by 50 ms, and the engine asks to be
    // woken then (its timer table), not at the query timeout or the maintenance tick.
    assert!(crawl_sent(&mut s).is_empty());
    assert_eq!(s.ep.poll_timeout(), Some(s.now + Duration::from_millis(50)));
    s.advance(Duration::from_millis(50));
    let q = one_crawl_query(&mut s);
    assert_eq!(q.to, b.addr, "the node learned from the answer");
    samples_reply(&mut s, &q, &b.id, &[h(2), h(3)].concat(), 3600, &[a]);
    let (found, _) = events_of(&mut s);
    assert_eq!(found, vec![vec![NodeId::from_array(h(3))]], "only what is new");
    s.advance(Duration::from_secs(10));
    assert!(crawl_sent(&mut s).is_empty(), "a is not asked again before its interval");
    let stats = s.ep.crawl_stats(op).unwrap();
    assert_eq!((stats.queries, stats.replies, stats.nodes_visited), (2, 2, 2));
    assert_eq!((stats.samples, stats.unique_info_hashes, stats.nodes_known), (5, 3, 2));
    // a answered at 0 with an interval of an hour: not a moment before.
    s.advance(Duration::from_millis(3_600_000 - 10_050 - 1));
    assert!(crawl_sent(&mut s).is_empty(), "a is not asked again before its interval");
    s.advance(Duration::from_millis(1));
    let q = one_crawl_query(&mut s);
    assert_eq!(q.to, a.addr, "asked again after its interval");
}

#[test]
fn an_answer_from_the_ipv4_mapped_form_of_the_address_asked_counts() {
    let a = NodeInfo::new(id_with(&[0x10]), sa("10.0.0.1:6881"));
    let mut s = scripted(&[a]);
    let op = s.ep.crawl(s.now, CrawlConfig::default()).unwrap();
    let q = one_crawl_query(&mut s);
    let values = Dictionary::new().with_bytes("samples", [4u8; 20]).with_int("interval", 600);
    let bytes = support::response_bytes(&q.tid(), Some(&a.id), &values, &[]);
    s.deliver(sa("[::ffff:10.0.0.1]:6881"), &bytes);
    let (found, end) = events_of(&mut s);
    assert_eq!(found, vec![vec![NodeId::from_array([4; 20])]]);
    assert!(end.is_none(), "a waits for its interval");
    let stats = s.ep.crawl_stats(op).unwrap();
    assert_eq!((stats.replies, stats.nodes_visited, stats.nodes_known), (1, 1, 1));
}

#[test]
fn malformed_and_hostile_answers_are_dropped_and_the_crawl_ends_when_no_one_is_left() {
    let nodes: Vec<NodeInfo> =
        (1..=4u8).map(|i| NodeInfo::new(id_with(&[i * 0x30]), SocketAddr::from(([10, 0, 0, i], 6881)))).collect();
    let mut s = scripted(&nodes);
    let config = CrawlConfig::default().with_concurrency(4).with_rate(1000);
    let op = s.ep.crawl(s.now, config).unwrap();
    let mut queries = Vec::new();
    for _ in 0..4 {
        queries.extend(crawl_sent(&mut s));
        s.advance(Duration::from_millis(1));
    }
    assert_eq!(queries.len(), 4, "{queries:?}");
    let id_of = |addr: SocketAddr| nodes.iter().find(|n| n.addr == addr).unwrap().id;
    let stranger = NodeInfo::new(id_with(&[0x99]), sa("10.9.9.9:6881"));
    // 1: samples of 21 bytes: the whole answer goes, its nodes too.
    samples_reply(&mut s, &queries[0], &id_of(queries[0].to), &[7u8; 21], 60, &[stranger]);
    // 2: no samples at all: a node without BEP 51, counted, its nodes used.
    s.reply_with(&queries[1], Some(&id_of(queries[1].to)), &Dictionary::new(), &[]);
    // 3: a KRPC error.
    s.reply_error(&queries[2], 204, b"Method Unknown");
    // 4: a hostile interval (negative), one good sample.
    samples_reply(&mut s, &queries[3], &id_of(queries[3].to), &[8u8; 20], -5, &[]);
    let (found, end) = events_of(&mut s);
    assert_eq!(found, vec![vec![NodeId::from_array([8; 20])]]);
    assert!(end.is_none(), "one node waits for its interval");
    let stats = s.ep.crawl_stats(op).unwrap();
    assert_eq!((stats.malformed, stats.unsupported, stats.failures, stats.replies), (1, 1, 1, 3));
    assert_eq!(stats.nodes_known, 4, "the dropped answer's node was not learned");
    // The negative interval counts as the floor, a minute: not before.
    s.advance(Duration::from_secs(59));
    assert!(crawl_sent(&mut s).is_empty());
    s.advance(Duration::from_secs(1));
    let q = one_crawl_query(&mut s);
    assert_eq!(q.to, queries[3].to);
    // It does not answer this time: nobody is left, the crawl ends by itself.
    s.advance(Duration::from_secs(30));
    let (_, end) = events_of(&mut s);
    let end = end.expect("CrawlDone when no node is left to ask");
    assert_eq!((end.queries, end.failures), (5, 2));
}

#[test]
fn node_memory_is_capped_and_stop_and_close_end_the_crawl() {
    let a = NodeInfo::new(id_with(&[0x10]), sa("10.0.0.1:6881"));
    let mut s = scripted(&[a]);
    let config = CrawlConfig::default().with_max_nodes(3);
    let op = s.ep.crawl(s.now, config).unwrap();
    let q = one_crawl_query(&mut s);
    let learned: Vec<NodeInfo> =
        (1..=8u8).map(|i| NodeInfo::new(id_with(&[0x40, i]), SocketAddr::from(([10, 0, 1, i], 6881)))).collect();
    samples_reply(&mut s, &q, &a.id, &[], 600, &learned);
    let stats = s.ep.crawl_stats(op).unwrap();
    assert_eq!((stats.nodes_known, stats.nodes_refused), (3, 6));
    s.ep.stop(op).unwrap();
    let (_, end) = events_of(&mut s);
    assert_eq!(end.map(|e| e.queries), Some(1));
    assert_eq!(s.ep.stop(op), Err(CommandError::UnknownOperation));
    // close ends a running crawl too, once.
    let op = s.ep.crawl(s.now, CrawlConfig::default()).unwrap();
    s.ep.close(s.now);
    let ends: Vec<Event> =
        s.events().into_iter().filter(|e| matches!(e, Event::CrawlDone { op: o, .. } if *o == op)).collect();
    assert_eq!(ends.len(), 1);
}

#[test]
fn a_read_only_crawler_marks_its_queries_and_sample_infohashes_reaches_no_other_operation() {
    let a = NodeInfo::new(id_with(&[0x10]), sa("10.0.0.1:6881"));
    let mut s = Script::new(Config { bootstrap: vec![], read_only: true, ..Config::dht() });
    s.insert(&[a]);
    s.sent();
    let q_op = s.query(a.addr, Query::ping());
    let op = s.ep.crawl(s.now, CrawlConfig::default()).unwrap();
    let sent = s.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|m| m.message().read_only), "BEP 43: ro=1 on every query");
    let crawl_q = sent.iter().find(|m| m.method() == b"sample_infohashes").unwrap();
    samples_reply(&mut s, crawl_q, &a.id, &[5u8; 20], 600, &[]);
    let events = s.events();
    assert!(events.iter().any(|e| matches!(e, Event::CrawlFound { op: o, .. } if *o == op)));
    assert!(!events.iter().any(|e| matches!(e, Event::QueryDone { op: o, .. } if *o == q_op)));
}

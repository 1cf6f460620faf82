//! The lookup knobs tuned with the simulator (`docs/simulation.md`), checked on one scripted
//! endpoint: α, retries of silent candidates, the soft timeout and its adaptation to measured
//! round trips, and the target's neighbourhood asked without α slots.

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::{Dictionary, Entry, Insert, Message, ResponseOut};
use krpc_core::{Config, ConfigError, Endpoint, Event, Instant, LookupOutcome, NodeId, NodeInfo, Query};

/// One endpoint and a clock; the test plays every other node.
struct Script {
    ep: Endpoint,
    now: Instant,
}

/// A query the endpoint sent.
struct Sent {
    to: SocketAddr,
    tid: Vec<u8>,
}

fn id(first: u8) -> NodeId {
    let mut b = [0u8; 20];
    b[0] = first;
    NodeId::from_array(b)
}

fn node(first: u8) -> NodeInfo {
    NodeInfo::new(id(first), SocketAddr::from(([10, 0, 0, first], 7000)))
}

impl Script {
    fn new(config: Config) -> Script {
        let config = Config { id: Some(id(0xff)), ..config };
        Script { ep: Endpoint::new(config, [3; 32], Instant::ZERO).unwrap(), now: Instant::ZERO }
    }

    fn sent(&mut self) -> Vec<Sent> {
        let mut buf = [0u8; 1500];
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_transmit(self.now, &mut buf) {
            let msg = Message::decode(&buf[..t.len]).unwrap();
            out.push(Sent { to: t.destination, tid: msg.transaction_id.to_vec() });
        }
        out
    }

    /// Drops pending events (routing-table notices), so that `poll_timeout` reports a deadline.
    fn quiet(&mut self) {
        while self.ep.poll_event().is_some() {}
    }

    fn advance_to(&mut self, at: Instant) {
        self.now = at;
        self.ep.handle_timeout(at);
    }

    fn reply(&mut self, q: &Sent, from: NodeInfo, nodes: &[NodeInfo]) {
        let mut extra = vec![Entry { key: b"id", value: Insert::Bytes(from.id.as_bytes()), replace: true }];
        if !nodes.is_empty() {
            extra.push(Entry { key: b"nodes", value: Insert::NodesV4(nodes), replace: true });
        }
        let mut buf = [0u8; 1500];
        let values = Dictionary::new();
        let out = ResponseOut { transaction_id: &q.tid, values: &values, extra: &extra, ip: None, version: None };
        let len = out.encode(&mut buf).unwrap();
        self.ep.handle_datagram(self.now, q.to, &buf[..len]);
    }

    fn lookup_done(&mut self) -> Option<(usize, Vec<NodeInfo>, LookupOutcome)> {
        std::iter::from_fn(|| self.ep.poll_event()).find_map(|e| match e {
            Event::LookupDone { replies, closest, outcome, .. } => {
                Some((replies, closest.into_iter().map(|n| n.node).collect(), outcome))
            }
            _ => None,
        })
    }
}

#[test]
fn the_default_lookup_settings_are_alpha_four_one_retry_and_an_adaptive_one_second_soft_timeout() {
    let c = Config::default();
    assert_eq!(c.lookup_alpha(), 4);
    assert_eq!(c.lookup_retries, 1);
    assert_eq!(c.lookup_soft_timeout, Some(Duration::from_secs(1)));
    assert!(c.lookup_adaptive_soft_timeout);
    assert!(c.validate().is_ok());
    let zero = Config { lookup_soft_timeout: Some(Duration::ZERO), ..Config::default() };
    assert_eq!(zero.validate(), Err(ConfigError::Timeout));
    let parity = Config { lookup_parallelism: None, ..Config::default() };
    assert_eq!(parity.lookup_alpha(), 16, "None keeps k-rpc's α = concurrency");
}

#[test]
fn a_lookup_keeps_alpha_queries_in_flight() {
    // Eight nodes are a DHT of about one node by the size estimate, whose whole space is
    // every target's neighbourhood; without it, α holds.
    let mut s = Script::new(Config { k: 8, lookup_neighbourhood: 0, ..Config::default() });
    for b in 1..=8 {
        assert!(s.ep.insert_node(s.now, node(b)));
    }
    s.sent();
    let target = id(0);
    s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let sent = s.sent();
    assert_eq!(sent.iter().map(|q| q.to).collect::<Vec<_>>(), (1..=4).map(|b| node(b).addr).collect::<Vec<_>>());
}

/// A node whose id starts with `prefix`, at 10.0.`host`.`host`.
fn node_at(prefix: [u8; 2], host: u8) -> NodeInfo {
    let mut b = [0u8; 20];
    b[..2].copy_from_slice(&prefix);
    NodeInfo::new(NodeId::from_array(b), SocketAddr::from(([10, 0, host, host], 7000)))
}

#[test]
fn candidates_in_the_targets_neighbourhood_are_asked_at_once_and_the_rest_within_alpha() {
    // Our 8 nearest neighbours sit 1/65,536 of the id space apart: the DHT is estimated at
    // about 65,536 nodes, so the 8th nearest of a target is expected within 8/65,536 of the
    // space and its neighbourhood (factor 2) is 16/65,536: ids that start with 0x00 0x0_ for
    // target 0. The table's nodes are all far from target 0.
    for neighbourhood in [2, 0] {
        let mut s = Script::new(Config { k: 8, lookup_neighbourhood: neighbourhood, ..Config::default() });
        for b in 1..=8 {
            assert!(s.ep.insert_node(s.now, node_at([0xff, b], b)));
        }
        assert_eq!(s.ep.status().dht_size_estimate, Some(65_536));
        s.sent();
        let target = id(0);
        s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
        let first = s.sent();
        assert_eq!(first.len(), 4, "far from the target: α = 4");
        // One answer names six nodes of the neighbourhood and one outside it (0x00 0x40).
        let near: Vec<NodeInfo> = (1..=6).map(|b| node_at([0, b], 100 + b)).collect();
        let mut named = near.clone();
        named.push(node_at([0, 0x40], 200));
        s.reply(&first[0], node_at([0xff, 1], 1), &named);
        let next: Vec<SocketAddr> = s.sent().into_iter().map(|q| q.to).collect();
        if neighbourhood == 2 {
            // Up to k = 8 in flight: the five nearest beside the three still out.
            assert_eq!(next, near[..5].iter().map(|n| n.addr).collect::<Vec<_>>(), "at once, nearest first");
        } else {
            assert_eq!(next, [near[0].addr], "one free α slot, three queries still out");
        }
    }
}

#[test]
fn a_silent_candidate_is_asked_again_at_its_soft_timeout_and_a_late_first_answer_still_counts() {
    let config = Config { k: 1, lookup_parallelism: Some(1), lookup_adaptive_soft_timeout: false, ..Config::default() };
    let mut s = Script::new(config);
    assert!(s.ep.insert_node(s.now, node(1)));
    s.sent();
    let target = id(0);
    s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let first = s.sent().pop().unwrap();
    assert_eq!(first.to, node(1).addr);
    let soft = Instant::ZERO + Duration::from_secs(1);
    s.quiet();
    assert_eq!(s.ep.poll_timeout(), Some(soft), "woken at the soft timeout, not the 2 s timeout");
    s.advance_to(soft);
    let retry = s.sent().pop().expect("retried at the soft timeout");
    assert_eq!(retry.to, node(1).addr);
    assert_ne!(retry.tid, first.tid, "a new transaction");
    assert!(s.lookup_done().is_none());
    // The first query's answer arrives late; it is still the lookup's.
    s.now = Instant::ZERO + Duration::from_millis(1500);
    s.reply(&first, node(1), &[]);
    let (replies, closest, outcome) = s.lookup_done().expect("done once the only candidate answered");
    assert_eq!((replies, outcome), (1, LookupOutcome::Completed));
    assert_eq!(closest, [node(1)]);
}

#[test]
fn without_retries_or_soft_timeout_a_silent_candidate_costs_the_full_timeout_once() {
    let config =
        Config { k: 2, lookup_parallelism: Some(1), lookup_retries: 0, lookup_soft_timeout: None, ..Config::default() };
    let mut s = Script::new(config);
    // Both seed the lookup; 1 is the nearer.
    assert!(s.ep.insert_node(s.now, node(1)));
    assert!(s.ep.insert_node(s.now, node(0x80)));
    s.sent();
    let target = id(0);
    s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    assert_eq!(s.sent().pop().unwrap().to, node(1).addr);
    s.quiet();
    assert_eq!(s.ep.poll_timeout(), Some(Instant::ZERO + Duration::from_secs(2)));
    s.advance_to(Instant::ZERO + Duration::from_secs(2));
    let next = s.sent().pop().unwrap();
    assert_eq!(next.to, node(0x80).addr, "1 is out after one try");
    s.reply(&next, node(0x80), &[]);
    assert_eq!(s.lookup_done().unwrap().1, [node(0x80)]);
}

#[test]
fn the_adaptive_soft_timeout_shrinks_after_fast_answers() {
    let mut s = Script::new(Config { k: 1, lookup_parallelism: Some(1), ..Config::default() });
    assert!(s.ep.insert_node(s.now, node(1)));
    s.sent();
    // Ten lookups answered after 100 ms each.
    for _ in 0..10 {
        let target = id(0);
        s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
        let q = s.sent().pop().unwrap();
        s.now += Duration::from_millis(100);
        s.reply(&q, node(1), &[]);
        assert!(s.lookup_done().is_some());
    }
    let target = id(0);
    s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    s.sent();
    s.quiet();
    let wake = s.ep.poll_timeout().unwrap();
    let soft = wake.saturating_duration_since(s.now);
    assert!(soft >= Duration::from_millis(250) && soft < Duration::from_millis(500), "soft timeout {soft:?}");
}

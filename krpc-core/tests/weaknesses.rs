//! One scripted test (or a few) per weakness of the JS stack that krpc fixes (js-krpc.md §7),
//! each showing the new behaviour; plus hostile input (W1/W2), BEP 43 read-only queriers,
//! verification of unknown queriers, and address filtering of learned nodes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::Dictionary;
use krpc_core::{
    AddressPolicy, CommandError, Config, ConfigError, Endpoint, Event, Instant, LookupOutcome, NodeId, NodeInfo, Peer,
    Query, QueryError, Token,
};
use support::*;

/// Long enough for every contact to become questionable (BEP 5: 15 minutes).
const QUIET: Duration = Duration::from_secs(16 * 60);

fn timeout() -> Duration {
    Config::default().timeout
}

/// An endpoint whose id is `0x00…`, so that ids starting with `0x80`–`0xff` share bucket 0.
/// The tests of a full bucket (W5, W11, W12) turn `wide_buckets` off: they fill the far half
/// with k contacts, which a widened far bucket would still have room beyond.
fn script(config: Config) -> Script {
    Script::new(Config { id: Some(id(0)), bucket_refresh: Duration::from_secs(1_000_000), ..config })
}

fn node_events(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::NodeAdded(_) | Event::NodeRemoved(_) | Event::NodeUpdated { .. } | Event::PingSwap { .. }
            )
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// W3: unsolicited and spoofed replies, predictable tids

#[test]
fn w3_unsolicited_reply_never_enters_the_routing_table_nor_emits_an_event() {
    let mut s = script(Config::default());
    let stranger = sa("10.0.0.5:7005");
    // A query of ours is in flight to that very address, under another tid.
    let op = s.query(Peer::addr(stranger), Query::ping());
    let ours = s.one_sent();
    let other_tid = if ours.tid() == [0, 1] { vec![0, 2] } else { vec![0, 1] };
    for tid in [other_tid, vec![7], vec![1, 2, 3]] {
        s.deliver(stranger, &response_bytes(&tid, Some(&id(0x80)), &Dictionary::new(), &[]));
    }
    assert!(s.events().is_empty());
    assert!(s.ep.routing_table().is_empty());
    assert_eq!(s.ep.stats().unsolicited_replies, 3);
    assert_eq!(s.ep.in_flight(), 1, "our query still waits for its own answer");
    s.reply(&ours, &id(0x80));
    assert!(query_result(&s.events(), op).unwrap().is_ok());
}

#[test]
fn w3_reply_from_another_port_does_not_complete_the_query_nor_enter_the_table() {
    let mut s = script(Config::default());
    let peer = sa("10.0.0.5:7005");
    let op = s.query(Peer::addr(peer), Query::ping());
    let q = s.one_sent();
    let spoof = response_bytes(&q.tid(), Some(&id(0x80)), &Dictionary::new(), &[]);
    s.deliver(sa("10.0.0.5:7006"), &spoof);
    s.deliver(sa("10.0.0.6:7005"), &spoof);
    assert!(s.events().is_empty(), "neither completes the query nor reports anything");
    assert!(s.ep.routing_table().is_empty());
    assert_eq!(s.ep.stats().mismatched_replies, 2);
    assert_eq!(s.ep.in_flight(), 1);

    s.reply(&q, &id(0x90));
    let events = s.events();
    let reply = query_result(&events, op).unwrap().unwrap();
    assert_eq!(reply.from(), peer);
    assert_eq!(reply.id(), Some(id(0x90)));
    assert_eq!(s.ep.routing_table().get(&id(0x90)).map(|c| c.addr()), Some(peer));
    assert!(!s.ep.routing_table().contains(&id(0x80)));
}

fn first_tids(seed: [u8; 32]) -> Vec<Vec<u8>> {
    let mut s = Script::with_seed(Config::default(), seed);
    for i in 0..8u8 {
        s.query(Peer::addr(SocketAddr::from(([10, 0, 0, i + 1], 7000))), Query::ping());
    }
    s.sent().iter().map(Sent::tid).collect()
}

#[test]
fn w3_transaction_ids_are_random_and_drawn_from_the_seed() {
    let a = first_tids(seed(1));
    assert_eq!(a, first_tids(seed(1)), "same seed, same tids");
    assert_ne!(a, first_tids(seed(2)), "another seed, other tids");
    assert_ne!(a[0], first_tids(seed(2))[0], "already the first tid differs");
    let sequential: Vec<Vec<u8>> = (1..=8u16).map(|n| n.to_be_bytes().to_vec()).collect();
    assert_ne!(a, sequential, "not k-rpc-socket's 1, 2, 3, ...");
}

// ---------------------------------------------------------------------------------------------
// W4: unexpected node id

#[test]
fn w4_reply_with_an_unexpected_id_fails_with_unexpected_node_id_and_evicts_the_stale_entry() {
    let mut s = script(Config::default());
    let x = node(0x80, 5);
    s.insert(&[x]);
    let _ = s.events();
    let op = s.query(Peer::node(x), Query::ping());
    let q = s.one_sent();
    s.reply(&q, &id(0x90));
    let events = s.events();
    let err = query_result(&events, op).unwrap().unwrap_err();
    assert_eq!(err, QueryError::UnexpectedNodeId { expected: x.id, got: Some(id(0x90)) });
    assert_eq!(err.to_string(), "Unexpected node id");
    assert_eq!(node_events(&events), [Event::NodeRemoved(x)]);
    assert!(!s.ep.routing_table().contains(&x.id), "the stale entry at that address is gone");
    assert!(!s.ep.routing_table().contains(&id(0x90)), "the newcomer is not inserted on this reply");
}

#[test]
fn w4_a_reply_without_the_expected_id_fails_and_evicts_too() {
    let mut s = script(Config::default());
    let x = node(0x80, 5);
    s.insert(&[x]);
    let op = s.query(Peer::node(x), Query::ping());
    let q = s.one_sent();
    s.reply_with(&q, None, &Dictionary::new(), &[]);
    let events = s.events();
    assert_eq!(
        query_result(&events, op).unwrap().unwrap_err(),
        QueryError::UnexpectedNodeId { expected: x.id, got: None }
    );
    assert!(!s.ep.routing_table().contains(&x.id));
}

#[test]
fn w4_an_unexpected_id_at_another_address_than_the_table_entry_evicts_nothing() {
    let mut s = script(Config::default());
    let x = node(0x80, 5);
    s.insert(&[x]);
    let _ = s.events();
    let elsewhere = sa("10.0.0.66:7066");
    let op = s.query(Peer { addr: elsewhere, id: Some(x.id), token: None }, Query::ping());
    let q = s.one_sent();
    s.reply(&q, &id(0x90));
    let events = s.events();
    assert!(matches!(query_result(&events, op), Some(Err(QueryError::UnexpectedNodeId { .. }))));
    assert!(node_events(&events).iter().all(|e| !matches!(e, Event::NodeRemoved(_))));
    assert!(s.ep.routing_table().contains(&x.id), "x still answers at its own address");
}

// ---------------------------------------------------------------------------------------------
// W5: one timeout never evicts

#[test]
fn w5_one_timeout_of_a_table_node_does_not_evict_it() {
    let mut s = script(Config::default());
    let x = node(0x80, 5);
    s.insert(&[x]);
    let _ = s.events();
    let op = s.query(Peer::node(x), Query::ping());
    let _ = s.one_sent();
    s.advance(timeout());
    let events = s.events();
    assert_eq!(query_result(&events, op), Some(Err(QueryError::Timeout)));
    assert!(node_events(&events).is_empty(), "no NodeRemoved");
    assert_eq!(s.ep.routing_table().get(&x.id).map(|c| c.failures), Some(1));
}

#[test]
fn w5_after_max_failures_the_ping_swap_replaces_the_silent_node() {
    let mut s = script(Config { k: 2, wide_buckets: 0, ..Config::default() });
    let (a, b, c) = (node(0x80, 1), node(0x81, 2), node(0x82, 3));
    s.insert(&[a, b]);
    let _ = s.events();
    let _ = s.query(Peer::node(a), Query::ping());
    let _ = s.one_sent();
    s.advance(timeout());
    assert_eq!(s.ep.routing_table().get(&a.id).map(|c| c.failures), Some(1));
    let _ = s.events();

    s.advance(QUIET);
    assert!(!s.ep.insert_node(s.now, c), "bucket full: c waits for the ping/swap");
    let check = s.one_sent();
    assert_eq!((check.to, check.method()), (a.addr, b"ping".to_vec()), "the questionable, least recently seen a");
    s.advance(timeout());
    let max_failures = s.ep.routing_table().policy().max_failures;
    assert_eq!(max_failures, 2);
    assert_eq!(node_events(&s.events()), [Event::NodeRemoved(a), Event::NodeAdded(c)]);
    assert_eq!(s.bucket_ids(0), [b.id, c.id]);
}

// ---------------------------------------------------------------------------------------------
// W6: tokens per node

#[test]
fn w6_query_all_sends_each_peer_its_own_token_and_none_to_a_peer_without_one() {
    let mut s = script(Config::default());
    let (a, b, c) = (sa("10.0.0.1:7001"), sa("10.0.0.2:7002"), sa("10.0.0.3:7003"));
    let peers = [
        Peer::addr(a).with_token(Token::new(b"TOKEN-A").unwrap()),
        Peer::addr(b),
        Peer::addr(c).with_token(Token::new(b"TOKEN-C").unwrap()),
    ];
    let args = Dictionary::new().with_bytes("v", "value");
    s.ep.query_all(s.now, peers, Query::new("put", args).unwrap()).unwrap();
    let sent = s.sent();
    let token_to = |addr| sent.iter().find(|q| q.to == addr).unwrap().args().token().map(<[u8]>::to_vec);
    assert_eq!(token_to(a), Some(b"TOKEN-A".to_vec()));
    assert_eq!(token_to(b), None, "no token leaks from the previous node");
    assert_eq!(token_to(c), Some(b"TOKEN-C".to_vec()));
}

// ---------------------------------------------------------------------------------------------
// W7: close

#[test]
fn w7_close_resolves_every_operation_exactly_once_with_a_shut_down_result() {
    let mut s = script(Config { concurrency: 2, ..Config::default() });
    s.insert(&[node(0x80, 1), node(0x81, 2), node(0x82, 3)]);
    s.incoming_query(sa("10.0.0.99:7099"), b"in", "x", None);
    let incoming = incoming(&s.events()).pop().unwrap();

    let queries: Vec<_> =
        (0..4).map(|i| s.query(Peer::addr(SocketAddr::from(([10, 0, 1, i], 7000))), Query::ping())).collect();
    let in_flight = s.sent();
    assert_eq!(in_flight.len(), 2, "two in flight, two queued");
    let target = id(0x90);
    let lookup = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let background = s.ep.populate(s.now, target, Query::find_node(&target)).unwrap();
    let all =
        s.ep.query_all(s.now, [Peer::addr(sa("10.0.2.1:7000")), Peer::addr(sa("10.0.2.2:7000"))], Query::ping())
            .unwrap();
    assert!(s.sent().is_empty());

    s.ep.close(s.now);
    assert!(s.ep.is_closed());
    let events = s.events();
    for &op in &queries {
        assert_eq!(completions_of(&events, op), 1);
        assert_eq!(query_result(&events, op), Some(Err(QueryError::ShutDown)));
    }
    for op in [lookup, background] {
        assert_eq!(completions_of(&events, op), 1);
        assert_eq!(lookup_result(&events, op).unwrap().2, LookupOutcome::ShutDown);
    }
    assert_eq!(completions_of(&events, all), 1);
    assert_eq!(query_all_result(&events, all), Some(Err(QueryError::ShutDown)));
    assert_eq!(s.ep.operations(), 0);
    assert_eq!(s.ep.in_flight(), 0);

    // Nothing more happens: no datagram, no late result, no deadline.
    s.reply(&in_flight[0], &id(0x70));
    s.advance(timeout() * 10);
    assert!(s.sent().is_empty());
    assert!(s.events().is_empty());
    assert_eq!(s.ep.poll_timeout(), None);

    let now = s.now;
    let ep = &mut s.ep;
    assert_eq!(ep.query(now, Peer::addr(sa("10.0.0.1:1")), Query::ping()), Err(CommandError::Closed));
    assert_eq!(ep.query_all(now, [Peer::addr(sa("10.0.0.1:1"))], Query::ping()), Err(CommandError::Closed));
    assert_eq!(ep.closest(now, target, Query::find_node(&target)), Err(CommandError::Closed));
    assert_eq!(ep.populate(now, target, Query::find_node(&target)), Err(CommandError::Closed));
    assert_eq!(ep.bootstrap(now), Err(CommandError::Closed));
    assert_eq!(ep.add_node(now, sa("10.0.0.1:1"), None), Err(CommandError::Closed));
    assert_eq!(ep.respond(incoming.reply_to(), Dictionary::new(), &[]), Err(CommandError::Closed));
    assert_eq!(ep.error(incoming.reply_to(), 201, b"x"), Err(CommandError::Closed));
    assert!(!ep.insert_node(now, node(0x83, 4)));
    assert_eq!(CommandError::Closed.to_string(), "endpoint is closed");
}

// ---------------------------------------------------------------------------------------------
// W8: send errors

#[test]
fn w8_fail_transmit_fails_the_query_at_once_with_send_failed() {
    let mut s = script(Config::default());
    let op = s.query(Peer::addr(sa("10.0.0.5:7005")), Query::ping());
    let q = s.one_sent();
    s.ep.fail_transmit(s.now, &q.transmit);
    assert_eq!(query_result(&s.events(), op), Some(Err(QueryError::SendFailed)));
    assert_eq!(s.ep.in_flight(), 0);
    s.reply(&q, &id(0x80));
    assert!(s.events().is_empty(), "a late answer to a failed send is unsolicited");
    assert_eq!(s.ep.stats().unsolicited_replies, 1);
}

#[test]
fn w8_fail_transmit_of_a_reply_changes_nothing() {
    let mut s = script(Config::default());
    s.incoming_query(sa("10.0.0.5:7005"), b"pp", "ping", None);
    let pong = s.one_sent();
    let op = s.query(Peer::addr(sa("10.0.0.6:7006")), Query::ping());
    let q = s.one_sent();
    s.ep.fail_transmit(s.now, &pong.transmit);
    assert!(s.events().is_empty());
    assert_eq!(s.ep.in_flight(), 1);
    s.reply(&q, &id(0x80));
    assert!(query_result(&s.events(), op).unwrap().is_ok());
}

#[test]
fn w8_a_query_larger_than_the_buffer_fails_with_too_large() {
    let mut s = script(Config::default());
    let big = Query::new("put", Dictionary::new().with_bytes("v", vec![b'x'; 1600])).unwrap();
    let op = s.query(Peer::addr(sa("10.0.0.5:7005")), big);
    let small = s.query(Peer::addr(sa("10.0.0.6:7006")), Query::ping());
    let sent = s.sent_with_buffer(BUF_LEN);
    assert_eq!(sent.len(), 1, "the big query is dropped, the next one still leaves");
    assert_eq!(sent[0].method(), b"ping");
    assert_eq!(query_result(&s.events(), op), Some(Err(QueryError::TooLarge)));
    assert_eq!(s.ep.stats().transmits_dropped, 1);
    assert_eq!(s.ep.in_flight(), 1);
    s.reply(&sent[0], &id(0x80));
    assert!(query_result(&s.events(), small).unwrap().is_ok());
}

#[test]
fn w8_a_failed_send_in_a_lookup_moves_on_to_the_next_candidate_at_once() {
    let mut s = script(Config { k: 2, lookup_parallelism: Some(1), ..Config::default() });
    let (a, b) = (node(0x81, 1), node(0x82, 2));
    s.insert(&[a, b]);
    let target = id(0x80);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let q = s.one_sent();
    assert_eq!(q.to, a.addr, "the nearest first");
    s.ep.fail_transmit(s.now, &q.transmit);
    let next = s.one_sent();
    assert_eq!(next.to, b.addr, "no waiting for a timeout");
    s.reply(&next, &b.id);
    let (replies, closest, outcome) = lookup_result(&s.events(), op).unwrap();
    assert_eq!((replies, outcome), (1, LookupOutcome::Completed));
    assert_eq!(closest.iter().map(|n| n.node).collect::<Vec<_>>(), [b]);
    assert_eq!(s.ep.routing_table().get(&a.id).map(|c| c.failures), Some(1), "a failure, not an eviction");
}

// ---------------------------------------------------------------------------------------------
// W9: exact timeouts

#[test]
fn w9_the_timeout_is_exact_and_counts_from_when_the_query_left() {
    let mut s = script(Config { concurrency: 1, ..Config::default() });
    let first = s.query(Peer::addr(sa("10.0.0.5:7005")), Query::ping());
    let second = s.query(Peer::addr(sa("10.0.0.6:7006")), Query::ping());
    let q1 = s.one_sent();
    s.advance(Duration::from_millis(1500));
    s.reply(&q1, &id(0x80));
    assert!(query_result(&s.events(), first).unwrap().is_ok());
    let _q2 = s.one_sent();
    // Queued for 1.5 s, then sent: its 2 s start now.
    s.advance(timeout() - Duration::from_nanos(1));
    assert!(s.events().is_empty());
    s.advance(Duration::from_nanos(1));
    assert_eq!(query_result(&s.events(), second), Some(Err(QueryError::Timeout)));
}

// ---------------------------------------------------------------------------------------------
// W10: every queue has a cap

#[test]
fn w10_queries_beyond_max_queued_queries_are_refused_with_queue_full() {
    let mut s = script(Config { concurrency: 1, max_queued_queries: 2, ..Config::default() });
    let addr = |i: u8| Peer::addr(SocketAddr::from(([10, 0, 0, i], 7000)));
    let first = s.query(addr(1), Query::ping());
    s.query(addr(2), Query::ping());
    s.query(addr(3), Query::ping());
    assert_eq!(s.ep.query(s.now, addr(4), Query::ping()), Err(CommandError::QueueFull));
    assert_eq!(s.ep.query_all(s.now, [addr(5)], Query::ping()), Err(CommandError::QueueFull));
    let q = s.one_sent();
    s.reply(&q, &id(0x80));
    assert!(query_result(&s.events(), first).unwrap().is_ok());
    assert!(s.ep.query(s.now, addr(4), Query::ping()).is_ok(), "a slot in the queue opened");
    assert_eq!(s.ep.query(s.now, addr(6), Query::ping()), Err(CommandError::QueueFull));
}

#[test]
fn w10_lookups_beyond_max_lookups_are_refused_with_too_many_lookups() {
    let mut s = script(Config { max_lookups: 1, ..Config::default() });
    s.insert(&[node(0x80, 1)]);
    let target = id(0x90);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    assert_eq!(s.ep.closest(s.now, target, Query::find_node(&target)), Err(CommandError::TooManyLookups));
    assert_eq!(s.ep.populate(s.now, target, Query::find_node(&target)), Err(CommandError::TooManyLookups));
    s.ep.stop(op).unwrap();
    assert!(s.ep.populate(s.now, target, Query::find_node(&target)).is_ok());
}

#[test]
fn w10_a_lookup_keeps_at_most_max_lookup_candidates_dropping_the_farthest() {
    // No retries: each silent candidate is asked exactly once.
    let mut s = script(Config { k: 2, max_lookup_candidates: 3, lookup_retries: 0, ..Config::default() });
    let target = id(0x40);
    let seed_node = NodeInfo::new(id(0x41), sa("10.0.0.41:7041"));
    s.insert(&[seed_node]);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let q = s.one_sent();
    // Ten nodes, all farther from the target than the seed: only the two nearest fit.
    let learned: Vec<NodeInfo> =
        (0..10u8).map(|i| NodeInfo::new(id(0x48 + i), SocketAddr::from(([10, 0, 0, 0x48 + i], 7000)))).collect();
    s.reply_with(&q, Some(&seed_node.id), &Dictionary::new(), &learned);
    let mut asked = Vec::new();
    let mut events = Vec::new();
    while lookup_result(&events, op).is_none() {
        for q in s.sent() {
            asked.push(q.to);
        }
        s.advance(timeout());
        events.extend(s.events());
    }
    assert_eq!(asked, [learned[0].addr, learned[1].addr], "the other eight were dropped, never queried");
    let (replies, closest, _) = lookup_result(&events, op).unwrap();
    assert_eq!(replies, 1);
    assert_eq!(closest.iter().map(|n| n.node).collect::<Vec<_>>(), [seed_node]);
}

#[test]
fn w10_responses_beyond_max_queued_transmits_are_dropped_and_counted() {
    let mut s = script(Config { max_queued_transmits: 2, ..Config::default() });
    s.incoming_query(sa("10.0.0.9:7009"), b"q0", "x", None);
    let q = incoming(&s.events()).pop().unwrap();
    for (i, tid) in [b"p1", b"p2", b"p3"].iter().enumerate() {
        s.incoming_query(SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000)), &tid[..], "ping", None);
    }
    assert_eq!(s.ep.stats().transmits_dropped, 1, "the third pong did not fit");
    assert_eq!(s.ep.respond(q.reply_to(), Dictionary::new(), &[]), Err(CommandError::TransmitQueueFull));
    assert_eq!(s.ep.error(q.reply_to(), 201, b"x"), Err(CommandError::TransmitQueueFull));
    assert_eq!(s.ep.stats().transmits_dropped, 3);
    let sent = s.sent();
    assert_eq!(sent.iter().map(Sent::tid).collect::<Vec<_>>(), [b"p1".to_vec(), b"p2".to_vec()]);
    assert!(s.ep.respond(q.reply_to(), Dictionary::new(), &[]).is_ok(), "room again once drained");
}

#[test]
fn w10_notices_beyond_max_queued_events_are_dropped_oldest_first_but_results_never() {
    let mut s = script(Config { max_queued_events: 2, ..Config::default() });
    for tid in [b"q1", b"q2", b"q3"] {
        s.incoming_query(sa("10.0.0.9:7009"), &tid[..], "x", None);
    }
    assert_eq!(s.ep.stats().events_dropped, 1);
    let tids: Vec<Vec<u8>> = incoming(&s.events()).iter().map(|q| q.reply_to().transaction_id().to_vec()).collect();
    assert_eq!(tids, [b"q2".to_vec(), b"q3".to_vec()], "the oldest notice went");

    let op = s.query(Peer::addr(sa("10.0.0.5:7005")), Query::ping());
    let _ = s.one_sent();
    s.incoming_query(sa("10.0.0.9:7009"), b"q4", "x", None);
    s.incoming_query(sa("10.0.0.9:7009"), b"q5", "x", None);
    s.advance(timeout());
    let events = s.events();
    assert_eq!(events.len(), 2);
    assert_eq!(query_result(&events, op), Some(Err(QueryError::Timeout)), "the result is kept");
    assert_eq!(incoming(&events)[0].reply_to().transaction_id(), b"q5");
    assert_eq!(s.ep.stats().events_dropped, 2);
}

// ---------------------------------------------------------------------------------------------
// W11: NodeAdded only on insertion

#[test]
fn w11_a_full_bucket_emits_ping_swap_and_no_node_added_and_the_table_is_unchanged() {
    let mut s = script(Config { k: 2, wide_buckets: 0, auto_ping_swap: false, ..Config::default() });
    let (a, b, c) = (node(0x80, 1), node(0x81, 2), node(0x82, 3));
    s.insert(&[a, b]);
    assert_eq!(node_events(&s.events()), [Event::NodeAdded(a), Event::NodeAdded(b)]);

    // c answers a query of ours: verified, but there is no room.
    let op = s.query(Peer::addr(c.addr), Query::ping());
    let q = s.one_sent();
    s.reply(&q, &c.id);
    let events = s.events();
    assert!(query_result(&events, op).unwrap().is_ok());
    assert_eq!(node_events(&events), [Event::PingSwap { oldest: vec![a, b], candidate: c }]);
    assert_eq!(s.bucket_ids(0), [a.id, b.id]);
    assert_eq!(s.ep.routing_table().len(), 2);
    assert!(s.sent().is_empty(), "auto ping/swap is off: the engine pings nobody");

    // A re-seen node is not "added" again.
    assert!(s.ep.insert_node(s.now, a));
    assert!(node_events(&s.events()).is_empty());

    // swap refuses to evict a good node, and works once it is questionable.
    assert!(!s.ep.swap(s.now, &b.id, c));
    assert!(s.events().is_empty());
    s.advance(QUIET);
    assert!(s.ep.swap(s.now, &b.id, c));
    assert_eq!(node_events(&s.events()), [Event::NodeRemoved(b), Event::NodeAdded(c)]);
    assert_eq!(s.bucket_ids(0), [a.id, c.id]);
}

// ---------------------------------------------------------------------------------------------
// W12: LRU order and the ping policy

#[test]
fn w12_a_re_seen_node_moves_to_the_tail_of_its_bucket() {
    let mut s = script(Config::default());
    let (a, b, c) = (node(0x80, 1), node(0x81, 2), node(0x82, 3));
    s.insert(&[a, b, c]);
    assert_eq!(s.bucket_ids(0), [a.id, b.id, c.id]);
    // a answers a query of ours.
    s.query(Peer::node(a), Query::ping());
    let q = s.one_sent();
    s.reply(&q, &a.id);
    assert_eq!(s.bucket_ids(0), [b.id, c.id, a.id]);
    // b queries us from its known address.
    s.incoming_query(b.addr, b"bq", "ping", Some(&b.id));
    assert_eq!(s.bucket_ids(0), [c.id, a.id, b.id]);
    // A query with b's id from another address proves nothing: no move.
    s.incoming_query(sa("10.0.0.77:7077"), b"fk", "ping", Some(&c.id));
    assert_eq!(s.bucket_ids(0), [c.id, a.id, b.id]);
}

#[test]
fn w12_ping_swap_offers_at_most_three_contacts_questionable_and_oldest_first() {
    let mut s = script(Config { k: 5, wide_buckets: 0, auto_ping_swap: false, ..Config::default() });
    let nodes: Vec<NodeInfo> = (0..5).map(|i| node(0x80 + i, 1 + i)).collect();
    s.insert(&nodes);
    s.advance(QUIET);
    // nodes[0] answers again: good, and at the tail; the other four are questionable.
    assert!(s.ep.insert_node(s.now, nodes[0]));
    let _ = s.events();
    let candidate = node(0x85, 6);
    assert!(!s.ep.insert_node(s.now, candidate));
    let events = s.events();
    assert_eq!(node_events(&events), [Event::PingSwap { oldest: nodes[1..4].to_vec(), candidate }]);
}

#[test]
fn w12_built_in_ping_swap_replaces_a_questionable_contact_after_two_failed_pings() {
    let mut s = script(Config { k: 2, wide_buckets: 0, ..Config::default() });
    let (a, b, c) = (node(0x80, 1), node(0x81, 2), node(0x82, 3));
    s.insert(&[a, b]);
    let _ = s.events();
    s.advance(QUIET);
    assert!(!s.ep.insert_node(s.now, c));
    assert!(node_events(&s.events()).is_empty(), "no PingSwap event: the engine handles it");
    for attempt in 1..=2 {
        let ping = s.one_sent();
        assert_eq!((ping.to, ping.method()), (a.addr, b"ping".to_vec()), "ping {attempt} goes to a");
        s.advance(timeout());
    }
    assert_eq!(node_events(&s.events()), [Event::NodeRemoved(a), Event::NodeAdded(c)]);
    assert_eq!(s.bucket_ids(0), [b.id, c.id]);
    assert!(s.sent().is_empty(), "b was never pinged");
}

/// A full bucket of two contacts that have been quiet since `start`, a candidate offered at
/// `start + QUIET`: both contacts are pinged in turn, both answer, and the check ends with the
/// bucket unchanged.
fn ping_swap_keeps_contacts_that_answer(start: Instant) -> Script {
    let mut s = script(Config { k: 2, wide_buckets: 0, ..Config::default() });
    let (a, b, c) = (node(0x80, 1), node(0x81, 2), node(0x82, 3));
    s.now = start;
    s.insert(&[a, b]);
    let _ = s.events();
    s.advance(QUIET);
    assert!(!s.ep.insert_node(s.now, c));
    let ping_a = s.one_sent();
    assert_eq!(ping_a.to, a.addr);
    s.reply(&ping_a, &a.id);
    let ping_b = s.one_sent();
    assert_eq!(ping_b.to, b.addr, "then the next questionable contact");
    s.reply(&ping_b, &b.id);
    assert!(s.sent().is_empty(), "all good: the check ends");
    assert_eq!(s.bucket_ids(0), [a.id, b.id]);
    assert!(!s.ep.routing_table().contains(&c.id));
    s
}

#[test]
fn w12_built_in_ping_swap_keeps_contacts_that_answer_and_drops_the_candidate() {
    let mut s = ping_swap_keeps_contacts_that_answer(Instant::ZERO);
    assert!(node_events(&s.events()).is_empty());
}

#[test]
fn w12_built_in_ping_swap_ends_at_a_saturated_clock() {
    // The fuzzers drive the clock to Instant::MAX. The table keeps a contact's times in 32-bit
    // ticks of 2^32 ns, which reach it: a contact that answers there reads back at most a tick
    // old, so it is good and the check moves on, then ends. (Times kept as 32-bit seconds
    // would stop at 136 years: every answer would leave its contact questionable and the
    // check would ping a and b in turn for ever.)
    let s = ping_swap_keeps_contacts_that_answer(Instant::MAX.saturating_sub(QUIET));
    assert_eq!(s.now, Instant::MAX);
}

// ---------------------------------------------------------------------------------------------
// W13: stop means stop

#[test]
fn w13_after_stop_replies_in_flight_produce_no_reply_events_and_the_lookup_ends_stopped() {
    let seeds = [sa("10.0.0.1:7001"), sa("10.0.0.2:7002"), sa("10.0.0.3:7003")];
    let mut s = script(Config { bootstrap: seeds.to_vec(), ..Config::default() });
    let target = id(0x90);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let sent = s.sent();
    assert_eq!(sent.len(), 3);
    s.reply(&sent[0], &id(0x91));
    assert_eq!(replies_of(&s.events(), op).len(), 1);

    s.ep.stop(op).unwrap();
    let events = s.events();
    let (replies, closest, outcome) = lookup_result(&events, op).unwrap();
    assert_eq!((replies, outcome), (1, LookupOutcome::Stopped));
    assert_eq!(closest.iter().map(|n| n.node.id).collect::<Vec<_>>(), [id(0x91)]);

    let learned = NodeInfo::new(id(0xa0), sa("10.0.0.20:7020"));
    s.reply_with(&sent[1], Some(&id(0x92)), &Dictionary::new(), &[learned]);
    s.reply(&sent[2], &id(0x93));
    let events = s.events();
    assert!(replies_of(&events, op).is_empty(), "no Reply after stop");
    assert_eq!(completions_of(&events, op), 0, "the lookup ended once");
    assert!(s.sent().is_empty(), "no new query after stop");
    assert!(s.ep.routing_table().contains(&id(0x92)), "answers still feed the routing table");
    assert_eq!(s.ep.stop(op), Err(CommandError::UnknownOperation));
}

#[test]
fn w13_stopping_a_query_all_reports_the_hits_so_far_and_nothing_after() {
    let mut s = script(Config::default());
    let peers = [sa("10.0.0.1:7001"), sa("10.0.0.2:7002")];
    let op = s.ep.query_all(s.now, peers.map(Peer::addr), Query::ping()).unwrap();
    let sent = s.sent();
    s.reply(&sent[0], &id(0x81));
    s.ep.stop(op).unwrap();
    let events = s.events();
    assert_eq!(replies_of(&events, op).len(), 1);
    assert_eq!(query_all_result(&events, op), Some(Ok(1)));
    s.reply(&sent[1], &id(0x82));
    assert!(replies_of(&s.events(), op).is_empty());
}

// ---------------------------------------------------------------------------------------------
// W14: lookup quality

#[test]
fn w14_timed_out_candidates_lose_their_place_and_the_lookup_ends_when_the_k_closest_live_nodes_replied() {
    // No retries: the timed-out candidate is out at once (with retries it is asked again first).
    let mut s = script(Config { k: 2, lookup_parallelism: Some(2), lookup_retries: 0, ..Config::default() });
    let target = id(0x40);
    let seed_node = NodeInfo::new(id(0x7f), sa("10.0.0.127:7127"));
    s.insert(&[seed_node]);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let q = s.one_sent();
    let [a, b, c, d] =
        [0x41u8, 0x42, 0x43, 0x44].map(|i| NodeInfo::new(id(i), SocketAddr::from(([10, 0, 0, i], 7000))));
    s.reply_with(&q, Some(&seed_node.id), &Dictionary::new(), &[d, c, b, a]);
    let sent = s.sent();
    assert_eq!(sent.iter().map(|q| q.to).collect::<Vec<_>>(), [a.addr, b.addr], "the two nearest first");
    s.reply(&sent[1], &b.id);
    assert!(s.sent().is_empty(), "a is still in flight and among the 2 closest");
    s.advance(timeout());
    let next = s.one_sent();
    assert_eq!(next.to, c.addr, "a timed out: c takes its place");
    s.reply(&next, &c.id);
    let events = s.events();
    let (replies, closest, outcome) = lookup_result(&events, op).expect("b and c are the 2 closest live nodes");
    assert_eq!(outcome, LookupOutcome::Completed);
    assert_eq!(replies, 3);
    assert_eq!(closest.iter().map(|n| n.node).collect::<Vec<_>>(), [b, c]);
    assert!(s.sent().is_empty(), "d is never asked");
}

#[test]
fn w14_bootstrap_nodes_are_asked_within_the_concurrency_budget() {
    let seeds: Vec<SocketAddr> = (1..=5u8).map(|i| SocketAddr::from(([10, 0, 0, i], 7000))).collect();
    let mut s = script(Config { concurrency: 2, bootstrap: seeds.clone(), ..Config::default() });
    let target = id(0x90);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let mut asked = Vec::new();
    let mut pending = s.sent();
    assert_eq!(pending.len(), 2, "not all five at once");
    let mut events = Vec::new();
    let mut n = 0x91;
    while lookup_result(&events, op).is_none() {
        assert!(s.ep.in_flight() <= 2);
        let q = pending.remove(0);
        asked.push(q.to);
        s.reply(&q, &id(n));
        n += 1;
        pending.extend(s.sent());
        events.extend(s.events());
    }
    asked.sort();
    assert_eq!(asked, seeds, "each bootstrap node asked once");
}

// ---------------------------------------------------------------------------------------------
// W18: exact distances

#[test]
fn w18_candidates_differing_only_beyond_bit_53_are_ordered_by_exact_distance() {
    let mut s = script(Config { k: 1, lookup_parallelism: Some(1), ..Config::default() });
    let target = id(0x80);
    let mut far = [0u8; 20];
    far[0] = 0x80;
    far[19] = 0x02;
    let mut near = far;
    near[19] = 0x01;
    let x = NodeInfo::new(NodeId::from_array(far), sa("10.0.0.2:7002"));
    let y = NodeInfo::new(NodeId::from_array(near), sa("10.0.0.1:7001"));
    let seed_node = NodeInfo::new(id(0xc0), sa("10.0.0.3:7003"));
    s.insert(&[seed_node]);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let q = s.one_sent();
    s.reply_with(&q, Some(&seed_node.id), &Dictionary::new(), &[x, y]);
    let next = s.one_sent();
    assert_eq!(next.to, y.addr, "y is nearer by its last bit, whatever the list order");
    s.reply(&next, &y.id);
    let (_, closest, _) = lookup_result(&s.events(), op).unwrap();
    assert_eq!(closest.iter().map(|n| n.node).collect::<Vec<_>>(), [y]);
    assert!(s.sent().is_empty(), "x is farther than the k=1 closest live node");
}

// ---------------------------------------------------------------------------------------------
// W20: error encoding

#[test]
fn w20_error_replies_always_carry_a_code_and_a_message() {
    let mut s = script(Config { send_ip: false, version: None, ..Config::default() });
    s.incoming_query(sa("10.0.0.9:7009"), b"e1", "x", None);
    let q = incoming(&s.events()).pop().unwrap();
    s.ep.error(q.reply_to(), 201, b"x").unwrap();
    s.ep.error(q.reply_to(), 204, b"").unwrap();
    s.ep.error(q.reply_to(), 202, &[b'm'; 300]).unwrap();
    let sent = s.sent();
    assert_eq!(sent[0].bytes, b"d1:eli201e1:xe1:t2:e11:y1:ee");
    assert_eq!(sent[1].bytes, b"d1:eli204e0:e1:t2:e11:y1:ee");
    assert_eq!(sent[2].error(), (202, vec![b'm'; 128]), "long messages are cut, never the code");
}

// ---------------------------------------------------------------------------------------------
// W21: configuration is validated

#[test]
fn w21_invalid_configurations_are_refused_with_the_specific_config_error() {
    let d = Config::default;
    let short_id = NodeId::from_bytes(&[1; 19]).unwrap();
    let cases: Vec<(&str, Config, ConfigError)> = vec![
        ("id length mismatch", Config { id: Some(short_id), ..d() }, ConfigError::IdDoesNotMatchLength),
        ("id_len 0", Config { id_len: 0, ..d() }, ConfigError::IdLength),
        ("id_len 33", Config { id_len: 33, ..d() }, ConfigError::IdLength),
        ("k 0", Config { k: 0, ..d() }, ConfigError::K),
        ("k 65", Config { k: 65, ..d() }, ConfigError::K),
        ("concurrency 0", Config { concurrency: 0, ..d() }, ConfigError::Concurrency),
        ("parallelism 0", Config { lookup_parallelism: Some(0), ..d() }, ConfigError::LookupParallelism),
        ("zero timeout", Config { timeout: Duration::ZERO, ..d() }, ConfigError::Timeout),
        ("bootstrap port 0", Config { bootstrap: vec![sa("192.0.2.1:0")], ..d() }, ConfigError::BootstrapAddress),
        ("bootstrap 0.0.0.0", Config { bootstrap: vec![sa("0.0.0.0:6881")], ..d() }, ConfigError::BootstrapAddress),
        ("candidates < k", Config { k: 8, max_lookup_candidates: 7, ..d() }, ConfigError::Cap("max_lookup_candidates")),
        ("no queued queries", Config { max_queued_queries: 0, ..d() }, ConfigError::Cap("max_queued_queries")),
        ("no lookups", Config { max_lookups: 0, ..d() }, ConfigError::Cap("max_lookups")),
        ("no transmits", Config { max_queued_transmits: 0, ..d() }, ConfigError::Cap("max_queued_transmits")),
        ("no events", Config { max_queued_events: 0, ..d() }, ConfigError::Cap("max_queued_events")),
        ("5 wide buckets", Config { wide_buckets: 5, ..d() }, ConfigError::WideBuckets),
    ];
    for (name, config, expected) in cases {
        assert_eq!(config.validate(), Err(expected), "{name}");
        assert_eq!(Endpoint::new(config, seed(1), Instant::ZERO).unwrap_err(), expected, "{name}");
    }
    // The edges that are valid.
    // k = 64 with 4 wide buckets is valid: a widened bucket stops at 255 contacts.
    let edge = Config { k: 64, concurrency: 1, max_lookup_candidates: 64, wide_buckets: 4, ..d() };
    assert_eq!(edge.validate(), Ok(()));
    assert_eq!(edge.background_concurrency(), 1, "never 0, unlike k-rpc below concurrency 4");
    let id_20 = NodeId::from_array([3; 20]);
    let ep = Endpoint::new(Config { id: Some(id_20), ..d() }, seed(1), Instant::ZERO).unwrap();
    assert_eq!(*ep.id(), id_20);
}

// ---------------------------------------------------------------------------------------------
// W1/W2: hostile input

#[test]
fn w1_a_query_with_a_mistyped_argument_is_answered_with_a_203_error_echoing_its_tid() {
    let cases: [&[u8]; 4] = [
        b"d1:ad2:id20:abcdefghij01234567899:info_hashi5ee1:q9:get_peers1:t2:xy1:y1:qe",
        b"d1:ad2:id20:abcdefghij01234567896:targeti5ee1:q9:find_node1:t2:xy1:y1:qe",
        b"d1:ad2:id20:abcdefghij01234567896:targeti5ee1:q3:get1:t2:xy1:y1:qe",
        b"d1:ad2:id20:abcdefghij01234567895:tokeni7ee1:q13:announce_peer1:t2:xy1:y1:qe",
    ];
    for (i, datagram) in cases.iter().enumerate() {
        let mut s = script(Config::default());
        let from = sa("10.0.0.9:7009");
        s.deliver(from, datagram);
        let e = s.one_sent();
        assert_eq!(e.to, from, "case {i}");
        assert_eq!(e.tid(), b"xy", "case {i}");
        let (code, message) = e.error();
        assert_eq!(code, 203, "case {i}");
        assert!(!message.is_empty(), "case {i}: the message says what was wrong");
        assert!(s.events().is_empty(), "case {i}: never reaches the application");
        assert_eq!((s.ep.stats().malformed, s.ep.stats().malformed_answered), (1, 1), "case {i}");
        assert!(s.ep.routing_table().is_empty());
    }
}

#[test]
fn w2_a_negative_string_length_and_other_broken_bencode_is_dropped_and_counted() {
    let mut s = script(Config::default());
    let broken: [&[u8]; 5] =
        [b"l-3:", b"d1:t2:xy1:y1:q", b"d1:ad2:id3:abce1:q4:ping1:t2:xy1:y1:qeGARBAGE", b"i-0e", b"\xff"];
    for datagram in broken {
        s.deliver(sa("10.0.0.9:7009"), datagram);
    }
    assert!(s.sent().is_empty(), "broken bencode gets no answer");
    assert!(s.events().is_empty());
    assert_eq!(s.ep.stats().malformed, 5);
    assert_eq!(s.ep.stats().malformed_answered, 0);
}

#[test]
fn a_read_only_endpoint_answers_nothing_and_marks_its_queries_ro() {
    let mut s = script(Config { read_only: true, ..Config::default() });
    s.incoming_query(sa("10.0.0.9:7009"), b"p1", "ping", Some(&id(0x80)));
    s.deliver(sa("10.0.0.9:7009"), b"d1:ad2:id20:abcdefghij01234567899:info_hashi5ee1:q9:get_peers1:t2:xy1:y1:qe");
    assert!(s.sent().is_empty());
    assert!(s.events().is_empty());
    assert_eq!(s.ep.stats().queries_ignored, 1);
    s.query(Peer::addr(sa("10.0.0.5:7005")), Query::ping());
    assert!(s.one_sent().message().read_only, "BEP 43: ro=1");
}

// ---------------------------------------------------------------------------------------------
// Who enters the routing table

#[test]
fn bep43_a_querier_with_ro_set_never_enters_the_routing_table() {
    let mut s = script(Config::default());
    let from = sa("10.0.0.9:7009");
    s.deliver(from, &query_bytes(b"r1", "ping", &Dictionary::new(), Some(&id(0x80)), true));
    let sent = s.sent();
    assert_eq!(sent.len(), 1, "the pong only: no verification ping");
    assert!(!sent[0].is_query());
    s.advance(timeout());
    assert!(s.ep.routing_table().is_empty());
    assert!(node_events(&s.events()).is_empty());
}

#[test]
fn an_unknown_querier_enters_the_table_only_after_answering_our_ping() {
    let mut s = script(Config::default());
    let from = sa("10.0.0.9:7009");
    s.incoming_query(from, b"v1", "x", Some(&id(0x80)));
    assert_eq!(incoming(&s.events()).len(), 1);
    assert!(s.ep.routing_table().is_empty(), "a query proves nothing");
    let ping = s.one_sent();
    assert_eq!((ping.to, ping.method()), (from, b"ping".to_vec()));
    s.reply(&ping, &id(0x80));
    assert_eq!(node_events(&s.events()), [Event::NodeAdded(NodeInfo::new(id(0x80), from))]);
}

#[test]
fn an_unknown_querier_that_does_not_answer_our_ping_never_enters_the_table() {
    let mut s = script(Config::default());
    let from = sa("10.0.0.9:7009");
    s.incoming_query(from, b"v1", "ping", Some(&id(0x80)));
    let sent = s.sent();
    assert_eq!(sent.len(), 2, "the pong, then our verification ping");
    assert!(!sent[0].is_query() && sent[1].is_query());
    s.advance(timeout());
    assert!(s.events().is_empty());
    assert!(s.ep.routing_table().is_empty());
}

#[test]
fn an_unknown_querier_answering_our_ping_with_another_id_never_enters_the_table() {
    let mut s = script(Config::default());
    let from = sa("10.0.0.9:7009");
    s.incoming_query(from, b"v1", "x", Some(&id(0x80)));
    let _ = s.events();
    let ping = s.one_sent();
    s.reply(&ping, &id(0x81));
    assert!(s.events().is_empty());
    assert!(s.ep.routing_table().is_empty());
}

#[test]
fn a_querier_verification_is_skipped_when_turned_off() {
    let mut s = script(Config { verify_queriers: false, ..Config::default() });
    s.incoming_query(sa("10.0.0.9:7009"), b"v1", "x", Some(&id(0x80)));
    assert!(s.sent().is_empty());
    assert!(s.ep.routing_table().is_empty(), "and the querier is not inserted unverified either");
}

// ---------------------------------------------------------------------------------------------
// Learned addresses

/// Starts a lookup whose only seed answers with `learned`; returns the addresses queried next.
fn queried_after_learning(policy: AddressPolicy, seed_addr: &str, learned: &[NodeInfo]) -> (Vec<SocketAddr>, u64) {
    let mut s = script(Config { address_policy: policy, ..Config::default() });
    let seed_node = NodeInfo::new(id(0xff), sa(seed_addr));
    s.insert(&[seed_node]);
    let target = id(0x80);
    s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let q = s.one_sent();
    s.reply_with(&q, Some(&seed_node.id), &Dictionary::new(), learned);
    (s.sent().iter().map(|q| q.to).collect(), s.ep.stats().nodes_filtered)
}

#[test]
fn nodes_with_bogon_addresses_from_a_nodes_list_are_never_queried() {
    let good = NodeInfo::new(id(0x90), sa("10.0.0.20:7020"));
    let bogons = ["0.0.0.0:6881", "255.255.255.255:6881", "224.0.0.1:6881", "0.1.2.3:6881", "10.0.0.21:0"];
    let mut learned: Vec<NodeInfo> =
        bogons.iter().enumerate().map(|(i, a)| NodeInfo::new(id(0x81 + i as u8), sa(a))).collect();
    learned.push(good);
    let (queried, filtered) = queried_after_learning(AddressPolicy::Any, "10.0.0.1:7001", &learned);
    assert_eq!(queried, [good.addr]);
    assert_eq!(filtered, 4, "port 0 never even decodes as a node; the other four are filtered");
}

#[test]
fn loopback_and_private_nodes_are_refused_under_public_and_accepted_under_any() {
    let local = [NodeInfo::new(id(0x81), sa("127.0.0.5:6881")), NodeInfo::new(id(0x82), sa("192.168.1.5:6881"))];
    let public = NodeInfo::new(id(0x83), sa("198.51.100.7:6881"));
    let learned = [local[0], local[1], public];
    let (queried, filtered) = queried_after_learning(AddressPolicy::Public, "203.0.113.5:6881", &learned);
    assert_eq!(queried, [public.addr]);
    assert_eq!(filtered, 2);
    let (mut queried, filtered) = queried_after_learning(AddressPolicy::Any, "203.0.113.5:6881", &learned);
    queried.sort();
    let mut all: Vec<SocketAddr> = learned.iter().map(|n| n.addr).collect();
    all.sort();
    assert_eq!(queried, all);
    assert_eq!(filtered, 0);
}

#[test]
fn the_auto_policy_is_public_when_a_bootstrap_node_is_public() {
    // The learned public node sits in another /24 than the bootstrap node: a lookup asks one
    // node per /24 (restrict_search_ips).
    let learned = [NodeInfo::new(id(0x81), sa("127.0.0.5:6881")), NodeInfo::new(id(0x83), sa("203.0.113.7:6881"))];
    let mut s = script(Config { bootstrap: vec![sa("198.51.100.1:6881")], ..Config::default() });
    let target = id(0x80);
    s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let q = s.one_sent();
    s.reply_with(&q, Some(&id(0xff)), &Dictionary::new(), &learned);
    assert_eq!(s.sent().iter().map(|q| q.to).collect::<Vec<_>>(), [learned[1].addr]);
}

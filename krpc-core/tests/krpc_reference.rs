//! The k-rpc and k-rpc-socket test suites (js-krpc.md §5.1, §5.2) ported as scripted tests,
//! plus the rest of k-rpc's observable contract (§2.2, §8 "Keep"): `a.id` and `a.token`
//! filling, `respond`'s compact nodes, `error`'s `[code, message]`, `query_all`'s hit count and
//! 3xx preference, `closest`'s reply count, background priority, transaction ids and the timer
//! contract of `poll_timeout`.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::{Dictionary, Message};
use krpc_core::{
    CommandError, Config, Event, Instant, LookupOutcome, NodeId, NodeInfo, Peer, Query, QueryError, Token,
};
use support::*;

/// Delivers every datagram `from` has queued to `to` (both scripted endpoints).
fn carry(from: &mut Script, to: &mut Script) -> usize {
    let sent = from.sent();
    for s in &sent {
        assert_eq!(s.to, to.addr, "datagram for an unexpected address");
        to.deliver(from.addr, &s.bytes);
    }
    sent.len()
}

/// A client at 127.0.0.1:6881 and a server at 127.0.0.1:6882.
fn pair() -> (Script, Script) {
    let client = Script::with_seed(Config::default(), seed(1));
    let mut server = Script::with_seed(Config::default(), seed(2));
    server.addr = sa("127.0.0.1:6882");
    (client, server)
}

fn int_value(fields: Option<krpc_core::wire::Fields<'_>>, key: &[u8]) -> Option<i64> {
    fields.and_then(|f| f.get(key)).and_then(|v| v.as_int())
}

// ---------------------------------------------------------------------------------------------
// k-rpc test.js (§5.1)

#[test]
fn closest_sends_the_echo_query_to_the_bootstrap_node_and_counts_its_reply() {
    // k-rpc "query + reply": the client knows only the server, as its bootstrap node.
    let mut net = Net::new(2, 1, |i| {
        let bootstrap = if i == 1 { vec![net_addr(0)] } else { Vec::new() };
        Config { bootstrap, ..Config::default() }
    });
    let target = net.id(1);
    let now = net.now;
    let op = net.ep(1).closest(now, target, echo_query()).unwrap();
    net.run_until(Duration::from_secs(10), |n| n.lookup_result(1, op).is_some());

    let server_saw: Vec<_> = net
        .events
        .iter()
        .filter_map(|(_, i, e)| match e {
            Event::Query(q) if *i == 0 && q.method() == b"echo" => Some(q.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(server_saw.len(), 1);
    assert_eq!(server_saw[0].from(), net_addr(1));
    assert_eq!(server_saw[0].args().get(b"hello").and_then(|v| v.as_int()), Some(42));

    let client_events: Vec<Event> = net.events.iter().filter(|(_, i, _)| *i == 1).map(|(_, _, e)| e.clone()).collect();
    let replies = replies_of(&client_events, op);
    assert_eq!(replies.len(), 1, "onreply runs once");
    assert_eq!(replies[0].from(), net_addr(0), "reply from the server's address and port");
    assert_eq!(int_value(replies[0].values(), b"hello"), Some(42));
    let (count, closest, outcome) = net.lookup_result(1, op).unwrap();
    assert_eq!(count, 1, "cb(null, 1)");
    assert_eq!(outcome, LookupOutcome::Completed);
    assert_eq!(closest.iter().map(|n| n.node).collect::<Vec<_>>(), [net.info(0)]);
}

#[test]
fn closest_follows_the_nodes_of_one_server_to_another_and_counts_both_replies() {
    // k-rpc "query + closest", rewritten so that `other` answers from its own socket (k-rpc's
    // original passed only because it ignored the source port).
    let server = NodeInfo::new(id(0x40), sa("10.0.0.2:7002"));
    let other = NodeInfo::new(id(0x41), sa("10.0.0.3:7003"));
    let mut client = Script::new(Config { bootstrap: vec![server.addr, other.addr], ..config_with_id(id(0x01)) });
    let target = id(0x42);
    let op = client.ep.closest(client.now, target, echo_query()).unwrap();
    let sent = client.sent();
    assert_eq!(sent.len(), 2, "both bootstrap nodes are asked");
    for s in &sent {
        assert_eq!(s.method(), b"echo");
        assert_eq!(s.args().get(b"hello").and_then(|v| v.as_int()), Some(42));
    }
    let to_server = sent.iter().find(|s| s.to == server.addr).unwrap();
    let to_other = sent.iter().find(|s| s.to == other.addr).unwrap();
    let hello = Dictionary::new().with_int("hello", 42);

    // `other` answering through the server's socket is not `other` answering.
    let spoof = response_bytes(&to_other.tid(), Some(&other.id), &hello, &[]);
    client.deliver(server.addr, &spoof);
    assert_eq!(client.ep.stats().mismatched_replies, 1);

    client.reply_with(to_server, Some(&server.id), &hello, &[other]);
    assert!(client.sent().is_empty(), "other is already being asked: not queried twice");
    client.reply_with(to_other, Some(&other.id), &hello, &[]);

    let events = client.events();
    let replies = replies_of(&events, op);
    assert_eq!(replies.len(), 2, "onreply ran exactly 2 times");
    assert!(replies.iter().all(|r| int_value(r.values(), b"hello") == Some(42)));
    assert!(replies.iter().any(|r| r.from() == other.addr), "other was visited");
    let (count, closest, outcome) = lookup_result(&events, op).unwrap();
    assert_eq!(count, 2);
    assert_eq!(outcome, LookupOutcome::Completed);
    assert_eq!(closest.iter().map(|n| n.node).collect::<Vec<_>>(), [server, other], "nearest to 0x42 first");
}

// ---------------------------------------------------------------------------------------------
// k-rpc-socket test.js (§5.2)

#[test]
fn query_reaches_the_server_with_its_method_and_arguments_and_the_reply_completes_it() {
    let (mut client, mut server) = pair();
    assert_eq!(client.ep.in_flight(), 0);
    let q = Query::new("hello_world", Dictionary::new().with_int("hej", 10)).unwrap();
    let op = client.query(Peer::addr(server.addr), q);
    assert_eq!(client.ep.in_flight(), 1);
    assert_eq!(carry(&mut client, &mut server), 1);

    let incoming = incoming(&server.events());
    assert_eq!(incoming.len(), 1);
    let query = &incoming[0];
    assert_eq!(query.from(), client.addr);
    assert_eq!(query.method(), b"hello_world");
    assert_eq!(query.args().get(b"hej").and_then(|v| v.as_int()), Some(10));
    assert_eq!(query.sender_id(), Some(client.id()));
    let keys: Vec<Vec<u8>> = query.args().dict().iter().map(|(k, _)| k.to_vec()).collect();
    assert_eq!(keys, [b"hej".to_vec(), b"id".to_vec()], "a = {{hej: 10}} plus our id");

    server.ep.respond(query.reply_to(), Dictionary::new().with_int("hello", 42), &[]).unwrap();
    // The server also verifies the unknown client with a ping; deliver everything.
    carry(&mut server, &mut client);
    let events = client.events();
    let reply = query_result(&events, op).unwrap().unwrap();
    assert_eq!(reply.from(), server.addr);
    assert_eq!(reply.id(), Some(server.id()));
    assert_eq!(int_value(reply.values(), b"hello"), Some(42));
    assert_eq!(client.ep.in_flight(), 0);
}

#[test]
fn parallel_queries_are_demultiplexed_by_transaction_id() {
    let (mut client, mut server) = pair();
    let op1 = client.query(Peer::addr(server.addr), Query::new("echo", Dictionary::new().with_int("a", 1)).unwrap());
    let op2 = client.query(Peer::addr(server.addr), Query::new("echo", Dictionary::new().with_int("a", 2)).unwrap());
    assert_eq!(client.ep.in_flight(), 2);
    carry(&mut client, &mut server);
    // Answer in reverse order: only the transaction id can tell them apart.
    for q in incoming(&server.events()).iter().rev() {
        let n = q.args().get(b"a").and_then(|v| v.as_int()).unwrap();
        server.ep.respond(q.reply_to(), Dictionary::new().with_int("echo", n), &[]).unwrap();
    }
    carry(&mut server, &mut client);
    let events = client.events();
    let r1 = query_result(&events, op1).unwrap().unwrap();
    let r2 = query_result(&events, op2).unwrap().unwrap();
    assert_eq!(int_value(r1.values(), b"echo"), Some(1));
    assert_eq!(int_value(r2.values(), b"echo"), Some(2));
    assert_eq!(client.ep.in_flight(), 0);
}

#[test]
fn an_error_reply_fails_the_query_with_the_remote_code_and_message() {
    let mut s = Script::new(Config::default());
    let peer = sa("10.0.0.9:7000");
    let op = s.query(Peer::addr(peer), Query::ping());
    let q = s.one_sent();
    s.reply_error(&q, 201, b"oh no");
    let result = query_result(&s.events(), op).unwrap();
    assert_eq!(result, Err(QueryError::Remote { code: 201, message: b"oh no".to_vec() }));
    assert_eq!(result.unwrap_err().to_string(), "201 oh no");
}

#[test]
fn an_error_sent_as_a_bare_string_fails_the_query_with_code_zero() {
    // k-rpc-socket's `error(peer, q, 'oh no')` sends `e: 'oh no'`-like shapes without a code.
    let mut s = Script::new(Config::default());
    let peer = sa("10.0.0.9:7000");
    let op = s.query(Peer::addr(peer), Query::ping());
    let q = s.one_sent();
    let tid = q.tid();
    let mut bytes = b"d1:e5:oh no1:t4:".to_vec();
    bytes.extend_from_slice(&tid);
    bytes.extend_from_slice(b"1:y1:ee");
    s.deliver(peer, &bytes);
    let result = query_result(&s.events(), op).unwrap();
    assert_eq!(result, Err(QueryError::Remote { code: 0, message: b"oh no".to_vec() }));
}

#[test]
fn a_query_times_out_exactly_after_the_configured_timeout_and_not_earlier() {
    let timeout = Duration::from_millis(100);
    let mut s = Script::new(Config { timeout, ..Config::default() });
    let op = s.query(Peer::addr(sa("10.0.0.9:7000")), Query::ping());
    let _ = s.one_sent();
    s.advance(timeout - Duration::from_nanos(1));
    assert!(s.events().is_empty(), "no result 1 ns before the timeout");
    assert_eq!(s.ep.in_flight(), 1);
    s.advance(Duration::from_nanos(1));
    let result = query_result(&s.events(), op).unwrap();
    assert_eq!(result, Err(QueryError::Timeout));
    assert_eq!(result.unwrap_err().to_string(), "Query timed out");
    assert_eq!(s.ep.in_flight(), 0);
    assert_eq!(s.ep.stats().timeouts, 1);
}

#[test]
fn an_empty_datagram_is_counted_and_dropped_without_a_query_event() {
    let mut s = Script::new(Config::default());
    s.deliver(sa("10.0.0.9:7000"), b"");
    assert!(s.events().is_empty());
    assert!(s.sent().is_empty());
    assert_eq!(s.ep.stats().datagrams_in, 1);
    assert_eq!(s.ep.stats().malformed, 1);
    assert_eq!(s.ep.stats().queries_in, 0);
}

// ---------------------------------------------------------------------------------------------
// The rest of k-rpc's contract

#[test]
fn a_id_is_filled_in_when_absent_and_kept_when_the_application_set_it() {
    let mut s = Script::new(Config::default());
    let peer = sa("10.0.0.9:7000");
    s.query(Peer::addr(peer), Query::new("x", Dictionary::new()).unwrap());
    let own = id(0x77);
    s.query(Peer::addr(peer), Query::new("x", Dictionary::new().with_bytes("id", own.as_bytes())).unwrap());
    let sent = s.sent();
    assert_eq!(sent[0].args().node_id(), Some(s.id()));
    assert_eq!(sent[1].args().node_id(), Some(own));
}

#[test]
fn a_token_comes_from_the_peer() {
    let mut s = Script::new(Config::default());
    let token = Token::new(b"TOKEN-A").unwrap();
    let peer = Peer::addr(sa("10.0.0.9:7000")).with_token(token);
    let args = Dictionary::new().with_bytes("info_hash", [9u8; 20]).with_int("port", 6881);
    s.query(peer, Query::new("announce_peer", args).unwrap());
    let q = s.one_sent();
    assert_eq!(q.args().token(), Some(&b"TOKEN-A"[..]));
    assert_eq!(q.args().port(), Some(6881));
}

#[test]
fn respond_adds_our_id_and_writes_ipv4_nodes_as_nodes_and_ipv6_nodes_as_nodes6() {
    let mut s = Script::new(Config::default());
    let querier = sa("10.0.0.9:7000");
    // No id in the query, so no verification ping joins the answer.
    s.incoming_query(querier, b"qq", "find_node", None);
    let q = incoming(&s.events()).pop().unwrap();
    let v4 = NodeInfo::new(id(0x11), sa("192.0.2.7:6881"));
    let v6 = NodeInfo::new(id(0x22), sa("[2001:db8::7]:6882"));
    s.ep.respond(q.reply_to(), Dictionary::new().with_bytes("foo", "bar"), &[v4, v6]).unwrap();
    let r = s.one_sent();
    assert_eq!(r.to, querier);
    assert_eq!(r.tid(), b"qq");
    let values = r.values();
    assert_eq!(values.node_id(), Some(s.id()));
    assert_eq!(values.get(b"foo").and_then(|v| v.as_bytes()), Some(&b"bar"[..]));
    assert_eq!(values.nodes().unwrap().as_bytes().len(), 26);
    assert_eq!(values.nodes().unwrap().collect::<Vec<_>>(), [v4]);
    assert_eq!(values.nodes6().unwrap().as_bytes().len(), 38);
    assert_eq!(values.nodes6().unwrap().collect::<Vec<_>>(), [v6]);
    assert_eq!(r.message().ip, Some(querier), "BEP 42 ip of the querier");
}

#[test]
fn respond_without_nodes_sends_neither_nodes_nor_nodes6() {
    let mut s = Script::new(Config::default());
    s.incoming_query(sa("10.0.0.9:7000"), b"qq", "x", None);
    let q = incoming(&s.events()).pop().unwrap();
    s.ep.respond(q.reply_to(), Dictionary::new(), &[]).unwrap();
    let r = s.one_sent();
    assert!(r.values().nodes().is_none());
    assert!(r.values().nodes6().is_none());
}

#[test]
fn error_sends_the_code_and_message_as_a_list() {
    let mut s = Script::new(Config::default());
    s.incoming_query(sa("10.0.0.9:7000"), b"zz", "x", None);
    let q = incoming(&s.events()).pop().unwrap();
    s.ep.error(q.reply_to(), 201, b"A Generic Error").unwrap();
    let e = s.one_sent();
    assert_eq!(e.tid(), b"zz");
    assert_eq!(e.error(), (201, b"A Generic Error".to_vec()));
    assert!(contains(&e.bytes, b"1:eli201e15:A Generic Errore"), "e is [201, message]");
}

#[test]
fn query_all_with_no_nodes_is_refused_with_no_nodes() {
    let mut s = Script::new(Config::default());
    let err = s.ep.query_all(s.now, Vec::<Peer>::new(), Query::ping()).unwrap_err();
    assert_eq!(err, CommandError::NoNodes);
    assert_eq!(err.to_string(), "No nodes to query");
    // Addresses that can never be nodes do not count either.
    let err = s.ep.query_all(s.now, [Peer::addr(sa("10.0.0.1:0"))], Query::ping()).unwrap_err();
    assert_eq!(err, CommandError::NoNodes);
    assert!(s.sent().is_empty());
}

#[test]
fn query_all_reports_each_successful_reply_and_ends_with_the_hit_count() {
    let mut s = Script::new(Config::default());
    let peers = [sa("10.0.0.1:7001"), sa("10.0.0.2:7002"), sa("10.0.0.3:7003")];
    let op = s.ep.query_all(s.now, peers.map(Peer::addr), Query::ping()).unwrap();
    let sent = s.sent();
    assert_eq!(sent.len(), 3);
    s.reply(&sent[0], &id(0x81));
    s.reply_error(&sent[1], 201, b"nope");
    s.reply(&sent[2], &id(0x83));
    let events = s.events();
    let replies = replies_of(&events, op);
    assert_eq!(replies.iter().map(|r| r.from()).collect::<Vec<_>>(), [peers[0], peers[2]]);
    assert_eq!(query_all_result(&events, op), Some(Ok(2)));
    assert_eq!(completions_of(&events, op), 1);
}

#[test]
fn query_all_prefers_a_3xx_error_when_nothing_succeeded() {
    let mut s = Script::new(Config::default());
    let peers = [sa("10.0.0.1:7001"), sa("10.0.0.2:7002")];
    let op = s.ep.query_all(s.now, peers.map(Peer::addr), Query::ping()).unwrap();
    let sent = s.sent();
    s.reply_error(&sent[0], 302, b"sequence number less than current");
    assert!(query_all_result(&s.events(), op).is_none(), "still waiting for the second node");
    s.advance(Config::default().timeout);
    let result = query_all_result(&s.events(), op).unwrap();
    assert_eq!(result, Err(QueryError::Remote { code: 302, message: b"sequence number less than current".to_vec() }));
}

#[test]
fn query_all_fails_with_all_failed_when_no_node_answers() {
    let mut s = Script::new(Config::default());
    let peers = [sa("10.0.0.1:7001"), sa("10.0.0.2:7002")];
    let op = s.ep.query_all(s.now, peers.map(Peer::addr), Query::ping()).unwrap();
    let sent = s.sent();
    // A non-3xx error is not preferred over the generic failure.
    s.reply_error(&sent[0], 201, b"generic");
    s.advance(Config::default().timeout);
    let result = query_all_result(&s.events(), op).unwrap();
    assert_eq!(result, Err(QueryError::AllFailed));
    assert_eq!(result.unwrap_err().to_string(), "All queries failed");
}

#[test]
fn closest_counts_only_replies_that_carry_a_valid_id() {
    let seeds = [sa("10.0.0.1:7001"), sa("10.0.0.2:7002"), sa("10.0.0.3:7003")];
    let mut s = Script::new(Config { bootstrap: seeds.to_vec(), ..config_with_id(id(0x01)) });
    let target = id(0x90);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let sent = s.sent();
    assert_eq!(sent.len(), 3);
    let by_addr = |a: SocketAddr| sent.iter().find(|x| x.to == a).unwrap().clone();
    s.reply(&by_addr(seeds[0]), &id(0x91));
    s.reply_with(&by_addr(seeds[1]), None, &Dictionary::new(), &[]);
    s.reply_error(&by_addr(seeds[2]), 202, b"server error");
    let events = s.events();
    assert_eq!(replies_of(&events, op).len(), 2, "every reply with `r` is visited");
    let (count, closest, outcome) = lookup_result(&events, op).unwrap();
    assert_eq!(count, 1, "only the reply with a valid id counts");
    assert_eq!(outcome, LookupOutcome::Completed);
    assert_eq!(closest.iter().map(|n| n.node.id).collect::<Vec<_>>(), [id(0x91)]);
}

/// 8 nodes in bucket 0 of an endpoint whose id is `0x00…`, with concurrency 4.
fn busy_endpoint() -> (Script, Vec<NodeInfo>) {
    let mut s = Script::new(Config { k: 8, concurrency: 4, ..config_with_id(id(0)) });
    let nodes: Vec<NodeInfo> = (0..8).map(|i| node(0x80 + i, 10 + i)).collect();
    s.insert(&nodes);
    let _ = s.events();
    (s, nodes)
}

fn id_at(nodes: &[NodeInfo], addr: SocketAddr) -> NodeId {
    nodes.iter().find(|n| n.addr == addr).map(|n| n.id).unwrap()
}

#[test]
fn background_concurrency_is_a_quarter_of_concurrency_and_at_least_one() {
    for (concurrency, background) in [(16, 4), (4, 1), (3, 1), (1, 1), (17, 4)] {
        assert_eq!(Config { concurrency, ..Config::default() }.background_concurrency(), background);
    }
}

#[test]
fn populate_reports_no_replies_and_a_foreground_lookup_takes_every_freed_slot() {
    let (mut s, nodes) = busy_endpoint();
    let (bg, fg) = (id(0x90), id(0xa0));
    let p = s.ep.populate(s.now, bg, Query::find_node(&bg)).unwrap();
    let mut pending = s.sent();
    assert_eq!(pending.len(), 4, "nothing else runs: the background lookup fills the slots");
    let c = s.ep.closest(s.now, fg, Query::get_peers(&fg)).unwrap();
    assert!(s.sent().is_empty(), "no free slot for the foreground lookup yet");

    // Answer in FIFO order until the foreground lookup is done: every freed slot goes to it.
    let mut events = Vec::new();
    while lookup_result(&events, c).is_none() {
        let q = pending.remove(0);
        s.reply(&q, &id_at(&nodes, q.to));
        events.extend(s.events());
        let foreground_done = lookup_result(&events, c).is_some();
        for next in s.sent() {
            if !foreground_done {
                assert_eq!(next.method(), b"get_peers", "the background lookup sent while foreground work waited");
            }
            pending.push(next);
        }
        assert!(s.ep.in_flight() <= 4);
    }
    // Then the background lookup resumes and finishes.
    loop {
        pending.extend(s.sent());
        events.extend(s.events());
        if lookup_result(&events, p).is_some() {
            break;
        }
        let q = pending.remove(0);
        s.reply(&q, &id_at(&nodes, q.to));
    }
    assert!(replies_of(&events, p).is_empty(), "populate emits no Reply events");
    assert_eq!(replies_of(&events, c).len(), 8);
    let (replies, _, outcome) = lookup_result(&events, p).unwrap();
    assert_eq!(replies, 8);
    assert_eq!(outcome, LookupOutcome::Completed);
}

#[test]
fn a_background_lookup_waits_while_queued_queries_and_more_than_background_concurrency_are_in_flight() {
    let (mut s, nodes) = busy_endpoint();
    let bg = id(0x90);
    let _p = s.ep.populate(s.now, bg, Query::find_node(&bg)).unwrap();
    let populate_queries = s.sent();
    assert_eq!(populate_queries.len(), 4);
    let ping = s.query(Peer::addr(sa("10.0.1.1:9000")), Query::ping());
    assert!(s.sent().is_empty(), "the ping waits in the queue");

    s.reply(&populate_queries[0], &id_at(&nodes, populate_queries[0].to));
    let ping_query = s.one_sent();
    assert_eq!(ping_query.method(), b"ping", "queued queries get the freed slot first");

    s.reply(&populate_queries[1], &id_at(&nodes, populate_queries[1].to));
    assert!(s.sent().is_empty(), "3 in flight ≥ background concurrency 1, and one is not ours: wait");
    assert_eq!(s.ep.in_flight(), 3);

    s.reply(&ping_query, &id(0x10));
    assert!(query_result(&s.events(), ping).unwrap().is_ok());
    let resumed = s.sent();
    assert_eq!(resumed.len(), 2, "only the background lookup is in flight: it may fill the slots again");
    assert!(resumed.iter().all(|q| q.method() == b"find_node"));
}

#[test]
fn transaction_ids_are_four_bytes_and_never_reused_while_in_flight() {
    let mut s = Script::new(Config { concurrency: 1000, ..Config::default() });
    let addr_of = |i: usize| SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250 + 1) as u8], 7000));
    for i in 0..1000 {
        s.query(Peer::addr(addr_of(i)), Query::ping());
    }
    let first = s.sent();
    assert_eq!(first.len(), 1000);
    assert!(first.iter().all(|q| q.tid().len() == 4));
    let tids: HashSet<Vec<u8>> = first.iter().map(Sent::tid).collect();
    assert_eq!(tids.len(), 1000, "1000 distinct tids in flight");

    // Half complete; 500 more go out while the other half is still in flight.
    for (i, q) in first[..500].iter().enumerate() {
        // Distinct ids: one id answering from 500 addresses would be 499 claims on a known id,
        // each checked with a ping of its own.
        s.reply(q, &id_with(&[0x42, (i >> 8) as u8, i as u8]));
    }
    let still: HashSet<Vec<u8>> = first[500..].iter().map(Sent::tid).collect();
    for i in 1000..1500 {
        s.query(Peer::addr(addr_of(i)), Query::ping());
    }
    let second = s.sent();
    assert_eq!(second.len(), 500);
    let new: HashSet<Vec<u8>> = second.iter().map(Sent::tid).collect();
    assert_eq!(new.len(), 500);
    assert!(new.is_disjoint(&still), "a tid in flight was issued again");
}

#[test]
fn poll_timeout_is_now_while_output_waits_and_the_earliest_deadline_otherwise() {
    let timeout = Config::default().timeout;
    let mut s = Script::new(Config::default());
    s.advance(Duration::from_secs(5));
    let idle = s.ep.poll_timeout().unwrap();
    assert!(idle > s.now, "nothing pending: the next maintenance tick");

    s.query(Peer::addr(sa("10.0.0.9:7000")), Query::ping());
    assert_eq!(s.ep.poll_timeout(), Some(s.now), "a datagram waits");
    let _ = s.one_sent();
    assert_eq!(s.ep.poll_timeout(), Some(s.now + timeout), "the query's deadline");
    s.wait(Duration::from_millis(700));
    s.query(Peer::addr(sa("10.0.0.8:7000")), Query::ping());
    let _ = s.one_sent();
    assert_eq!(
        s.ep.poll_timeout(),
        Some(s.now.saturating_sub(Duration::from_millis(700)) + timeout),
        "still the earliest deadline"
    );

    s.advance(timeout - Duration::from_millis(700));
    assert_eq!(s.ep.poll_timeout(), Some(s.now), "an event waits");
    assert_eq!(s.events().len(), 1);
    assert_eq!(s.ep.poll_timeout(), Some(s.now + Duration::from_millis(700)), "the second query's deadline");
}

#[test]
fn time_going_backwards_is_treated_as_the_latest_time_seen() {
    let timeout = Config::default().timeout;
    let mut s = Script::new(Config::default());
    let late = Instant::ZERO + Duration::from_secs(10);
    s.ep.handle_timeout(late);
    let early = Instant::ZERO + Duration::from_secs(1);
    let op = s.ep.query(early, Peer::addr(sa("10.0.0.9:7000")), Query::ping()).unwrap();
    let mut buf = [0u8; BUF_LEN];
    let _ = s.ep.poll_transmit(early, &mut buf).unwrap();
    assert_eq!(s.ep.poll_timeout(), Some(late + timeout), "the deadline counts from the latest time seen");
    s.ep.handle_timeout(early + timeout);
    assert!(s.ep.poll_event().is_none(), "an earlier now expires nothing");
    s.ep.handle_timeout((late + timeout).saturating_sub(Duration::from_nanos(1)));
    assert!(s.ep.poll_event().is_none());
    s.ep.handle_timeout(late + timeout);
    let events: Vec<Event> = std::iter::from_fn(|| s.ep.poll_event()).collect();
    assert_eq!(query_result(&events, op), Some(Err(QueryError::Timeout)));
    assert!(s.ep.poll_timeout().unwrap() >= late + timeout, "never earlier than the latest now");
}

#[test]
fn a_ping_is_answered_inside_the_engine_with_our_id_and_the_same_tid() {
    let mut s = Script::new(Config::default());
    s.incoming_query(sa("10.0.0.9:7000"), b"p1", "ping", None);
    assert!(s.events().is_empty(), "no event for a ping");
    let r = s.one_sent();
    assert_eq!(r.tid(), b"p1");
    assert_eq!(r.values().node_id(), Some(s.id()));
    assert!(Message::decode(&r.bytes).unwrap().version.is_some(), "our version goes out as `v`");
}

#[test]
fn our_own_id_is_never_among_a_lookups_candidates_nor_its_result() {
    // k-rpc §2.6.9: a bootstrap entry may be ourselves (our own public address, say), and
    // `nodes` lists may name us; neither is queried or reported.
    let me = id(0x01);
    let bootstrap = sa("10.0.0.1:7001");
    let mut s = Script::new(Config { bootstrap: vec![bootstrap], ..config_with_id(me) });
    let target = id(0x02);
    let op = s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let q = s.one_sent();
    let other = NodeInfo::new(id(0x07), sa("10.0.0.7:7007"));
    s.reply_with(&q, Some(&me), &Dictionary::new(), &[NodeInfo::new(me, sa("10.0.0.2:7002")), other]);
    let next = s.one_sent();
    assert_eq!(next.to, other.addr, "the entry with our id is not queried");
    s.reply(&next, &other.id);
    let events = s.events();
    let (_, closest, _) = lookup_result(&events, op).unwrap();
    assert_eq!(closest.iter().map(|n| n.node).collect::<Vec<_>>(), [other]);
    assert!(!s.ep.routing_table().contains(&me));
}

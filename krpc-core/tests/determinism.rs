//! Same seed and same inputs give the same outputs, byte for byte: every transmit and every
//! event, over a few dozen commands and datagrams including lookups in a small lossy network.
//! Another seed gives other transaction ids.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::{Dictionary, Message};
use krpc_core::{Config, NodeInfo, Peer, Query, Token};
use support::*;

const N: usize = 12;

/// Everything observable of one run: every datagram (time, sender, destination, bytes, lost)
/// and every event (time, endpoint, `Debug` form).
type Trace = (Vec<Delivery>, Vec<String>);

/// The scripted run: joins, queries of every kind, hostile datagrams, lookups (one stopped),
/// a query_all with tokens, a cancel, time passing, under 5% loss.
fn scenario(seed: u64) -> Trace {
    let mut net = Net::new(N, seed, |i| {
        let bootstrap = if i == 0 { vec![net_addr(1)] } else { vec![net_addr(0)] };
        Config { k: 4, concurrency: 4, bootstrap, ..Config::default() }
    });
    net.loss_ppm = 50_000;
    let step = Duration::from_millis(300);
    for i in 0..N {
        let now = net.now;
        net.ep(i).bootstrap(now).unwrap();
        net.run_for(step);
    }
    net.run_for(Duration::from_secs(5));

    let stranger: SocketAddr = "127.9.9.9:9999".parse().unwrap();
    net.inject(2, stranger, b"");
    net.inject(2, stranger, b"l-3:");
    net.inject(3, stranger, b"d1:ad2:id20:abcdefghij01234567899:info_hashi5ee1:q9:get_peers1:t2:xy1:y1:qe");
    net.inject(4, stranger, &response_bytes(b"\x12\x34", Some(&id(0x99)), &Dictionary::new(), &[]));
    net.inject(
        5,
        stranger,
        &query_bytes(b"q1", "find_node", &Dictionary::new().with_bytes("target", [7; 20]), Some(&id(0x42)), false),
    );

    let now = net.now;
    for i in 0..4 {
        let to = Peer::addr(net_addr(i + 6));
        net.ep(i).query(now, to, Query::ping()).unwrap();
        let echo = Query::new("echo", Dictionary::new().with_int("n", i as i64)).unwrap();
        net.ep(i).query(now, Peer::addr(net_addr(i + 7)), echo).unwrap();
    }
    let cancelled = net.ep(6).query(now, Peer::addr(net_addr(11)), Query::ping()).unwrap();
    net.ep(6).cancel(cancelled).unwrap();
    let peers = [
        Peer::addr(net_addr(8)).with_token(Token::new(b"tok-8").unwrap()),
        Peer::addr(net_addr(9)),
        Peer::addr(net_addr(10)).with_token(Token::new(b"tok-10").unwrap()),
    ];
    net.ep(7).query_all(now, peers, Query::new("put", Dictionary::new().with_bytes("v", "x")).unwrap()).unwrap();
    net.run_for(step);

    let target = net.id(9);
    let (_, _) = net.lookup(3, target, Duration::from_secs(60));
    let now = net.now;
    let stopped = net.ep(4).closest(now, target, Query::get_peers(&target)).unwrap();
    net.run_for(Duration::from_millis(15));
    net.ep(4).stop(stopped).unwrap();
    let now = net.now;
    let one = net.id(1);
    net.ep(5).populate(now, one, Query::find_node(&one)).unwrap();
    net.run_for(Duration::from_secs(70));
    let events = net.events.iter().map(|(t, i, e)| format!("{t:?} {i} {e:?}")).collect();
    (net.trace, events)
}

/// The transaction ids of every query in a trace, in order.
fn query_tids(trace: &[Delivery]) -> Vec<Vec<u8>> {
    trace
        .iter()
        .filter_map(|d| {
            Message::decode(&d.bytes).ok().filter(|m| m.as_query().is_some()).map(|m| m.transaction_id.to_vec())
        })
        .collect()
}

#[test]
fn the_same_seed_and_inputs_give_byte_identical_transmits_and_identical_events() {
    let (trace_a, events_a) = scenario(7);
    let (trace_b, events_b) = scenario(7);
    assert!(trace_a.len() > 200, "the scenario exercised the network ({} datagrams)", trace_a.len());
    assert!(trace_a.iter().any(|d| d.lost), "and lost some datagrams");
    assert!(events_a.iter().any(|e| e.contains("LookupDone")));
    assert!(events_a.iter().any(|e| e.contains("Stopped")));
    assert_eq!(trace_a.len(), trace_b.len());
    for (a, b) in trace_a.iter().zip(&trace_b) {
        assert_eq!(a, b);
    }
    assert_eq!(events_a, events_b);
}

#[test]
fn another_seed_gives_other_transaction_ids() {
    let (trace_a, _) = scenario(7);
    let (trace_b, _) = scenario(8);
    let (a, b) = (query_tids(&trace_a), query_tids(&trace_b));
    assert_ne!(a[..10], b[..10]);
    assert_ne!(a[0], b[0], "already the first query differs");
}

/// A single endpoint fed a fixed script: commands, replies, hostile input and time.
fn scripted(seed_byte: u8) -> (Vec<(SocketAddr, Vec<u8>)>, Vec<String>) {
    let mut s = Script::with_seed(Config::default(), seed(seed_byte));
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut record = |s: &mut Script, out: &mut Vec<(SocketAddr, Vec<u8>)>| {
        let sent = s.sent();
        events.extend(s.events().iter().map(|e| format!("{e:?}")));
        for q in &sent {
            out.push((q.to, q.bytes.clone()));
        }
        sent
    };
    let peers: Vec<SocketAddr> = (1..=6u8).map(|i| SocketAddr::from(([10, 0, 0, i], 7000))).collect();
    for p in &peers {
        s.query(Peer::addr(*p), Query::ping());
    }
    let sent = record(&mut s, &mut out);
    for (i, q) in sent.iter().enumerate().take(4) {
        s.reply(q, &id(0x80 + i as u8));
    }
    record(&mut s, &mut out);
    let target = id(0x90);
    s.ep.closest(s.now, target, Query::find_node(&target)).unwrap();
    let lookup = record(&mut s, &mut out);
    for (i, q) in lookup.iter().enumerate().take(2) {
        let learned = NodeInfo::new(id(0xa0 + i as u8), SocketAddr::from(([10, 0, 1, i as u8 + 1], 7100)));
        let responder = s.ep.routing_table().iter().find(|c| c.addr() == q.to).map(|c| *c.id());
        s.reply_with(q, responder.as_ref(), &Dictionary::new(), &[learned]);
    }
    s.deliver(peers[0], b"d1:ad2:id20:abcdefghij01234567896:targeti5ee1:q9:find_node1:t2:ab1:y1:qe");
    s.incoming_query(peers[5], b"zz", "ping", Some(&id(0x55)));
    record(&mut s, &mut out);
    s.advance(Duration::from_secs(3));
    record(&mut s, &mut out);
    s.advance(Duration::from_secs(61));
    record(&mut s, &mut out);
    (out, events)
}

#[test]
fn a_scripted_endpoint_replays_identically_from_the_same_seed() {
    let (sent_a, events_a) = scripted(3);
    let (sent_b, events_b) = scripted(3);
    assert!(sent_a.len() > 10);
    assert_eq!(sent_a, sent_b);
    assert_eq!(events_a, events_b);
    let (sent_c, _) = scripted(4);
    assert_ne!(sent_a[0].1, sent_c[0].1, "another seed: another tid in the first query");
}

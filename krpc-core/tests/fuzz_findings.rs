//! One focused test per engine bug the fuzzers found (`docs/security.md`, "Findings"); the
//! inputs that found them are replayed from `fuzz/regressions/` by `fuzz_corpus.rs`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::Dictionary;
use krpc_core::{Config, ConfigError, Endpoint, Event, Instant, NodeId, NodeInfo, Peer, Query};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use support::*;

#[test]
fn a_bootstrap_address_that_can_never_be_a_node_is_refused() {
    for bad in ["224.0.0.1:6881", "239.1.2.3:6881", "255.255.255.255:6881", "0.1.2.3:6881", "[ff02::1]:6881"] {
        let config = Config { bootstrap: vec![sa("192.0.2.1:6881"), sa(bad)], ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::BootstrapAddress), "{bad}");
        assert!(Endpoint::new(config, seed(1), Instant::ZERO).is_err(), "{bad}");
    }
    let good = Config { bootstrap: vec![sa("192.0.2.1:6881"), sa("[2001:db8::1]:6881")], ..Config::default() };
    assert_eq!(good.validate(), Ok(()));
}

#[test]
fn a_soft_deadline_earlier_than_one_filed_before_it_is_kept_and_fires() {
    // α = 1, and every soft deadline adaptive: the first lookup query leaves before any round
    // trip was timed (soft timeout = the 1 s cap), the second after a 10 ms one (250 ms).
    let config = Config {
        lookup_parallelism: Some(1),
        lookup_retries: 0,
        lookup_soft_timeout: Some(Duration::from_secs(1)),
        lookup_adaptive_soft_timeout: true,
        timeout: Duration::from_secs(5),
        ..config_with_id(id(0))
    };
    let mut s = Script::new(config);
    s.insert(&[node(0x80, 1), node(0x90, 2), node(0x40, 3), node(0x50, 4)]);
    let first = s.ep.closest(s.now, id(0x80), Query::find_node(&id(0x80))).unwrap();
    let ping = s.query(Peer::addr(sa("10.0.9.9:6881")), Query::ping());
    let sent = s.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    s.wait(Duration::from_millis(10));
    let pong = sent.iter().find(|m| m.is_query() && m.method() == b"ping").unwrap();
    s.reply(pong, &id(0x99));
    assert!(query_result(&s.events(), ping).unwrap().is_ok());

    let second = s.ep.closest(s.now, id(0x40), Query::find_node(&id(0x40))).unwrap();
    let to_second = s.one_sent();
    assert_eq!(to_second.to, node(0x40, 3).addr);
    // Due at 10 + 250 ms, behind the first lookup's (1000 ms) in send order.
    assert_eq!(s.ep.poll_timeout(), Some(ms(260)), "the earliest soft deadline is the next wakeup");
    s.now = ms(260);
    s.ep.handle_timeout(s.now);
    let next = s.one_sent();
    assert_eq!(next.to, node(0x50, 4).addr, "the second lookup's slow query freed its α slot");
    assert!(s.ep.poll_timeout().unwrap() > s.now, "nothing left due after handle_timeout");
    let _ = (first, second);
}

#[test]
fn an_announce_reports_no_reply_events_only_its_result() {
    let mut s = Script::new(Config { bootstrap: vec![], ..Config::dht() });
    let nodes: Vec<NodeInfo> = (1..=3u8).map(|i| node(0x40 + i, i)).collect();
    s.insert(&nodes);
    let ih = id(0x42);
    let op = s.ep.announce(s.now, ih, Some(6881), false).unwrap();
    let mut events = Vec::new();
    for round in 0..2 {
        let queries = s.sent();
        assert_eq!(queries.len(), 3, "round {round}: {queries:?}");
        for q in &queries {
            let who = nodes.iter().find(|n| n.addr == q.to).unwrap();
            s.reply_with(q, Some(&who.id), &Dictionary::new().with_bytes("token", b"tok"), &[]);
        }
        events.extend(s.events());
    }
    let done: Vec<_> = events.iter().filter(|e| matches!(e, Event::AnnounceDone { .. })).collect();
    assert!(matches!(done[..], [Event::AnnounceDone { op: o, result: Ok(3) }] if *o == op), "{events:?}");
    let replies: Vec<_> = events.iter().filter(|e| matches!(e, Event::Reply { .. })).collect();
    assert!(replies.is_empty(), "an announce's second phase leaked its replies: {replies:?}");
}

/// An unknown querier at 10.1.`i / 256`.`i % 256`: each makes the endpoint send a
/// verification ping, which nobody answers.
fn unknown_querier(s: &mut Script, i: u32) {
    let from = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 7000));
    let querier = id_with(&[0x80 | (i >> 8) as u8, i as u8, 0x55]);
    s.incoming_query(from, b"pq", "ping", Some(&querier));
}

#[test]
fn a_steady_stream_of_unknown_queriers_never_starves_queries_and_lookups() {
    // One application slot. Unknown queriers arrive every 100 ms, each verified by a ping
    // that times out after 2 s: far more verifications than can ever be in flight.
    let config = Config { concurrency: 1, timeout: Duration::from_secs(2), ..config_with_id(id(0)) };
    let mut s = Script::new(config);
    s.insert(&[node(0x40, 1)]);
    let mut i = 0;
    for _ in 0..10 {
        unknown_querier(&mut s, i);
        i += 1;
        s.advance(Duration::from_millis(100));
    }
    let verifications = s.sent().into_iter().filter(|m| m.is_query() && m.method() == b"ping").count();
    assert!(verifications >= 4, "verification pings are in flight: {verifications}");
    let target = sa("10.0.9.9:6881");
    let ping = s.query(Peer::addr(target), Query::ping());
    let populate = s.ep.populate(s.now, id(0x40), Query::find_node(&id(0x40))).unwrap();
    let (mut ping_sent, mut populate_sent) = (false, false);
    for _ in 0..100 {
        for m in s.sent() {
            ping_sent |= m.to == target;
            if m.is_query() && m.method() == b"find_node" {
                populate_sent = true;
                s.reply(&m, &node(0x40, 1).id);
            }
        }
        // One application slot, 4 for upkeep pings, 16 for verifying strangers (issue 15).
        assert!(s.ep.in_flight() <= 1 + 4 + 16, "{} in flight", s.ep.in_flight());
        unknown_querier(&mut s, i);
        i += 1;
        s.advance(Duration::from_millis(100));
    }
    assert!(ping_sent, "the application's query never left");
    assert!(populate_sent, "the background lookup never sent");
    let events = s.events();
    assert!(query_result(&events, ping).is_some(), "the query never ended");
    assert!(lookup_result(&events, populate).is_some(), "the background lookup never ended");
}

/// A DHT node whose table holds plenty of IPv4 and IPv6 nodes.
fn crowded(config: Config) -> Script {
    let mut s = Script::new(config);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..200u16 {
        let addr = if i % 2 == 0 {
            SocketAddr::from(([10, 2, (i >> 8) as u8, i as u8], 6881))
        } else {
            SocketAddr::new(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i).into(), 6881)
        };
        let _ = s.ep.insert_node(s.now, NodeInfo::new(random_id(&mut rng), addr));
    }
    s
}

fn answer_to(s: &mut Script, from: SocketAddr, method: &str, args: &Dictionary) -> support::Sent {
    // The longest `t` the decoder takes, to make the answer as large as it gets.
    let tid = [b't'; 32];
    s.deliver(from, &query_bytes(&tid, method, args, Some(&id_with(&[0xee, 0x01])), false));
    s.sent().into_iter().find(|m| m.to == from && !m.is_query()).unwrap_or_else(|| panic!("no answer to {method}"))
}

#[test]
fn find_node_answers_fit_the_byte_budget_dropping_the_other_familys_nodes_first() {
    let dht = krpc_core::dht::DhtConfig { reply_nodes: 16, max_reply_len: 512, ..Default::default() };
    let mut s = crowded(Config { bootstrap: vec![], k: 16, dht: Some(dht.into()), ..Config::dht() });
    let target = id(0x33);
    let args = Dictionary::new().with_bytes("target", target.as_bytes()).with_list_of_bytes("want", ["n4", "n6"]);
    let reply = answer_to(&mut s, sa("10.9.9.9:7000"), "find_node", &args);
    assert!(reply.bytes.len() <= 512, "a {}-byte answer", reply.bytes.len());
    let v4: Vec<NodeInfo> = reply.values().nodes().expect("nodes").collect();
    let v6 = reply.values().nodes6().map_or(0, |n| n.count());
    assert!(v4.len() >= 12, "the requester's family is kept: {} IPv4 nodes", v4.len());
    assert_eq!(v6, 0, "IPv6 nodes go first when the budget is short");
    let all = s.ep.routing_table().closest(&target, 64);
    let nearest_v4: Vec<NodeInfo> = all.into_iter().filter(|n| n.addr.is_ipv4()).take(v4.len()).collect();
    assert_eq!(v4, nearest_v4, "the nearest are kept");
}

#[test]
fn get_peers_answers_fit_the_byte_budget_with_both_families_and_bloom_filters() {
    let mut s = crowded(Config { bootstrap: vec![], ..Config::dht() });
    let ih = [0x42u8; 20];
    for i in 0..120u32 {
        let from = SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 4000));
        let r = answer_to(&mut s, from, "get_peers", &Dictionary::new().with_bytes("info_hash", ih));
        let token = r.values().token().unwrap().to_vec();
        let args = Dictionary::new().with_bytes("info_hash", ih).with_int("port", 4000).with_bytes("token", &token);
        assert!(answer_to(&mut s, from, "announce_peer", &args).values().node_id().is_some());
    }
    let args =
        Dictionary::new().with_bytes("info_hash", ih).with_list_of_bytes("want", ["n4", "n6"]).with_int("scrape", 1);
    for from in [sa("10.9.9.9:7000"), sa("[2001:db8::9]:7000")] {
        let reply = answer_to(&mut s, from, "get_peers", &args);
        assert!(reply.bytes.len() <= 1024, "a {}-byte answer to {from}", reply.bytes.len());
        let values = reply.values();
        assert!(values.token().is_some(), "the token is always there");
        let own_family = if from.is_ipv4() {
            values.nodes().map_or(0, |n| n.count())
        } else {
            values.nodes6().map_or(0, |n| n.count())
        };
        assert_eq!(own_family, 8, "nodes of the requester's own family are kept whole");
        assert!(values.bloom_seeds().is_some() && values.bloom_peers().is_some(), "the scrape is answered");
    }
    // Without the extras, the peers take the room.
    let reply = answer_to(&mut s, sa("10.9.9.8:7000"), "get_peers", &Dictionary::new().with_bytes("info_hash", ih));
    assert!(reply.bytes.len() <= 1024);
    assert!(reply.values().values().count() >= 50, "{} peers", reply.values().values().count());
}

#[test]
fn node_layer_answers_fit_the_smallest_budget() {
    let dht = krpc_core::dht::DhtConfig { reply_nodes: 16, max_reply_len: 256, ..Default::default() };
    let mut s = crowded(Config { bootstrap: vec![], k: 16, dht: Some(dht.into()), ..Config::dht() });
    let target = NodeId::from_array([0x42; 20]);
    for from in [sa("10.9.9.9:7000"), sa("[2001:db8::9]:7000")] {
        for (method, key) in [("find_node", "target"), ("get_peers", "info_hash")] {
            let args = Dictionary::new()
                .with_bytes(key, target.as_bytes())
                .with_list_of_bytes("want", ["n4", "n6"])
                .with_int("scrape", 1);
            let reply = answer_to(&mut s, from, method, &args);
            assert!(reply.bytes.len() <= 256, "a {}-byte {method} answer to {from}", reply.bytes.len());
            assert_eq!(reply.values().node_id(), Some(s.id()));
        }
    }
}

#[test]
fn swap_refuses_a_candidate_that_can_never_be_a_node() {
    let mut s = Script::new(config_with_id(id(0)));
    let dead = node(0x80, 1);
    s.insert(&[dead]);
    // Long enough for `dead` to become questionable (BEP 5: 15 minutes), so a swap may evict it.
    s.advance(Duration::from_secs(16 * 60));
    let _ = s.sent();
    for bad in ["255.255.255.255:6881", "224.0.0.1:6881", "10.0.0.9:0", "0.0.0.0:6881"] {
        assert!(!s.ep.swap(s.now, &dead.id, NodeInfo::new(id(0x81), sa(bad))), "{bad}");
        assert!(s.ep.routing_table().contains(&dead.id), "{bad} evicted the node");
        assert!(!s.ep.routing_table().contains(&id(0x81)), "{bad} entered the table");
    }
    // The same swap with a valid address goes through.
    assert!(s.ep.swap(s.now, &dead.id, node(0x81, 9)));
    assert!(s.ep.routing_table().contains(&id(0x81)));
}

#[test]
fn bep44_results_are_never_dropped_from_a_full_event_queue() {
    // Fuzz finding: GetItemDone and PutItemDone were notices the event queue could drop, so a
    // BEP 44 operation could end without its final event.
    let mut s = Script::new(Config { max_queued_events: 2, bootstrap: vec![], ..Config::dht() });
    let get = s.ep.get_immutable(s.now, id(0x42)).expect("a get starts, with nobody to ask");
    let put = s.ep.put_immutable(s.now, b"5:hello").expect("a put starts");
    // Fill the queue with notices: nodes entering the table.
    for i in 1..=4u8 {
        s.ep.insert_node(s.now, NodeInfo::new(id_with(&[0x80 | i, i]), SocketAddr::from(([10, 0, 0, i], 6881))));
    }
    s.advance(Duration::from_secs(10));
    let events = s.events();
    let ended = |op| {
        events
            .iter()
            .any(|e| matches!(e, Event::GetItemDone { op: o, .. } | Event::PutItemDone { op: o, .. } if *o == op))
    };
    assert!(ended(get), "the get ended: {events:?}");
    assert!(ended(put), "the put ended: {events:?}");
}

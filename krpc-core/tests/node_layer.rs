//! The built-in BEP 5 node layer (`Config::dht`): default handlers, tokens, the peer store,
//! reply caps, high-level get_peers/announce, and BEP 42.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use krpc_core::dht::{SecureIdPolicy, is_secure_id};
use krpc_core::wire::{Dictionary, Entry, Insert, ResponseOut};
use krpc_core::{Config, Event, NodeId, NodeInfo, Peer, Query};
use support::{Net, Script, id, id_with, net_addr, query_bytes, sa};

fn dht() -> Config {
    Config { bootstrap: vec![], ..Config::dht() }
}

fn table_of(n: u8) -> Vec<NodeInfo> {
    (1..=n).map(|i| NodeInfo::new(id_with(&[i * 9, i]), SocketAddr::from(([10, 1, 0, i], 6881)))).collect()
}

fn ask(s: &mut Script, from: SocketAddr, tid: &[u8], method: &str, args: Dictionary) -> support::Sent {
    let querier = id_with(&[0xee, from.port() as u8]);
    s.deliver(from, &query_bytes(tid, method, &args, Some(&querier), false));
    let sent = s.sent();
    let answer = sent.into_iter().find(|m| m.to == from && !m.is_query());
    answer.unwrap_or_else(|| panic!("no answer to {method}"))
}

#[test]
fn find_node_is_answered_by_the_engine_with_the_k_closest_nodes() {
    let mut s = Script::new(dht());
    let nodes = table_of(20);
    s.insert(&nodes);
    let target = id_with(&[0x50]);
    let reply =
        ask(&mut s, sa("10.9.9.9:7000"), b"fn", "find_node", Dictionary::new().with_bytes("target", target.as_bytes()));
    assert_eq!(reply.tid(), b"fn");
    let values = reply.values();
    assert_eq!(values.node_id(), Some(s.id()));
    let got: Vec<NodeInfo> = values.nodes().expect("nodes").collect();
    let mut truth = nodes.clone();
    truth.sort_by(|a, b| target.cmp_distance(&a.id, &b.id));
    assert_eq!(got, truth[..8].to_vec(), "the 8 closest, nearest first");
    assert!(values.nodes6().is_none(), "an IPv4 querier without `want` gets IPv4 nodes only");
    assert_eq!(reply.message().ip, Some(sa("10.9.9.9:7000")), "BEP 42 `ip` field");
    assert!(s.events().iter().all(|e| !matches!(e, Event::Query(_))), "no event for a served query");
}

#[test]
fn want_n6_adds_ipv6_nodes_from_the_table() {
    let mut s = Script::new(dht());
    s.insert(&table_of(4));
    let v6 = NodeInfo::new(id(0x77), sa("[2001:db8::7]:6881"));
    s.insert(&[v6]);
    let args = Dictionary::new().with_bytes("target", id(0x70).as_bytes()).with_list_of_bytes("want", ["n4", "n6"]);
    let reply = ask(&mut s, sa("10.9.9.9:7000"), b"w6", "find_node", args);
    let values = reply.values();
    assert_eq!(values.nodes6().expect("nodes6").collect::<Vec<_>>(), vec![v6]);
    assert_eq!(values.nodes().expect("nodes").count(), 4);
}

#[test]
fn missing_arguments_get_a_203_naming_the_argument() {
    let mut s = Script::new(dht());
    let reply = ask(&mut s, sa("10.9.9.9:7000"), b"x1", "find_node", Dictionary::new());
    assert_eq!(reply.error(), (203, b"find_node requires a.target".to_vec()));
    let reply = ask(&mut s, sa("10.9.9.9:7000"), b"x2", "get_peers", Dictionary::new());
    assert_eq!(reply.error(), (203, b"get_peers requires a.info_hash".to_vec()));
    let args = Dictionary::new().with_bytes("info_hash", [1u8; 20]).with_int("port", 1);
    let reply = ask(&mut s, sa("10.9.9.9:7000"), b"x3", "announce_peer", args);
    assert_eq!(reply.error(), (203, b"announce_peer requires a.token".to_vec()));
}

#[test]
fn unknown_methods_get_204_unless_they_carry_a_target_or_the_application_claims_them() {
    let mut s = Script::new(dht());
    s.insert(&table_of(3));
    let reply = ask(&mut s, sa("10.9.9.9:7000"), b"u1", "frobnicate", Dictionary::new());
    assert_eq!(reply.error().0, 204);
    let reply =
        ask(&mut s, sa("10.9.9.9:7000"), b"u2", "sample_infohashes", Dictionary::new().with_bytes("target", [3u8; 20]));
    assert_eq!(reply.values().nodes().expect("answered as find_node").count(), 3);

    let config = Config {
        dht: Some(
            krpc_core::dht::DhtConfig {
                application_methods: vec![b"echo".to_vec(), b"get_peers".to_vec()],
                ..Default::default()
            }
            .into(),
        ),
        ..dht()
    };
    let mut s = Script::new(config);
    for (tid, method) in [(b"e1", "echo"), (b"e2", "get_peers")] {
        let args = Dictionary::new().with_bytes("info_hash", [1u8; 20]);
        s.deliver(sa("10.9.9.9:7000"), &query_bytes(tid, method, &args, Some(&id(0xee)), false));
    }
    let methods: Vec<Vec<u8>> = s
        .events()
        .iter()
        .filter_map(|e| if let Event::Query(q) = e { Some(q.method().to_vec()) } else { None })
        .collect();
    assert_eq!(methods, vec![b"echo".to_vec(), b"get_peers".to_vec()]);
}

#[test]
fn announce_with_the_token_from_get_peers_is_stored_and_served() {
    let mut s = Script::new(dht());
    s.insert(&table_of(10));
    let ih = [0x42u8; 20];
    let announcer = sa("10.7.7.7:5555");
    let reply = ask(&mut s, announcer, b"g1", "get_peers", Dictionary::new().with_bytes("info_hash", ih));
    let token = reply.values().token().expect("a token").to_vec();
    assert!(reply.values().values().next().is_none(), "nobody announced yet");
    assert_eq!(reply.values().nodes().expect("nodes too").count(), 8);

    let args = Dictionary::new().with_bytes("info_hash", ih).with_int("port", 6881).with_bytes("token", &token);
    let ack = ask(&mut s, announcer, b"a1", "announce_peer", args);
    assert_eq!(ack.values().node_id(), Some(s.id()));

    // implied_port: the source port counts.
    let args = Dictionary::new()
        .with_bytes("info_hash", ih)
        .with_int("port", 1)
        .with_int("implied_port", 1)
        .with_bytes("token", &token);
    ask(&mut s, announcer, b"a2", "announce_peer", args);

    let reply = ask(&mut s, sa("10.8.8.8:1"), b"g2", "get_peers", Dictionary::new().with_bytes("info_hash", ih));
    let mut peers: Vec<SocketAddr> = reply.values().values().collect();
    peers.sort();
    assert_eq!(peers, vec![sa("10.7.7.7:5555"), sa("10.7.7.7:6881")]);
}

#[test]
fn a_token_is_bound_to_the_querier_address_and_the_info_hash() {
    let mut s = Script::new(dht());
    let ih = [0x42u8; 20];
    let reply = ask(&mut s, sa("10.7.7.7:5555"), b"g1", "get_peers", Dictionary::new().with_bytes("info_hash", ih));
    let token = reply.values().token().unwrap().to_vec();
    let announce =
        |ih: [u8; 20]| Dictionary::new().with_bytes("info_hash", ih).with_int("port", 1).with_bytes("token", &token);
    let other_ip = ask(&mut s, sa("10.7.7.8:5555"), b"a1", "announce_peer", announce(ih));
    assert_eq!(other_ip.error(), (203, b"bad token".to_vec()));
    let other_hash = ask(&mut s, sa("10.7.7.7:5555"), b"a2", "announce_peer", announce([0x43; 20]));
    assert_eq!(other_hash.error(), (203, b"bad token".to_vec()));
    // Tokens live at most 10 minutes.
    s.wait(Duration::from_secs(11 * 60));
    let late = ask(&mut s, sa("10.7.7.7:5555"), b"a3", "announce_peer", announce(ih));
    assert_eq!(late.error(), (203, b"bad token".to_vec()));
}

#[test]
fn get_peers_replies_stay_within_the_byte_budget_whatever_is_stored() {
    let mut s = Script::new(dht());
    s.insert(&table_of(20));
    let ih = [0x42u8; 20];
    for i in 0..300u32 {
        let from = SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 4000));
        let r = ask(&mut s, from, b"g", "get_peers", Dictionary::new().with_bytes("info_hash", ih));
        let token = r.values().token().unwrap().to_vec();
        let args = Dictionary::new().with_bytes("info_hash", ih).with_int("port", 4000).with_bytes("token", &token);
        assert!(ask(&mut s, from, b"a", "announce_peer", args).values().node_id().is_some());
    }
    // A 92-byte-ish query cannot pull more than 1024 bytes (the JS node sends 2.5 KB, W17).
    let query = query_bytes(b"gg", "get_peers", &Dictionary::new().with_bytes("info_hash", ih), Some(&id(0xee)), false);
    s.deliver(sa("10.8.8.8:1"), &query);
    let reply = s.sent().into_iter().find(|m| m.to == sa("10.8.8.8:1")).unwrap();
    assert!(reply.bytes.len() <= 1024, "reply of {} bytes", reply.bytes.len());
    let values = reply.values().values().count();
    assert!(values >= 50, "as many peers as fit: {values}");
    assert!(reply.bytes.len() as f64 / query.len() as f64 <= 12.0, "amplification is bounded");
}

#[test]
fn scrape_adds_bloom_filters_for_a_known_info_hash() {
    let mut s = Script::new(dht());
    let ih = [0x42u8; 20];
    let from = sa("10.7.7.7:5555");
    let r = ask(&mut s, from, b"g", "get_peers", Dictionary::new().with_bytes("info_hash", ih));
    let token = r.values().token().unwrap().to_vec();
    let args = Dictionary::new()
        .with_bytes("info_hash", ih)
        .with_int("port", 1)
        .with_int("seed", 1)
        .with_bytes("token", &token);
    ask(&mut s, from, b"a", "announce_peer", args);
    let r = ask(&mut s, from, b"s", "get_peers", Dictionary::new().with_bytes("info_hash", ih).with_int("scrape", 1));
    let seeds = r.values().bloom_seeds().expect("BFsd");
    let peers = r.values().bloom_peers().expect("BFpe");
    // BEP 33's estimator reads about 0.5 for an empty filter and 1.5 for one entry.
    let seeds = krpc_core::dht::bloom_estimate(seeds.try_into().unwrap());
    let peers = krpc_core::dht::bloom_estimate(peers.try_into().unwrap());
    assert!((1.0..2.0).contains(&seeds), "one seed: {seeds}");
    assert!(peers < 1.0, "no non-seed: {peers}");
}

#[test]
fn get_peers_and_announce_work_across_a_small_network() {
    const N: usize = 30;
    let mut net = Net::new(N, 7, |i| Config {
        bootstrap: if i == 0 { vec![] } else { vec![net_addr(0)] },
        address_policy: krpc_core::AddressPolicy::Any,
        ..Config::dht()
    });
    for i in 1..N {
        let now = net.now;
        net.ep(i).bootstrap(now).unwrap();
    }
    net.run_for(Duration::from_secs(30));
    let ih = NodeId::from_array([0x5a; 20]);
    let now = net.now;
    let announce = net.ep(3).announce(now, ih, Some(6881), false).unwrap();
    net.run_until(Duration::from_secs(30), |n| {
        n.events.iter().any(|(_, i, e)| *i == 3 && matches!(e, Event::AnnounceDone { op, .. } if *op == announce))
    });
    let stored = net.events.iter().find_map(|(_, i, e)| match e {
        Event::AnnounceDone { op, result } if *i == 3 && *op == announce => Some(result.clone()),
        _ => None,
    });
    let stored = stored.unwrap().expect("announce succeeded");
    assert!(stored >= 4, "stored on {stored} nodes");

    let now = net.now;
    let lookup = net.ep(17).get_peers(now, ih).unwrap();
    net.run_until(Duration::from_secs(30), |n| {
        n.events.iter().any(|(_, i, e)| *i == 17 && matches!(e, Event::LookupDone { op, .. } if *op == lookup))
    });
    let found: Vec<SocketAddr> = net
        .events
        .iter()
        .filter_map(|(_, i, e)| match e {
            Event::Peers { op, peers, .. } if *i == 17 && *op == lookup => Some(peers.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(found.contains(&SocketAddr::new(net_addr(3).ip(), 6881)), "found {found:?}");
}

fn reply_with_ip(tid: &[u8], responder: &NodeId, ip: SocketAddr) -> Vec<u8> {
    let extra = [Entry { key: b"id", value: Insert::Bytes(responder.as_bytes()), replace: true }];
    let values = Dictionary::new();
    let mut buf = [0u8; 256];
    let r = ResponseOut { transaction_id: tid, values: &values, extra: &extra, ip: Some(ip), version: None };
    let n = r.encode(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn a_voted_public_address_gives_us_a_bep42_id_and_one_voter_cannot_move_it() {
    let mut s = Script::new(dht());
    let public = sa("124.31.75.21:6881");
    let original = s.id();
    // Four voters from distinct /16s report the same address.
    let voters = ["1.1.0.1:1", "2.2.0.1:1", "3.3.0.1:1", "4.4.0.1:1", "4.4.0.2:1"];
    for (n, v) in voters.iter().enumerate() {
        s.query(Peer::addr(sa(v)), Query::ping());
        let q = s.one_sent();
        let reported = if n == 4 { sa("9.9.9.9:1") } else { public };
        s.deliver(sa(v), &reply_with_ip(&q.tid(), &id(n as u8 + 1), reported));
    }
    let changed: Vec<(NodeId, NodeId)> = s
        .events()
        .iter()
        .filter_map(|e| if let Event::IdChanged { previous, id } = e { Some((*previous, *id)) } else { None })
        .collect();
    assert_eq!(changed.len(), 1, "one change, after the fourth distinct voter");
    assert_eq!(changed[0].0, original);
    assert_eq!(s.id(), changed[0].1);
    assert!(is_secure_id(&s.id(), IpAddr::from([124, 31, 75, 21])));
    assert_eq!(s.ep.external_address()[0], Some(public.ip()));
    assert!(s.ep.routing_table().len() >= 4, "the table was rebuilt, not emptied");
}

#[test]
fn enforce_keeps_ids_not_bound_to_their_address_out_of_the_table() {
    let config = Config {
        dht: Some(krpc_core::dht::DhtConfig { secure_id: SecureIdPolicy::Enforce, ..Default::default() }.into()),
        ..dht()
    };
    let mut s = Script::new(config);
    assert!(!s.ep.insert_node(s.now, NodeInfo::new(id(1), sa("124.31.75.21:1"))), "public address, random id");
    assert!(s.ep.insert_node(s.now, NodeInfo::new(id(2), sa("10.0.0.1:1"))), "BEP 42 exempts private ranges");
    let secure = NodeId::from_bytes(&{
        let mut b = [0u8; 20];
        b[..3].copy_from_slice(&[0x5f, 0xbf, 0xbf]);
        b[19] = 1;
        b
    })
    .unwrap();
    assert!(s.ep.insert_node(s.now, NodeInfo::new(secure, sa("124.31.75.21:1"))), "BEP 42 test vector id");
}

#[test]
fn an_announce_with_nobody_to_ask_ends_at_once_with_no_nodes() {
    let mut s = Script::new(dht());
    let op = s.ep.announce(s.now, id(1), Some(1), false).unwrap();
    let events = s.events();
    assert!(
        events.iter().any(
            |e| matches!(e, Event::AnnounceDone { op: o, result: Err(krpc_core::QueryError::NoNodes) } if *o == op)
        ),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::LookupDone { .. })), "reported once, as an announce");
}

#[test]
fn stopping_an_announce_after_its_lookup_stops_its_announce_queries() {
    let mut s = Script::new(dht());
    let peer = NodeInfo::new(id(0x10), sa("10.0.0.5:6881"));
    s.insert(&[peer]);
    let ih = NodeId::from_array([0x10; 20]);
    let op = s.ep.announce(s.now, ih, None, false).unwrap();
    let get_peers = s.one_sent();
    let values = Dictionary::new().with_bytes("token", b"tok");
    s.reply_with(&get_peers, Some(&peer.id), &values, &[]);
    let announce = s.one_sent();
    assert_eq!(announce.method(), b"announce_peer");
    assert_eq!(announce.args().token(), Some(&b"tok"[..]));
    assert!(announce.args().implied_port(), "no port given: implied_port");
    s.ep.stop(op).expect("the announce is still running");
    let events = s.events();
    assert!(events.iter().any(|e| matches!(e, Event::AnnounceDone { op: o, result: Err(_) } if *o == op)));
    // The late acknowledgement reaches nobody.
    s.reply(&announce, &peer.id);
    assert!(s.events().iter().all(|e| !matches!(e, Event::AnnounceDone { .. })));
}

#[test]
fn a_querier_draws_at_most_its_answer_and_one_ping_whatever_the_tid_lengths() {
    // Our tids are 4 bytes (the `mainline` crate drops any other length, issue 17); a querier's
    // `t` is echoed whatever its length. Neither may push what one query draws from us past
    // the caps: its answer fits `max_reply_len` (256 bytes for a pong), and the one other
    // datagram it causes, our verification ping to a new querier, is a few bytes longer than
    // the smallest query that can trigger it.
    let target = id_with(&[0x50]);
    for (i, t) in [&b"m"[..], b"mm", b"mmmm", &[b'm'; 32]].into_iter().enumerate() {
        for (j, (method, args)) in [
            ("ping", Dictionary::new()),
            ("find_node", Dictionary::new().with_bytes("target", target.as_bytes())),
            ("get_peers", Dictionary::new().with_bytes("info_hash", target.as_bytes())),
        ]
        .into_iter()
        .enumerate()
        {
            // A fresh node each time: only 4 verification pings are in flight at once.
            let mut s = Script::new(dht());
            s.insert(&table_of(20));
            let from = SocketAddr::from(([10, 9, i as u8, j as u8], 7000));
            let query = query_bytes(t, method, &args, Some(&id_with(&[0xee, i as u8, j as u8])), false);
            s.deliver(from, &query);
            let sent = s.sent();
            assert!(sent.iter().all(|m| m.to == from), "only the querier hears from us");
            let answers: Vec<_> = sent.iter().filter(|m| !m.is_query()).collect();
            assert_eq!(answers.len(), 1, "{method}: one answer");
            assert_eq!(answers[0].tid(), t, "{method}: the querier's t echoed");
            let cap = if method == "ping" { 256 } else { 1024 };
            assert!(answers[0].bytes.len() <= cap, "{method}: a {}-byte answer", answers[0].bytes.len());
            let pings: Vec<_> = sent.iter().filter(|m| m.is_query()).collect();
            assert_eq!(pings.len(), 1, "{method}: one verification ping");
            assert_eq!(pings[0].method(), b"ping");
            assert_eq!(pings[0].tid().len(), 4, "our tids are 4 bytes");
            // The smallest ping query (1-byte t, no `v`) is 55 bytes; ours is 67.
            assert!(pings[0].bytes.len() <= 67, "a {}-byte verification ping", pings[0].bytes.len());
            assert!(
                pings[0].bytes.len() <= query.len() + 12,
                "{} bytes for a {}-byte query",
                pings[0].bytes.len(),
                query.len()
            );
        }
    }
}

#[test]
fn a_scrape_unites_the_filters_of_the_nodes_that_hold_the_swarm() {
    // BEP 33 from the client side: announces of 3 seeds and 5 peers, then a scrape from a
    // node that holds nothing itself.
    const N: usize = 30;
    let mut net = Net::new(N, 11, |i| Config {
        bootstrap: if i == 0 { vec![] } else { vec![net_addr(0)] },
        address_policy: krpc_core::AddressPolicy::Any,
        ..Config::dht()
    });
    for i in 1..N {
        let now = net.now;
        net.ep(i).bootstrap(now).unwrap();
    }
    net.run_for(Duration::from_secs(30));
    let ih = NodeId::from_array([0x6b; 20]);
    for (i, seed) in [(3, true), (4, true), (5, true), (6, false), (7, false), (8, false), (9, false), (10, false)] {
        let now = net.now;
        let op = net.ep(i).announce(now, ih, Some(6881), seed).unwrap();
        net.run_until(Duration::from_secs(30), |n| {
            n.events.iter().any(|(_, j, e)| *j == i && matches!(e, Event::AnnounceDone { op: o, .. } if *o == op))
        });
    }
    let now = net.now;
    let scrape = net.ep(17).scrape(now, ih).unwrap();
    net.run_until(Duration::from_secs(30), |n| {
        n.events.iter().any(|(_, i, e)| *i == 17 && matches!(e, Event::ScrapeDone { op, .. } if *op == scrape))
    });
    let done = net.events.iter().find_map(|(_, i, e)| match e {
        Event::ScrapeDone { op, seeds, peers, responses, .. } if *i == 17 && *op == scrape => {
            Some((*seeds, *peers, *responses))
        }
        _ => None,
    });
    let (seeds, peers, responses) = done.expect("the scrape ended");
    assert!(responses >= 1, "nodes answered with filters");
    // Each announcer is a distinct IP (the filters hash addresses): 3 seeds, 5 peers.
    assert_eq!((seeds, peers), (3, 5), "estimated from the united filters");
}

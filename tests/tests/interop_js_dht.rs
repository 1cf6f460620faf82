//! Interop with the JavaScript `bittorrent-dht` (11.0.12, on `k-rpc` 5.1.0): a swarm of ten JS
//! nodes on 127.0.0.1 (`tests/interop/js_dht_swarm.mjs`) and our node (`Config::dht()`)
//! bootstrapped from some of them.
//!
//! - a JS node pings us (`addNode`) and takes us into its routing table: our `ping` reply is
//!   accepted;
//! - a JS node announces; our `get_peers` lookup finds that peer;
//! - a JS lookup gets the same peer from *our* node: the JS announce reached us (our token
//!   was accepted and given back) and our `values` decode in JS;
//! - we announce; a JS lookup finds our peer: our `announce_peer` was accepted;
//! - the JS nodes we talked to have us in their tables: our queries carry a usable id;
//! - our decoder accepted every datagram the JS nodes sent (quirks printed to the log).
//!
//! A second test (`js_bittorrent_dht_bep44`) runs BEP 44 both ways: our put then a JS get, a
//! JS put then our get, and a JS put into a network of our nodes.
//!
//! Skipped when Node.js or the npm packages (with `sodium-universal` for BEP 44) are missing (`tests/interop/setup.sh`), unless
//! `KRPC_INTEROP_REQUIRED=1`.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // a test: it logs what the peers sent, and owns the clock

mod interop_common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use interop_common::{Ours, PeerProcess, hex, json_addr, json_id, observations, report, should_run, until};
use krpc_core::{Config, Event, NodeId};
use serde_json::json;

const SWARM: usize = 10;
/// Generous bound on each phase; the whole test takes a few seconds when things work.
const PHASE: Duration = Duration::from_secs(30);

#[test]
fn js_bittorrent_dht_swarm() {
    if !should_run("interop_js_dht", interop_common::js_available(&["bittorrent-dht", "k-rpc"])) {
        return;
    }
    let node = interop_common::node_bin();
    let mut js = PeerProcess::spawn("bittorrent-dht swarm", &node, &["js_dht_swarm.mjs", &SWARM.to_string()]);
    let ready = js.wait_for(PHASE, "the JS swarm to be ready", |v| v["event"] == "ready");
    let js_nodes: Vec<(SocketAddr, NodeId)> =
        ready["nodes"].as_array().unwrap().iter().map(|n| (json_addr(n), json_id(&n["id"]))).collect();
    assert_eq!(js_nodes.len(), SWARM);
    let js_addrs: Vec<SocketAddr> = js_nodes.iter().map(|n| n.0).collect();
    eprintln!("JS swarm: {js_addrs:?}, table sizes {}", ready["table_sizes"]);

    // Our node: the BEP 5 node layer, bootstrapping from three JS nodes.
    let config = Config { bootstrap: js_addrs[..3].to_vec(), ..Config::dht() };
    let mut ours = Ours::new(config, 42);
    let our_addr = ours.addr();
    let our_id = ours.id();
    eprintln!("our node: {our_addr} id {our_id}");

    // (c1) Before we have said anything: the last JS node pings us (`addNode` without an id),
    // and adds us with the id of our pong.
    let last = SWARM - 1;
    js.send(json!({"cmd": "add_node", "index": last, "host": "127.0.0.1", "port": our_addr.port()}));
    let our_hex = hex(our_id.as_bytes());
    until(PHASE, "JS node to add us after pinging us", || {
        ours.step(Duration::from_millis(10));
        js.take(|v| v["event"] == "node" && v["index"] == json!(last) && v["id"] == json!(our_hex))
    });

    // Join: a background find_node lookup toward our own id.
    let now = ours.now();
    let join = ours.ep.bootstrap(now).expect("bootstrap");
    until(PHASE, "our bootstrap lookup", || {
        ours.step(Duration::from_millis(10));
        ours.take_event(|e| matches!(e, Event::LookupDone { op, .. } if *op == join))
    });
    let known: BTreeSet<SocketAddr> = ours.ep.routing_table().iter().map(|c| c.addr()).collect();
    eprintln!("our routing table after bootstrap: {} nodes", known.len());
    assert!(known.len() >= SWARM / 2, "we learned too few JS nodes: {known:?}");
    for addr in &known {
        assert!(js_addrs.contains(addr), "unexpected node {addr} in our table");
    }

    // (a) A JS node announces info-hash A on port 7001; our get_peers finds it.
    let ih_a = NodeId::from_array([0x3a; 20]);
    let seq = js.send(json!({"cmd": "announce", "index": last, "info_hash": hex(ih_a.as_bytes()), "port": 7001}));
    let announced = until(PHASE, "the JS announce", || {
        ours.step(Duration::from_millis(10));
        js.reply(seq)
    });
    eprintln!("JS announce of A: {announced}");
    assert!(announced["error"].is_null(), "JS announce failed: {announced}");
    assert!(announced["n"].as_u64().unwrap() >= 1, "JS announce stored nowhere: {announced}");

    let peer_a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let now = ours.now();
    let op = ours.ep.get_peers(now, ih_a).expect("get_peers");
    let mut sources = BTreeSet::new();
    until(PHASE, "our get_peers lookup for A", || {
        ours.step(Duration::from_millis(10));
        while let Some(Event::Peers { from, peers, .. }) =
            ours.take_event(|e| matches!(e, Event::Peers { op: o, .. } if *o == op))
        {
            if peers.contains(&peer_a) {
                sources.insert(from);
            }
        }
        ours.take_event(|e| matches!(e, Event::LookupDone { op: o, .. } if *o == op))
    });
    eprintln!("our get_peers found {peer_a} at {sources:?}");
    assert!(!sources.is_empty(), "our get_peers did not find the JS node's peer {peer_a}");
    assert!(sources.iter().all(|s| js_addrs.contains(s)), "peers came from outside the swarm: {sources:?}");

    // (a') A JS lookup for A gets the peer from us: the JS announce reached our node.
    let seq = js.send(json!({"cmd": "lookup", "index": 0, "info_hash": hex(ih_a.as_bytes())}));
    let lookup = until(PHASE, "the JS lookup for A", || {
        ours.step(Duration::from_millis(10));
        js.reply(seq)
    });
    let from_us = lookup["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["from"] == json!(our_addr.to_string()) && p["port"] == json!(7001) && p["host"] == "127.0.0.1");
    assert!(from_us, "JS lookup did not get peer A from our node: {lookup}");

    // (b) We announce info-hash B on port 7002; a JS lookup finds us.
    let ih_b = NodeId::from_array([0xb7; 20]);
    let now = ours.now();
    let op = ours.ep.announce(now, ih_b, Some(7002), false).expect("announce");
    let stored = until(PHASE, "our announce", || {
        ours.step(Duration::from_millis(10));
        match ours.take_event(|e| matches!(e, Event::AnnounceDone { op: o, .. } if *o == op)) {
            Some(Event::AnnounceDone { result, .. }) => Some(result),
            _ => None,
        }
    });
    eprintln!("our announce of B: {stored:?}");
    let stored = stored.expect("our announce failed");
    assert!(stored >= 1, "no JS node stored our announce");
    for index in [1, SWARM / 2] {
        let seq = js.send(json!({"cmd": "lookup", "index": index, "info_hash": hex(ih_b.as_bytes())}));
        let lookup = until(PHASE, "a JS lookup for B", || {
            ours.step(Duration::from_millis(10));
            js.reply(seq)
        });
        let found = lookup["peers"].as_array().unwrap().iter().any(|p| p["host"] == "127.0.0.1" && p["port"] == 7002);
        assert!(found, "JS node {index} did not find our announced peer: {lookup}");
    }

    // (c2) Every JS node we know has us in its routing table, under our id and address.
    let seq = js.send(json!({"cmd": "tables"}));
    let tables = until(PHASE, "the JS routing tables", || {
        ours.step(Duration::from_millis(10));
        js.reply(seq)
    });
    let mut have_us = 0;
    for (i, table) in tables["tables"].as_array().unwrap().iter().enumerate() {
        let has = table.as_array().unwrap().iter().any(|n| n["id"] == json!(our_hex) && json_addr(n) == our_addr);
        have_us += usize::from(has);
        if known.contains(&js_addrs[i]) || i == last {
            assert!(has, "JS node {i} ({}) does not have us in its table: {table}", js_addrs[i]);
        }
    }
    eprintln!("{have_us} of {SWARM} JS nodes have us in their routing table");

    // What the JS nodes sent, as our decoder saw it.
    let obs = observations(&ours, &js_addrs);
    report("bittorrent-dht", &obs);
    let stats = *ours.ep.stats();
    eprintln!("our stats: {stats:?}");
    assert_eq!(stats.malformed, 0, "our decoder refused datagrams from bittorrent-dht");
    assert_eq!(stats.mismatched_replies, 0);
    assert!(obs.keys().all(|o| !o.kind.starts_with("malformed")));
    // Quirks the docs list (docs/interop.md): 2-byte tids, no `v`, no `ip`, 20-byte tokens.
    // Their replies echo our 4-byte tids.
    assert!(obs.keys().filter(|o| o.kind.starts_with("q:")).all(|o| o.t_len == 2), "JS tids are 2 bytes");
    assert!(obs.keys().filter(|o| !o.kind.starts_with("q:")).all(|o| o.t_len == 4), "JS echoes our 4-byte tids");
    assert!(obs.keys().all(|o| o.v.is_none() && !o.ip), "bittorrent-dht sends neither `v` nor `ip`");
    // Tokens in their replies are SHA-1s (20 bytes); the announce_peer queries carry ours back.
    let reply_tokens: BTreeSet<usize> = obs.keys().filter(|o| o.kind == "r").filter_map(|o| o.token_len).collect();
    assert_eq!(reply_tokens, BTreeSet::from([20]), "bittorrent-dht tokens are SHA-1s");
    // Their find_node/get_peers replies list the querier itself (k-rpc adds it first): our
    // lookups must skip their own id: we never sent ourselves a query.
    assert!(ours.received.iter().all(|(from, _)| *from != our_addr), "our node queried itself");
    let warnings: Vec<_> = js.take_all(|v| v["event"] == "warning" || v["event"] == "error");
    eprintln!("JS warnings: {warnings:?}");
}

/// BEP 44 with bittorrent-dht (its `verify` from sodium-universal), both ways, immutable and
/// mutable items:
///
/// - (a) our put, then a JS get: two JS nodes and our node know each other; we put (the puts
///   reach the JS nodes: they are all we know), a JS node gets the items from the network;
/// - (b) a JS put, then our get: our get finds and checks both items;
/// - (c) a JS put lands in a network of our nodes: a lone JS node that knows only four of
///   our nodes puts; those nodes store the items and one of them gets both back.
#[test]
fn js_bittorrent_dht_bep44() {
    use interop_common::{bstr, our_network, run_get, run_put, stored_items};
    use krpc_core::dht::bep44::ed25519_dalek::SigningKey;
    use krpc_core::dht::bep44::immutable_target;
    use krpc_core::dht::{Item, MutableItem};

    if !should_run("interop_js_dht", interop_common::js_available(&["bittorrent-dht", "k-rpc", "sodium-universal"])) {
        return;
    }
    let node = interop_common::node_bin();
    let mut js = PeerProcess::spawn("bittorrent-dht BEP 44 pair", &node, &["js_dht_swarm.mjs", "2"]);
    let ready = js.wait_for(PHASE, "the JS pair to be ready", |v| v["event"] == "ready");
    let js_addrs: Vec<SocketAddr> = ready["nodes"].as_array().unwrap().iter().map(json_addr).collect();
    let mut ours = vec![Ours::new(Config { bootstrap: js_addrs.clone(), ..Config::dht() }, 45)];
    let our_hex = hex(ours[0].id().as_bytes());
    let our_port = ours[0].addr().port();
    for index in 0..2 {
        js.send(json!({"cmd": "add_node", "index": index, "host": "127.0.0.1", "port": our_port}));
        until(PHASE, "a JS node to add us", || {
            ours[0].step(Duration::from_millis(10));
            js.take(|v| v["event"] == "node" && v["index"] == json!(index) && v["id"] == json!(our_hex))
        });
    }
    let now = ours[0].now();
    let join = ours[0].ep.bootstrap(now).expect("bootstrap");
    until(PHASE, "our bootstrap lookup", || {
        ours[0].step(Duration::from_millis(10));
        ours[0].take_event(|e| matches!(e, Event::LookupDone { op, .. } if *op == join))
    });
    assert_eq!(ours[0].ep.routing_table().len(), 2, "we know both JS nodes");

    // (a) Our put, then a JS get.
    let raw = b"krpc to bittorrent-dht";
    let value = bstr(raw);
    let put = run_put(&mut ours, 0, PHASE, |o| o.ep.put_immutable(o.now(), &value).unwrap(), || js.poll());
    let put = put.expect("our immutable put");
    eprintln!("our immutable put: {put:?}");
    assert!(put.stored >= 1 && put.errors.is_empty(), "bittorrent-dht refused our put: {put:?}");
    let target = immutable_target(&value);
    let seq = js.send(json!({"cmd": "get", "index": 1, "target": hex(target.as_bytes()), "salt": null}));
    let got = until(PHASE, "the JS get of our immutable item", || {
        ours[0].step(Duration::from_millis(10));
        js.reply(seq)
    });
    assert_eq!((&got["found"], &got["v"]), (&json!(true), &json!(hex(raw))), "JS get found our item: {got}");
    let key = SigningKey::from_bytes(&[0x71; 32]);
    let raw = b"signed by krpc";
    let item = MutableItem::sign(&key, b"to js", 9, &bstr(raw)).unwrap();
    let put = run_put(&mut ours, 0, PHASE, |o| o.ep.put_mutable(o.now(), item.clone(), None).unwrap(), || js.poll());
    let put = put.expect("our mutable put");
    eprintln!("our mutable put: {put:?}");
    assert!(put.stored >= 1 && put.errors.is_empty(), "bittorrent-dht refused our put: {put:?}");
    let seq =
        js.send(json!({"cmd": "get", "index": 1, "target": hex(item.target().as_bytes()), "salt": hex(b"to js")}));
    let got = until(PHASE, "the JS get of our mutable item", || {
        ours[0].step(Duration::from_millis(10));
        js.reply(seq)
    });
    assert_eq!(
        (&got["found"], &got["v"], &got["seq_number"], &got["k"]),
        (&json!(true), &json!(hex(raw)), &json!(9), &json!(hex(&item.key))),
        "JS get found our item and verified its signature: {got}"
    );

    // (b) A JS put, then our get.
    let raw = b"bittorrent-dht to krpc";
    let seq = js.send(json!({"cmd": "put_immutable", "index": 0, "data": hex(raw)}));
    let put = until(PHASE, "the JS immutable put", || {
        ours[0].step(Duration::from_millis(10));
        js.reply(seq)
    });
    eprintln!("JS immutable put: {put}");
    assert!(put["error"].is_null() && put["n"].as_u64().unwrap() >= 1, "JS put stored nowhere: {put}");
    let target = immutable_target(&bstr(raw));
    assert_eq!(put["target"], json!(hex(target.as_bytes())));
    let (got, from) = run_get(&mut ours, 0, PHASE, |o| o.ep.get_immutable(o.now(), target).unwrap(), || js.poll());
    assert_eq!(got, Some(Item::Immutable { value: bstr(raw) }), "our get_immutable found the JS item");
    assert!(from.iter().all(|a| js_addrs.contains(a)), "{from:?}");
    let seed = [0x72; 32];
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let raw = b"signed by bittorrent-dht";
    let seq = js.send(json!({"cmd": "put_mutable", "index": 0, "seed": hex(&seed), "data": hex(raw),
        "salt": hex(b"from js"), "seq_number": 6}));
    let put = until(PHASE, "the JS mutable put", || {
        ours[0].step(Duration::from_millis(10));
        js.reply(seq)
    });
    eprintln!("JS mutable put: {put}");
    assert!(put["error"].is_null() && put["n"].as_u64().unwrap() >= 1, "JS put stored nowhere: {put}");
    let (got, _) =
        run_get(&mut ours, 0, PHASE, |o| o.ep.get_mutable(o.now(), public, b"from js", None).unwrap(), || js.poll());
    let got = got.expect("our get_mutable found the JS item");
    assert_eq!((got.seq(), got.value()), (Some(6), &bstr(raw)[..]), "{got:?}");
    let stats = *ours[0].ep.stats();
    assert_eq!(stats.malformed, 0, "our decoder refused datagrams from bittorrent-dht: {stats:?}");
    drop(js);

    // (c) A JS put lands in a network of our nodes.
    let mut net = our_network(4, 90, PHASE);
    let mut lone = PeerProcess::spawn("lone bittorrent-dht node", &node, &["js_dht_swarm.mjs", "1"]);
    lone.wait_for(PHASE, "the lone JS node to be ready", |v| v["event"] == "ready");
    for n in &net {
        lone.send(json!({"cmd": "add_node", "index": 0, "host": "127.0.0.1", "port": n.addr().port()}));
    }
    // The JS node pings the nodes it is given and adds them when they answer; wait for that
    // before putting (a lookup's node list is cached: a put into an empty table stays empty).
    let our_hexes: Vec<String> = net.iter().map(|n| hex(n.id().as_bytes())).collect();
    let mut added = BTreeSet::new();
    until(PHASE, "the lone JS node to add our nodes", || {
        interop_common::step_all(&mut net);
        while let Some(v) = lone.take(|v| v["event"] == "node") {
            added.insert(v["id"].as_str().unwrap().to_string());
        }
        our_hexes.iter().all(|h| added.contains(h)).then_some(())
    });
    let js_put = |net: &mut Vec<Ours>, lone: &mut PeerProcess, cmd: serde_json::Value| {
        let seq = lone.send(cmd);
        let put = until(PHASE, "the lone JS node's put", || {
            interop_common::step_all(net);
            lone.reply(seq)
        });
        eprintln!("lone JS node's put: {put}");
        assert!(
            put["error"].is_null() && put["n"].as_u64().unwrap() >= 1,
            "the lone JS node's put stored nowhere: {put}"
        );
    };
    let raw = b"into a krpc network";
    js_put(&mut net, &mut lone, json!({"cmd": "put_immutable", "index": 0, "data": hex(raw)}));
    assert!(stored_items(&net) >= 1, "no node of ours stored the JS item");
    let target = immutable_target(&bstr(raw));
    let (got, from) = run_get(&mut net, 3, PHASE, |o| o.ep.get_immutable(o.now(), target).unwrap(), || lone.poll());
    assert_eq!(got, Some(Item::Immutable { value: bstr(raw) }), "our network holds the JS item");
    eprintln!("our get_immutable found it at {from:?}");
    let seed = [0x73; 32];
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let raw = b"mutable, into krpc";
    js_put(
        &mut net,
        &mut lone,
        json!({"cmd": "put_mutable", "index": 0, "seed": hex(&seed), "data": hex(raw), "salt": "", "seq_number": 1}),
    );
    let items = stored_items(&net);
    assert!(items >= 2, "no node of ours stored the JS mutable item ({items} items)");
    let (got, _) =
        run_get(&mut net, 3, PHASE, |o| o.ep.get_mutable(o.now(), public, b"", None).unwrap(), || lone.poll());
    let got = got.expect("our network holds the JS mutable item");
    assert_eq!((got.seq(), got.value()), (Some(1), &bstr(raw)[..]), "{got:?}");
    for n in &net {
        assert_eq!(n.ep.stats().malformed, 0, "our decoder refused datagrams from bittorrent-dht");
    }
}

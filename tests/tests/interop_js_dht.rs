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
//! Skipped when Node.js or the npm packages are missing (`tests/interop/setup.sh`), unless
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

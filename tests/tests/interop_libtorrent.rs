//! Interop with C++ libtorrent (the `libtorrent` 2.1 Python bindings): three libtorrent DHT
//! nodes on 127.0.0.1 (`tests/interop/lt_swarm.py`), introduced to each other and to our node
//! (`Config::dht()`) with `add_dht_node`, as a peer rather than a bootstrap router.
//!
//! - libtorrent takes our node into its routing table (`dht_live_nodes`): it pinged us and
//!   accepted our reply;
//! - a libtorrent node announces; our `get_peers` lookup finds that peer;
//! - we announce; libtorrent's `dht_get_peers` finds our peer: libtorrent accepted our
//!   `announce_peer` with the 4-byte token it gave us;
//! - our decoder accepted every datagram libtorrent sent (quirks printed to the log).
//!
//! Skipped when Python's `libtorrent` is missing (`tests/interop/setup.sh`), unless
//! `KRPC_INTEROP_REQUIRED=1`.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // a test: it logs what the peers sent, and owns the clock

mod interop_common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant as StdInstant};

use interop_common::{Ours, PeerProcess, hex, json_addr, json_id, observations, report, should_run, until};
use krpc_core::wire::Dictionary;
use krpc_core::{Config, Event, NodeId, Query, QueryError};
use serde_json::json;

const SWARM: usize = 3;
/// Generous bound on each phase (libtorrent pings new nodes and retries on its own schedule).
const PHASE: Duration = Duration::from_secs(60);

#[test]
fn libtorrent_swarm() {
    if !should_run("interop_libtorrent", interop_common::libtorrent_available()) {
        return;
    }
    let python = interop_common::python_bin();
    // SWARM ordinary nodes and one more in read-only mode (BEP 43), index SWARM.
    let mut lt = PeerProcess::spawn("libtorrent swarm", &python, &["lt_swarm.py", &SWARM.to_string(), "1"]);
    let ready = lt.wait_for(PHASE, "the libtorrent sessions to be ready", |v| v["event"] == "ready");
    let all: Vec<(SocketAddr, NodeId)> =
        ready["nodes"].as_array().unwrap().iter().map(|n| (json_addr(n), json_id(&n["id"]))).collect();
    assert_eq!(all.len(), SWARM + 1);
    assert_eq!(ready["nodes"][SWARM]["read_only"], true);
    let lt_nodes = &all[..SWARM];
    let lt_addrs: Vec<SocketAddr> = lt_nodes.iter().map(|n| n.0).collect();
    let read_only = all[SWARM].0;
    eprintln!("libtorrent {} nodes: {lt_nodes:?}, read-only {read_only}", ready["version"]);

    let mut ours = Ours::new(Config::dht(), 11);
    let our_addr = ours.addr();
    let our_id = ours.id();
    eprintln!("our node: {our_addr} id {our_id}");
    lt.send(json!({"cmd": "watch", "host": "127.0.0.1", "port": our_addr.port()}));

    // Introductions both ways: libtorrent pings us, we ping libtorrent.
    lt.send(json!({"cmd": "add_node", "index": null, "host": "127.0.0.1", "port": our_addr.port()}));
    let now = ours.now();
    for addr in &lt_addrs {
        ours.ep.add_node(now, *addr, None).expect("add_node");
    }
    until(PHASE, "the libtorrent nodes in our routing table", || {
        ours.step(Duration::from_millis(10));
        lt.poll();
        (ours.ep.routing_table().len() == SWARM).then_some(())
    });
    let now = ours.now();
    let join = ours.ep.bootstrap(now).expect("bootstrap");
    until(PHASE, "our bootstrap lookup", || {
        ours.step(Duration::from_millis(10));
        ours.take_event(|e| matches!(e, Event::LookupDone { op, .. } if *op == join))
    });

    // libtorrent's routing tables take us in (only nodes that answered a query of theirs).
    let our_hex = hex(our_id.as_bytes());
    for index in 0..SWARM {
        let mut last_ask: Option<StdInstant> = None;
        let mut seq = 0;
        until(PHASE, "libtorrent to put us in its routing table", || {
            ours.step(Duration::from_millis(10));
            if last_ask.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                seq = lt.send(json!({"cmd": "live_nodes", "index": index}));
                last_ask = Some(StdInstant::now());
            }
            let reply = lt.reply(seq)?;
            let nodes = reply["nodes"].as_array().unwrap();
            nodes.iter().any(|n| n["id"] == json!(our_hex) && json_addr(n) == our_addr).then_some(())
        });
    }
    eprintln!("every libtorrent node has us in its routing table");

    // (a) libtorrent announces info-hash A on port 7101; our get_peers finds it.
    let ih_a = NodeId::from_array([0x1a; 20]);
    let peer_a: SocketAddr = "127.0.0.1:7101".parse().unwrap();
    lt.send(json!({"cmd": "announce", "index": 0, "info_hash": hex(ih_a.as_bytes()), "port": 7101}));
    let mut sources = Vec::new();
    let mut op = None;
    until(PHASE, "our get_peers to find libtorrent's peer", || {
        ours.step(Duration::from_millis(10));
        lt.poll();
        // One lookup at a time, again after each ends, until a reply carries the peer.
        let current = match op {
            Some(op) => op,
            None => {
                let now = ours.now();
                *op.insert(ours.ep.get_peers(now, ih_a).expect("get_peers"))
            }
        };
        while let Some(Event::Peers { from, peers, .. }) =
            ours.take_event(|e| matches!(e, Event::Peers { op: o, .. } if *o == current))
        {
            if peers.contains(&peer_a) && !sources.contains(&from) {
                sources.push(from);
            }
        }
        if ours.take_event(|e| matches!(e, Event::LookupDone { op: o, .. } if *o == current)).is_some() {
            op = None;
            if sources.is_empty() {
                ours.run_for(Duration::from_millis(500));
            }
        }
        (!sources.is_empty()).then_some(())
    });
    eprintln!("our get_peers found {peer_a} at {sources:?}");
    assert!(sources.iter().all(|s| lt_addrs.contains(s)));

    // (b) We announce info-hash B on port 7102; libtorrent finds it.
    let ih_b = NodeId::from_array([0xb2; 20]);
    let now = ours.now();
    let op = ours.ep.announce(now, ih_b, Some(7102), false).expect("announce");
    let stored = until(PHASE, "our announce", || {
        ours.step(Duration::from_millis(10));
        lt.poll();
        match ours.take_event(|e| matches!(e, Event::AnnounceDone { op: o, .. } if *o == op)) {
            Some(Event::AnnounceDone { result, .. }) => Some(result),
            _ => None,
        }
    });
    eprintln!("our announce of B: {stored:?}");
    assert!(stored.expect("our announce failed") >= 1, "no libtorrent node stored our announce");
    let ih_b_hex = hex(ih_b.as_bytes());
    for index in [1, 2] {
        let mut last_ask: Option<StdInstant> = None;
        until(PHASE, "libtorrent's get_peers to find our peer", || {
            ours.step(Duration::from_millis(10));
            if last_ask.is_none_or(|t| t.elapsed() > Duration::from_secs(3)) {
                lt.send(json!({"cmd": "get_peers", "index": index, "info_hash": ih_b_hex}));
                last_ask = Some(StdInstant::now());
            }
            lt.take(|v| {
                v["event"] == "peers"
                    && v["index"] == json!(index)
                    && v["info_hash"] == json!(ih_b_hex)
                    && v["peers"].as_array().unwrap().contains(&json!(["127.0.0.1", 7102]))
            })
        });
    }
    eprintln!("libtorrent found our announced peer");

    // (c) Our own queries to libtorrent: its errors, its forward-compatibility rule for
    // unknown methods, BEP 51.
    let mut ask = |ours: &mut Ours, to: SocketAddr, query: Query| {
        let now = ours.now();
        let op = ours.ep.query(now, to, query).expect("query");
        until(PHASE, "a query to libtorrent", || {
            ours.step(Duration::from_millis(10));
            lt.poll();
            match ours.take_event(|e| matches!(e, Event::QueryDone { op: o, .. } if *o == op)) {
                Some(Event::QueryDone { result, .. }) => Some(result),
                _ => None,
            }
        })
    };
    let bad_token =
        Dictionary::new().with_bytes("info_hash", ih_b.as_bytes()).with_int("port", 7103).with_bytes("token", b"nope");
    let result = ask(&mut ours, lt_addrs[0], Query::new("announce_peer", bad_token).unwrap());
    eprintln!("announce_peer with a bad token: {result:?}");
    assert!(matches!(&result, Err(QueryError::Remote { code: 203, .. })), "{result:?}");
    let unknown = Dictionary::new().with_bytes("target", ih_b.as_bytes());
    let result = ask(&mut ours, lt_addrs[0], Query::new("frobnicate", unknown).unwrap());
    eprintln!("unknown method with a target: {result:?}");
    let reply = result.expect("libtorrent answers unknown methods with a target as find_node");
    assert!(reply.values().unwrap().nodes().is_some_and(|n| n.count() > 0), "{reply:?}");
    let result = ask(&mut ours, lt_addrs[0], Query::new("frobnicate", Dictionary::new()).unwrap());
    eprintln!("unknown method without a target: {result:?}");
    // libtorrent says 203 "unknown message" where BEP 5 has 204 "Method Unknown".
    assert!(matches!(&result, Err(QueryError::Remote { code: 203 | 204, .. })), "{result:?}");
    let sample = Dictionary::new().with_bytes("target", ih_a.as_bytes());
    let reply = ask(&mut ours, sources.first().copied().unwrap(), Query::new("sample_infohashes", sample).unwrap())
        .expect("sample_infohashes");
    let r = reply.values().unwrap();
    let samples: Vec<NodeId> = r.samples().expect("samples").collect();
    eprintln!("sample_infohashes: interval {:?} num {:?} samples {samples:?}", r.interval(), r.num());
    assert!(samples.contains(&ih_a), "the node that gave us peer A samples A");

    // (d) A read-only libtorrent node queries us with `ro=1`: we answer, and it stays out of
    // our routing table (BEP 43).
    lt.send(json!({"cmd": "add_node", "index": SWARM, "host": "127.0.0.1", "port": our_addr.port()}));
    let mut last_ask: Option<StdInstant> = None;
    until(PHASE, "the read-only node's get_peers to find peer A", || {
        ours.step(Duration::from_millis(10));
        if last_ask.is_none_or(|t| t.elapsed() > Duration::from_secs(3)) {
            lt.send(json!({"cmd": "get_peers", "index": SWARM, "info_hash": hex(ih_a.as_bytes())}));
            last_ask = Some(StdInstant::now());
        }
        let asked_us = ours.received.iter().any(|(from, _)| *from == read_only);
        let found = lt.take(|v| v["event"] == "peers" && v["index"] == json!(SWARM)).is_some();
        (asked_us && found).then_some(())
    });
    let ro_obs = observations(&ours, &[read_only]);
    report("libtorrent (read-only)", &ro_obs);
    assert!(ro_obs.keys().all(|o| o.kind.starts_with("q:") && o.ro), "read-only libtorrent sends queries with ro=1");
    assert!(
        ours.ep.routing_table().iter().all(|c| c.addr() != read_only),
        "a read-only node entered our routing table"
    );

    // What libtorrent sent, as our decoder saw it; what libtorrent logged about us.
    let obs = observations(&ours, &lt_addrs);
    report("libtorrent", &obs);
    let logs: Vec<_> = lt.history.iter().filter(|v| v["event"] == "log").map(|v| v["message"].clone()).collect();
    eprintln!("--- libtorrent's log lines about our node ({}), first 40 ---", logs.len());
    for l in logs.iter().take(40) {
        eprintln!("{l}");
    }
    let stats = *ours.ep.stats();
    eprintln!("our stats: {stats:?}");
    assert_eq!(stats.malformed, 0, "our decoder refused datagrams from libtorrent");
    assert!(obs.keys().all(|o| !o.kind.starts_with("malformed")));
    assert_eq!(stats.mismatched_replies, 0);
    // Quirks the docs list (docs/interop.md): 2-byte tids, `v` = "LT" + version, `ip` in
    // every reply, 4-byte tokens. Its replies and errors echo our 4-byte tids.
    assert!(obs.keys().filter(|o| o.kind.starts_with("q:")).all(|o| o.t_len == 2), "libtorrent tids are 2 bytes");
    assert!(
        obs.keys().filter(|o| !o.kind.starts_with("q:")).all(|o| o.t_len == 4),
        "libtorrent echoes our 4-byte tids"
    );
    assert!(obs.keys().all(|o| o.v.as_deref().is_some_and(|v| v.starts_with("LT"))), "libtorrent sends v=LT..");
    assert!(obs.keys().filter(|o| o.kind == "r").all(|o| o.ip), "libtorrent replies carry `ip`");
    // Its errors carry an `r` dict (`id`, `p`) and `ip` besides `e`: still errors to us.
    let errors: Vec<_> = obs.keys().filter(|o| o.kind.starts_with("e:")).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|o| o.ip && o.body_keys.contains(&"id".to_string())), "{errors:?}");
    let reply_tokens: BTreeSet<usize> = obs.keys().filter(|o| o.kind == "r").filter_map(|o| o.token_len).collect();
    assert_eq!(reply_tokens, BTreeSet::from([4]), "libtorrent tokens are 4 bytes");
    // The `ip` votes all name 127.0.0.1, exempt from BEP 42: our id stays.
    assert_eq!(ours.id(), our_id);
    let errors: Vec<_> = lt.history.iter().filter(|v| v["event"] == "error").collect();
    assert!(errors.is_empty(), "libtorrent reported errors: {errors:?}");
}

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
//! A second test (`libtorrent_bep44`) runs BEP 44 both ways: our put then libtorrent's get,
//! libtorrent's put then our get, and libtorrent's put into a network of our nodes.
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

/// BEP 44 with libtorrent, both ways, immutable and mutable items:
///
/// - (a) our put, then libtorrent's get: two libtorrent nodes and our node know each other;
///   we put (the puts reach libtorrent: it is all we know), a libtorrent node gets the items;
/// - (b) libtorrent's put, then our get: a libtorrent node puts (libtorrent signs the mutable
///   item itself with the expanded key we give it); our get finds and checks both items;
/// - (c) libtorrent's put lands in a network of our nodes: a lone libtorrent node that knows
///   only four of our nodes puts; those nodes store the items and one of them gets both back.
#[test]
fn libtorrent_bep44() {
    use interop_common::{bstr, libtorrent_keypair, our_network, run_get, run_put, stored_items};
    use krpc_core::dht::bep44::ed25519_dalek::SigningKey;
    use krpc_core::dht::bep44::immutable_target;
    use krpc_core::dht::{Item, MutableItem};

    if !should_run("interop_libtorrent", interop_common::libtorrent_available()) {
        return;
    }
    let python = interop_common::python_bin();
    let mut lt = PeerProcess::spawn("libtorrent BEP 44 pair", &python, &["lt_swarm.py", "2"]);
    let ready = lt.wait_for(PHASE, "the libtorrent pair to be ready", |v| v["event"] == "ready");
    let lt_addrs: Vec<SocketAddr> = ready["nodes"].as_array().unwrap().iter().map(json_addr).collect();
    let mut ours = vec![Ours::new(Config { bootstrap: lt_addrs.clone(), ..Config::dht() }, 44)];
    let our_addr = ours[0].addr();
    lt.send(json!({"cmd": "add_node", "index": null, "host": "127.0.0.1", "port": our_addr.port()}));
    let now = ours[0].now();
    let join = ours[0].ep.bootstrap(now).expect("bootstrap");
    until(PHASE, "our bootstrap lookup", || {
        ours[0].step(Duration::from_millis(10));
        ours[0].take_event(|e| matches!(e, Event::LookupDone { op, .. } if *op == join))
    });
    assert_eq!(ours[0].ep.routing_table().len(), 2, "we know both libtorrent nodes");

    // (a) Our put, then libtorrent's get.
    let value = bstr(b"krpc to libtorrent");
    let put = run_put(&mut ours, 0, PHASE, |o| o.ep.put_immutable(o.now(), &value).unwrap(), || lt.poll());
    let put = put.expect("our immutable put");
    eprintln!("our immutable put: {put:?}");
    assert!(put.stored >= 1 && put.errors.is_empty(), "libtorrent refused our put: {put:?}");
    let target = immutable_target(&value);
    lt.send(json!({"cmd": "get_immutable", "index": 1, "target": hex(target.as_bytes())}));
    let got = until(PHASE, "libtorrent's get_immutable", || {
        ours[0].step(Duration::from_millis(10));
        lt.take(|v| v["event"] == "immutable" && v["index"] == 1)
    });
    assert_eq!(got["item"], json!(hex(&value)), "libtorrent's get_immutable found our item: {got}");
    let key = SigningKey::from_bytes(&[0x61; 32]);
    let item = MutableItem::sign(&key, b"to lt", 4, &bstr(b"signed by krpc")).unwrap();
    let put = run_put(&mut ours, 0, PHASE, |o| o.ep.put_mutable(o.now(), item.clone(), None).unwrap(), || lt.poll());
    let put = put.expect("our mutable put");
    eprintln!("our mutable put: {put:?}");
    assert!(put.stored >= 1 && put.errors.is_empty(), "libtorrent refused our put: {put:?}");
    let pk = hex(&item.key);
    lt.send(json!({"cmd": "get_mutable", "index": 1, "public": pk, "salt": hex(b"to lt")}));
    // libtorrent reports items as they arrive, then once more at the end (`authoritative`).
    let got = until(PHASE, "libtorrent's get_mutable", || {
        ours[0].step(Duration::from_millis(10));
        lt.take(|v| v["event"] == "mutable" && v["index"] == 1 && v["authoritative"] == true)
    });
    assert_eq!(
        (&got["item"], &got["seq"]),
        (&json!(hex(&item.value)), &json!(4)),
        "libtorrent's get_mutable found our item: {got}"
    );

    // (b) libtorrent's put, then our get.
    let value = bstr(b"libtorrent to krpc");
    lt.send(json!({"cmd": "put_immutable", "index": 0, "value": hex(&value)}));
    let put = until(PHASE, "libtorrent's put_immutable", || {
        ours[0].step(Duration::from_millis(10));
        lt.take(|v| v["event"] == "put" && v["index"] == 0)
    });
    eprintln!("libtorrent's immutable put: {put}");
    assert!(put["num_success"].as_u64().unwrap() >= 1, "libtorrent's put stored nowhere: {put}");
    let target = immutable_target(&value);
    let (got, from) = run_get(&mut ours, 0, PHASE, |o| o.ep.get_immutable(o.now(), target).unwrap(), || lt.poll());
    assert_eq!(got, Some(Item::Immutable { value: value.clone() }), "our get_immutable found libtorrent's item");
    assert!(from.iter().all(|a| lt_addrs.contains(a)), "{from:?}");
    let (secret, public) = libtorrent_keypair(&[0x62; 32]);
    lt.send(json!({"cmd": "put_mutable", "index": 0, "secret": hex(&secret), "public": hex(&public),
        "data": hex(b"signed by libtorrent"), "salt": hex(b"from lt")}));
    let put = until(PHASE, "libtorrent's put_mutable", || {
        ours[0].step(Duration::from_millis(10));
        lt.take(|v| v["event"] == "put" && v["index"] == 0)
    });
    eprintln!("libtorrent's mutable put: {put}");
    assert!(put["num_success"].as_u64().unwrap() >= 1, "libtorrent's put stored nowhere: {put}");
    let (got, _) =
        run_get(&mut ours, 0, PHASE, |o| o.ep.get_mutable(o.now(), public, b"from lt", None).unwrap(), || lt.poll());
    let got = got.expect("our get_mutable found libtorrent's item");
    // libtorrent bencodes the data itself, and starts at seq 1 (the seq it found, 0, plus one).
    assert_eq!((got.seq(), got.value()), (Some(1), &bstr(b"signed by libtorrent")[..]), "{got:?}");
    let stats = *ours[0].ep.stats();
    assert_eq!(stats.malformed, 0, "our decoder refused datagrams from libtorrent: {stats:?}");
    drop(lt);

    // (c) libtorrent's put lands in a network of our nodes.
    let mut net = our_network(4, 80, PHASE);
    let mut lone = PeerProcess::spawn("lone libtorrent node", &python, &["lt_swarm.py", "1"]);
    lone.wait_for(PHASE, "the lone libtorrent node to be ready", |v| v["event"] == "ready");
    for n in &net {
        lone.send(json!({"cmd": "add_node", "index": 0, "host": "127.0.0.1", "port": n.addr().port()}));
    }
    // libtorrent pings the nodes it is given before it uses them: put again (bounded) until
    // a put reaches one of ours.
    let lt_put = |net: &mut Vec<Ours>, lone: &mut PeerProcess, cmd: serde_json::Value| {
        until(PHASE, "the lone libtorrent node's put to reach our nodes", || {
            lone.send(cmd.clone());
            let put = until(PHASE, "the lone libtorrent node's put", || {
                interop_common::step_all(net);
                lone.take(|v| v["event"] == "put")
            });
            eprintln!("lone libtorrent node's put: {put}");
            (put["num_success"].as_u64().unwrap() >= 1).then_some(put)
        })
    };
    let value = bstr(b"into a krpc network");
    lt_put(&mut net, &mut lone, json!({"cmd": "put_immutable", "index": 0, "value": hex(&value)}));
    assert!(stored_items(&net) >= 1, "no node of ours stored libtorrent's item");
    let target = immutable_target(&value);
    let (got, from) = run_get(&mut net, 3, PHASE, |o| o.ep.get_immutable(o.now(), target).unwrap(), || lone.poll());
    assert_eq!(got, Some(Item::Immutable { value }), "our network holds libtorrent's item");
    eprintln!("our get_immutable found it at {from:?}");
    let (secret, public) = libtorrent_keypair(&[0x63; 32]);
    let put = lt_put(
        &mut net,
        &mut lone,
        json!({"cmd": "put_mutable", "index": 0, "secret": hex(&secret), "public": hex(&public),
            "data": hex(b"mutable, into krpc"), "salt": ""}),
    );
    let seq = put["seq"].as_i64().unwrap();
    let before = stored_items(&net);
    assert!(before >= 2, "no node of ours stored libtorrent's mutable item ({before} items)");
    let (got, _) =
        run_get(&mut net, 3, PHASE, |o| o.ep.get_mutable(o.now(), public, b"", None).unwrap(), || lone.poll());
    let got = got.expect("our network holds libtorrent's mutable item");
    assert_eq!((got.seq(), got.value()), (Some(seq), &bstr(b"mutable, into krpc")[..]), "{got:?}");
    for n in &net {
        assert_eq!(n.ep.stats().malformed, 0, "our decoder refused datagrams from libtorrent");
    }
}

/// BEP 51 the other way: libtorrent's `dht_sample_infohashes` against our node. Two libtorrent
/// nodes and ours know each other; libtorrent node 0 announces three info hashes, which reach
/// our node (its `announce_peer` queries are in what we received); then libtorrent node 1
/// samples our node and gets exactly those three, `num` 3 and our `interval` (21600 s, the
/// sample having just been drawn).
#[test]
fn libtorrent_samples_our_node() {
    use krpc_core::wire::{Body, Message};

    if !should_run("interop_libtorrent", interop_common::libtorrent_available()) {
        return;
    }
    let python = interop_common::python_bin();
    let mut lt = PeerProcess::spawn("libtorrent BEP 51 pair", &python, &["lt_swarm.py", "2"]);
    let ready = lt.wait_for(PHASE, "the libtorrent pair to be ready", |v| v["event"] == "ready");
    let lt_addrs: Vec<SocketAddr> = ready["nodes"].as_array().unwrap().iter().map(json_addr).collect();
    let mut ours = Ours::new(Config { bootstrap: lt_addrs.clone(), ..Config::dht() }, 51);
    let our_addr = ours.addr();
    lt.send(json!({"cmd": "add_node", "index": null, "host": "127.0.0.1", "port": our_addr.port()}));
    let now = ours.now();
    let join = ours.ep.bootstrap(now).expect("bootstrap");
    until(PHASE, "our bootstrap lookup", || {
        ours.step(Duration::from_millis(10));
        ours.take_event(|e| matches!(e, Event::LookupDone { op, .. } if *op == join))
    });

    let hashes: BTreeSet<NodeId> = [0x51, 0x52, 0x53].map(|b| NodeId::from_array([b; 20])).into();
    // The info hashes libtorrent announced to us so far (its announce_peer queries).
    let announced_to_us = |ours: &Ours| -> BTreeSet<NodeId> {
        let queries = ours.received.iter().filter_map(|(_, bytes)| match Message::decode(bytes).ok()?.body {
            Body::Query(q) if q.method == b"announce_peer" => q.args.info_hash(),
            _ => None,
        });
        queries.collect()
    };
    // libtorrent announces once it knows us; announcing again is harmless (stored once).
    let mut last_announce: Option<StdInstant> = None;
    until(PHASE, "libtorrent's announces to reach our node", || {
        ours.step(Duration::from_millis(10));
        lt.poll();
        if last_announce.is_none_or(|t| t.elapsed() > Duration::from_secs(3)) {
            for (i, hash) in hashes.iter().enumerate() {
                lt.send(json!({"cmd": "announce", "index": 0, "info_hash": hex(hash.as_bytes()), "port": 7301 + i}));
            }
            last_announce = Some(StdInstant::now());
        }
        hashes.is_subset(&announced_to_us(&ours)).then_some(())
    });

    let target = hex(&[0x50; 20]);
    lt.send(json!({"cmd": "sample", "index": 1, "host": "127.0.0.1", "port": our_addr.port(), "target": target}));
    let sample = until(PHASE, "libtorrent's sample of our node", || {
        ours.step(Duration::from_millis(10));
        lt.take(|v| v["event"] == "samples" && v["port"] == json!(our_addr.port()))
    });
    eprintln!("libtorrent's sample of our node: {sample}");
    let samples: BTreeSet<NodeId> = sample["samples"].as_array().unwrap().iter().map(json_id).collect();
    assert_eq!(samples, hashes, "{sample}");
    assert_eq!(sample["num"], 3, "{sample}");
    assert_eq!(sample["interval"], 21600, "{sample}");
    assert!(sample["nodes"].as_u64().is_some_and(|n| n >= 1), "our answer carries nodes: {sample}");
    assert_eq!(ours.ep.stats().malformed, 0, "our decoder refused datagrams from libtorrent");
}

//! Interop with the JavaScript `k-rpc` 5.1.0 client (`tests/interop/js_krpc_client.mjs`): it
//! sends `ping`, `find_node`, `get_peers`, `announce_peer` (good and bad token) and an unknown
//! method to our node (`Config::dht()`), and prints what k-rpc decoded from our answers.
//!
//! Asserts that k-rpc matched every answer to its query (2-byte tids echoed), that `r.id` is
//! our id, that `nodes` is a whole number of 26-byte entries listing the nodes we know, that
//! `get_peers` carries a token that `announce_peer` then accepts, that the announced peer comes
//! back in `values`, and that errors arrive as BEP 5 `[code, message]` lists.
//!
//! Skipped when Node.js or k-rpc is missing (`tests/interop/setup.sh`), unless
//! `KRPC_INTEROP_REQUIRED=1`.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // a test: it logs what the peers sent, and owns the clock

mod interop_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use interop_common::{Ours, PeerProcess, from_hex, hex, observations, report, should_run, until};
use krpc_core::{Config, NodeId, NodeInfo};
use serde_json::{Value as Json, json};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn js_krpc_client_queries_our_node() {
    if !should_run("interop_js_krpc", interop_common::js_available(&["k-rpc"])) {
        return;
    }
    let mut ours = Ours::new(Config::dht(), 7);
    let our_addr = ours.addr();
    let our_hex = hex(ours.id().as_bytes());
    // Something to list in `nodes`: five nodes vouched for by the application (on loopback
    // ports where nothing listens; they are never asked anything in this short test).
    let now = ours.now();
    let mut listed = Vec::new();
    for i in 0..5u8 {
        let node = NodeInfo::new(NodeId::from_array([0x10 * (i + 1); 20]), ([127, 0, 0, 1], 9 + u16::from(i)).into());
        assert!(ours.ep.insert_node(now, node));
        listed.push(node);
    }

    let node = interop_common::node_bin();
    let port = our_addr.port().to_string();
    let mut js = PeerProcess::spawn("k-rpc client", &node, &["js_krpc_client.mjs", "127.0.0.1", &port]);
    let ready = until(LIMIT, "the k-rpc client to start", || {
        ours.step(Duration::from_millis(10));
        js.take(|v| v["event"] == "ready")
    });
    let js_addr: SocketAddr = format!("127.0.0.1:{}", ready["port"]).parse().unwrap();
    until(LIMIT, "the k-rpc client to finish", || {
        ours.step(Duration::from_millis(10));
        js.take(|v| v["event"] == "done")
    });
    let answers: BTreeMap<String, Json> = js
        .take_all(|v| v.get("query").is_some())
        .into_iter()
        .map(|v| (v["query"].as_str().unwrap().to_string(), v))
        .collect();
    for (name, answer) in &answers {
        eprintln!("{name}: {answer}");
    }

    // Every successful answer: matched by k-rpc, from us, with our id.
    for name in ["ping", "find_node", "get_peers", "announce_peer", "get_peers_after_announce"] {
        let a = &answers[name];
        assert!(a["error"].is_null(), "k-rpc refused our answer to {name}: {a}");
        assert_eq!(a["y"], "r", "{name}: {a}");
        assert_eq!(a["r"]["id"], json!(our_hex), "{name}: r.id is not our id");
        assert_eq!(a["peer"], json!(our_addr.to_string()), "{name}");
        assert_eq!(a["t"].as_str().unwrap().len(), 4, "{name}: k-rpc's 2-byte tid echoed");
        // BEP 42 `ip`: the address the query came from.
        let ip = from_hex(a["ip"].as_str().expect("ip field"));
        assert_eq!(ip.len(), 6);
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), js_addr.port(), "{name}: ip carries the querier's port");
    }

    // find_node: 26-byte compact nodes, the ones we know.
    let nodes = from_hex(answers["find_node"]["r"]["nodes"].as_str().expect("find_node nodes"));
    assert!(!nodes.is_empty() && nodes.len() % 26 == 0, "nodes is {} bytes", nodes.len());
    let ids: Vec<&[u8]> = nodes.chunks(26).map(|c| &c[..20]).collect();
    for node in &listed {
        assert!(ids.contains(&node.id.as_bytes()), "find_node did not list {node:?}");
    }

    // get_peers: a token and nodes, no values yet.
    let gp = &answers["get_peers"]["r"];
    let token = from_hex(gp["token"].as_str().expect("get_peers token"));
    assert!(!token.is_empty());
    let nodes = from_hex(gp["nodes"].as_str().expect("get_peers nodes"));
    assert!(!nodes.is_empty() && nodes.len() % 26 == 0, "nodes is {} bytes", nodes.len());
    assert!(gp.get("values").is_none(), "no peers announced yet: {gp}");

    // announce_peer with the token, then get_peers sees the peer.
    let values = answers["get_peers_after_announce"]["r"]["values"].as_array().expect("values after announce");
    assert!(values.contains(&json!("7f0000011b57")), "127.0.0.1:6999 is not in {values:?}");

    // Errors: BEP 5 lists, which k-rpc turns into `code message`.
    let bad = &answers["announce_peer_bad_token"];
    assert_eq!(bad["code"], 203, "{bad}");
    assert_eq!(bad["y"], "e");
    let unknown = &answers["unknown_method"];
    assert_eq!(unknown["code"], 204, "{unknown}");

    let obs = observations(&ours, &[js_addr]);
    report("k-rpc", &obs);
    assert!(obs.keys().all(|o| !o.kind.starts_with("malformed")));
    // Its own queries carry 2-byte tids; its answers echo our 4-byte ones.
    assert!(
        obs.keys().all(|o| o.t_len == if o.kind.starts_with("q:") { 2 } else { 4 } && o.v.is_none()),
        "k-rpc: 2-byte tids, ours echoed, no `v`"
    );
    let warnings = js.take_all(|v| v["event"] == "warning");
    eprintln!("k-rpc warnings: {warnings:?}");
    assert_eq!(ours.ep.stats().malformed, 0);
}

//! Issue 14's rule, from BEP 43: a node that does not answer the node-layer queries sends
//! `ro=1` (the same cases as krpc-tokio's tests/read_only_rule.rs). Without the node layer the
//! engine answers pings and hands every other query to the application; until a handler or a
//! receiver takes them, and again once the receiver is gone, the node's queries carry `ro=1`.

#![allow(clippy::disallowed_methods)] // the tests spawn threads and read the clock themselves

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use krpc_std::core::wire::Message;
use krpc_std::{Config, Krpc};

const PING: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
const FIND_NODE: &[u8] =
    b"d1:ad2:id20:abcdefghij01234567896:target20:abcdefghij0123456789e1:q9:find_node1:t2:bb1:y1:qe";

/// The `ro` flag of a query `node` sends (a ping to a socket that never answers).
fn ro_of_our_query(node: &Krpc) -> bool {
    let raw = UdpSocket::bind("127.0.0.1:0").expect("bind on loopback");
    raw.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let to = raw.local_addr().expect("local address");
    let pinger = {
        let node = node.clone();
        std::thread::spawn(move || node.query(to, krpc_std::Query::ping()))
    };
    let mut buf = [0u8; 1500];
    let (n, _) = raw.recv_from(&mut buf).expect("the node sent its ping");
    // The ping times out in the background: nothing answers it.
    drop(pinger);
    Message::decode(&buf[..n]).expect("a KRPC query").read_only
}

/// Whether `to` answers `query` (a response or an error, not a query of its own such as the
/// ping that verifies a new querier) within a second.
fn answers(to: SocketAddr, query: &[u8]) -> bool {
    let raw = UdpSocket::bind("127.0.0.1:0").expect("bind on loopback");
    raw.send_to(query, to).expect("send");
    let end = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 1500];
    while let Some(left) = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        raw.set_read_timeout(Some(left)).expect("timeout");
        let Ok((n, _)) = raw.recv_from(&mut buf) else { return false };
        if Message::decode(&buf[..n]).is_ok_and(|m| m.as_query().is_none()) {
            return true;
        }
    }
    false
}

#[test]
fn a_parity_node_sends_ro_until_the_application_takes_its_queries() {
    let node = Krpc::bind("127.0.0.1:0", Config::default()).expect("bind on loopback");
    assert!(ro_of_our_query(&node), "nobody answers this node's find_node or get_peers: ro=1");
    assert!(answers(node.local_addr(), PING), "pings are still answered");
    assert!(!answers(node.local_addr(), FIND_NODE), "nobody answers find_node");

    let incoming = node.incoming().expect("a receiver");
    assert!(!ro_of_our_query(&node), "the application takes the queries now: no ro");

    // Let the queries go: the next one offered finds nobody, and ro=1 comes back.
    drop(incoming);
    let _ = answers(node.local_addr(), FIND_NODE);
    assert!(ro_of_our_query(&node), "nobody takes the queries any more: ro=1");

    node.on_query(|_query, _responder| {}).expect("a handler");
    assert!(!ro_of_our_query(&node), "a handler takes them: no ro");
}

#[test]
fn a_node_with_the_node_layer_or_set_read_only_keeps_its_configuration() {
    let dht = Krpc::bind("127.0.0.1:0", Config::dht()).expect("bind on loopback");
    assert!(!ro_of_our_query(&dht), "the node layer answers: a full node");
    let ro = Krpc::bind("127.0.0.1:0", Config { read_only: true, ..Config::default() }).expect("bind");
    let _incoming = ro.incoming().expect("a receiver");
    assert!(ro_of_our_query(&ro), "configured read-only stays read-only with a receiver");
}

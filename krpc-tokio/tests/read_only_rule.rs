//! Issue 14's rule, from BEP 43: a node that does not answer the node-layer queries sends
//! `ro=1`. Without the node layer (`Config::default()`, k-rpc parity) the engine answers pings
//! and hands every other query to the application, so the driver marks the node's queries
//! `ro=1` until the application takes the queries (`incoming()`), and again once it lets them
//! go. Pings are answered throughout.

use std::net::SocketAddr;
use std::time::Duration;

use krpc_tokio::core::wire::Message;
use krpc_tokio::{Config, Rpc};
use tokio::net::UdpSocket;

/// A ping with a transaction id of our own choosing.
const PING: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
const FIND_NODE: &[u8] =
    b"d1:ad2:id20:abcdefghij01234567896:target20:abcdefghij0123456789e1:q9:find_node1:t2:bb1:y1:qe";

/// The `ro` flag of a query `rpc` sends (a ping to a socket of ours that never answers).
async fn ro_of_our_query(rpc: &Rpc) -> bool {
    let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind on loopback");
    let to = raw.local_addr().expect("local address");
    let pinger = {
        let rpc = rpc.clone();
        tokio::spawn(async move { rpc.ping(to).await })
    };
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), raw.recv_from(&mut buf))
        .await
        .expect("the node sent its ping")
        .expect("recv");
    pinger.abort();
    Message::decode(&buf[..n]).expect("a KRPC query").read_only
}

/// Whether `to` answers `query` (its response or error, not a query of its own such as the
/// ping that verifies a new querier) within a second.
async fn answers(to: SocketAddr, query: &[u8]) -> bool {
    let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind on loopback");
    raw.send_to(query, to).await.expect("send");
    let mut buf = [0u8; 1500];
    let wait = async {
        loop {
            let (n, _) = raw.recv_from(&mut buf).await.expect("recv");
            if Message::decode(&buf[..n]).is_ok_and(|m| m.as_query().is_none()) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), wait).await.is_ok()
}

#[tokio::test]
async fn a_parity_node_sends_ro_until_the_application_takes_its_queries() {
    let rpc = Rpc::bind("127.0.0.1:0", Config::default()).await.expect("bind on loopback");
    assert!(ro_of_our_query(&rpc).await, "nobody answers this node's find_node or get_peers: ro=1");
    assert!(answers(rpc.local_addr(), PING).await, "pings are still answered");
    assert!(!answers(rpc.local_addr(), FIND_NODE).await, "nobody answers find_node");

    let incoming = rpc.incoming();
    assert!(!ro_of_our_query(&rpc).await, "the application answers now: no ro");

    // Let the queries go: the next one offered finds nobody, and the node is read-only again.
    drop(incoming);
    let _ = answers(rpc.local_addr(), FIND_NODE).await;
    assert!(ro_of_our_query(&rpc).await, "nobody takes the queries any more: ro=1");
}

#[tokio::test]
async fn a_node_with_the_node_layer_or_set_read_only_keeps_its_configuration() {
    let dht = Rpc::bind("127.0.0.1:0", Config::dht()).await.expect("bind on loopback");
    assert!(!ro_of_our_query(&dht).await, "the node layer answers: a full node");
    assert!(answers(dht.local_addr(), FIND_NODE).await);

    let ro = Rpc::bind("127.0.0.1:0", Config { read_only: true, ..Config::default() }).await.expect("bind");
    let _incoming = ro.incoming();
    assert!(ro_of_our_query(&ro).await, "configured read-only stays read-only with a subscriber");
}

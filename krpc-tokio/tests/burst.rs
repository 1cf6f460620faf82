//! Bursts: datagrams queued together are taken, answered and sent in batches (up to 32 per
//! system call on Linux), and every one of them is answered exactly once, on IPv4 and IPv6.
#![allow(clippy::disallowed_methods)] // the test owns plain sockets

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use krpc_tokio::wire::Message;
use krpc_tokio::{Config, RateLimit, Rpc};

/// Pings sent before the driver takes the first one (few enough for a socket's default
/// receive buffer).
const BURST: u16 = 100;

/// A `ping` with transaction id `tid`.
fn ping(tid: u16) -> Vec<u8> {
    let mut query = b"d1:ad2:id20:burst-test-client-ide1:q4:ping1:t2:".to_vec();
    query.extend_from_slice(&tid.to_be_bytes());
    query.extend_from_slice(b"1:y1:qe");
    query
}

async fn burst(local: SocketAddr) {
    let config = Config { bootstrap: vec![], rate_limit: RateLimit::OFF, ..Config::default() };
    let rpc = Rpc::bind(local, config).await.unwrap();
    // A blocking socket and no `.await` in between: the whole burst is queued before the
    // driver's task (on this single-threaded runtime) reads any of it.
    let client = std::net::UdpSocket::bind(local).unwrap();
    for tid in 0..BURST {
        client.send_to(&ping(tid), rpc.local_addr()).unwrap();
    }
    client.set_nonblocking(true).unwrap();
    let client = tokio::net::UdpSocket::from_std(client).unwrap();
    let (mut answered, mut buf) = (HashSet::new(), [0u8; 1500]);
    while answered.len() < usize::from(BURST) {
        let (len, from) = tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{} of {BURST} pings answered", answered.len()))
            .unwrap();
        assert_eq!(from, rpc.local_addr());
        let message = Message::decode(&buf[..len]).unwrap();
        // The driver may also ping us (an unknown querier) before adding us to its table.
        if message.as_response().is_some() {
            let tid = u16::from_be_bytes(message.transaction_id.try_into().unwrap());
            assert!(tid < BURST && answered.insert(tid), "tid {tid} answered twice or unknown");
        }
    }
    rpc.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_pings_is_answered_once_each_ipv4() {
    burst("127.0.0.1:0".parse().unwrap()).await;
}

#[tokio::test]
async fn a_burst_of_pings_is_answered_once_each_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        return; // no IPv6 loopback on this machine
    }
    burst("[::1]:0".parse().unwrap()).await;
}

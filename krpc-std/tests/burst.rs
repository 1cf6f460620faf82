//! Bursts: datagrams queued together are taken, answered and sent in batches (up to 32 per
//! system call on Linux), and every one of them is answered exactly once.
#![allow(clippy::disallowed_methods)] // the test owns a plain socket

mod common;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::Duration;

use common::{LOCAL, local_with};
use krpc_std::core::wire::Message;
use krpc_std::{Config, RateLimit};

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

#[test]
fn a_burst_of_pings_is_answered_once_each_in_few_steps() {
    let config = Config { rate_limit: RateLimit::OFF, ..Config::default() };
    let mut driver = local_with(config).bind_driver(LOCAL).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for tid in 0..BURST {
        client.send_to(&ping(tid), driver.local_addr()).unwrap();
    }
    let mut steps = 0;
    while driver.endpoint().stats().replies_out < u64::from(BURST) {
        assert!(steps < 10 * usize::from(BURST), "answered {:?}", driver.endpoint().stats());
        driver.step(Some(Duration::from_millis(50))).unwrap();
        while driver.endpoint_mut().poll_event().is_some() {}
        steps += 1;
    }
    // On Linux the receive slots double while they come back full: 1, 2, 4, ... 32.
    if cfg!(target_os = "linux") {
        assert!(steps < 20, "{steps} steps for {BURST} pings");
    }
    let (mut answered, mut buf) = (HashSet::new(), [0u8; 1500]);
    while answered.len() < usize::from(BURST) {
        let len = client.recv(&mut buf).unwrap();
        let message = Message::decode(&buf[..len]).unwrap();
        // The driver may also ping us (an unknown querier) before adding us to its table.
        if message.as_response().is_some() {
            let tid = u16::from_be_bytes(message.transaction_id.try_into().unwrap());
            assert!(tid < BURST && answered.insert(tid), "tid {tid} answered twice or unknown");
        }
    }
}

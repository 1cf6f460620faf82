//! Answers N pings from one querier through the engine (decode, table touch, node layer,
//! encode), for counting instructions per ping with callgrind, which gives the same count
//! whatever else the machine is doing (docs/performance.md, "Before and after"):
//!
//! ```sh
//! cargo build --release -p krpc-core --example count_ping
//! valgrind --tool=callgrind target/release/examples/count_ping 2000
//! valgrind --tool=callgrind target/release/examples/count_ping 12000
//! # instructions per ping = (count at 12000 - count at 2000) / 10000
//! ```
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::{Config, Endpoint, Instant, RateLimit};

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let config = Config { rate_limit: RateLimit::OFF, ..Config::dht() };
    let mut ep = Endpoint::new(config, [1; 32], Instant::ZERO).expect("a valid config");
    let from: SocketAddr = "10.0.0.2:6881".parse().expect("an address");
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    let mut buf = [0u8; 1500];
    let mut now = Instant::ZERO;
    let mut bytes = 0usize;
    for _ in 0..n {
        now += Duration::from_millis(1);
        ep.handle_datagram(now, from, ping);
        while let Some(t) = ep.poll_transmit(now, &mut buf) {
            bytes += t.len;
        }
        while ep.poll_event().is_some() {}
    }
    println!("{n} pings answered, {bytes} bytes sent");
}

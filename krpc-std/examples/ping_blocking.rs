//! Pings a DHT node with the blocking driver.
//!
//! ```text
//! cargo run -p krpc-std --example ping_blocking              # starts a node on 127.0.0.1 and pings it
//! cargo run -p krpc-std --example ping_blocking -- HOST:PORT # pings that node
//! ```
#![allow(clippy::print_stdout)] // an example talks to its user

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use krpc_std::{Config, Error, Krpc, Query};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The node to ping: the one named, or one of our own on 127.0.0.1.
    let mut own = None;
    let target = match std::env::args().nth(1) {
        Some(host) => host.to_socket_addrs()?.next().ok_or("no address")?,
        None => own.insert(Krpc::bind("127.0.0.1:0", Config::default())?).local_addr(),
    };
    let ip: IpAddr = match target.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let krpc = Krpc::bind((ip, 0), Config::default())?;
    println!("node {} on {}", krpc.id(), krpc.local_addr());
    match krpc.query(target, Query::ping()) {
        Ok(reply) => match reply.id() {
            Some(id) => println!("pong from {} ({id})", reply.from()),
            None => println!("pong from {} (no id)", reply.from()),
        },
        Err(Error::Query(e)) => println!("no pong from {target}: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

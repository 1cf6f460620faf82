//! Pings a KRPC node and prints its id.
//!
//! ```text
//! cargo run -p krpc-tokio --example ping -- HOST:PORT
//! cargo run -p krpc-tokio --example ping            # two local nodes on 127.0.0.1
//! ```
#![allow(clippy::print_stdout)] // an example prints what it does

use krpc_tokio::{Config, Rpc};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config { bootstrap: vec![], ..Config::default() };
    // Keeps the local peer alive until the end when no address is given.
    let mut _local_peer = None;
    let (rpc, addr) = match std::env::args().nth(1) {
        Some(target) => {
            let addr = tokio::net::lookup_host(&target).await?.next().ok_or("no address for that name")?;
            let any = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            (Rpc::bind(any, config).await?, addr)
        }
        None => {
            let peer = Rpc::bind("127.0.0.1:0", config.clone()).await?;
            let addr = peer.local_addr();
            _local_peer = Some(peer);
            (Rpc::bind("127.0.0.1:0", config).await?, addr)
        }
    };
    println!("pinging {addr} from {} (our id {})", rpc.local_addr(), rpc.id());
    let started = tokio::time::Instant::now();
    match rpc.ping(addr).await {
        Ok(reply) => {
            let id = reply.id().map_or_else(|| "none".to_owned(), |id| id.to_string());
            println!("reply from {} in {:?}: id {id}", reply.from(), started.elapsed());
        }
        Err(error) => println!("no reply: {error}"),
    }
    rpc.shutdown().await;
    Ok(())
}

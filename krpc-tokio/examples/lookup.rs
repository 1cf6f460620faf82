//! A small network on 127.0.0.1: eight nodes join through a router with `populate`, then a
//! newcomer looks for one of them with `closest` and prints every node it visits.
//!
//! ```text
//! cargo run -p krpc-tokio --example lookup
//! ```
#![allow(clippy::print_stdout)] // an example prints what it does

use krpc_tokio::wire::Dictionary;
use krpc_tokio::{Config, Query, Request, Rpc, Subscription};

/// Answers `find_node` and `get_peers` with the nearest nodes of our table (what a DHT node
/// does on top of KRPC), anything else with BEP 5's "204 Method Unknown".
async fn serve(rpc: Rpc, mut incoming: Subscription<Request>) {
    while let Some(request) = incoming.next().await {
        match request.args().target().or(request.args().info_hash()) {
            Some(target) => {
                let nodes = rpc.closest_nodes(target, 8).await.unwrap_or_default();
                let _ = request.respond(Dictionary::new(), &nodes);
            }
            None => drop(request.error(204, "Method Unknown")),
        }
    }
}

async fn start(config: Config) -> std::io::Result<Rpc> {
    let rpc = Rpc::bind("127.0.0.1:0", config).await?;
    tokio::spawn(serve(rpc.clone(), rpc.incoming()));
    Ok(rpc)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let router = start(Config::default()).await?;
    let config = Config { bootstrap: vec![router.local_addr()], ..Config::default() };
    let mut nodes = vec![router.clone()];
    for _ in 0..7 {
        let node = start(config.clone()).await?;
        let joined = node.populate(node.id(), Query::find_node(&node.id())).await?;
        println!("{} joined: {} replies", node.local_addr(), joined.replies);
        nodes.push(node);
    }

    let newcomer = start(config).await?;
    newcomer.populate(newcomer.id(), Query::find_node(&newcomer.id())).await?;
    let target = nodes[5].id();
    println!("looking for {target} ({})", nodes[5].local_addr());
    let mut lookup = newcomer.closest(target, Query::find_node(&target)).await?;
    while let Some(reply) = lookup.next().await {
        let id = reply.id().map(|id| id.to_string()).unwrap_or_default();
        println!("  visited {} {id}", reply.from());
    }
    let summary = lookup.end().ok_or("lookup did not end")?;
    println!("{:?} after {} replies; closest:", summary.outcome, summary.replies);
    for found in &summary.closest {
        println!("  {} {}", found.node.addr, found.node.id);
    }

    for node in nodes.iter().chain([&newcomer]) {
        node.shutdown().await;
    }
    Ok(())
}

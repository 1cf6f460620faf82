//! The commands that survey the DHT rather than one key or node: `scrape` (BEP 33) and
//! `crawl` (BEP 51). Without `--bootstrap` they start from the public DHT's routers: a
//! survey of the public DHT is what they are for.

use std::net::SocketAddr;

use clap::Args;
use krpc_tokio::{DEFAULT_BOOTSTRAP, NodeId};
use serde_json::json;
use tokio::time::Instant;

use crate::net::{client, nobody_answered, resolve};
use crate::out::{Failure, Out, Progress, count, done, stats};

/// Where `scrape` and `crawl` start.
#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// Nodes to start from: `host:port` or `[v6]:port`, several after one flag, repeated, or
    /// comma-separated. A name that does not resolve is skipped if another one does. Default:
    /// the public DHT's routers (see `krpc --help`).
    #[arg(long, num_args = 1.., value_delimiter = ',', value_name = "ADDR", value_parser = crate::parse_remote)]
    bootstrap: Vec<String>,
    /// Local address to bind, `ip:port` (default: port 0 on every interface of the bootstrap
    /// nodes' family).
    #[arg(long, value_parser = crate::parse_bind)]
    bind: Option<SocketAddr>,
}

/// The client, joined through `--bootstrap` or the public routers, and the addresses it
/// starts from.
async fn start(out: &Out, args: &StartArgs) -> Result<(krpc_tokio::Rpc, Vec<SocketAddr>), Failure> {
    let names: Vec<String> = if args.bootstrap.is_empty() {
        out.note(&format!("no --bootstrap: starting from the public DHT ({})", DEFAULT_BOOTSTRAP.join(", ")));
        DEFAULT_BOOTSTRAP.iter().map(|name| (*name).to_owned()).collect()
    } else {
        args.bootstrap.clone()
    };
    let bootstrap = resolve(out, &names).await?;
    let rpc = client(out, bootstrap, args.bind).await?;
    let bootstrap = rpc.inspect(|endpoint| endpoint.config().bootstrap.clone()).await.unwrap_or_default();
    Ok((rpc, bootstrap))
}

/// BEP 33: the estimated seeds and peers of INFOHASH.
pub(crate) async fn scrape(out: &Out, info_hash: NodeId, args: StartArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (rpc, bootstrap) = start(out, &args).await?;
    let progress = Progress::start(out, &rpc, "scrape", None);
    let result = rpc.scrape(info_hash).await;
    progress.finish().await;
    let scrape = match result {
        Ok(_) if stats(&rpc).await.replies_in == 0 => Err(nobody_answered("scrape", &bootstrap)),
        Ok(scrape) => Ok(scrape),
        Err(error) => Err(Failure::new(format!("scrape: {error}"))),
    };
    let scrape = match scrape {
        Ok(scrape) => scrape,
        Err(failure) => {
            rpc.shutdown().await;
            return Err(failure);
        }
    };
    let (seeds, peers, responses) = (scrape.seeds, scrape.peers, scrape.responses);
    out.emit(
        json!({ "event": "scrape", "infohash": info_hash.to_string(), "seeds": seeds, "peers": peers, "responses": responses }),
        || format!("seeds {seeds}\npeers {peers}"),
    );
    let text = match responses {
        0 => "no node answered with BEP 33 filters: nobody announced it, or the nodes do not support BEP 33".to_owned(),
        n => format!("estimated from the filters of {}", count(n, "node", "nodes")),
    };
    done(out, "scrape", &rpc, started, json!({ "seeds": seeds, "peers": peers, "responses": responses }), Some(text))
        .await;
    rpc.shutdown().await;
    Ok(())
}

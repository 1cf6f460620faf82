//! The commands that survey the DHT rather than one key or node: `scrape` (BEP 33) and
//! `crawl` (BEP 51). Without `--bootstrap` they start from the public DHT's routers: a
//! survey of the public DHT is what they are for.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use krpc_tokio::{CrawlConfig, DEFAULT_BOOTSTRAP, NodeId};
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

/// Options of `crawl`.
#[derive(Debug, Args)]
pub(crate) struct CrawlArgs {
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM, or `--max`).
    #[arg(long, value_name = "SECS", value_parser = crate::parse_seconds)]
    duration: Option<f64>,
    /// Stop once this many distinct info-hashes have been found.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
    /// `sample_infohashes` queries per second, at most.
    #[arg(long, value_name = "QPS", default_value_t = CrawlConfig::default().rate, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    #[command(flatten)]
    start: StartArgs,
}

/// How often `crawl` prints its progress line on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// BEP 51: every info-hash the DHT's nodes sample, each once, until `--duration`, `--max`,
/// Ctrl-C or SIGTERM.
pub(crate) async fn crawl(out: &Out, args: CrawlArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (rpc, bootstrap) = start(out, &args.start).await?;
    let mut config = CrawlConfig::default().with_rate(args.rate);
    if let Some(max) = args.max {
        config = config.with_max_info_hashes(usize::try_from(max).unwrap_or(usize::MAX));
    }
    let mut crawl = match rpc.crawl(config).await {
        Ok(crawl) => crawl,
        Err(error) => {
            rpc.shutdown().await;
            return Err(Failure::new(format!("crawl: {error}")));
        }
    };
    // SIGTERM stops the crawl as Ctrl-C does: the info-hashes found so far are all printed,
    // then the summary, and the exit code is 0.
    #[cfg(unix)]
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| Failure::new(format!("cannot handle SIGTERM: {error}")))?;
    #[cfg(unix)]
    let terminate = async move {
        sigterm.recv().await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let mut terminate = std::pin::pin!(terminate);
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let deadline = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds)).await,
            None => std::future::pending().await,
        }
    };
    let mut deadline = std::pin::pin!(deadline);
    let mut tick = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
    // The queries sent at the last progress line, and when: the rate is over the last second.
    let mut last = (started, 0_u64);
    let mut stopping = false;
    loop {
        tokio::select! {
            found = crawl.next() => match found {
                Some(info_hash) => {
                    let hex = info_hash.to_string();
                    out.emit(json!({ "event": "infohash", "infohash": hex }), || hex.clone());
                }
                // The crawl ended: its cap, no node left to ask, or our stop.
                None => break,
            },
            _ = tick.tick() => {
                if let Some(stats) = crawl.stats().await {
                    let now = Instant::now();
                    let seconds = now.duration_since(last.0).as_secs_f64().max(1e-3);
                    let rate = stats.queries.saturating_sub(last.1) as f64 / seconds;
                    last = (now, stats.queries);
                    eprintln!(
                        "krpc: crawl {:.0}s: nodes visited {}, unique info-hashes {}, {rate:.1} queries/s",
                        started.elapsed().as_secs_f64(),
                        stats.nodes_visited,
                        stats.unique_info_hashes,
                    );
                }
            }
            _ = &mut ctrl_c, if !stopping => { stopping = true; crawl.stop(); }
            () = &mut terminate, if !stopping => { stopping = true; crawl.stop(); }
            () = &mut deadline, if !stopping => { stopping = true; crawl.stop(); }
        }
    }
    let found = crawl.found();
    let Some(Some(stats)) = crawl.end().cloned() else {
        rpc.shutdown().await;
        return Err(Failure::new("crawl: the driver stopped"));
    };
    if stats.replies == 0 && found == 0 {
        rpc.shutdown().await;
        return Err(nobody_answered("crawl", &bootstrap));
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Over at least a second: a crawl that ended at once has no meaningful rate.
    let rate = stats.queries as f64 / elapsed.max(1.0);
    eprintln!(
        "krpc: crawl done in {elapsed:.1}s: nodes visited {}, unique info-hashes {found}, {rate:.1} queries/s \
         ({} queries, {} replies, {} samples)",
        stats.nodes_visited, stats.queries, stats.replies, stats.samples,
    );
    let extra = json!({
        "infohashes": found,
        "nodes_visited": stats.nodes_visited,
        "samples": stats.samples,
        "unsupported": stats.unsupported,
        "failures": stats.failures,
    });
    done(out, "crawl", &rpc, started, extra, None).await;
    rpc.shutdown().await;
    Ok(())
}

//! `swarm`: a whole DHT on loopback in one process. N `Config::dht()` nodes, each on its own
//! address 127.0.x.y, join through node 0; some of them announce info hashes; others look the
//! hashes up with `get_peers`; the summary says how often, how fast and at what cost the
//! announced peer was found.

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Args;
use krpc_tokio::{Config, NodeId, Rpc};
use serde_json::json;
use tokio::time::Instant;

use crate::out::{Failure, Out, millis, ms_since, stats};

/// Options of `swarm`.
#[derive(Debug, Args)]
pub(crate) struct SwarmArgs {
    /// Nodes to start, 3 to 10000, each on its own loopback address (127.0.0.1, 127.0.0.2,
    /// ...).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(3..=10_000))]
    nodes: u16,
    /// `get_peers` lookups to run, one after another, each from a random node.
    #[arg(long, default_value_t = 50)]
    lookups: usize,
    /// Info hashes to announce, each from a random node.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    announces: u16,
    /// Seed of the node ids and of the random choices (the timing still varies).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// UDP port of every node (0: each its own ephemeral port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Nodes joining at the same time (1: one after another, each bootstrap lookup done
    /// before the next node starts its own).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    join_batch: u16,
}

/// SplitMix64: the random choices of the run, from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

/// Node `i`'s address: 127.0.0.1 .. 127.0.0.250, 127.0.1.1 .. (never .0 or .255).
fn loopback(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// The `p` quantile (nearest rank) of sorted values.
fn quantile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A one-line phase indicator on stderr (text mode, terminal only).
struct Phase(bool);

impl Phase {
    fn show(&self, text: std::fmt::Arguments<'_>) {
        if self.0 {
            eprint!("\r\x1b[K{text}");
        }
    }

    fn clear(&self) {
        if self.0 {
            eprint!("\r\x1b[K");
        }
    }
}

/// One `get_peers` lookup's measurements.
struct Lookup {
    found: bool,
    queries: u64,
    latency: Duration,
    first_peer: Option<Duration>,
}

pub(crate) async fn run(out: &Out, args: SwarmArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let n = usize::from(args.nodes);
    let phase = Phase(!out.json() && std::io::stderr().is_terminal());
    let mut rng = Rng(args.seed);

    // Start every node; node 0 is the seed the others bootstrap from.
    let mut nodes: Vec<Rpc> = Vec::with_capacity(n);
    for i in 0..n {
        let bootstrap = nodes.first().map(Rpc::local_addr).into_iter().collect();
        let config = Config { bootstrap, ..Config::dht() };
        let addr = SocketAddr::from((loopback(i), args.port));
        let rpc = Rpc::builder(config)
            .seed(rng.bytes())
            .bind(addr)
            .await
            .map_err(|error| Failure::new(format!("cannot bind node {i} on {addr}: {error}")))?;
        nodes.push(rpc);
    }

    // Join, a batch at a time.
    let join_started = Instant::now();
    for batch in (1..n).collect::<Vec<_>>().chunks(usize::from(args.join_batch)) {
        phase.show(format_args!("joining {}/{n}", batch[batch.len() - 1] + 1));
        let joins: Vec<_> = batch
            .iter()
            .map(|&i| {
                let rpc = nodes[i].clone();
                tokio::spawn(async move { rpc.bootstrap().await })
            })
            .collect();
        for (join, &i) in joins.into_iter().zip(batch) {
            let joined = join.await.map_err(|error| Failure::new(format!("node {i}: {error}")))?;
            joined.map_err(|error| Failure::new(format!("node {i} could not join: {error}")))?;
        }
    }
    let join_time = join_started.elapsed();
    let mut tables = Vec::with_capacity(n);
    for rpc in &nodes {
        tables.push(rpc.inspect(|endpoint| endpoint.routing_table().len()).await.unwrap_or(0));
    }
    tables.sort_unstable();

    // Announce, all at once, each info hash from a random node (on its UDP port).
    phase.show(format_args!("announcing {} info hashes", args.announces));
    let mut announced = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..args.announces {
        let info_hash = NodeId::from_array(rng.bytes());
        let from = rng.below(n);
        let rpc = nodes[from].clone();
        pending.push(tokio::spawn(async move { rpc.announce(info_hash, None, false).await }));
        announced.push((info_hash, from));
    }
    let mut stored = Vec::new();
    for announce in pending {
        stored.push(announce.await.map_err(|error| Failure::new(format!("announce: {error}")))?.unwrap_or(0));
    }

    // Look the info hashes up, one lookup at a time, each from a node that did not announce it.
    let mut lookups = Vec::with_capacity(args.lookups);
    for l in 0..args.lookups {
        phase.show(format_args!("lookup {}/{}", l + 1, args.lookups));
        let (info_hash, announcer) = announced[l % announced.len()];
        let seeker = loop {
            let candidate = rng.below(n);
            if candidate != announcer {
                break candidate;
            }
        };
        let (rpc, wanted) = (&nodes[seeker], nodes[announcer].local_addr());
        let before = stats(rpc).await.queries_out;
        let lookup_started = Instant::now();
        let mut peers = rpc.get_peers(info_hash).await.map_err(|error| Failure::new(format!("get_peers: {error}")))?;
        let mut first_peer = None;
        while let Some(peer) = peers.next().await {
            if peer == wanted && first_peer.is_none() {
                first_peer = Some(lookup_started.elapsed());
            }
        }
        let latency = lookup_started.elapsed();
        let queries = stats(rpc).await.queries_out - before;
        lookups.push(Lookup { found: first_peer.is_some(), queries, latency, first_peer });
    }
    phase.clear();

    // Totals over every node.
    let (mut queries, mut replies, mut timeouts) = (0, 0, 0);
    for rpc in &nodes {
        let s = stats(rpc).await;
        (queries, replies, timeouts) = (queries + s.queries_out, replies + s.replies_in, timeouts + s.timeouts);
    }
    let shutdowns: Vec<_> =
        nodes.iter().cloned().map(|rpc| tokio::spawn(async move { rpc.shutdown().await })).collect();
    for shutdown in shutdowns {
        let _ = shutdown.await;
    }

    let succeeded = lookups.iter().filter(|l| l.found).count();
    let success = if lookups.is_empty() { 1.0 } else { succeeded as f64 / lookups.len() as f64 };
    let mut per_lookup: Vec<u64> = lookups.iter().map(|l| l.queries).collect();
    per_lookup.sort_unstable();
    let mut latency: Vec<f64> = lookups.iter().map(|l| millis(l.latency)).collect();
    latency.sort_by(f64::total_cmp);
    let mut first: Vec<f64> = lookups.iter().filter_map(|l| l.first_peer.map(millis)).collect();
    first.sort_by(f64::total_cmp);
    let stored_mean = stored.iter().sum::<usize>() as f64 / stored.len() as f64;
    let table_mean = tables.iter().sum::<usize>() as f64 / n as f64;
    let (first_addr, last_addr) = (loopback(0), loopback(n - 1));
    let elapsed = ms_since(started);

    let summary = json!({
        "event": "done",
        "command": "swarm",
        "nodes": n,
        "addresses": format!("{first_addr}-{last_addr}"),
        "join_ms": millis(join_time),
        "table": { "min": tables[0], "median": quantile(&tables, 0.5), "max": tables[n - 1], "mean": table_mean },
        "announces": announced.len(),
        "stored_mean": stored_mean,
        "lookups": lookups.len(),
        "succeeded": succeeded,
        "success": success,
        "queries_per_lookup": { "median": quantile(&per_lookup, 0.5), "p90": quantile(&per_lookup, 0.9), "max": quantile(&per_lookup, 1.0) },
        "latency_ms": { "p50": quantile(&latency, 0.5), "p90": quantile(&latency, 0.9), "p99": quantile(&latency, 0.99), "max": quantile(&latency, 1.0) },
        "first_peer_ms": { "p50": quantile(&first, 0.5), "p90": quantile(&first, 0.9) },
        "queries": queries,
        "replies": replies,
        "timeouts": timeouts,
        "elapsed_ms": elapsed,
    });
    out.emit(summary, || {
        let lines = [
            format!("nodes               {n} on {first_addr} .. {last_addr}, Config::dht() (k = 8, alpha = 4)"),
            format!(
                "join                {:.0} ms; routing tables {}..{} nodes (median {}, mean {table_mean:.1})",
                millis(join_time),
                tables[0],
                tables[n - 1],
                quantile(&tables, 0.5)
            ),
            format!("announces           {}, each stored by {stored_mean:.1} nodes (mean)", announced.len()),
            format!("lookups             {} get_peers from random nodes", lookups.len()),
            format!("success             {success:.3} ({succeeded}/{} found the announced peer)", lookups.len()),
            format!(
                "queries per lookup  median {}  p90 {}  max {}",
                quantile(&per_lookup, 0.5),
                quantile(&per_lookup, 0.9),
                quantile(&per_lookup, 1.0)
            ),
            format!(
                "latency (ms)        p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                quantile(&latency, 0.5),
                quantile(&latency, 0.9),
                quantile(&latency, 0.99),
                quantile(&latency, 1.0)
            ),
            format!("first peer (ms)     p50 {:.2}  p90 {:.2}", quantile(&first, 0.5), quantile(&first, 0.9)),
            format!("datagrams           {queries} queries, {replies} replies, {timeouts} timeouts (all nodes)"),
            format!("wall time           {:.2} s", elapsed / 1e3),
        ];
        lines.join("\n")
    });
    if succeeded == 0 && !lookups.is_empty() {
        return Err(Failure::new("no lookup found the announced peer"));
    }
    Ok(())
}

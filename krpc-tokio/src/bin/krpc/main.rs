//! `krpc`: a BitTorrent DHT (KRPC) node and tool on top of krpc-tokio.
//!
//! ```text
//! cargo run -p krpc-tokio --features cli --bin krpc -- ping 127.0.0.1:6881
//! cargo run -p krpc-tokio --features cli --bin krpc -- serve --bind 127.0.0.1:6881
//! cargo run -p krpc-tokio --features cli --bin krpc -- find-node TARGET --bootstrap 127.0.0.1:6881
//! cargo run -p krpc-tokio --features cli --bin krpc -- get-peers INFOHASH --bootstrap 127.0.0.1:6881
//! cargo run -p krpc-tokio --features cli --bin krpc -- announce INFOHASH --port 51413 --bootstrap 127.0.0.1:6881
//! cargo run -p krpc-tokio --features cli --bin krpc -- put hello --bootstrap 127.0.0.1:6881
//! cargo run -p krpc-tokio --features cli --bin krpc -- get TARGET --bootstrap 127.0.0.1:6881
//! cargo run -p krpc-tokio --features cli --bin krpc -- decode 64313a...65
//! cargo run --release -p krpc-tokio --features cli --bin krpc -- swarm --nodes 200 --lookups 50
//! ```
//!
//! Every command takes `--json`: stdout then carries one JSON object per line, ending with
//! `{"event":"done",...}` (or `{"event":"error",...}`). Exit codes: 0 success, 1 operational
//! failure, 2 usage error. See `docs/cli.md`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

mod decode;
mod items;
mod net;
mod out;
mod swarm;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use krpc_tokio::NodeId;

use crate::out::{Failure, Out};

/// A BitTorrent DHT (KRPC) node and tool.
#[derive(Debug, Parser)]
#[command(name = "krpc", version, max_term_width = 100)]
struct Cli {
    /// Print one JSON object per line on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pings a node: prints its id and the round-trip time.
    Ping {
        /// The node: `host:port` or `[v6]:port`.
        addr: String,
        /// Local address to bind (default: port 0 on every interface of the node's family).
        #[arg(long)]
        bind: Option<SocketAddr>,
    },
    /// Runs a DHT node until Ctrl-C (or `--for`), printing statistics every few seconds.
    Serve(ServeArgs),
    /// Looks up the nodes closest to TARGET (a 40-digit hex id).
    FindNode {
        /// The id to look for, 40 hex digits.
        #[arg(value_parser = parse_id)]
        target: NodeId,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Looks up peers for INFOHASH, printing each as it is found.
    GetPeers {
        /// The info hash, 40 hex digits.
        #[arg(value_parser = parse_id)]
        info_hash: NodeId,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Announces that we have INFOHASH: stores our address on the nodes closest to it.
    Announce {
        /// The info hash, 40 hex digits.
        #[arg(value_parser = parse_id)]
        info_hash: NodeId,
        /// The port peers should connect to; without it, the nodes store the UDP source port
        /// of this command (BEP 5 `implied_port`), useful only with a fixed `--bind`.
        #[arg(long)]
        port: Option<u16>,
        /// Announce as a seed (BEP 33).
        #[arg(long)]
        seed: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stores VALUE on the nodes closest to its target (BEP 44): an immutable item, or with
    /// `--secret-key` a signed mutable one. Prints the target and how many nodes stored it.
    Put(items::PutArgs),
    /// Reads a BEP 44 item: an immutable one by TARGET, or with `--public-key` (and
    /// `--salt`) the most recent mutable one. Prints the value (hex if it is not UTF-8).
    Get(items::GetArgs),
    /// Decodes one KRPC datagram: hex on the command line, or raw bytes on stdin with `-`.
    Decode {
        /// The datagram in hex (spaces allowed), or `-` to read raw bytes from stdin.
        #[arg(value_parser = decode::parse_input)]
        input: decode::Input,
    },
    /// Runs a whole DHT on loopback in this process and measures announces and lookups.
    Swarm(swarm::SwarmArgs),
}

/// Options of the commands that join a network for one operation.
#[derive(Debug, Args)]
struct ClientArgs {
    /// Nodes to start from: `host:port` or `[v6]:port`, several after one flag, repeated, or
    /// comma-separated.
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', value_name = "ADDR")]
    bootstrap: Vec<String>,
    /// Local address to bind (default: port 0 on every interface of the bootstrap nodes'
    /// family).
    #[arg(long)]
    bind: Option<SocketAddr>,
}

/// Options of `serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on, e.g. `127.0.0.1:6881` or `[::1]:6881`.
    #[arg(long)]
    bind: String,
    /// Nodes to join through: `host:port` or `[v6]:port` (none: wait to be found).
    #[arg(long, num_args = 1.., value_delimiter = ',', value_name = "ADDR")]
    bootstrap: Vec<String>,
    /// Queries one source (an IP; an ip:port on loopback and private networks) may send in
    /// 10 seconds before it is ignored for a minute. 0 turns off every inbound limit, this one
    /// and `--reply-budget` (for benchmarks).
    #[arg(long, default_value_t = krpc_tokio::RateLimit::default().queries, value_name = "N")]
    rate_limit: u32,
    /// Bytes per second the node may send in answers to queries; 0 = unlimited.
    #[arg(long, default_value_t = krpc_tokio::RateLimit::default().reply_bytes_per_sec, value_name = "BYTES")]
    reply_budget: u32,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long = "for", value_name = "SECONDS", value_parser = parse_seconds)]
    run_for: Option<f64>,
    /// Seconds between two statistics lines.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS", value_parser = parse_seconds)]
    interval: f64,
}

/// A node id or info hash: 40 hex digits.
fn parse_id(text: &str) -> Result<NodeId, String> {
    let bytes = decode::parse_hex(text)?;
    NodeId::from_bytes(&bytes)
        .ok()
        .filter(|id| id.len() == 20)
        .ok_or_else(|| format!("expected 40 hex digits (a 20-byte id), got {} bytes", bytes.len()))
}

/// A positive number of seconds.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => Ok(seconds),
        _ => Err("expected a positive number of seconds".into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit with 2, `--help` and `--version` with 0
    let out = Out::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return out.fail(&Failure::new(format!("cannot start the runtime: {error}"))),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Ping { addr, bind } => net::ping(&out, &addr, bind).await,
            Command::Serve(args) => net::serve(&out, args).await,
            Command::FindNode { target, client } => net::find_node(&out, target, client).await,
            Command::GetPeers { info_hash, client } => net::get_peers(&out, info_hash, client).await,
            Command::Announce { info_hash, port, seed, client } => {
                net::announce(&out, info_hash, port, seed, client).await
            }
            Command::Put(args) => items::put(&out, args).await,
            Command::Get(args) => items::get(&out, args).await,
            Command::Decode { input } => decode::run(&out, input),
            Command::Swarm(args) => swarm::run(&out, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => out.fail(&failure),
    }
}

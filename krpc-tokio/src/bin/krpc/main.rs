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
//! cargo run -p krpc-tokio --features cli --bin krpc -- scrape INFOHASH --bootstrap 127.0.0.1:6881
//! cargo run -p krpc-tokio --features cli --bin krpc -- crawl --bootstrap 127.0.0.1:6881 --duration 10
//! cargo run -p krpc-tokio --features cli --bin krpc -- decode 64313a...65
//! cargo run --release -p krpc-tokio --features cli --bin krpc -- swarm --nodes 200 --lookups 50
//! ```
//!
//! Every command takes `--json`: stdout then carries one JSON object per line, ending with
//! `{"event":"done",...}` (or `{"event":"error",...}`). Exit codes: 0 success, 1 operational
//! failure, 2 usage error. See `docs/cli.md`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

mod decode;
mod discover;
mod items;
mod net;
mod out;
mod swarm;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use krpc_tokio::NodeId;

use crate::out::{Failure, Out};

/// The end of `krpc --help`: how to reach the public DHT, and the exit codes.
const AFTER_HELP: &str = "\
Examples:
  krpc swarm --nodes 200                      a whole DHT on loopback (3 to 10000 nodes)
  krpc serve --bind 127.0.0.1:6881            a node on loopback; Ctrl-C or SIGTERM stops it
  krpc ping 127.0.0.1:6881
  krpc get-peers INFOHASH --bootstrap dht.libtorrent.org:25401,router.bittorrent.com:6881
                                              the public DHT, through its routers
  krpc serve --bind 0.0.0.0:6881 --bootstrap dht.libtorrent.org:25401,router.utorrent.com:6881
                                              a node on the public DHT
  krpc crawl --duration 60 > infohashes.txt   BEP 51: the public DHT's info-hashes for a minute
  krpc scrape INFOHASH                        BEP 33: estimated seeds and peers

Public bootstrap routers: dht.libtorrent.org:25401, router.bittorrent.com:6881,
router.utorrent.com:6881, dht.transmissionbt.com:6881. Contacted only when named, except by
crawl and scrape, which start from them when no --bootstrap is given.
Addresses are host:port, a.b.c.d:port or [v6]:port.

Exit codes: 0 success; 1 failure at run time (no answer, nothing found, a socket or resolver
error); 2 usage error (a bad option, address, id or port).
See docs/cli.md.";

/// A BitTorrent DHT (KRPC) node and tool.
#[derive(Debug, Parser)]
#[command(name = "krpc", version, max_term_width = 100, after_help = AFTER_HELP)]
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
        #[arg(value_parser = parse_remote)]
        addr: String,
        /// Local address to bind (default: port 0 on every interface of the node's family).
        #[arg(long, value_parser = parse_bind)]
        bind: Option<SocketAddr>,
    },
    /// Asks one node for a BEP 51 sample of the info-hashes it stores: prints `interval`,
    /// `num` and the samples as 40-hex lines.
    Sample {
        /// The node: `host:port` or `[v6]:port`.
        #[arg(value_parser = parse_remote)]
        addr: String,
        /// Local address to bind (default: port 0 on every interface of the node's family).
        #[arg(long, value_parser = parse_bind)]
        bind: Option<SocketAddr>,
    },
    /// Crawls the DHT for the info-hashes its nodes store (BEP 51 `sample_infohashes`),
    /// printing each once as a 40-hex line; progress every second on stderr.
    Crawl(discover::CrawlArgs),
    /// Estimates the seeds and peers of INFOHASH (BEP 33 scrape): prints `seeds N` and
    /// `peers N`.
    Scrape {
        /// The info hash, 40 hex digits.
        #[arg(value_parser = parse_id)]
        info_hash: NodeId,
        #[command(flatten)]
        start: discover::StartArgs,
    },
    /// Runs a DHT node until Ctrl-C or SIGTERM (or `--for`), printing statistics every few
    /// seconds.
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
        /// The port peers should connect to, 1-65535; without it, the nodes store the UDP
        /// source port of this command (BEP 5 `implied_port`), useful only with a fixed
        /// `--bind`.
        // Port 0 is refused here: a node answers it with a 203 error (nobody can connect to
        // port 0), which the lookup would only report as "all queries failed".
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
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
    /// A name that does not resolve is skipped if another one does. The public DHT:
    /// `dht.libtorrent.org:25401`, `router.bittorrent.com:6881` (see `krpc --help`).
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', value_name = "ADDR", value_parser = parse_remote)]
    bootstrap: Vec<String>,
    /// Local address to bind, `ip:port` (default: port 0 on every interface of the bootstrap
    /// nodes' family).
    #[arg(long, value_parser = parse_bind)]
    bind: Option<SocketAddr>,
}

/// Options of `serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on, e.g. `127.0.0.1:6881` or `[::1]:6881` (port 0: any free port).
    #[arg(long, value_parser = parse_local)]
    bind: String,
    /// Nodes to join through: `host:port` or `[v6]:port` (none: wait to be found). A name
    /// that does not resolve is skipped if another one does.
    #[arg(long, num_args = 1.., value_delimiter = ',', value_name = "ADDR", value_parser = parse_remote)]
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
    /// Keeps the node's id and routing table in FILE across restarts: read at start (a
    /// missing or unusable file: a warning and a fresh start), written every 5 minutes and
    /// at shutdown, through a temporary file renamed over it. With saved nodes and no
    /// `--bootstrap`, the node rejoins through them at once.
    #[arg(long, value_name = "FILE")]
    state: Option<std::path::PathBuf>,
    /// Run as a full node from the start, answering every query (the default on a loopback
    /// address). Without `--full` or `--read-only` the node is adaptive: read-only (BEP 43)
    /// until it sees that nodes it never contacted reach it and its public address is
    /// confirmed, then a full node.
    #[arg(long, conflicts_with = "read_only")]
    full: bool,
    /// Stay read-only (BEP 43): look up, answer nothing, send `ro=1`.
    #[arg(long)]
    read_only: bool,
}

/// A node id or info hash: 40 hex digits.
fn parse_id(text: &str) -> Result<NodeId, String> {
    let bytes = decode::parse_hex(text)?;
    NodeId::from_bytes(&bytes)
        .ok()
        .filter(|id| id.len() == 20)
        .ok_or_else(|| format!("expected 40 hex digits (a 20-byte id), got {} bytes", bytes.len()))
}

/// What every address option accepts, for the usage errors.
const EXPECTED_ADDR: &str = "expected host:port, a.b.c.d:port or [v6]:port";

/// `host:port`, `a.b.c.d:port` or `[v6]:port`, with a port in 0-65535 (0 only if
/// `port_zero`). The host is resolved later; this catches what can never work, as a usage
/// error (exit code 2), before any socket is opened.
fn parse_host_port(text: &str, port_zero: bool) -> Result<String, String> {
    let Some((host, port)) = text.rsplit_once(':').filter(|(host, _)| !host.is_empty()) else {
        return Err(format!("{EXPECTED_ADDR}, got {text:?} (no port)"));
    };
    if let Some(v6) = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{EXPECTED_ADDR}, got {text:?} (not an IPv6 address)"))?;
    } else if host.contains(':') {
        return Err(format!("{EXPECTED_ADDR}, got {text:?} (an IPv6 address goes in brackets)"));
    }
    match port.parse::<u16>() {
        Ok(0) if !port_zero => {
            Err(format!("{EXPECTED_ADDR} with a port in 1-65535, got {text:?} (port 0 cannot be reached)"))
        }
        Ok(_) => Ok(text.to_owned()),
        Err(_) => Err(format!("{EXPECTED_ADDR} with a port in 1-65535, got {text:?}")),
    }
}

/// An address to send to: port 1-65535.
fn parse_remote(text: &str) -> Result<String, String> {
    parse_host_port(text, false)
}

/// An address to listen on: port 0 (any free port) allowed.
fn parse_local(text: &str) -> Result<String, String> {
    parse_host_port(text, true)
}

/// A local socket address, `ip:port` or `[v6]:port`.
fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    parse_local(text)?
        .parse()
        .map_err(|_| format!("expected ip:port or [v6]:port (an address, not a name), got {text:?}"))
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
            Command::Sample { addr, bind } => net::sample(&out, &addr, bind).await,
            Command::Crawl(args) => discover::crawl(&out, args).await,
            Command::Scrape { info_hash, start } => discover::scrape(&out, info_hash, start).await,
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

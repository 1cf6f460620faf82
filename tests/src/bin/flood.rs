//! `flood`: floods a `krpc serve` node with hostile datagrams from 127.0.0.1 while legitimate
//! clients on 127.0.0.2, 127.0.0.3, ... keep pinging it and running lookups through it, and
//! reports what got through, the server's memory and CPU, and its own counters.
//!
//! ```text
//! cargo run --release -p krpc-tests --bin flood                      # 1 000 000 datagrams
//! cargo run --release -p krpc-tests --bin flood -- --count 200000 --rate 0 --json
//! ```
//!
//! The server is krpc-tokio's `krpc` binary with its default configuration, built by cargo
//! next to this binary unless `--krpc PATH` names one. See `docs/flood.md` and the
//! `krpc_tests::flood` module. Exit code 0 when the targets are met (legitimate success at
//! least `--min-success`, RSS growth at most `--max-rss-growth-mib`, server alive and
//! answering), 1 when not, 2 on a usage or setup error. Nothing leaves 127.0.0.0/8.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a tool that prints

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use krpc_tests::flood::legit::Behaviour;
use krpc_tests::flood::{self, FloodConfig, Report, server};

/// Floods a local `krpc serve` with garbage while legitimate clients use it.
#[derive(Debug, Parser)]
#[command(name = "flood", max_term_width = 100)]
struct Args {
    /// Flood datagrams to send.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Flood datagrams per second; 0 = as fast as the socket takes them.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Flood datagrams per system call (sendmmsg).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Flood source sockets, all on 127.0.0.1, taking turns: 1 is a single source; more are
    /// one host rotating its source port (the server's limiter counts loopback sources per
    /// port by default, so it sees as many sources).
    #[arg(long, default_value_t = 1)]
    ports: usize,
    /// Back-pressure: before each batch, wait while the server's receive queue holds more
    /// than this many KiB (Linux; reads /proc/net/udp, whose cost grows with --ports). 0 = none:
    /// a server short of CPU (on a busy machine) then has datagrams dropped by its kernel,
    /// legitimate ones among them, which measures the machine rather than the server.
    #[arg(long, default_value_t = 64, value_name = "KIB")]
    max_queue: u64,
    /// Legitimate clients, on 127.0.0.2, 127.0.0.3, ...
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Other DHT nodes (on 127.0.1.x) that join through the server and answer lookups.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Operations per second of each legitimate client (each sends the server one query per
    /// operation; the server's default limit per source is 100 queries in 10 s).
    #[arg(long, default_value_t = 5.0)]
    client_rate: f64,
    /// One client operation in this many is a lookup (find_node and get_peers in turn), the
    /// others are pings.
    #[arg(long, default_value_t = 5)]
    lookup_every: u32,
    /// Seed of the flood's content and of the lookups' targets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds to wait before the first reading and after the flood.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// The `krpc` binary (default: krpc-tokio's binary, built with cargo in this binary's
    /// target directory and profile).
    #[arg(long)]
    krpc: Option<PathBuf>,
    /// Target: the lowest acceptable legitimate success rate, in percent.
    #[arg(long, default_value_t = 99.0)]
    min_success: f64,
    /// Target: the largest acceptable growth of the server's RSS, in MiB.
    #[arg(long, default_value_t = 10.0)]
    max_rss_growth_mib: f64,
    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The targets a report misses, as sentences (empty: all met).
fn missed(report: &Report, args: &Args) -> Vec<String> {
    let mut missed = Vec::new();
    let success = 100.0 * report.legit.success_rate();
    if success < args.min_success {
        missed.push(format!("legitimate success {success:.2} % < {} %", args.min_success));
    }
    if let Some(memory) = report.memory {
        let growth = memory.growth() as f64 / (1024.0 * 1024.0);
        if growth > args.max_rss_growth_mib {
            missed.push(format!("RSS grew {growth:.2} MiB > {} MiB", args.max_rss_growth_mib));
        }
    }
    if !report.alive {
        missed.push("the server is no longer running".into());
    }
    if report.check.0 < report.check.1 {
        missed.push(format!("after the flood it answered {} of {} pings", report.check.0, report.check.1));
    }
    missed
}

fn main() -> ExitCode {
    let args = Args::parse();
    let valid = args.settle.is_finite() && args.settle >= 0.0 && args.client_rate.is_finite() && args.client_rate > 0.0;
    if !valid {
        eprintln!("flood: --settle must be ≥ 0 and --client-rate > 0");
        return ExitCode::from(2);
    }
    let krpc = match args.krpc.clone() {
        Some(path) => path,
        None => {
            let built = server::own_target_dir()
                .ok_or_else(|| "cannot find the target directory".to_string())
                .and_then(|(dir, release)| server::build_krpc(&dir, release));
            match built {
                Ok(path) => path,
                Err(error) => {
                    eprintln!("flood: {error}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let config = FloodConfig {
        count: args.count,
        rate: args.rate,
        batch: args.batch,
        ports: args.ports,
        max_queue: (args.max_queue > 0).then_some(args.max_queue * 1024),
        clients: args.clients,
        nodes: args.nodes,
        behaviour: Behaviour { rate: args.client_rate, lookup_every: args.lookup_every },
        seed: args.seed,
        settle: Duration::from_secs_f64(args.settle),
        ..FloodConfig::new(krpc)
    };
    let report = match flood::run(&config) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("flood: {error}");
            return ExitCode::from(2);
        }
    };
    let missed = missed(&report, &args);
    if args.json {
        let mut json = report.to_json();
        json["targets"] = serde_json::json!({
            "min_success_percent": args.min_success,
            "max_rss_growth_mib": args.max_rss_growth_mib,
            "met": missed.is_empty(),
            "missed": missed,
        });
        println!("{json}");
    } else {
        print!("{}", report.table());
        if missed.is_empty() {
            println!(
                "\ntargets met: legitimate success ≥ {} %, RSS growth ≤ {} MiB, alive and answering",
                args.min_success, args.max_rss_growth_mib
            );
        } else {
            println!("\nTARGETS MISSED: {}", missed.join("; "));
        }
    }
    if missed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

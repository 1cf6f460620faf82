//! `plot`: runs a fixed set of simulations and draws the plots of `docs/simulation.md`.
//!
//! ```text
//! cargo run --release -p krpc-tests --bin plot -- [NODES] [OUT_DIR] [all|profile]
//! ```
//! Defaults: 100,000 nodes (pre-seeded tables), `docs/`, all. Writes `sim-queries-cdf.svg`
//! (queries per lookup, k = 8 and k = 20, tuned lookup against the k-rpc lookup shape),
//! `sim-time-cdf-dead30.svg` (virtual time per lookup with 30% dead contacts, one tuning step
//! per curve) and, also alone with `profile`, `sim-profile-latency-cdf.svg` (the mainline
//! profile: time to the first values and to completion, this engine against libtorrent's
//! lookup settings, with and without silent nodes).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use krpc_core::Config;
use krpc_tests::sim::link::Link;
use krpc_tests::sim::profile::{PairDelays, Sessions};
use krpc_tests::sim::report::Summary;
use krpc_tests::sim::svg::{self, Series};
use krpc_tests::sim::{Scenario, Sim, krpc_parity_config, libtorrent_lookup_config};

const LOOKUPS: usize = 1000;

fn run(nodes: usize, engine: Config, dead: f64) -> Vec<krpc_tests::sim::LookupRecord> {
    let mut sim = Sim::new(Scenario { seed: 1, nodes, engine, dead, ..Scenario::default() });
    sim.build();
    sim.run_lookups(LOOKUPS, 20.0)
}

fn series(
    label: &str,
    records: &[krpc_tests::sim::LookupRecord],
    f: impl Fn(&krpc_tests::sim::LookupRecord) -> Option<f64>,
) -> Series {
    let s = Summary::of(records);
    eprintln!(
        "{label}: queries median {} p90 {}, time median {:.0} ms, recall {:.4}",
        s.queries_median, s.queries_p90, s.time_median_ms, s.recall_mean
    );
    Series { label: label.to_string(), values: records.iter().filter_map(f).collect() }
}

/// A run under `--profile mainline`: per-pair delays, Mainline sessions, the k nearest nodes
/// of each target holding a value.
fn run_profile(nodes: usize, engine: Config, dead: f64) -> Vec<krpc_tests::sim::LookupRecord> {
    let link = Link { pairs: Some(PairDelays::mainline(1)), ..Link::default() };
    let scenario = Scenario {
        seed: 1,
        nodes,
        engine,
        dead,
        link,
        holders: true,
        sessions: Some(Sessions::MAINLINE),
        ..Scenario::default()
    };
    let mut sim = Sim::new(scenario);
    sim.build();
    sim.run_lookups(LOOKUPS, 20.0)
}

fn profile_plot(nodes: usize, dir: &str) {
    let first = |r: &krpc_tests::sim::LookupRecord| r.values_after.map(|d| d.as_secs_f64() * 1e3);
    let done = |r: &krpc_tests::sim::LookupRecord| r.duration.map(|d| d.as_secs_f64() * 1e3);
    let ours = run_profile(nodes, Config { k: 8, ..Config::default() }, 0.0);
    let stock = run_profile(nodes, libtorrent_lookup_config(Config { k: 8, ..Config::default() }), 0.0);
    let ours_dead = run_profile(nodes, Config { k: 8, ..Config::default() }, 0.3);
    let stock_dead = run_profile(nodes, libtorrent_lookup_config(Config { k: 8, ..Config::default() }), 0.3);
    let curves = vec![
        series("krpc: first values", &ours, first),
        series("krpc: completed", &ours, done),
        series("libtorrent's lookup: first values", &stock, first),
        series("libtorrent's lookup: completed", &stock, done),
        series("krpc, 30% silent: first values", &ours_dead, first),
        series("krpc, 30% silent: completed", &ours_dead, done),
        series("libtorrent's lookup, 30% silent: first values", &stock_dead, first),
        series("libtorrent's lookup, 30% silent: completed", &stock_dead, done),
    ];
    let title = format!("get_peers under the mainline profile, {nodes} nodes ({LOOKUPS} lookups each)");
    let path = format!("{dir}/sim-profile-latency-cdf.svg");
    std::fs::write(&path, svg::cdf(&title, "milliseconds", &curves)).unwrap_or_else(|e| panic!("{path}: {e}"));
    println!("wrote {path}");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = args.next().unwrap_or_else(|| "docs".to_string());
    if args.next().as_deref() == Some("profile") {
        profile_plot(nodes, &dir);
        return;
    }
    let queries = |r: &krpc_tests::sim::LookupRecord| Some(f64::from(r.queries));
    let millis = |r: &krpc_tests::sim::LookupRecord| r.duration.map(|d| d.as_secs_f64() * 1e3);

    let tuned8 = Config { k: 8, ..Config::default() };
    let parity8 = Config { k: 8, ..krpc_parity_config() };
    let tuned20 = Config { k: 20, ..Config::default() };
    let parity20 = krpc_parity_config();
    let curves = vec![
        series("k=8, tuned (α=4, retry, adaptive soft timeout)", &run(nodes, tuned8.clone(), 0.0), queries),
        series("k=8, k-rpc lookup shape (α=16)", &run(nodes, parity8.clone(), 0.0), queries),
        series("k=20, tuned", &run(nodes, tuned20, 0.0), queries),
        series("k=20, k-rpc lookup shape (α=16)", &run(nodes, parity20, 0.0), queries),
    ];
    let title = format!("Queries per lookup, {nodes} nodes, pre-seeded tables, no loss ({LOOKUPS} lookups each)");
    let path = format!("{dir}/sim-queries-cdf.svg");
    std::fs::write(&path, svg::cdf(&title, "queries per lookup", &curves)).unwrap_or_else(|e| panic!("{path}: {e}"));
    println!("wrote {path}");

    let steps = [
        ("k-rpc shape: α=16, no retry, no soft timeout", parity8.clone()),
        ("α=4", Config { lookup_parallelism: Some(4), ..parity8.clone() }),
        (
            "α=4, 1 s soft timeout",
            Config {
                lookup_parallelism: Some(4),
                lookup_soft_timeout: Some(Duration::from_secs(1)),
                lookup_adaptive_soft_timeout: false,
                ..parity8.clone()
            },
        ),
        ("α=4, soft timeout, 1 retry", Config { lookup_adaptive_soft_timeout: false, ..tuned8.clone() }),
        ("α=4, adaptive soft timeout, 1 retry (default)", tuned8),
    ];
    let curves: Vec<Series> =
        steps.into_iter().map(|(label, engine)| series(label, &run(nodes, engine, 0.3), millis)).collect();
    let title = format!("Virtual time per lookup, {nodes} nodes, 30% dead contacts, k=8 ({LOOKUPS} lookups each)");
    let path = format!("{dir}/sim-time-cdf-dead30.svg");
    std::fs::write(&path, svg::cdf(&title, "milliseconds", &curves)).unwrap_or_else(|e| panic!("{path}: {e}"));
    println!("wrote {path}");

    profile_plot(nodes, &dir);
}

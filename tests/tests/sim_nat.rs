//! Adaptive read-only mode in a joined network where 30% of the nodes sit behind an
//! address-restricted NAT (issue 14): the reachable nodes become full nodes, the NATed ones stay
//! read-only, NATed nodes do not stay good in others' tables, and lookups still succeed.
//!
//! Bounds are below what was measured, with margin; the measured values are in the comments
//! (seeds 1..=3). Measured: 214/214, 210/210 and 204/204 reachable nodes full after the hour
//! (all of them within 2, 3 and 5 minutes); 82, 86, 92 NATed nodes, none full, all firewalled;
//! lookup success 100% (recall 0.999-1.000). `KRPC_SIM_SEED=<seed> cargo test -p krpc-tests --test sim_nat` replays one.

#![allow(clippy::print_stderr)] // the measured numbers, for docs/simulation.md

use std::time::Duration;

use krpc_core::routing::NodeState;
use krpc_core::{Config, Reachability};
use krpc_tests::sim::link::{Latency, Link};
use krpc_tests::sim::report::Summary;
use krpc_tests::sim::{Build, Scenario, SeedGuard, Sim, seeds_or_env};

const NODES: usize = 300;
const SEEDS: usize = 4;

/// What one run measured.
#[derive(Debug)]
struct Outcome {
    reachable: usize,
    reachable_full: usize,
    natted: usize,
    natted_full: usize,
    natted_firewalled: usize,
    /// Table entries (over all tables) naming a NATed node as good, sampled at the end of
    /// every minute of the hour.
    natted_good: Vec<usize>,
    /// Running nodes in read-only mode at the end of every minute.
    read_only: Vec<usize>,
    /// Table entries naming a NATed node in any state, at the end of the hour.
    natted_entries: usize,
    /// The same for reachable non-seed nodes at the end, for scale.
    reachable_good: usize,
    summary: Summary,
}

fn run(seed: u64) -> Outcome {
    let engine = Config { bucket_refresh: Duration::from_secs(900), ..Config::adaptive() };
    let mut sim = Sim::new(Scenario {
        seed,
        nodes: NODES,
        engine,
        build: Build::Join { seeds: SEEDS, per_second: 20.0, settle: Duration::from_secs(5) },
        link: Link { latency: Latency::INTERNET, loss: 0.01, duplicate: 0.0, pairs: None },
        nat: 0.3,
        invariant_every: 5_000,
        ..Scenario::default()
    });
    sim.build();
    // An hour of a network at work: a lookup every 2 s somewhere (the traffic that hands nodes
    // out to strangers), sampling the tables every minute of the second half hour.
    let (mut natted_good, mut read_only) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        sim.run_lookups(30, 0.5);
        natted_good.push(entries(&sim, true, true));
        read_only.push(sim.read_only_nodes());
    }
    let reachable_good = entries(&sim, false, true);
    let natted_entries = entries(&sim, true, false);
    let records = sim.run_lookups(200, 5.0);
    let (mut reachable, mut reachable_full, mut natted, mut natted_full, mut natted_firewalled) = (0, 0, 0, 0, 0);
    for i in SEEDS as u32..NODES as u32 {
        let Some(ep) = sim.endpoint(i) else { continue };
        if sim.nats().is_behind(i) {
            natted += 1;
            natted_full += usize::from(!ep.is_read_only());
            natted_firewalled += usize::from(ep.reachability() == Reachability::Firewalled);
        } else {
            reachable += 1;
            reachable_full += usize::from(!ep.is_read_only());
        }
    }
    if let Err(e) = sim.check_all_tables() {
        panic!("{e}");
    }
    Outcome {
        reachable,
        reachable_full,
        natted,
        natted_full,
        natted_firewalled,
        natted_good,
        read_only,
        natted_entries,
        reachable_good,
        summary: Summary::of(&records),
    }
}

/// Entries over all routing tables that name a NATed node (`natted`) or a reachable non-seed
/// node; only those in good standing with `good`.
fn entries(sim: &Sim, natted: bool, good: bool) -> usize {
    let now = sim.now();
    let mut count = 0;
    for i in 0..NODES as u32 {
        let Some(ep) = sim.endpoint(i) else { continue };
        let table = ep.routing_table();
        let policy = *table.policy();
        for c in table.iter() {
            let Some(j) = krpc_tests::sim::index_of(&c.addr()) else { continue };
            if (j as usize) < SEEDS || sim.nats().is_behind(j) != natted {
                continue;
            }
            count += usize::from(!good || c.state(now, &policy) == NodeState::Good);
        }
    }
    count
}

#[test]
fn with_30_percent_nat_the_reachable_become_full_nodes_and_the_natted_stay_read_only() {
    for seed in seeds_or_env(&[1, 2, 3]) {
        let _guard = SeedGuard(seed);
        let o = run(seed);
        eprintln!("seed {seed}: {o:?}");
        assert!(o.natted > 60 && o.reachable > 150, "{o:?}");
        // Still in tables once the hour is over, as questionable entries that lookups may ask
        // and ping/swap replaces (703, 721, 792), against 11,236-11,597 good entries naming
        // reachable non-seed nodes.
        assert!(o.natted_entries < o.reachable_good / 10, "{o:?}");
        assert_eq!(o.natted_full, 0, "no NATed node became a full node: {o:?}");
        assert!(o.reachable_full * 100 >= o.reachable * 90, "most reachable nodes are full nodes: {o:?}");
        // How soon: every reachable node was a full node after 2, 3 and 5 minutes.
        assert_eq!(o.read_only[14], o.natted, "reachable nodes still read-only after 15 minutes: {o:?}");
        assert!(o.natted_firewalled * 100 >= o.natted * 90, "the NATed ones know they are firewalled: {o:?}");
        // Each probe puts a NATed node in the tables of the nodes near its id that have room
        // (about 8), good there for 15 minutes: 9.1-9.2 entries per NATed node at most while
        // it probes (minutes 0-20). Once firewalled (minute 21) it probes hourly, and from
        // 15 minutes after its last probe no table holds it as good: 0 from minute 31 on.
        let max = o.natted_good.iter().max().copied().unwrap_or(0);
        assert!(max <= 12 * o.natted, "{max} good entries for {} NATed nodes: {o:?}", o.natted);
        assert!(o.natted_good[35..].iter().all(|&g| g == 0), "NATed nodes stay good for long: {o:?}");
        assert!(o.summary.success_rate >= 0.95, "lookups still succeed: {o:?}");
    }
}

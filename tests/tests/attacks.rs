//! Sybil and eclipse attacks in the simulator (issue 15): lookups under attack reach an honest
//! node holding the value far more often with the engine's defences on than off, and the
//! routing tables stay sound (every contact a real honest node or a real attacker at its
//! address). See `tests/src/sim/attack.rs` for the attackers and `docs/simulation.md` for the
//! 100,000-node figures.
//!
//! Bounds are below what was measured, with margin; each comment gives the measured values.
//! A failure prints its seed; `KRPC_SIM_SEED=<seed> cargo test -p krpc-tests --test attacks`
//! replays it.

use krpc_core::Config;
use krpc_tests::sim::attack::{self, Attack, AttackKind, ReflectedQuery};
use krpc_tests::sim::report::Summary;
use krpc_tests::sim::{Scenario, SeedGuard, Sim, bep5_config, seeds_or_env};

const NODES: usize = 2_000;
const LOOKUPS: usize = 200;
/// Sybil: least success with the defences on (measured 1.000), and least lead over the same
/// run with them off (measured 0.345 at least).
const SYBIL_ON: f64 = 0.99;
const SYBIL_GAP: f64 = 0.25;
/// Eclipse: least success with the defences on (measured 1.000), and least recall of the
/// honest k closest with them on (measured 0.831 and 0.834; 0.000 and 0.001 off).
const ECLIPSE_ON: f64 = 0.99;
const ECLIPSE_RECALL: f64 = 0.7;

/// Pre-seeds `NODES` honest nodes plus the attackers, runs `LOOKUPS` lookups, checks every
/// table.
fn run(seed: u64, kind: AttackKind, defences: bool) -> Summary {
    let scenario = Scenario {
        seed,
        nodes: NODES,
        engine: bep5_config(),
        attack: Some(Attack { kind, defences }),
        invariant_every: 2_000,
        ..Scenario::default()
    };
    let mut sim = Sim::new(scenario);
    sim.build();
    let records = sim.run_lookups(LOOKUPS, 20.0);
    assert_eq!(records.len(), LOOKUPS, "every lookup started");
    assert!(records.iter().all(|r| r.values.is_some()), "attack runs judge lookups by the values they got");
    if let Err(e) = sim.check_all_tables() {
        panic!("{e}");
    }
    let answered = sim.attackers().map_or(0, |a| a.answered);
    assert!(answered > 0, "the attackers took part (answered {answered} queries)");
    // The tables' measures skip the attackers' entries (they are no simulated node) rather
    // than index the node list with them, as a first version did.
    assert_eq!(sim.in_degree().nodes, NODES);
    assert_eq!(sim.replay_lookups(50).lookups, 50);
    Summary::of(&records)
}

#[test]
fn a_sybil_attack_on_one_subnet_is_held_off_by_the_defences() {
    // Half of all ids (2,000 attackers) on one /24. Measured (seeds 1..=4), success with the
    // defences on: 1.000 every time; off: 0.605, 0.620, 0.655, 0.590. With routing-table
    // diversity alone (lookup diversity off) it was 0.970–0.995: a lookup that meets one
    // attacker is then still open to that attacker's answers, all from its one /24.
    for seed in seeds_or_env(&[1, 2]) {
        let _guard = SeedGuard(seed);
        let kind = AttackKind::Sybil { fraction: 0.5, subnets: 1 };
        let on = run(seed, kind, true);
        let off = run(seed, kind, false);
        assert!(on.success_rate >= SYBIL_ON, "defences on: {on:?}");
        assert!(on.success_rate >= off.success_rate + SYBIL_GAP, "on {} vs off {}", on.success_rate, off.success_rate);
    }
}

/// Runs `run` with the engine's lookups following `paths` disjoint paths.
fn run_paths(seed: u64, kind: AttackKind, paths: usize) -> Summary {
    let scenario = Scenario {
        seed,
        nodes: NODES,
        engine: Config { lookup_disjoint_paths: paths, ..bep5_config() },
        attack: Some(Attack { kind, defences: true }),
        invariant_every: 2_000,
        ..Scenario::default()
    };
    let mut sim = Sim::new(scenario);
    sim.build();
    let records = sim.run_lookups(LOOKUPS, 20.0);
    assert_eq!(records.len(), LOOKUPS, "every lookup started");
    if let Err(e) = sim.check_all_tables() {
        panic!("{e}");
    }
    Summary::of(&records)
}

#[test]
fn disjoint_paths_hold_off_sybils_spread_over_many_subnets() {
    // Half of all ids on 256 /24s: as many subnets as a lookup has candidates, so the
    // diversity rules cannot tell them from honest nodes. Measured (seeds 1..=4) with the
    // defences on: one path 0.620, 0.670, 0.635, 0.635; two disjoint paths 0.975, 0.990,
    // 0.985, 0.990, at 29 queries against 13.
    for seed in seeds_or_env(&[1]) {
        let _guard = SeedGuard(seed);
        let kind = AttackKind::Sybil { fraction: 0.5, subnets: 256 };
        let one = run_paths(seed, kind, 1);
        let two = run_paths(seed, kind, 2);
        assert!(two.success_rate >= 0.95, "two paths: {two:?}");
        assert!(
            two.success_rate >= one.success_rate + 0.2,
            "two paths {} vs one {}",
            two.success_rate,
            one.success_rate
        );
    }
}

#[test]
fn an_eclipse_from_one_subnet_is_held_off_by_the_defences() {
    // 8 attackers from one /24 nearest each target, in the tables of the 128 honest nodes
    // nearest it. What the eclipse takes is the lookup's result, the k nodes an announce or a
    // put would then write to: with the defences off it is all attackers (recall of the
    // honest k closest 0.000 and 0.001, seeds 1 and 2), with them on one attacker at most
    // (recall 0.831 and 0.834). Both still find the value (on: 1.000; off: 1.000 and 0.975): the honest nodes that
    // hand out the attackers hand out the holders in the same answers, and since the final
    // round (`lookup_final_round`) asks them all at once the undefended lookup reaches them
    // too (before it, off measured 0.985, 0.980, 0.990, 0.985 for seeds 1..=4).
    for seed in seeds_or_env(&[1, 2]) {
        let _guard = SeedGuard(seed);
        let kind = AttackKind::Eclipse { per_target: 8 };
        let on = run(seed, kind, true);
        let off = run(seed, kind, false);
        assert!(on.success_rate >= ECLIPSE_ON, "defences on: {on:?}");
        assert!(off.recall_mean <= 0.1, "defences off: the result is the attackers' ({off:?})");
        assert!(on.recall_mean >= ECLIPSE_RECALL, "defences on: the honest k closest are found ({on:?})");
    }
}

#[test]
fn without_an_attack_the_layout_puts_honest_nodes_on_distinct_subnets() {
    // The defences judge /24s: honest nodes must not share them the way sequential addresses
    // would (256 per /24), or the defences would refuse honest nodes too.
    let mut subnets: Vec<[u8; 3]> = (0..NODES as u32)
        .map(|i| match krpc_tests::sim::addr_of(i) {
            std::net::SocketAddr::V4(v4) => {
                let o = v4.ip().octets();
                [o[0], o[1], o[2]]
            }
            std::net::SocketAddr::V6(_) => unreachable!("the simulator is IPv4"),
        })
        .collect();
    subnets.sort_unstable();
    subnets.dedup();
    assert!(subnets.len() > NODES * 9 / 10, "{} /24s for {NODES} nodes", subnets.len());
    for i in (0..NODES as u32).chain([attack::ATTACKER_BASE + 0x0000_0101]) {
        assert_eq!(krpc_tests::sim::index_of(&krpc_tests::sim::addr_of(i)), Some(i));
    }
}

#[test]
fn reflection_by_spoofed_queries_is_bounded() {
    // 20 reflectors (default configuration, k = 20), 10 spoofed queries per second each for
    // 10 s, within the per-source limit. Measured: ping 1.22, find_node 6.40, get_peers 6.34
    // bytes to the victim per attacker byte (answers and the reflectors' verification pings).
    for (method, bound) in
        [(ReflectedQuery::Ping, 2.0), (ReflectedQuery::FindNode, 8.0), (ReflectedQuery::GetPeers, 8.0)]
    {
        let r = attack::reflection(&Config::default(), method, 20, 10, 10, 1);
        assert_eq!(r.queries, 2_000);
        assert!(r.victim_datagrams > 0, "{method:?}: the reflectors answered");
        assert!(r.factor() < bound, "{method:?}: factor {:.2}", r.factor());
    }
    // Over the per-source limit (100 queries per 10 s), a reflector stops answering the victim:
    // 100 queries per second for 20 s: the first 100 are answered, the 101st blocks the source
    // for a minute. Measured: 0.32 (a twentieth of 6.40), 0.11 over 60 s.
    let r = attack::reflection(&Config::default(), ReflectedQuery::FindNode, 5, 100, 20, 1);
    assert!(r.factor() < 0.5, "over the limit: factor {:.2}", r.factor());
    assert!(r.victim_datagrams <= 5 * 110, "over the limit: {} datagrams", r.victim_datagrams);
}

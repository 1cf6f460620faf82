//! The simulator checks its own inputs (issue 16): a census crawl of the simulated network
//! (`krpc_tests::sim::census`) recovers the session-length curve the simulator was given, and
//! another curve gives another answer. Also: a session that ends while churn is paused ends
//! when churn resumes, instead of never.

use std::time::Duration;

use krpc_core::Config;
use krpc_tests::sim::census::{Census, CensusPlan, run_census};
use krpc_tests::sim::profile::Sessions;
use krpc_tests::sim::{Scenario, SeedGuard, Sim, seeds_or_env};

/// Two thousand nodes: the cost of a census is two queries per node and round.
const NODES: usize = 2_000;

/// A census of `hours` with rounds of `round_s`. Mainline sessions are five times longer than
/// KAD's (a mean of 22 h against 4 h), so its census runs twice as long with rounds three
/// times as long: as many sessions end within it for fewer queries, and the fit, which knows
/// the round length, recovers the curve as well.
fn census(seed: u64, sessions: Sessions, hours: f64, round_s: f64) -> Census {
    // No bucket refresh: at 15 minutes it would be nine tenths of the CPU and none of the census.
    let engine = Config { k: 8, bucket_refresh: Duration::from_secs(86_400), ..Config::default() };
    let mut sim = Sim::new(Scenario { seed, nodes: NODES, engine, sessions: Some(sessions), ..Scenario::default() });
    sim.build();
    run_census(&mut sim, CensusPlan::new(hours, round_s, NODES))
}

/// Tolerances are four standard errors of this sample's fit (observed information: they shrink
/// as 1/√n with the sessions the census saw), and the standard errors themselves must be small,
/// so that a fit that learned nothing cannot pass by being vague.
#[test]
fn a_census_recovers_the_session_curve_it_was_given_and_not_another() {
    for seed in seeds_or_env(&[1]) {
        let _guard = SeedGuard(seed);
        let kad = census(seed, Sessions::KAD, 3.0, 300.0);
        let mainline = census(seed, Sessions::MAINLINE, 6.0, 900.0);
        for (c, name) in [(&kad, "kad"), (&mainline, "mainline")] {
            // The crawl sees (nearly) every node that stays through a round.
            assert!(c.worst_coverage() > 0.99, "{name}: {}", c.summary());
            assert_eq!(c.wrong_ids, 0);
            let fit = c.fit.unwrap_or_else(|| panic!("{name}: no fit: {}", c.summary()));
            assert!(c.complete() >= 100, "{name}: {}", c.summary());
            assert!(fit.shape_se < 0.1 && fit.scale_se_s < 0.5 * c.given.scale.as_secs_f64(), "{name}: {fit:?}");
            let k = c.given.shape;
            assert!((fit.shape - k).abs() < 4.0 * fit.shape_se, "{name}: k {fit:?} vs {k}: {}", c.summary());
            let l = c.given.scale.as_secs_f64();
            assert!((fit.scale_s - l).abs() < 4.0 * fit.scale_se_s, "{name}: λ {fit:?} vs {l}: {}", c.summary());
            // Model-free: the share of sessions seen for more than n rounds, against the given
            // curve seen through the same rounds, within four binomial standard errors of the
            // sessions kept, up to an hour (a third of the census: later, few are at risk).
            for t in [600.0, 1800.0, 3600.0] {
                let (observed, predicted) = c.observed_survival(t);
                let observed = observed.unwrap_or_else(|| panic!("{name}: nobody at risk at {t} s"));
                let se = (predicted * (1.0 - predicted) / c.sessions.len() as f64).sqrt();
                assert!((observed - predicted).abs() < 4.0 * se, "{name} at {t} s: {}", c.summary());
            }
            // Discovery: a node that joins is seen by the next round, which reaches it within
            // the time the round takes: about half a round on average.
            let (median, p90) =
                (c.discovery_quantile(0.5).unwrap_or(f64::MAX), c.discovery_quantile(0.9).unwrap_or(0.0));
            assert!(median > 0.0 && median < c.round_s && p90 < 1.5 * c.round_s, "{name}: {}", c.summary());
        }
        // Another curve, another answer: the shapes differ as the given ones do (0.615 against
        // 0.43), within four standard errors of the difference.
        let (a, b) = (kad.fit.map_or(0.0, |f| f.shape), mainline.fit.map_or(0.0, |f| f.shape));
        let se = kad.fit.zip(mainline.fit).map_or(1.0, |(x, y)| x.shape_se.hypot(y.shape_se));
        let want = Sessions::KAD.shape - Sessions::MAINLINE.shape;
        assert!(a > b && ((a - b) - want).abs() < 4.0 * se, "kad k {a}, mainline k {b}, ±{se}");
    }
}

/// 300 pre-seeded nodes (k = 8, no bucket refresh within the test) whose sessions follow
/// `sessions` once churn is on.
fn built_with_sessions(seed: u64, sessions: Sessions) -> Sim {
    let engine = Config { k: 8, bucket_refresh: Duration::from_secs(86_400), ..Config::default() };
    let mut sim = Sim::new(Scenario { seed, nodes: 300, engine, sessions: Some(sessions), ..Scenario::default() });
    sim.build();
    sim
}

/// A session that ends while churn is paused (between workloads) used to be dropped: the node
/// never left. It now leaves as soon as churn resumes, and not before.
#[test]
fn a_session_that_ends_while_churn_is_off_ends_when_it_resumes() {
    let _guard = SeedGuard(3);
    // Sessions of a minute on average: all of them end within the pause below.
    let short = Sessions { shape: 1.0, scale: Duration::from_secs(60) };
    let mut sim = built_with_sessions(3, short);
    let original = sim.population() as u32;
    let running = |sim: &Sim| (0..original).filter(|&i| sim.endpoint(i).is_some()).count();
    sim.set_churn(true);
    sim.run_for(Duration::from_secs(1));
    sim.set_churn(false);
    let at_pause = running(&sim);
    assert!(at_pause > 250, "most sessions outlast the first second: {at_pause}");
    // An hour paused: every session is over (the chance that one of 300 lasts an hour more is
    // 300·e^−60), but nobody leaves while churn is off.
    sim.run_for(Duration::from_secs(3600));
    assert_eq!(running(&sim), at_pause, "nobody leaves while churn is off");
    sim.set_churn(true);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(running(&sim), 0, "the sessions that ended during the pause end when churn resumes");
    sim.set_churn(false);
}

#[test]
fn churn_joins_stop_with_churn_and_one_chain_runs_after_toggling() {
    let _guard = SeedGuard(4);
    // Joins at live/mean-session per second: with 300 nodes and a 300 s mean, one a second.
    let sessions = Sessions { shape: 1.0, scale: Duration::from_secs(300) };
    let mut sim = built_with_sessions(4, sessions);
    sim.set_churn(true);
    sim.run_for(Duration::from_secs(5));
    sim.set_churn(false);
    let paused = sim.stats().joined;
    // The join already scheduled when churn went off must not fire during the pause.
    sim.run_for(Duration::from_secs(600));
    assert_eq!(sim.stats().joined, paused, "no churn join while churn is off");
    // Toggling churn many times at one instant must leave one join chain, not many.
    for _ in 0..20 {
        sim.set_churn(true);
        sim.set_churn(false);
    }
    sim.set_churn(true);
    // The sessions that ended during the pause end now; joins keep the population at what is
    // left: live / mean session per second.
    sim.run_for(Duration::from_millis(1));
    let live = (0..sim.population() as u32).filter(|&i| sim.endpoint(i).is_some()).count() as f64;
    let from = sim.stats().joined;
    sim.run_for(Duration::from_secs(60));
    sim.set_churn(false);
    let joins = (sim.stats().joined - from) as f64;
    let expected = live * 60.0 / 300.0;
    // One chain gives `expected` (Poisson); 21 chains would give 21 times as many.
    assert!(live > 10.0, "some nodes are left: {live}");
    assert!(
        joins >= expected / 3.0 && joins <= expected * 3.0,
        "one chain of joins after toggling: {joins} in 60 s, {expected} expected"
    );
}

//! The network simulator end to end: determinism, the CI-sized network with loss and churn,
//! the adverse cases (30% loss, 30% dead contacts), every special kind of node at once, and the
//! invariants after every run.
//!
//! Bounds are lower than what was measured, with margin: each comment gives the measured
//! values (seeds 1..=8 unless said otherwise). A failure prints its seed; `KRPC_SIM_SEED=<seed>
//! cargo test -p krpc-tests --test simulation` replays it.

use std::time::Duration;

use krpc_core::Config;
use krpc_tests::sim::link::{Latency, Link};
use krpc_tests::sim::report::Summary;
use krpc_tests::sim::spread::BucketSpread;
use krpc_tests::sim::{Build, OtherK, Partition, Scenario, SeedGuard, Sim, bep5_config, seeds_or_env};

/// Builds, runs `lookups` lookups, drains every operation and checks every table.
fn run(scenario: Scenario, lookups: usize) -> (Sim, Summary) {
    let mut sim = Sim::new(scenario);
    sim.build();
    let records = sim.run_lookups(lookups, 20.0);
    assert_eq!(records.len(), lookups, "every lookup started");
    if let Err(e) = sim.drain_operations(Duration::from_secs(120)) {
        panic!("{e}");
    }
    if let Err(e) = sim.check_all_tables() {
        panic!("{e}");
    }
    (sim, Summary::of(&records))
}

/// A join build at `nodes / 40` joins per second (at least 20).
fn joined(nodes: usize) -> Build {
    Build::Join { seeds: 4, per_second: (nodes as f64 / 40.0).max(20.0), settle: Duration::from_secs(5) }
}

/// A small but busy scenario: joins, loss, duplicates, churn.
fn busy(seed: u64) -> Scenario {
    Scenario {
        seed,
        nodes: 300,
        engine: bep5_config(),
        build: joined(300),
        link: Link { latency: Latency::INTERNET, loss: 0.05, duplicate: 0.02, pairs: None },
        churn_per_minute: 0.1,
        invariant_every: 500,
        ..Scenario::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
    let trace = |seed: u64| {
        let _guard = SeedGuard(seed);
        let (sim, summary) = run(busy(seed), 30);
        (sim.trace_hash(), sim.stats(), summary)
    };
    let (a, stats_a, summary_a) = trace(11);
    let (b, stats_b, summary_b) = trace(11);
    assert!(stats_a.sent > 5_000 && stats_a.lost > 0 && stats_a.duplicated > 0 && stats_a.left > 0);
    assert_eq!(a, b, "same seed, same datagrams at the same instants");
    assert_eq!(stats_a, stats_b);
    assert_eq!(summary_a, summary_b);
    let (c, _, _) = trace(12);
    assert_ne!(a, c, "another seed, another run");
}

#[test]
fn threads_change_nothing_but_the_speed() {
    // Joins, loss, duplicates, churn, silent and read-only nodes and a partition: the same
    // datagrams at the same instants, the same counters and the same lookup records on one,
    // two and three threads.
    let run_on = |threads: usize| {
        let _guard = SeedGuard(3);
        let scenario = Scenario {
            nodes: 600,
            build: Build::Join { seeds: 4, per_second: 100.0, settle: Duration::from_secs(5) },
            dead: 0.05,
            read_only: 0.05,
            partition: Some(Partition {
                fraction: 0.2,
                after: Duration::from_secs(2),
                duration: Duration::from_secs(3),
            }),
            threads,
            ..busy(3)
        };
        let mut sim = Sim::new(scenario);
        sim.build();
        let records = sim.run_lookups(40, 20.0);
        sim.run_for(Duration::from_secs(10));
        if let Err(e) = sim.check_all_tables() {
            panic!("{e}");
        }
        (sim.trace_hash(), sim.stats(), records, (sim.shared_windows(), sim.late_replays()))
    };
    let (one, stats, records, (shared, late)) = run_on(1);
    assert_eq!((shared, late), (0, 0), "one thread shares no window");
    assert!(stats.lost > 0 && stats.duplicated > 0 && stats.left > 0 && stats.partitioned > 0, "{stats:?}");
    for threads in [2, 3] {
        let (hash, s, r, (shared, late)) = run_on(threads);
        assert!(shared > 100, "{threads} threads shared only {shared} windows");
        // Sends replayed a window late, behind the joins' held ones: the order must still be
        // one thread's.
        assert!(late > 200, "{threads} threads replayed only {late} windows late");
        assert_eq!(hash, one, "{threads} threads: another trace");
        assert_eq!(s, stats, "{threads} threads");
        assert_eq!(r, records, "{threads} threads");
    }
}

#[test]
fn the_mainline_profile_is_deterministic_and_slower_than_its_fastest_pairs() {
    use krpc_tests::sim::profile::PairDelays;
    let with = |seed: u64, pairs: Option<PairDelays>| {
        let _guard = SeedGuard(seed);
        let scenario =
            Scenario { link: Link { pairs, ..Link::default() }, churn_per_minute: 0.0, holders: true, ..busy(seed) };
        let (sim, summary) = run(scenario, 30);
        (sim.trace_hash(), summary)
    };
    let (a, summary) = with(5, Some(PairDelays::mainline(5)));
    let (b, _) = with(5, Some(PairDelays::mainline(5)));
    assert_eq!(a, b, "same seed, same per-pair delays, same run");
    let (plain, plain_summary) = with(5, None);
    assert_ne!(a, plain, "the profile changes the delays");
    assert_eq!(summary.success_rate, 1.0, "{summary:?}");
    // Measured (seed 5, 300 joined nodes): median lookup 786 ms with the profile (round trips
    // of about 220 ms) against 670 ms with `Latency::INTERNET` (about 160 ms).
    assert!(summary.time_median_ms > plain_summary.time_median_ms, "{summary:?} vs {plain_summary:?}");
    // The holders answer with values, which come before the lookup completes.
    assert!(
        summary.values_time_median_ms > 0.0 && summary.values_time_median_ms < summary.time_median_ms,
        "{summary:?}"
    );
}

#[test]
fn under_the_profile_the_neighbourhood_rule_completes_lookups_sooner_for_about_one_query_more() {
    use krpc_tests::sim::profile::PairDelays;
    // Measured (2,000 pre-seeded nodes, 200 lookups): completion median 847 → 737 ms (seed 1)
    // and 865 → 754 ms (seed 2) with the rule, at 13.4 → 14.6 and 13.6 → 14.7 queries (mean),
    // recall 0.998 and 0.999 both ways.
    for seed in seeds_or_env(&[1]) {
        let _guard = SeedGuard(seed);
        let with = |neighbourhood: u32| {
            let scenario = Scenario {
                seed,
                nodes: 2_000,
                engine: Config { lookup_neighbourhood: neighbourhood, ..bep5_config() },
                link: Link { pairs: Some(PairDelays::mainline(seed)), ..Link::default() },
                holders: true,
                ..Scenario::default()
            };
            run(scenario, 200).1
        };
        let (off, on) = (with(0), with(2));
        assert!(on.time_median_ms < 0.95 * off.time_median_ms, "{on:?} vs {off:?}");
        assert!(on.queries_mean < off.queries_mean + 2.0, "{on:?} vs {off:?}");
        assert!(on.recall_mean >= off.recall_mean - 0.01 && on.success_rate == 1.0, "{on:?} vs {off:?}");
    }
}

#[test]
fn weibull_sessions_take_nodes_away_at_the_rate_their_curve_gives() {
    use krpc_tests::sim::profile::Sessions;
    // 10,000 pre-seeded nodes with KAD's session curve, lookups at 1 a second for about 5
    // virtual minutes. In equilibrium a node found online leaves within t with probability
    // (1/mean)·∫₀ᵗ S(u) du (S the survival function): about 1.9% in 300 s for KAD, some 180
    // nodes (σ ≈ 14), plus the few joiners whose fresh sessions end at once (a Weibull of
    // shape below 1 ends many sessions early). Measured (seed 3):
    // 215 left in 305 s against about 192 expected, 185 joined.
    let _guard = SeedGuard(3);
    let sessions = Sessions::KAD;
    let scenario =
        Scenario { seed: 3, nodes: 10_000, engine: bep5_config(), sessions: Some(sessions), ..Scenario::default() };
    let mut sim = Sim::new(scenario);
    sim.build();
    let start = sim.now();
    let records = sim.run_lookups(300, 1.0);
    let elapsed = (sim.now() - start).as_secs_f64();
    let summary = Summary::of(&records);
    assert!(summary.success_rate >= 0.99, "{summary:?}");
    let stats = sim.stats();
    // ∫₀ᵗ S(u) du by the trapezoid rule.
    let steps = 1_000;
    let dt = elapsed / f64::from(steps);
    let integral: f64 = (0..steps)
        .map(|i| {
            let s = |x: f64| 1.0 - sessions.cdf(Duration::from_secs_f64(x));
            (s(f64::from(i) * dt) + s(f64::from(i + 1) * dt)) * dt / 2.0
        })
        .sum();
    let expected = 10_000.0 * integral / sessions.mean().as_secs_f64();
    let left = stats.left as f64;
    assert!((left / expected - 1.0).abs() < 0.25, "{left} left in {elapsed:.0} s, expected about {expected:.0}");
    assert!((stats.joined as f64 - left).abs() < 0.35 * expected, "{} joined, {left} left", stats.joined);
}

#[test]
fn a_ci_sized_network_with_loss_and_churn_finds_the_closest_nodes() {
    // 2,000 nodes joined through 4 seeds, 10% loss each way, 5% of the nodes replaced per
    // minute, 200 lookups. Measured (seeds 1..=8): success 0.980–0.995, mean recall 0.937–0.960,
    // median 17–18 queries, median 4 rounds. The few failures start from, or pass through,
    // late joiners whose tables still lack a bucket.
    for seed in seeds_or_env(&[1, 2]) {
        let _guard = SeedGuard(seed);
        let scenario = Scenario {
            seed,
            nodes: 2_000,
            engine: bep5_config(),
            build: joined(2_000),
            link: Link { loss: 0.1, ..Link::default() },
            churn_per_minute: 0.05,
            ..Scenario::default()
        };
        let (sim, s) = run(scenario, 200);
        assert_eq!(s.finished, 200);
        assert!(s.success_rate >= 0.96, "success {:.3}", s.success_rate);
        assert!(s.recall_mean >= 0.88, "recall {:.3}", s.recall_mean);
        assert!(s.queries_median <= 25, "median queries {}", s.queries_median);
        assert!(s.rounds_median <= 6, "median rounds {}", s.rounds_median);
        assert!(sim.stats().left > 0 && sim.stats().joined > 0, "churn happened");
    }
}

#[test]
fn lookups_on_a_lossless_preseeded_network_find_exactly_the_true_k_closest_nodes() {
    // Measured (seeds 1..=8): recall 1.0 for every lookup, median 13–14 queries, 3 rounds.
    for seed in seeds_or_env(&[3]) {
        let _guard = SeedGuard(seed);
        let (_, s) = run(Scenario { seed, nodes: 3_000, engine: bep5_config(), ..Scenario::default() }, 100);
        assert_eq!(s.exact_rate, 1.0, "{s:?}");
        assert!(s.queries_median <= 20, "{s:?}");
    }
}

#[test]
fn with_thirty_percent_loss_nearly_every_lookup_still_succeeds() {
    // Measured (seeds 1..=8): success 1.0, recall 0.726–0.754 (a live node answers one try with
    // probability 0.49, two tries with 0.74).
    for seed in seeds_or_env(&[4]) {
        let _guard = SeedGuard(seed);
        let scenario = Scenario {
            seed,
            nodes: 2_000,
            engine: bep5_config(),
            link: Link { loss: 0.3, ..Link::default() },
            ..Scenario::default()
        };
        let (_, s) = run(scenario, 150);
        assert!(s.success_rate >= 0.98, "success {:.3}", s.success_rate);
        assert!(s.recall_mean >= 0.6, "recall {:.3}", s.recall_mean);
    }
}

#[test]
fn a_lookup_record_names_each_true_nearest_node_it_missed_and_how_far_it_got() {
    // With 30% loss about a quarter of the true nearest go missing: mostly nodes the lookup
    // asked and never heard back from. `simulate --lookup-log` prints these records.
    let scenario = Scenario {
        seed: 4,
        nodes: 2_000,
        engine: bep5_config(),
        link: Link { loss: 0.3, ..Link::default() },
        count_missed_holders: true,
        ..Scenario::default()
    };
    let mut sim = Sim::new(scenario);
    sim.build();
    let records = sim.run_lookups(100, 20.0);
    let (mut missed, mut unanswered) = (0, 0);
    for r in records.iter().filter(|r| r.outcome.is_some()) {
        assert_eq!(r.found8 + r.missed.len(), 8, "each of the true 8 is found or missed: {r:?}");
        assert_eq!(r.returned.len(), r.responders, "every responder is a simulated node");
        assert!(r.missed.iter().all(|m| !r.returned.contains(&m.node)));
        for m in &r.missed {
            assert_ne!(m.node, r.initiator);
            assert!(sim.answers(m.node), "a missed node is one of the live truth");
            assert!(!m.answered || m.asked, "only an asked node answers");
            assert!(!m.asked || m.known, "an asked node is known");
            let (Some(tables), Some(held)) = (m.tables, m.held_by_responders) else {
                panic!("counted when the scenario asks: {m:?}");
            };
            assert!(tables > 0, "pre-seeded tables hold every node");
            assert!(held <= tables);
            unanswered += usize::from(m.asked && !m.answered);
        }
        missed += r.missed.len();
    }
    assert!(missed >= 50, "30% loss misses some of the true nearest ({missed})");
    assert!(unanswered * 2 > missed, "loss shows as asked and unanswered ({unanswered} of {missed})");

    // Without loss nothing is missed.
    let mut sim = Sim::new(Scenario { seed: 4, nodes: 2_000, engine: bep5_config(), ..Scenario::default() });
    sim.build();
    let records = sim.run_lookups(50, 20.0);
    assert!(records.iter().all(|r| r.outcome.is_some() && r.missed.is_empty()));
}

#[test]
fn with_thirty_percent_dead_contacts_nearly_every_lookup_still_succeeds() {
    // Measured (seeds 1..=8): success 1.0, recall 0.924–0.948 (answers carry dead contacts,
    // which crowd the farthest live ones out of every 8-node answer).
    for seed in seeds_or_env(&[5]) {
        let _guard = SeedGuard(seed);
        let scenario = Scenario { seed, nodes: 2_000, engine: bep5_config(), dead: 0.3, ..Scenario::default() };
        let (_, s) = run(scenario, 150);
        assert!(s.success_rate >= 0.98, "success {:.3}", s.success_rate);
        assert!(s.recall_mean >= 0.85, "recall {:.3}", s.recall_mean);
    }
}

#[test]
fn read_only_nodes_other_k_nodes_and_a_partition_keep_every_invariant() {
    for seed in seeds_or_env(&[6]) {
        let _guard = SeedGuard(seed);
        let scenario = Scenario {
            seed,
            nodes: 600,
            engine: bep5_config(),
            build: joined(600),
            link: Link {
                latency: Latency::Uniform { min: Duration::from_millis(10), max: Duration::from_millis(400) },
                loss: 0.05,
                duplicate: 0.05,
                pairs: None,
            },
            dead: 0.1,
            read_only: 0.1,
            other_k: Some(OtherK { fraction: 0.2, k: 20 }),
            churn_per_minute: 0.05,
            partition: Some(Partition {
                fraction: 0.3,
                after: Duration::from_secs(2),
                duration: Duration::from_secs(5),
            }),
            invariant_every: 200,
            invariant_sample: 50,
            ..Scenario::default()
        };
        let (sim, s) = run(scenario, 120);
        assert_eq!(s.finished, 120, "every lookup ended");
        assert!(s.success_rate >= 0.8, "success {:.3}", s.success_rate);
        assert!(sim.stats().partitioned > 0, "the partition dropped datagrams");
        // Read-only nodes never entered a routing table.
        for i in 0..sim.population() as u32 {
            let Some(ep) = sim.endpoint(i) else { continue };
            if ep.config().read_only {
                for j in 0..sim.population() as u32 {
                    if let Some(other) = sim.endpoint(j) {
                        assert!(!other.routing_table().contains(ep.id()), "read-only node {i} is in {j}'s table");
                    }
                }
            }
        }
    }
}

#[test]
fn the_oracle_counts_the_querier_itself_as_found() {
    // With 20 nodes and k = 8, the querier is often one of the true 8 closest; a lossless
    // lookup then finds the other 7 and recall is still 1.
    // Lookups at 5 per second: at 20 per second a burst of arrivals can find all 20 nodes
    // running one (a node runs one measured lookup at a time), and the lookup is not started.
    let mut sim = Sim::new(Scenario { seed: 7, nodes: 20, engine: bep5_config(), ..Scenario::default() });
    sim.build();
    let records = sim.run_lookups(40, 5.0);
    assert_eq!(records.len(), 40, "every lookup started");
    let s = Summary::of(&records);
    assert_eq!(s.exact_rate, 1.0, "{s:?}");
}

#[test]
fn a_network_built_by_joining_fills_its_tables_without_waiting_for_bucket_refresh() {
    // BEP 5's lookup toward our own id alone left late joiners with sparse tables (a short
    // bucket refresh gave 20% more entries). `bootstrap` now refreshes the buckets that
    // lookup left thin, so joining alone gets the tables the refresh would. Without wide far
    // buckets: their room beyond k fills with whoever answers our queries, and a refresh
    // every 30 s asks far more nodes than a join (52.7 entries against 102.8 with them).
    let build = |refresh: u64| {
        let mut sim = Sim::new(Scenario {
            seed: 8,
            nodes: 500,
            engine: Config { bucket_refresh: Duration::from_secs(refresh), wide_buckets: 0, ..bep5_config() },
            build: Build::Join { seeds: 4, per_second: 50.0, settle: Duration::from_secs(180) },
            ..Scenario::default()
        });
        sim.build();
        let (engines, _, entries) = sim.footprint();
        entries as f64 / engines as f64
    };
    let (plain, refreshed) = (build(900), build(30));
    assert!(plain >= refreshed * 0.95, "entries per table: {plain:.1} without refresh, {refreshed:.1} with");
}

/// BEP 44 over the simulated network: items put from random nodes, then read from random
/// nodes, with 10% loss each way and churn throughout.
#[test]
#[allow(clippy::print_stderr)] // the measured numbers, for docs/protocol.md
fn bep44_items_put_then_read_from_random_nodes_with_loss_and_churn() {
    use krpc_core::dht::bep44::ed25519_dalek::SigningKey;
    use krpc_core::dht::bep44::immutable_target;
    use krpc_core::dht::{Item, MutableItem};
    use krpc_core::{Event, OpId};

    const IMMUTABLE: usize = 20;
    const MUTABLE: usize = 10;
    const GETS: usize = 300;
    for seed in seeds_or_env(&[1]) {
        let _guard = SeedGuard(seed);
        let scenario = Scenario {
            seed,
            nodes: 500,
            engine: Config { k: 8, ..Config::dht() },
            build: joined(500),
            link: Link { loss: 0.1, ..Link::default() },
            churn_per_minute: 0.05,
            ..Scenario::default()
        };
        let mut sim = Sim::new(scenario);
        sim.build();
        sim.keep_events();
        sim.set_churn(true);
        // The items: immutable values, and mutable ones under distinct salts of one key.
        let key = SigningKey::from_bytes(&[42; 32]);
        let mut items: Vec<Item> =
            (0..IMMUTABLE).map(|n| Item::Immutable { value: format!("8:item {n:03}").into_bytes() }).collect();
        for n in 0..MUTABLE {
            let salt = format!("salt {n}");
            let item = MutableItem::sign(&key, salt.as_bytes(), 3, format!("7:value {n}").as_bytes()).unwrap();
            items.push(Item::Mutable(item));
        }
        let mut puts: Vec<OpId> = Vec::new();
        let mut events = Vec::new();
        let sent_before_puts = sim.stats().sent;
        for item in &items {
            let i = sim.random_live_node().unwrap();
            let op = sim
                .command(i, |ep, now| match item {
                    Item::Immutable { value } => ep.put_immutable(now, value),
                    Item::Mutable(m) => ep.put_mutable(now, m.clone(), None),
                })
                .unwrap()
                .unwrap();
            puts.push(op);
            sim.run_for(Duration::from_millis(200));
        }
        let put_done = |events: &[(u32, Event)]| {
            events.iter().filter(|(_, e)| matches!(e, Event::PutItemDone { op, .. } if puts.contains(op))).count()
        };
        for _ in 0..600 {
            events.extend(sim.take_events());
            if put_done(&events) == puts.len() {
                break;
            }
            sim.run_for(Duration::from_secs(1));
        }
        let stored: Vec<usize> = events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::PutItemDone { op, result: Ok(o) } if puts.contains(op) => Some(o.stored),
                _ => None,
            })
            .collect();
        assert_eq!(stored.len(), items.len(), "every put ended with an outcome");
        // Every datagram all nodes sent while the puts ran (queries and answers, upkeep too),
        // per put: an upper bound on what a put costs the network.
        let per_put = (sim.stats().sent - sent_before_puts) as f64 / items.len() as f64;
        sim.unpin_all();
        let sent_before_gets = sim.stats().sent;

        // Reads from random live nodes, one started every 100 ms.
        let mut gets: Vec<(OpId, u32, usize)> = Vec::new();
        for g in 0..GETS {
            let which = g % items.len();
            let i = sim.random_live_node().unwrap();
            let op = sim
                .command(i, |ep, now| match &items[which] {
                    Item::Immutable { value } => ep.get_immutable(now, immutable_target(value)),
                    Item::Mutable(m) => ep.get_mutable(now, m.key, &m.salt, None),
                })
                .unwrap()
                .unwrap();
            gets.push((op, i, which));
            sim.run_for(Duration::from_millis(100));
        }
        let mut found = 0;
        let mut ended = 0;
        for _ in 0..600 {
            events.extend(sim.take_events());
            ended = gets
                .iter()
                .filter(|(op, i, _)| {
                    events.iter().any(|(n, e)| n == i && matches!(e, Event::GetItemDone { op: o, .. } if o == op))
                })
                .count();
            if ended == gets.len() {
                break;
            }
            sim.run_for(Duration::from_secs(1));
        }
        for (op, i, which) in &gets {
            let item = events.iter().find_map(|(n, e)| match e {
                Event::GetItemDone { op: o, item, .. } if n == i && o == op => item.clone(),
                _ => None,
            });
            if item.as_ref() == Some(&items[*which]) {
                found += 1;
            }
        }
        let success = found as f64 / GETS as f64;
        let per_get = (sim.stats().sent - sent_before_gets) as f64 / GETS as f64;
        eprintln!(
            "seed {seed}: datagrams sent per put {per_put:.1}, per get {per_get:.1} (queries and answers, all nodes)"
        );
        let min_stored = stored.iter().min().copied().unwrap_or(0);
        let mean_stored = stored.iter().sum::<usize>() as f64 / stored.len() as f64;
        eprintln!(
            "seed {seed}: puts stored on {min_stored}..{} nodes (mean {mean_stored:.1}); gets ended {ended}/{GETS}, found {found} ({success:.3}); {} left",
            stored.iter().max().unwrap(),
            sim.stats().left
        );
        assert_eq!(ended, GETS, "every get ended");
        // Measured (seeds 1..=4): every put stored on 4 to 8 nodes, mean 6.2–6.7; 300/300 gets found
        // their item.
        assert!(min_stored >= 3, "a put stored on only {min_stored} nodes");
        assert!(success >= 0.99, "success {success:.3}");
        assert!(sim.stats().left > 0, "churn happened");
    }
}

#[test]
fn a_join_spreads_its_buckets_over_their_ranges_and_respreading_draws_them_uniformly() {
    // A lookup gains per hop about the bits its target shares with the best entry of the
    // bucket it is routed through: 2.55 of the 3 bits after a bucket's prefix for 8 entries
    // drawn uniformly from its range (a pre-seeded table). A join used to fill a bucket with
    // the nodes one lookup met, bunched near its target, which Kademlia keeps: 2.14 at 1,000
    // nodes (1.67 in the farthest bucket). Its fill now asks each node about a sub-range no
    // entry covers (`Lookup::step_spread`). Measured (seed 1, 1,000 nodes): 2.54 pre-seeded,
    // 2.86 joined (2.98 in the farthest bucket), 2.55 once respread.
    let scenario = |build| Scenario { seed: 1, nodes: 1_000, engine: bep5_config(), build, ..Scenario::default() };
    let mut preseeded = Sim::new(scenario(Build::Preseed));
    preseeded.build();
    let mut joined = Sim::new(scenario(joined(1_000)));
    joined.build();
    let (uniform, spread) = (preseeded.bucket_spread(), joined.bucket_spread());
    assert!(uniform.buckets > 1_000 && spread.buckets > 1_000, "{uniform:?} {spread:?}");
    assert!((uniform.gain_bits - 2.55).abs() < 0.05, "a uniform draw gains about 2.55 bits: {uniform:?}");
    assert!(spread.gain_bits > uniform.gain_bits + 0.15, "joined {spread:?} against pre-seeded {uniform:?}");
    let farthest = |s: &BucketSpread| s.by_depth.first().copied().unwrap_or_default();
    assert!(farthest(&spread) > 2.8, "the farthest buckets, which the join's fills alone fill: {spread:?}");
    let entries = joined.footprint().2;
    joined.respread();
    let redrawn = joined.bucket_spread();
    assert!((redrawn.gain_bits - uniform.gain_bits).abs() < 0.05, "respread {redrawn:?} against {uniform:?}");
    assert_eq!(joined.footprint().2, entries, "respreading redraws entries, it does not add or drop any");
    if let Err(e) = joined.check_all_tables() {
        panic!("{e}");
    }
}

#[test]
fn a_joined_network_holds_its_first_nodes_in_more_tables_and_its_answers_overlap_more() {
    // Kademlia keeps the nodes a bucket has, so the first nodes to join sit in the tables that
    // formed while the network was small, and stay there: answers from different nodes about
    // one target name the same nodes more often than in tables drawn uniformly, and a lookup
    // learns fewer distinct nodes per round. Measured (seed 1, 1,000 nodes): the first tenth
    // of the nodes in 287 tables on average, the last tenth in 13, the median node in 27 and
    // the most held in 862; 12.3 distinct names per replayed round, against 14.7 once
    // respread (which holds every node in 50 to 88 tables).
    let scenario =
        Scenario { seed: 1, nodes: 1_000, engine: bep5_config(), build: joined(1_000), ..Scenario::default() };
    let mut sim = Sim::new(scenario);
    sim.build();
    let held = sim.in_degree();
    assert_eq!(held.nodes, 1_000);
    assert!(held.first_tenth_mean > 3.0 * held.last_tenth_mean, "{held:?}");
    assert!(held.max > 5 * held.p50, "{held:?}");
    let joined = sim.replay_lookups(500);
    assert_eq!(joined.lookups, 500);
    assert!(joined.first_nearest_round >= 1.0 && joined.first_nearest_round <= joined.rounds, "{joined:?}");
    sim.respread();
    let redrawn = sim.replay_lookups(500);
    assert!(joined.names_per_round + 1.0 < redrawn.names_per_round, "joined {joined:?} against redrawn {redrawn:?}");
    let flat = sim.in_degree();
    assert!(flat.max < held.max, "{flat:?} against {held:?}");
}

#[test]
fn wide_far_buckets_fill_from_answers_during_upkeep_and_lookups_start_nearer() {
    // `Config::wide_buckets` lets the farthest buckets hold more than k, filled only by nodes
    // that answer the node's own queries. A join's fills stop at k, so the room fills over the
    // node's upkeep: its refreshes meet the nodes that take it. With more of the far half held,
    // the first step of a lookup starts nearer its target. Measured (seed 1, 1,000 joined
    // nodes, 20 minutes of upkeep with a 5-minute refresh): the far half holds 8.0 contacts
    // per table unwidened and 38.0 with 3 wide buckets, past k in all 1,000 tables; replayed,
    // the lookups take 3.07 rounds against 3.27.
    let run = |wide: u8| {
        let engine = Config { wide_buckets: wide, bucket_refresh: Duration::from_secs(300), ..bep5_config() };
        let build = Build::Join { seeds: 4, per_second: 25.0, settle: Duration::from_secs(1_200) };
        let mut sim = Sim::new(Scenario { seed: 1, nodes: 1_000, engine, build, ..Scenario::default() });
        sim.build();
        let (mut far, mut tables, mut past_k) = (0usize, 0usize, 0usize);
        for i in 0..1_000 {
            let Some(table) = sim.endpoint(i).map(|ep| ep.routing_table()) else { continue };
            if table.bucket_count() < 2 {
                continue;
            }
            tables += 1;
            far += table.bucket_len(0);
            past_k += usize::from(table.bucket_len(0) > table.k());
            assert!(table.bucket_len(0) <= table.capacity(0));
        }
        if let Err(e) = sim.check_all_tables() {
            panic!("{e}");
        }
        (far as f64 / tables as f64, past_k, sim.replay_lookups(500))
    };
    let (narrow_far, narrow_past_k, narrow) = run(0);
    let (wide_far, wide_past_k, wide) = run(3);
    assert!(narrow_far <= 8.0 && narrow_past_k == 0, "unwidened: {narrow_far:.1} in the far half");
    assert!(wide_far > narrow_far + 8.0, "the far half holds {wide_far:.1} widened, {narrow_far:.1} not");
    assert!(wide_past_k > 500, "{wide_past_k} tables hold more than k in the far half");
    assert!(wide.rounds + 0.1 < narrow.rounds, "widened {wide:?} against {narrow:?}");
}

//! Lookups on an in-memory network of 40 endpoints (k = 8), checked against an oracle: the true
//! k closest live nodes, computed by brute force over every id.
//!
//! Without loss every lookup finds exactly the true 8 closest. With 20% of the nodes dead, or
//! with 10% datagram loss on top, every lookup still finishes and finds most of them.
//!
//! Measured over seeds 1..=20 (24 lookups each), mean recall of the true 8 closest live nodes
//! (lowest seed in parentheses), with the default lookup (α = 4, one retry of a silent
//! candidate, adaptive soft timeout): dead nodes only 0.963 (0.932); 10% loss only 0.967
//! (0.938); both 0.932 (0.870); about 11–15 `find_node` queries per lookup. Before the retry
//! (each candidate asked once) these were 0.943, 0.808 and 0.767: with 10% loss each way one
//! try reaches a live node with probability 0.81, two tries 0.96. What remains is mostly this:
//! responders keep dead contacts they have no reason to suspect and fill their 8-node answers
//! with them, so the farthest of the true 8 closest live nodes are sometimes never mentioned.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use krpc_core::wire::Message;
use krpc_core::{Config, LookupOutcome, NodeId};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use support::*;

const N: usize = 40;
const K: usize = 8;
/// Lookups start from these nodes, which never die.
const INITIATORS: [usize; 6] = [3, 11, 17, 24, 31, 39];
const TARGETS_PER_INITIATOR: usize = 4;

/// Nodes 0 and 1 bootstrap from each other, every other node from both.
fn config(i: usize) -> Config {
    let bootstrap = match i {
        0 => vec![net_addr(1)],
        1 => vec![net_addr(0)],
        _ => vec![net_addr(0), net_addr(1)],
    };
    Config { k: K, bootstrap, ..Config::default() }
}

/// A network where every node joined in turn with `bootstrap()` (a `find_node` for its own id
/// through the bootstrap nodes) and waited for it to finish.
fn joined(seed: u64) -> Net {
    let mut net = Net::new(N, seed, config);
    for i in 0..N {
        let now = net.now;
        let op = net.ep(i).bootstrap(now).unwrap();
        net.run_until(Duration::from_secs(60), |n| n.lookup_result(i, op).is_some());
        net.run_for(Duration::from_millis(200));
    }
    assert!(net.events.iter().all(
        |(_, _, e)| !matches!(e, krpc_core::Event::LookupDone { outcome, .. } if *outcome != LookupOutcome::Completed)
    ));
    net
}

/// Silences 20% of the nodes: every fifth one from the end, never a bootstrap node or an
/// initiator.
fn kill_a_fifth(net: &mut Net) {
    let victims: Vec<usize> = (2..N).rev().filter(|i| !INITIATORS.contains(i)).step_by(4).take(N / 5).collect();
    assert_eq!(victims.len(), N / 5);
    for i in victims {
        net.nodes[i].alive = false;
    }
}

/// Every contact of every live routing table is a real node at its real address, and no table
/// holds its owner: nothing was invented or spoofed into a table.
fn assert_tables_hold_only_real_nodes(net: &Net) {
    let real: HashMap<NodeId, std::net::SocketAddr> = (0..N).map(|i| (net.id(i), net.nodes[i].addr)).collect();
    for (i, node) in net.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
        let table = node.ep.routing_table();
        assert!(!table.contains(node.ep.id()), "node {i} holds itself");
        assert!(table.len() <= (0..table.bucket_count()).map(|b| table.capacity(b)).sum());
        for c in table.iter() {
            assert_eq!(real.get(c.id()), Some(&c.addr()), "node {i} holds a contact that is no node");
        }
    }
}

/// `find_node` queries from `from` for `target` since trace index `since`.
fn lookup_queries(net: &Net, from: usize, target: &NodeId, since: usize) -> usize {
    net.trace[since..]
        .iter()
        .filter(|d| d.from == from)
        .filter(|d| {
            Message::decode(&d.bytes)
                .ok()
                .and_then(|m| m.as_query().map(|q| q.method == b"find_node" && q.args.target() == Some(*target)))
                .unwrap_or(false)
        })
        .count()
}

/// Per lookup: how many of the true k closest it found, and how many queries it sent.
struct Outcome(Vec<(usize, usize)>);

impl Outcome {
    fn recall(&self) -> f64 {
        self.0.iter().map(|&(found, _)| found as f64 / K as f64).sum::<f64>() / self.0.len() as f64
    }

    fn queries(&self) -> (f64, usize) {
        let total: usize = self.0.iter().map(|&(_, q)| q).sum();
        (total as f64 / self.0.len() as f64, self.0.iter().map(|&(_, q)| q).max().unwrap_or(0))
    }
}

/// Runs every initiator's lookups, one at a time, for random targets; each must complete.
fn run_lookups(net: &mut Net, seed: u64, exact: bool) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lookups = Vec::new();
    for _ in 0..TARGETS_PER_INITIATOR {
        for &i in &INITIATORS {
            let target = random_id(&mut rng);
            let since = net.trace.len();
            let (_, (_, closest, outcome)) = net.lookup(i, target, Duration::from_secs(120));
            assert_eq!(outcome, LookupOutcome::Completed);
            assert!(closest.len() <= K);
            let truth = net.true_closest(&target, K, i);
            let found: Vec<NodeId> = closest.iter().map(|n| n.node.id).collect();
            if exact {
                assert_eq!(found, truth, "lookup from node {i} for {target:?} (seed {seed})");
            }
            let hits = found.iter().filter(|id| truth.contains(id)).count();
            lookups.push((hits, lookup_queries(net, i, &target, since)));
        }
    }
    Outcome(lookups)
}

#[test]
#[allow(clippy::print_stderr)] // the numbers are part of this test's report
fn lookups_without_loss_find_exactly_the_true_k_closest_nodes() {
    for seed in [1, 2, 3] {
        let mut net = joined(seed);
        let outcome = run_lookups(&mut net, seed, true);
        assert_tables_hold_only_real_nodes(&net);
        let (mean, max) = outcome.queries();
        eprintln!("lossless seed {seed}: recall {:.3}, queries per lookup mean {mean:.1} max {max}", outcome.recall());
    }
}

#[test]
#[allow(clippy::print_stderr)]
fn lookups_with_a_fifth_of_the_nodes_dead_find_nine_in_ten_of_the_true_k_closest_live_nodes() {
    let mut recalls = Vec::new();
    for seed in [1, 2, 3, 4, 5] {
        let mut net = joined(seed);
        kill_a_fifth(&mut net);
        let outcome = run_lookups(&mut net, seed, false);
        let (mean, max) = outcome.queries();
        eprintln!("dead seed {seed}: recall {:.3}, queries per lookup mean {mean:.1} max {max}", outcome.recall());
        recalls.push(outcome.recall());
    }
    let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
    // Measured 0.925 for these seeds; any five of seeds 1..=20 average at least 0.908.
    assert!(mean >= 0.9, "mean recall {mean:.3}");
}

#[test]
#[allow(clippy::print_stderr)]
fn lookups_with_loss_and_dead_nodes_all_finish_and_find_most_of_the_true_k_closest_live_nodes() {
    let mut recalls = Vec::new();
    for seed in [1, 2, 3, 4, 5] {
        let mut net = joined(seed);
        kill_a_fifth(&mut net);
        net.loss_ppm = 100_000;
        let outcome = run_lookups(&mut net, seed, false);
        assert_tables_hold_only_real_nodes(&net);
        let (mean, max) = outcome.queries();
        eprintln!("lossy seed {seed}: recall {:.3}, queries per lookup mean {mean:.1} max {max}", outcome.recall());
        recalls.push(outcome.recall());
    }
    let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
    eprintln!("lossy mean recall {mean:.3}");
    // Measured 0.912 for these seeds (0.731 before lookups retried silent candidates); any five
    // consecutive seeds of 1..=20 average at least 0.91.
    assert!(mean >= 0.85, "mean recall {mean:.3}");
}

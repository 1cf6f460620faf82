//! How much the routing tables overlap, and what that costs a lookup.
//!
//! A pre-seeded network draws every bucket uniformly, so every node sits in about as many
//! tables as it has entries itself, and two nodes asked about one target name mostly different
//! nodes. A network built by joining does not: Kademlia keeps the nodes a bucket has (BEP 5:
//! "When the bucket is full of good nodes, the new node is simply discarded"), so the nodes
//! that joined first took the slots of the tables that formed while the network was small,
//! and keep them. Any Kademlia network that grew holds its oldest nodes this way; how much,
//! depends on how fast it grew.
//!
//! - [`Sim::in_degree`]: in how many tables each node is held, overall and by the order in
//!   which the nodes joined (a joined build starts them in index order, the seeds first).
//! - [`Sim::replay_lookups`]: lookups replayed on the tables alone, in synchronous rounds of α
//!   queries, without time, loss or the engine: how many distinct nodes a round's answers name,
//!   and how many rounds reach the target's nearest nodes. It separates what the tables'
//!   overlap costs from everything else a timed lookup meets.

use std::collections::HashSet;

use krpc_core::NodeId;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::Sim;
use super::link::below;

/// [`Sim::in_degree`]'s result: in how many running engines' tables a running node is held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InDegree {
    /// Running nodes counted.
    pub nodes: usize,
    /// The 10th percentile of the in-degrees.
    pub p10: u32,
    /// The median.
    pub p50: u32,
    /// The 90th percentile.
    pub p90: u32,
    /// The 99th percentile.
    pub p99: u32,
    /// The largest.
    pub max: u32,
    /// The mean in-degree of the running nodes in the first tenth of the node indices (in a
    /// joined build: the first to join).
    pub first_tenth_mean: f64,
    /// The same for the last tenth (the last to join).
    pub last_tenth_mean: f64,
}

/// [`Sim::replay_lookups`]'s result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replayed {
    /// Lookups replayed.
    pub lookups: usize,
    /// Rounds until the k nearest known nodes that answer were all asked (mean).
    pub rounds: f64,
    /// The round in which one of the target's true k nearest was first asked (mean; a lookup
    /// that never asks one counts its last round): what a `get_peers` waits for before its
    /// first `values`.
    pub first_nearest_round: f64,
    /// Distinct nodes named by one round's answers (mean over rounds; at most α·k).
    pub names_per_round: f64,
}

/// The queries of one replayed round (the engine's default α).
const REPLAY_ALPHA: usize = 4;

impl Sim {
    /// Counts every running node's in-degree: one scan of every IPv4 table, seconds at a
    /// million nodes. An entry counts only for the node it names ([`Sim::node_named`]).
    pub fn in_degree(&self) -> InDegree {
        let mut held = vec![0u32; self.nodes.len()];
        for ep in self.nodes.iter().filter_map(|n| n.ep.as_deref()) {
            let table = ep.routing_table();
            for bucket in 0..table.bucket_count() {
                for j in table.bucket_contacts(bucket).filter_map(|c| self.node_named(&c.node)) {
                    held[j as usize] += 1;
                }
            }
        }
        let running: Vec<(usize, u32)> =
            held.iter().enumerate().filter(|(i, _)| self.nodes[*i].ep.is_some()).map(|(i, &h)| (i, h)).collect();
        if running.is_empty() {
            return InDegree::default();
        }
        let mut sorted: Vec<u32> = running.iter().map(|&(_, h)| h).collect();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
        let n = self.nodes.len();
        let mean_of = |lo: usize, hi: usize| {
            let (sum, count) = running
                .iter()
                .filter(|&&(i, _)| (lo..hi).contains(&i))
                .fold((0.0, 0u32), |(sum, count), &(_, h)| (sum + f64::from(h), count + 1));
            if count == 0 { 0.0 } else { sum / f64::from(count) }
        };
        InDegree {
            nodes: sorted.len(),
            p10: at(0.1),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
            first_tenth_mean: mean_of(0, n.div_ceil(10)),
            last_tenth_mean: mean_of(n - n / 10, n),
        }
    }

    /// Replays `count` lookups of random targets from random answering nodes on the routing
    /// tables as they stand (see the module). Each round asks the α nearest known nodes that
    /// answer and were not asked yet, among the k nearest known; each asked node names the k
    /// entries of its table nearest the target; the lookup ends when its k nearest known
    /// nodes were all asked. Draws from a stream of its own: the run goes on as it would.
    pub fn replay_lookups(&self, count: usize) -> Replayed {
        let mut rng = ChaCha8Rng::seed_from_u64(self.scenario.seed ^ 0x7265_706c_6179);
        let live: Vec<u32> =
            (0..self.nodes.len() as u32).filter(|&i| self.nodes[i as usize].ep.is_some() && self.answers(i)).collect();
        if live.is_empty() {
            return Replayed::default();
        }
        let mut out = Replayed::default();
        let (mut rounds, mut first, mut names) = (0u64, 0u64, 0u64);
        let mut known: Vec<(NodeId, u32)> = Vec::new();
        let mut asked: HashSet<u32> = HashSet::new();
        let mut named: HashSet<u32> = HashSet::new();
        for _ in 0..count {
            let initiator = live[below(&mut rng, live.len())];
            let mut bytes = [0u8; 20];
            for b in &mut bytes {
                *b = below(&mut rng, 256) as u8;
            }
            let target = NodeId::from_array(bytes);
            let Some(ep) = self.nodes[initiator as usize].ep.as_deref() else { continue };
            let k = ep.routing_table().k();
            let truth: Vec<u32> = self.true_closest(&target, k);
            // Simulated nodes under their current id only: an attacker's address, or an entry
            // left by a node that has since taken another id, names nobody who would answer.
            let name = |n: &krpc_core::NodeInfo| self.node_named(n).map(|j| (n.id, j));
            known.clear();
            known.extend(ep.routing_table().closest(&target, k).iter().filter_map(name));
            asked.clear();
            let mut round = 0u64;
            let mut reached: Option<u64> = None;
            loop {
                known.sort_by(|a, b| target.cmp_distance(&a.0, &b.0));
                known.dedup_by_key(|x| x.1);
                let ask: Vec<u32> = known
                    .iter()
                    .filter(|x| self.answers(x.1))
                    .take(k)
                    .map(|x| x.1)
                    .filter(|j| !asked.contains(j))
                    .take(REPLAY_ALPHA)
                    .collect();
                if ask.is_empty() {
                    break;
                }
                round += 1;
                named.clear();
                for j in ask {
                    asked.insert(j);
                    if reached.is_none() && truth.contains(&j) {
                        reached = Some(round);
                    }
                    let Some(responder) = self.nodes[j as usize].ep.as_deref() else { continue };
                    for (id, x) in responder.routing_table().closest(&target, k).iter().filter_map(name) {
                        named.insert(x);
                        known.push((id, x));
                    }
                }
                names += named.len() as u64;
            }
            out.lookups += 1;
            rounds += round;
            first += reached.unwrap_or(round);
        }
        let per = |sum: u64, of: u64| if of == 0 { 0.0 } else { sum as f64 / of as f64 };
        out.rounds = per(rounds, out.lookups as u64);
        out.first_nearest_round = per(first, out.lookups as u64);
        out.names_per_round = per(names, rounds);
        out
    }
}

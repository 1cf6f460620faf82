//! How evenly the routing tables' buckets cover their ranges, and, for experiments, redrawing
//! them evenly.
//!
//! A lookup gains, per hop, the bits its target shares with the id of the node it is handed
//! beyond the prefix of the bucket that node came from. For a bucket of k entries drawn at
//! random from its range, the best of them matches the target on about log2(k) more bits; for
//! entries bunched in one corner of the range, fewer, and the lookup needs more hops. A
//! pre-seeded table draws each bucket uniformly; a joined one holds whatever nodes the join
//! and its upkeep met first, and Kademlia keeps them. [`Sim::bucket_spread`] measures the
//! difference; [`Sim::respread`] redraws a built network's full buckets uniformly, so that a
//! run can tell what the tables' shape costs its lookups from what the protocol costs them
//! (`simulate --respread`).

use krpc_core::routing::RoutingTable;
use krpc_core::{NodeId, NodeInfo};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::Sim;
use super::link::below;

/// The bits after a bucket's prefix that [`bucket_gain`] scores: 8 sub-ranges, as many as a
/// BEP 5 bucket has entries.
pub const SPREAD_BITS: usize = 3;

/// For each of the `2^SPREAD_BITS` sub-ranges of a bucket's range (its ids' next
/// [`SPREAD_BITS`] bits after the bucket's prefix), how many of those bits the best entry
/// shares with it, summed over the sub-ranges. `patterns` are the entries' next bits. One
/// entry in every sub-range scores 24; eight entries in one sub-range score 7.
pub fn bucket_gain(patterns: &[u8]) -> u32 {
    let subranges = 1u8 << SPREAD_BITS;
    (0..subranges)
        .map(|target| {
            patterns
                .iter()
                .map(|&p| {
                    // The sub-range's bits and the entry's, aligned to the top of a byte: the
                    // leading zeros of their difference are the bits they share.
                    let shared = ((target ^ p) << (8 - SPREAD_BITS)).leading_zeros();
                    shared.min(SPREAD_BITS as u32)
                })
                .max()
                .unwrap_or(0)
        })
        .sum()
}

/// The [`SPREAD_BITS`] bits of `id` after the first `depth + 1` (a bucket at `depth` shares
/// `depth` bits with the table's own id and differs in the next).
fn pattern(id: &NodeId, depth: usize) -> u8 {
    (0..SPREAD_BITS).fold(0, |acc, j| (acc << 1) | u8::from(id.bit(depth + 1 + j)))
}

/// [`Sim::bucket_spread`]'s result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketSpread {
    /// Full buckets scored (every table's, but its last: its own neighbourhood, which is not
    /// one range of the id space).
    pub buckets: u64,
    /// Over those buckets and their sub-ranges: the bits the best entry shares with a random
    /// target of the sub-range beyond the bucket's prefix, of [`SPREAD_BITS`]. About 2.55 for
    /// entries drawn uniformly (eight entries among eight sub-ranges), 0.875 for eight entries
    /// in one sub-range, 3 for one in each.
    pub gain_bits: f64,
    /// The same by bucket depth (0: the farthest half of the id space), for the depths that
    /// had a full bucket scored.
    pub by_depth: Vec<f64>,
}

/// Whether a bucket counts: full, and not the table's last.
fn scored(table: &RoutingTable, bucket: usize) -> bool {
    bucket + 1 < table.bucket_count() && table.bucket_len(bucket) >= table.k()
}

impl Sim {
    /// How evenly the live engines' full buckets cover their ranges (see [`BucketSpread`]).
    /// A scan of every IPv4 table: seconds at a million nodes.
    pub fn bucket_spread(&self) -> BucketSpread {
        let mut depth_sums: Vec<(u64, u64)> = Vec::new();
        let mut patterns: Vec<u8> = Vec::new();
        for ep in self.nodes.iter().filter_map(|n| n.ep.as_deref()) {
            let table = ep.routing_table();
            for bucket in (0..table.bucket_count()).filter(|&b| scored(table, b)) {
                patterns.clear();
                patterns.extend(table.bucket_contacts(bucket).map(|c| pattern(&c.node.id, bucket)));
                if depth_sums.len() <= bucket {
                    depth_sums.resize(bucket + 1, (0, 0));
                }
                depth_sums[bucket].0 += 1;
                depth_sums[bucket].1 += u64::from(bucket_gain(&patterns));
            }
        }
        let per = |(buckets, gain): (u64, u64)| gain as f64 / (buckets as f64 * f64::from(1u32 << SPREAD_BITS));
        let total = depth_sums.iter().fold((0, 0), |a, d| (a.0 + d.0, a.1 + d.1));
        BucketSpread {
            buckets: total.0,
            gain_bits: if total.0 == 0 { 0.0 } else { per(total) },
            by_depth: depth_sums.into_iter().filter(|d| d.0 > 0).map(per).collect(),
        }
    }

    /// Redraws every live engine's full buckets (but the last) as a pre-seeded table draws
    /// them: as many distinct nodes as the bucket holds (k, or more in a widened far bucket),
    /// chosen uniformly among the range's nodes that answer now. A bucket whose range holds
    /// fewer than twice that many such nodes is left alone (there the join found most of them
    /// anyway). The entries go in as `insert_node` puts them, unverified, like a
    /// pre-seeded table's. For experiments: it reads the simulator's truth, which no node has.
    /// Its draws come from a stream of their own, so the rest of the run draws as it would.
    pub fn respread(&mut self) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.scenario.seed ^ 0x5e1d_0000_0000_0004);
        let now = self.now;
        let mut old: Vec<NodeId> = Vec::new();
        let mut range: Vec<u32> = Vec::new();
        let mut new: Vec<NodeInfo> = Vec::new();
        for i in 0..self.nodes.len() {
            let Some(ep) = self.nodes[i].ep.as_deref() else { continue };
            let own = self.nodes[i].id;
            let count = ep.routing_table().bucket_count();
            for bucket in 0..count.saturating_sub(1) {
                let Some(table) = self.nodes[i].ep.as_deref().map(|ep| ep.routing_table()) else { break };
                if !scored(table, bucket) {
                    continue;
                }
                old.clear();
                old.extend(table.bucket_contacts(bucket).map(|c| c.node.id));
                let far = own.with_bit(bucket, !own.bit(bucket));
                range.clear();
                range
                    .extend(self.oracle.with_prefix(&far, bucket + 1).iter().map(|x| x.1).filter(|&j| self.answers(j)));
                let n = old.len();
                if range.len() < 2 * n {
                    continue;
                }
                // Partial Fisher–Yates: the first n are a uniform sample without repeats.
                for j in 0..n {
                    let r = j + below(&mut rng, range.len() - j);
                    range.swap(j, r);
                }
                new.clear();
                new.extend(range[..n].iter().map(|&j| NodeInfo::new(self.nodes[j as usize].id, self.addr(j))));
                let Some(ep) = self.nodes[i].ep.as_deref_mut() else { break };
                for id in &old {
                    ep.remove_node(id);
                }
                for node in &new {
                    ep.insert_node(now, *node);
                }
                // Drain as we go: the table's change events would otherwise keep their room.
                while ep.poll_event().is_some() {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_scores_the_bits_its_best_entry_shares_with_each_subrange() {
        assert_eq!(bucket_gain(&[0, 1, 2, 3, 4, 5, 6, 7]), 24, "one entry in each sub-range");
        // All in sub-range 0: the targets 0, 1, 2–3 and 4–7 share 3, 2, 1 and 0 bits with it.
        assert_eq!(bucket_gain(&[0; 8]), 3 + 2 + 1 + 1);
        assert_eq!(bucket_gain(&[0b000, 0b100]), 2 * (3 + 2 + 1 + 1), "one in each half");
        assert_eq!(bucket_gain(&[]), 0);
    }

    #[test]
    fn the_pattern_is_the_bits_after_the_buckets_prefix() {
        let mut id = NodeId::from_array([0; 20]);
        // Depth 2: bits 0 and 1 are the shared prefix, bit 2 the differing one, 3–5 scored.
        id = id.with_bit(3, true).with_bit(5, true).with_bit(6, true);
        assert_eq!(pattern(&id, 2), 0b101);
        assert_eq!(pattern(&id, 0), 0b001, "bits 1–3");
    }
}

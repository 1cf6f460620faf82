//! What an operator asks of a running node: its id, external address, whether it is reachable,
//! table sizes, and an estimate of the DHT's size.

use core::net::IpAddr;

use super::{Endpoint, Reachability};
use crate::NodeId;
use crate::routing::{NodeState, RoutingTable};

/// 2^128, exactly representable (no_std has no `powi`).
const TWO_POW_128: f64 = 340_282_366_920_938_463_463_374_607_431_768_211_456.0;

/// A snapshot of a node, for status lines and dashboards (mainline's `Info` has the same).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// Our node id.
    pub id: NodeId,
    /// Our public address per family (IPv4, IPv6) as voted by the `ip` fields of replies
    /// (BEP 42); `None` until the vote settles, and always without the node layer.
    pub external_address: [Option<IpAddr>; 2],
    /// Entries in the IPv4 and the IPv6 routing table.
    pub table_sizes: [usize; 2],
    /// Of those, the good ones (answered within the last 15 minutes, BEP 5).
    pub good_nodes: [usize; 2],
    /// BEP 43 read-only right now: we answer no queries (in adaptive mode, until reachable).
    pub read_only: bool,
    /// Whether nodes we never contacted reach us (see [`reachability`](crate::reachability)).
    pub reachability: Reachability,
    /// How many nodes the DHT has, estimated from how densely the nodes nearest our id sit
    /// around it (see [`estimate_dht_size`]); `None` with fewer than two nodes near us.
    pub dht_size_estimate: Option<u64>,
}

/// Estimates how many nodes a DHT has from the nodes nearest an id: if ids are spread
/// uniformly, the `i`-th nearest node sits at about `i / N` of the id space (`d_i`, its XOR
/// distance as a fraction of the space); `N` is fitted by least squares over the nearest 8,
/// which weighs the farther, steadier ones most. `None` with fewer than two nodes.
pub fn estimate_dht_size<'a>(around: &NodeId, nearest: impl IntoIterator<Item = &'a NodeId>) -> Option<u64> {
    let mut fractions: arrayvec::ArrayVec<f64, 8> = arrayvec::ArrayVec::new();
    for id in nearest.into_iter().take(8) {
        // The first 128 bits are plenty for a fraction of the space.
        fractions.push(around.distance(id).top128() as f64 / TWO_POW_128);
    }
    fractions.sort_by(f64::total_cmp);
    if fractions.len() < 2 {
        return None;
    }
    // Least squares on d_i ≈ i / N, which weighs the farther (steadier) nodes most.
    let (mut ii, mut id) = (0.0, 0.0);
    for (i, f) in fractions.iter().enumerate() {
        let i = (i + 1) as f64;
        ii += i * i;
        id += i * f;
    }
    Some((ii / id.max(f64::MIN_POSITIVE)).min(u64::MAX as f64) as u64)
}

impl Endpoint {
    /// What an operator asks: id, external address, table sizes, and the DHT's estimated size.
    pub fn status(&self) -> NodeStatus {
        let now = self.now;
        let good = |t: &RoutingTable| {
            let policy = *t.policy();
            t.iter().filter(|c| c.state(now, &policy) == NodeState::Good).count()
        };
        let (v4, v6) = (self.tables.v4(), self.tables.v6());
        NodeStatus {
            id: self.id,
            external_address: self.external_address(),
            table_sizes: [v4.len(), v6.len()],
            good_nodes: [good(v4), good(v6)],
            read_only: self.read_only,
            reachability: self.reachability(),
            dht_size_estimate: self.dht_size_estimate(2),
        }
    }

    /// [`estimate_dht_size`] around our id, from the larger table (no allocation: the nearest
    /// come in an `ArrayVec`); `None` unless it knows at least `min_nodes` of the 8 it fits.
    pub(super) fn dht_size_estimate(&self, min_nodes: usize) -> Option<u64> {
        let (v4, v6) = (self.tables.v4(), self.tables.v6());
        let table = if v4.len() >= v6.len() { v4 } else { v6 };
        let nearest = table.closest(&self.id, 8);
        if nearest.len() < min_nodes {
            return None;
        }
        estimate_dht_size(&self.id, nearest.iter().map(|n| &n.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use rand_chacha::ChaCha12Rng;
    use rand_core::SeedableRng;

    #[test]
    fn the_size_estimate_is_within_a_factor_of_two_of_the_truth() {
        let mut rng = ChaCha12Rng::from_seed([5; 32]);
        for n in [1_000usize, 10_000] {
            let mut within = 0;
            for _ in 0..20 {
                let me = NodeId::random(20, &mut rng).unwrap();
                let mut ids: Vec<NodeId> = (0..n).map(|_| NodeId::random(20, &mut rng).unwrap()).collect();
                ids.sort_by(|a, b| me.cmp_distance(a, b));
                let estimate = estimate_dht_size(&me, ids.iter().take(8)).unwrap() as f64;
                if (n as f64 / 2.0..=n as f64 * 2.0).contains(&estimate) {
                    within += 1;
                }
            }
            assert!(within >= 15, "{n} nodes: {within} of 20 estimates within 2x");
        }
        let me = NodeId::from_array([0; 20]);
        assert_eq!(estimate_dht_size(&me, [NodeId::from_array([1; 20])].iter()), None, "one node says nothing");
    }
}

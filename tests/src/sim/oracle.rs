//! The oracle: the true k closest live nodes to any target, from a sorted array of every id.
//!
//! The ids sharing at least `p` leading bits with a target form one contiguous range of the
//! sorted array, and every id inside that range is closer to the target than every id outside
//! it. So the k closest live nodes are found by narrowing the range bit by bit while it still
//! holds k ids, widening it again until it holds k *live* ones, and sorting only that small
//! range by XOR distance.

use krpc_core::NodeId;

/// Node ids of the whole population (every node that ever existed), sorted.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    /// `(id bytes, node index)`, sorted by id.
    sorted: Vec<([u8; 20], u32)>,
}

impl Oracle {
    /// Heap bytes held, for the simulator's memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.sorted.capacity() * std::mem::size_of::<([u8; 20], u32)>()
    }
}

/// The 20-byte form of an id (the simulator only uses BEP 5 ids).
pub fn id_bytes(id: &NodeId) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(&id.as_bytes()[..20]);
    out
}

/// `id` with every bit from `bit` on set to `fill` (0 or 1).
fn with_tail(id: &[u8; 20], bit: usize, fill: bool) -> [u8; 20] {
    let mut out = *id;
    let byte = bit / 8;
    if byte >= 20 {
        return out;
    }
    let keep = !(0xffu8 >> (bit % 8));
    out[byte] = (out[byte] & keep) | if fill { !keep } else { 0 };
    for b in &mut out[byte + 1..] {
        *b = if fill { 0xff } else { 0 };
    }
    out
}

impl Oracle {
    /// An oracle over `ids`, where `ids[i]` is node `i`'s id.
    pub fn new(ids: &[NodeId]) -> Oracle {
        let mut sorted: Vec<([u8; 20], u32)> = ids.iter().enumerate().map(|(i, id)| (id_bytes(id), i as u32)).collect();
        sorted.sort_unstable();
        Oracle { sorted }
    }

    /// Adds a node that joined later.
    pub fn insert(&mut self, id: &NodeId, index: u32) {
        let key = (id_bytes(id), index);
        let at = self.sorted.partition_point(|x| *x < key);
        self.sorted.insert(at, key);
    }

    /// How many ids the oracle knows.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the oracle knows no id.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The index range of the ids sharing at least `bits` leading bits with `target`.
    fn range(&self, target: &[u8; 20], bits: usize) -> (usize, usize) {
        let lo = with_tail(target, bits, false);
        let hi = with_tail(target, bits, true);
        (self.sorted.partition_point(|x| x.0 < lo), self.sorted.partition_point(|x| x.0 <= hi))
    }

    /// The ids of the nodes whose first `bits` bits equal those of `prefix` (a bucket's
    /// range), as a slice of `(id, index)`.
    pub fn with_prefix(&self, prefix: &NodeId, bits: usize) -> &[([u8; 20], u32)] {
        let (a, b) = self.range(&id_bytes(prefix), bits);
        &self.sorted[a..b]
    }

    /// The node indices of the `k` live nodes nearest to `target`, nearest first.
    pub fn closest(&self, target: &NodeId, k: usize, live: impl Fn(u32) -> bool) -> Vec<u32> {
        let t = id_bytes(target);
        if k == 0 || self.sorted.is_empty() {
            return Vec::new();
        }
        // Narrow while at least k ids (live or not) share the prefix.
        let mut bits = 0;
        while bits < 160 {
            let (a, b) = self.range(&t, bits + 1);
            if b - a < k {
                break;
            }
            bits += 1;
        }
        // Widen until k of them are live (or the whole population is in range).
        loop {
            let (a, b) = self.range(&t, bits);
            let live_count = self.sorted[a..b].iter().filter(|x| live(x.1)).take(k).count();
            if live_count >= k || bits == 0 {
                let mut found: Vec<([u8; 20], u32)> = self.sorted[a..b].iter().filter(|x| live(x.1)).copied().collect();
                found.sort_unstable_by_key(|(id, _)| xor(id, &t));
                return found.into_iter().take(k).map(|(_, i)| i).collect();
            }
            bits -= 1;
        }
    }
}

fn xor(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for i in 0..20 {
        out[i] = a[i] ^ b[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng, SeedableRng};

    use super::*;

    fn random_id(rng: &mut ChaCha8Rng) -> NodeId {
        let mut b = [0u8; 20];
        rng.fill_bytes(&mut b);
        NodeId::from_array(b)
    }

    #[test]
    fn the_oracle_agrees_with_a_brute_force_sort_including_dead_nodes() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let ids: Vec<NodeId> = (0..3000).map(|_| random_id(&mut rng)).collect();
        let mut oracle = Oracle::new(&ids[..2500]);
        for (i, id) in ids.iter().enumerate().skip(2500) {
            oracle.insert(id, i as u32);
        }
        let live = |i: u32| i % 3 != 0;
        for _ in 0..200 {
            let target = random_id(&mut rng);
            for k in [1, 8, 20] {
                let mut brute: Vec<u32> = (0..ids.len() as u32).filter(|&i| live(i)).collect();
                brute.sort_by(|&a, &b| target.cmp_distance(&ids[a as usize], &ids[b as usize]));
                brute.truncate(k);
                assert_eq!(oracle.closest(&target, k, live), brute);
            }
        }
    }

    #[test]
    fn a_prefix_range_holds_exactly_the_ids_with_that_prefix() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let ids: Vec<NodeId> = (0..500).map(|_| random_id(&mut rng)).collect();
        let oracle = Oracle::new(&ids);
        let p = ids[7];
        for bits in [0, 1, 3, 9] {
            let got = oracle.with_prefix(&p, bits).len();
            let want = ids.iter().filter(|id| id.common_prefix_len(&p) >= bits).count();
            assert_eq!(got, want);
        }
    }
}

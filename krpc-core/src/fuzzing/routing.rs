//! The `routing` fuzz target: a [`RoutingTable`] under arbitrary operations, checked against
//! a reference model that is just a list of contacts with their history.
//!
//! The model does not know the bucket tree; it mirrors every contact's fields (address,
//! times, failures) and its recency order, and checks each outcome the table reports against
//! what the model says was possible: a `Replaced` must evict the worst bad contact of a full
//! bucket, a `BucketFull` needs a full bucket without a bad contact that cannot split, a
//! `swap` must follow its documented refusals, `closest` must equal a brute-force sort of the
//! model, and so on.
//!
//! The table keeps a contact's times rounded down to [`TIME_RESOLUTION`]; the model rounds
//! every time it records the same way ([`kept`], the documented rule written out again), so
//! contacts still compare field by field, exactly.

use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::craft::near;
use super::input::Input;
use super::watch::check_table;
use crate::routing::{
    Contact, InsertOutcome, MAX_FAILURES, MAX_K, NodeState, NodeStatePolicy, RoutingTable, SwapOutcome, TIME_RESOLUTION,
};
use crate::{Instant, NodeId, NodeInfo};

/// Operations per input at most.
const MAX_STEPS: usize = 600;

/// What the table keeps of a time: rounded down to a multiple of [`TIME_RESOLUTION`] since
/// [`Instant::ZERO`].
fn kept(t: Instant) -> Instant {
    let tick = TIME_RESOLUTION.as_nanos() as u64;
    Instant::from_nanos(t.as_nanos() - t.as_nanos() % tick)
}

/// A contact as the model sees it.
#[derive(Clone, Debug)]
struct Model {
    contact: Contact,
    /// Recency stamp: higher is more recently moved to its bucket's tail.
    stamp: u64,
}

struct Harness {
    table: RoutingTable,
    model: Vec<Model>,
    policy: NodeStatePolicy,
    local: NodeId,
    stamp: u64,
    k: usize,
    /// The table's widened far buckets (`RoutingTable::with_wide_buckets`).
    wide: usize,
}

impl Harness {
    fn find(&self, id: &NodeId) -> Option<usize> {
        self.model.iter().position(|m| m.contact.node.id == *id)
    }

    fn bump(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    /// The bucket an id of the local length falls in, by the table's current shape.
    fn bucket_of(&self, id: &NodeId) -> usize {
        self.local.common_prefix_len(id).min(self.table.bucket_count() - 1)
    }

    /// How many contacts `bucket` may hold, worked out apart from the table's own
    /// `capacity`: k, or k · 2^(wide − bucket) (at most 255) for one of the widened far
    /// buckets other than the last.
    fn capacity(&self, bucket: usize) -> usize {
        if bucket < self.wide && bucket + 1 < self.table.bucket_count() {
            (self.k << (self.wide - bucket)).min(255)
        } else {
            self.k
        }
    }

    fn members_of(&self, bucket: usize) -> Vec<&Model> {
        let mut v: Vec<&Model> = self
            .model
            .iter()
            .filter(|m| m.contact.node.id.len() == self.local.len() && self.bucket_of(&m.contact.node.id) == bucket)
            .collect();
        v.sort_by_key(|m| m.stamp);
        v
    }

    fn state(&self, c: &Contact, now: Instant) -> NodeState {
        // The documented rule, written out again.
        if c.failures >= self.policy.max_failures {
            return NodeState::Bad;
        }
        let fresh = |t: Instant| now.saturating_duration_since(t) < self.policy.fresh_for;
        match c.last_reply {
            Some(r) if fresh(r) || c.last_query.is_some_and(fresh) => NodeState::Good,
            _ => NodeState::Questionable,
        }
    }

    fn insert(&mut self, node: NodeInfo, now: Instant) {
        let before = self.model.clone();
        let outcome = self.table.insert_verified(node, now);
        if node.id.len() != self.local.len() {
            assert_eq!(outcome, InsertOutcome::WrongIdLength);
            return;
        }
        if node.id == self.local {
            assert_eq!(outcome, InsertOutcome::IsLocal);
            return;
        }
        match self.find(&node.id) {
            Some(i) => {
                let previous = self.model[i].contact.node.addr;
                let expected = if previous == node.addr {
                    InsertOutcome::Refreshed
                } else {
                    InsertOutcome::AddressChanged { previous }
                };
                assert_eq!(outcome, expected, "insert of a known node");
                let stamp = self.bump();
                let m = &mut self.model[i];
                m.contact.node.addr = node.addr;
                m.contact.last_seen = kept(now);
                m.contact.last_reply = Some(kept(now));
                m.contact.failures = 0;
                m.stamp = stamp;
            }
            None => match outcome {
                InsertOutcome::Added => {
                    self.add(node, now);
                    let bucket = self.bucket_of(&node.id);
                    let held = self.members_of(bucket).len();
                    assert!(held <= self.capacity(bucket), "bucket {bucket} took a contact past its capacity");
                }
                InsertOutcome::Replaced { evicted } => {
                    let bucket = self.bucket_of(&node.id);
                    assert_eq!(self.bucket_of(&evicted.node.id), bucket, "evicted from another bucket");
                    let i = self.find(&evicted.node.id).expect("evicted a contact the model lacks");
                    assert_eq!(self.model[i].contact, evicted, "evicted contact differs from the model");
                    assert_eq!(self.state(&evicted, now), NodeState::Bad, "evicted a node that is not bad");
                    let members = self.members_of(bucket);
                    assert_eq!(members.len(), self.capacity(bucket), "replaced in a bucket with room");
                    for m in &members {
                        let c = &m.contact;
                        if self.state(c, now) == NodeState::Bad {
                            let worse = (c.failures, evicted.last_seen) > (evicted.failures, c.last_seen);
                            assert!(!worse, "evicted {evicted:?} while {c:?} is worse");
                        }
                    }
                    self.model.remove(i);
                    self.add(node, now);
                }
                InsertOutcome::BucketFull { bucket } => {
                    assert_eq!(self.bucket_of(&node.id), bucket, "BucketFull names another bucket");
                    let members = self.members_of(bucket);
                    assert_eq!(members.len(), self.capacity(bucket), "BucketFull for a bucket with room");
                    assert!(
                        members.iter().all(|m| self.state(&m.contact, now) != NodeState::Bad),
                        "BucketFull although the bucket holds a bad node"
                    );
                    let last = self.table.bucket_count() - 1;
                    assert!(
                        bucket != last || self.table.bucket_count() == self.local.len() * 8,
                        "BucketFull for a bucket that could split"
                    );
                    let _ = before;
                }
                other => panic!("insert of a new node gave {other:?}"),
            },
        }
    }

    fn add(&mut self, node: NodeInfo, now: Instant) {
        let stamp = self.bump();
        let contact =
            Contact { node, last_seen: kept(now), last_reply: Some(kept(now)), last_query: None, failures: 0 };
        self.model.push(Model { contact, stamp });
    }

    fn swap(&mut self, dead: &NodeId, replacement: NodeInfo, now: Instant) {
        let outcome = self.table.swap(dead, replacement, now);
        let expected = if replacement.id.len() != self.local.len() || replacement.id == self.local {
            SwapOutcome::Refused
        } else {
            match self.find(dead) {
                None => SwapOutcome::DeadNotFound,
                Some(i) if self.state(&self.model[i].contact, now) == NodeState::Good => SwapOutcome::DeadIsGood,
                Some(i) => {
                    let bucket = self.bucket_of(dead);
                    if self.bucket_of(&replacement.id) != bucket || self.find(&replacement.id).is_some() {
                        SwapOutcome::Refused
                    } else {
                        SwapOutcome::Swapped { evicted: self.model[i].contact }
                    }
                }
            }
        };
        assert_eq!(outcome, expected, "swap({dead:?}, {replacement:?})");
        if let SwapOutcome::Swapped { .. } = outcome {
            if let Some(i) = self.find(dead) {
                self.model.remove(i);
            }
            self.add(replacement, now);
        }
    }

    /// Compares the table with the model: same contacts with the same fields, same order in
    /// each bucket, plus the structural invariants.
    fn compare(&self) {
        check_table(&self.table, &self.local, self.local.len());
        assert_eq!(self.table.len(), self.model.len(), "the table and the model hold different counts");
        // `iter()` walks the buckets in order, each least recently seen first.
        // Sorted by index, not by value: moving whole contacts around was most of the sort.
        let mut want: Vec<(usize, u64, usize)> =
            self.model.iter().enumerate().map(|(i, m)| (self.bucket_of(&m.contact.node.id), m.stamp, i)).collect();
        want.sort_unstable();
        for (got, &(bucket, _, i)) in self.table.iter().zip(&want) {
            let want = &self.model[i].contact;
            assert_eq!(got, *want, "bucket {bucket} differs from the model (order: least recently seen first)");
        }
    }

    fn check_closest(&self, target: &NodeId, n: usize, now: Instant, filtered: bool) {
        let good = |c: &Contact| self.state(c, now) != NodeState::Bad;
        let got = if filtered {
            self.table.closest_filtered(target, n, |c| c.state(now, &self.policy) != NodeState::Bad)
        } else {
            self.table.closest(target, n)
        };
        let mut want: Vec<&Contact> = self.model.iter().map(|m| &m.contact).filter(|c| !filtered || good(c)).collect();
        want.sort_by(|a, b| target.cmp_distance(&a.node.id, &b.node.id));
        want.truncate(n.min(MAX_K));
        assert_eq!(got.len(), want.len(), "closest({target:?}, {n}) found {} not {}", got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(self.find(&g.id).is_some(), "closest returned a node the model lacks");
            assert_eq!(target.distance(&g.id), target.distance(&w.node.id), "closest is not sorted by distance");
        }
    }

    fn check_ping_candidates(&self, bucket: usize, n: usize, now: Instant) {
        let got = self.table.ping_candidates(bucket, n, now);
        let mut want = Vec::new();
        if bucket < self.table.bucket_count() {
            let members = self.members_of(bucket);
            for wanted in [NodeState::Questionable, NodeState::Bad, NodeState::Good] {
                for m in &members {
                    if self.state(&m.contact, now) == wanted {
                        want.push(m.contact.node);
                    }
                }
            }
        }
        want.truncate(n.min(MAX_K));
        assert_eq!(got.as_slice(), want.as_slice(), "ping_candidates({bucket}, {n})");
    }
}

fn read_id(input: &mut Input<'_>, h: &Harness, ids: &[NodeId]) -> NodeId {
    match input.below(8) {
        0..=2 if !ids.is_empty() => ids[input.below(ids.len())],
        0..=3 => near(&h.local, input),
        4 => h.local,
        5 => input.raw_id(if h.local.len() == 20 { 8 } else { 20 }),
        _ => input.raw_id(h.local.len()),
    }
}

fn read_addr(input: &mut Input<'_>) -> SocketAddr {
    let n = input.below(6) as u8;
    match n {
        0..=3 => SocketAddr::from(([10, 0, 0, n], 6881)),
        4 => SocketAddr::from(([10, 0, 0, 0], 6882)),
        _ => input.any_addr(),
    }
}

/// Runs one input; panics when the table and the model disagree.
pub fn check_routing(data: &[u8]) {
    let mut input = Input::new(data);
    let id_len = match input.below(4) {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => 20,
    };
    let k = 1 + input.below(MAX_K.min(12));
    let policy = NodeStatePolicy {
        fresh_for: Duration::from_secs(1 + input.below(1800) as u64),
        // Now and then above MAX_FAILURES, which the table lowers to it.
        max_failures: input.below(20) as u8,
    };
    let local = input.raw_id(id_len);
    // Mostly unwidened, as in a table with `Config::wide_buckets` 0; else 1 to 4 wide buckets.
    let wide = input.below(8).saturating_sub(3);
    let table = RoutingTable::with_policy(local, k, policy).with_wide_buckets(wide as u8);
    assert_eq!(table.wide_buckets(), wide as u8, "wide buckets");
    assert_eq!(table.policy().max_failures, policy.max_failures.min(MAX_FAILURES), "policy");
    let policy = *table.policy();
    let mut h = Harness { table, model: Vec::new(), policy, local, stamp: 0, k, wide };
    let mut rng = ChaCha8Rng::seed_from_u64(input.u64());
    let mut now = Instant::ZERO;
    // Ids seen so far, to hit known nodes again.
    let mut ids: Vec<NodeId> = Vec::new();
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        steps += 1;
        let op = input.below(12);
        match op {
            0..=2 => {
                let id = read_id(&mut input, &h, &ids);
                let addr = read_addr(&mut input);
                if ids.len() < 64 {
                    ids.push(id);
                }
                h.insert(NodeInfo::new(id, addr), now);
            }
            3 => {
                let id = read_id(&mut input, &h, &ids);
                let addr = read_addr(&mut input);
                let known = h.find(&id).is_some_and(|i| h.model[i].contact.node.addr == addr);
                assert_eq!(h.table.record_query(&id, addr, now), known, "record_query");
                if known {
                    let stamp = h.bump();
                    if let Some(i) = h.find(&id) {
                        h.model[i].contact.last_query = Some(kept(now));
                        h.model[i].contact.last_seen = kept(now);
                        h.model[i].stamp = stamp;
                    }
                }
            }
            4 => {
                let id = read_id(&mut input, &h, &ids);
                let got = h.table.record_failure(&id, now);
                let want = h.find(&id).map(|i| {
                    let c = &mut h.model[i].contact;
                    // The table counts up to MAX_FAILURES (4 bits of a record).
                    c.failures = c.failures.saturating_add(1).min(MAX_FAILURES);
                    c.failures
                });
                assert_eq!(got, want, "record_failure");
            }
            5 => {
                let id = read_id(&mut input, &h, &ids);
                let got = h.table.remove(&id);
                let want = h.find(&id).map(|i| h.model.remove(i).contact);
                assert_eq!(got, want, "remove");
            }
            6 => {
                let dead = read_id(&mut input, &h, &ids);
                let id = read_id(&mut input, &h, &ids);
                let addr = read_addr(&mut input);
                h.swap(&dead, NodeInfo::new(id, addr), now);
            }
            7 => {
                let target = if input.below(8) == 0 {
                    let len = 1 + input.below(crate::MAX_ID_LEN);
                    input.raw_id(len)
                } else {
                    read_id(&mut input, &h, &ids)
                };
                let n = input.below(MAX_K + 4);
                let filtered = input.bool();
                h.check_closest(&target, n, now, filtered);
            }
            8 => {
                let bucket = input.below(h.table.bucket_count() + 2);
                let n = input.below(MAX_K + 4);
                h.check_ping_candidates(bucket, n, now);
            }
            9 => {
                let interval = Duration::from_secs(u64::from(input.u16()));
                let stale: Vec<usize> = h.table.stale_buckets(now, interval).collect();
                let want: Vec<usize> = h
                    .table
                    .buckets()
                    .filter(|b| now.saturating_duration_since(b.last_changed) >= interval)
                    .map(|b| b.index)
                    .collect();
                assert_eq!(stale, want, "stale_buckets");
                if input.bool() {
                    let bucket = input.below(h.table.bucket_count() + 1);
                    h.table.mark_bucket_refreshed(bucket, now);
                    if let Some(view) = h.table.buckets().nth(bucket) {
                        assert_eq!(view.last_changed, now, "mark_bucket_refreshed");
                    }
                }
            }
            10 => {
                let bucket = input.below(h.table.bucket_count() + 2);
                let id = h.table.random_id_in_bucket(bucket, &mut rng);
                assert_eq!(id.len(), h.local.len(), "random id of the wrong length");
                assert_ne!(id, h.local, "random_id_in_bucket gave our own id");
                let expect = bucket.min(h.table.bucket_count() - 1);
                assert_eq!(h.table.bucket_for(&id), Some(expect), "random id outside bucket {bucket}");
            }
            _ => {
                now = match input.below(4) {
                    0 => now.saturating_sub(Duration::from_secs(u64::from(input.u8()))),
                    1 | 2 => now + Duration::from_secs(u64::from(input.u16())),
                    _ => now + Duration::from_millis(u64::from(input.u16())),
                };
            }
        }
        // The full comparison sorts the whole model, which was a third of an input's cost when
        // it ran after every step. The queries (7, 8, 10) and clock steps (11) take `&self` and
        // cannot change the table, so it runs after the calls that can (0–6, and 9, which may
        // mark a bucket refreshed) and once more at the end.
        if matches!(op, 0..=6 | 9) {
            h.compare();
        }
    }
    h.compare();
}

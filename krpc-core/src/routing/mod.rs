//! The Kademlia routing table (BEP 5, "Routing Table"), a port of tristanls/k-bucket with BEP 5
//! node states.
//!
//! # Structure
//!
//! k-bucket keeps a binary tree in which only the leaf containing our own id ever splits, so the
//! tree is a "caterpillar": a spine toward the local id with one unsplittable leaf hanging off
//! each level. [`RoutingTable`] stores those leaves in a `Vec`, indexed by the number of leading
//! bits their ids share with the local id:
//!
//! * bucket `i` (every bucket but the last) holds the contacts whose first bit differing from
//!   the local id is bit `i`, i.e. those at XOR distance `[2^(b-1-i), 2^(b-i))` for `b`-bit ids;
//! * the last bucket holds every contact sharing at least `last` leading bits, the range that
//!   contains our own id, and is the only one that splits. BEP 5: "When a bucket is full of
//!   known good nodes, no more nodes may be added unless our own node ID falls within the range
//!   of the bucket. In that case, the bucket is replaced by two new buckets each with half the
//!   range of the old bucket".
//!
//! Finding a node's bucket is therefore one prefix comparison, and a bucket is scanned
//! linearly (it holds at most k contacts). Each bucket is kept least recently seen first, so
//! the head is the first candidate for a ping.
//!
//! The table only records facts and reports outcomes ([`InsertOutcome`], [`SwapOutcome`]); it
//! sends nothing and emits no events. The engine that owns it runs BEP 5's ping-before-evict
//! protocol with [`RoutingTable::ping_candidates`] and [`RoutingTable::swap`].
//!
//! # Memory bound
//!
//! A bucket holds at most `k ≤` [`MAX_K`] contacts; there are at most as many buckets as the
//! id has bits (160 for BEP 5 ids, 256 at most). The table therefore never holds more than
//! `bits × k` contacts (1280 for 20-byte ids and k = 8) whatever its peers send, plus the
//! widened room of at most [`MAX_WIDE_BUCKETS`] far buckets when asked for
//! ([`RoutingTable::with_wide_buckets`]: 88 more with 3 of them at k = 8). Contacts are
//! stored packed, [`RoutingTable::entry_bytes`] each (35 for a BEP 5 id and an IPv4 address),
//! all buckets' records and 9 bytes per bucket in one allocation that grows and shrinks with
//! them in steps of an eighth to a quarter of its size, so a table costs what it holds,
//! rounded up as a size-class allocator rounds it: [`RoutingTable::heap_bytes`].
//! To fit, a contact's reply and query times are kept in 4 bytes each, rounded down to
//! [`TIME_RESOLUTION`].

mod bucket;
mod contact;
mod invariants;

use core::cmp::Ordering;
use core::net::SocketAddr;
use core::time::Duration;

use arrayvec::ArrayVec;

pub use self::bucket::BucketView;
use self::bucket::Layout;
use self::bucket::{BucketRef, Buckets};
pub use self::contact::{Contact, NodeState, NodeStatePolicy};
pub use self::invariants::InvariantViolation;
use crate::{Instant, MAX_ID_LEN, NodeId, NodeInfo};

/// The largest bucket size (k) a [`RoutingTable`] accepts; it also caps every list of nodes the
/// table returns, which lets those lists live on the stack.
pub const MAX_K: usize = 64;

/// The most contacts one bucket can hold: a bucket's count is kept in one byte, so the widening
/// of [`RoutingTable::with_wide_buckets`] stops there.
pub const MAX_BUCKET_CAPACITY: usize = 255;

/// The most far buckets [`RoutingTable::with_wide_buckets`] widens: with 4 the farthest holds
/// 16 k, libtorrent's extended routing table at k = 8 (128, 64, 32 and 16 contacts).
pub const MAX_WIDE_BUCKETS: u8 = 4;

/// The most consecutive failures a [`RoutingTable`] counts for a contact: a record keeps the
/// count in 4 bits beside its flags, one byte for both (a million-node simulation holds about
/// 140 million records). BEP 5 calls a node bad after "multiple queries in a row" fail, and
/// the default policy after 2, so 15 is far above any useful threshold; a policy's
/// `max_failures` above it counts as 15.
pub const MAX_FAILURES: u8 = 15;

/// How long a bucket may go unchanged before it should be refreshed. BEP 5: "Buckets that have
/// not been changed in 15 minutes should be 'refreshed.'"
pub const BUCKET_REFRESH_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// How precisely the table keeps a contact's times: [`Contact::last_seen`],
/// [`Contact::last_reply`] and [`Contact::last_query`] read back rounded down to a multiple
/// of 2^32 ns (about 4.29 s) since [`Instant::ZERO`], never later than the time recorded and
/// less than this much earlier.
///
/// Packing each time in 4 bytes saves 8 bytes per contact; ticks of 2^32 ns cover every
/// [`Instant`] (no saturation even at [`Instant::MAX`]), and a tick is 0.5% of BEP 5's 15
/// minutes, so a node goes questionable at most this much early, never late. A
/// [`NodeStatePolicy::fresh_for`] shorter than this may leave a node questionable right after
/// it answers.
pub const TIME_RESOLUTION: Duration = Duration::from_nanos(1 << 32);

/// What [`RoutingTable::insert_verified`] did with a node.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The node was new and had room: it was added at the tail of its bucket.
    Added,
    /// The node was known at this address: its reply was recorded and it moved to the tail of
    /// its bucket (the JS k-rpc never moved re-seen nodes, weakness W12).
    Refreshed,
    /// The node was known at another address and answered from this one: the address was
    /// updated, the reply recorded and the node moved to the tail.
    AddressChanged {
        /// The address it had before.
        previous: SocketAddr,
    },
    /// The bucket was full but held a bad node, which was evicted for this one. BEP 5: "If any
    /// nodes in the bucket are known to have become bad, then one is replaced by the new node."
    Replaced {
        /// The bad contact that left the table.
        evicted: Contact,
    },
    /// The bucket is full of good or questionable nodes and cannot split: the node was not
    /// added. The caller may ping [`RoutingTable::ping_candidates`] and resolve with
    /// [`RoutingTable::swap`].
    BucketFull {
        /// The full bucket's index.
        bucket: usize,
    },
    /// The node has our own id; the table never holds it.
    IsLocal,
    /// The node's id is not as long as the local id; the table never holds it.
    WrongIdLength,
}

/// What [`RoutingTable::swap`] did.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapOutcome {
    /// The dead contact was removed and the replacement added at the tail of the same bucket.
    Swapped {
        /// The contact that left the table.
        evicted: Contact,
    },
    /// The dead node is not in the table (already removed or never there); nothing changed.
    /// The replacement can still be offered with [`RoutingTable::insert_verified`].
    DeadNotFound,
    /// The dead node is good again (it answered since it was pinged); nothing changed.
    DeadIsGood,
    /// The replacement cannot take the dead node's place: it is already in the table, belongs
    /// to another bucket, has our id or an id of the wrong length. Nothing changed.
    Refused,
}

/// A Kademlia routing table: at most k contacts per bucket, buckets split toward the local id.
///
/// Optionally the farthest buckets hold more ([`with_wide_buckets`](Self::with_wide_buckets)).
///
/// ```
/// use core::net::SocketAddr;
/// use krpc_core::routing::{InsertOutcome, RoutingTable};
/// use krpc_core::{Instant, NodeId, NodeInfo};
///
/// let mut table = RoutingTable::new(NodeId::from_array([0; 20]), 8);
/// let addr: SocketAddr = "192.0.2.1:6881".parse().unwrap();
/// let node = NodeInfo::new(NodeId::from_array([0xff; 20]), addr);
/// assert_eq!(table.insert_verified(node, Instant::ZERO), InsertOutcome::Added);
/// assert_eq!(table.closest(&NodeId::from_array([0xf0; 20]), 8).as_slice(), &[node]);
/// ```
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local_id: NodeId,
    /// At most [`MAX_K`] = 64: a byte.
    k: u8,
    policy: NodeStatePolicy,
    /// Never empty: the table starts with one bucket and buckets are never merged.
    buckets: Buckets,
    /// How many of the farthest buckets hold more than k ([`Self::with_wide_buckets`]).
    wide: u8,
    /// At most 256 buckets of 64, and 4 wide ones of at most 255: fits in 16 bits.
    len: u16,
    /// How the buckets' records are laid out (narrow until an IPv6 address arrives).
    layout: Layout,
}

impl RoutingTable {
    /// An empty table for `local_id` with `k` contacts per bucket and BEP 5's node-state policy.
    ///
    /// The first bucket's "last changed" time is [`Instant::ZERO`], so it is stale (due for a
    /// refresh) as soon as the driver's clock passes [`BUCKET_REFRESH_INTERVAL`].
    ///
    /// # Panics
    ///
    /// If `k` is 0 or greater than [`MAX_K`].
    pub fn new(local_id: NodeId, k: usize) -> RoutingTable {
        RoutingTable::with_policy(local_id, k, NodeStatePolicy::DEFAULT)
    }

    /// An empty table with a custom node-state policy. A `max_failures` above
    /// [`MAX_FAILURES`] is lowered to it: the table counts no further.
    ///
    /// # Panics
    ///
    /// If `k` is 0 or greater than [`MAX_K`].
    pub fn with_policy(local_id: NodeId, k: usize, policy: NodeStatePolicy) -> RoutingTable {
        assert!(k > 0 && k <= MAX_K, "bucket size k = {k} is outside 1..={MAX_K}");
        let buckets = Buckets::new(Instant::ZERO);
        let policy = NodeStatePolicy { max_failures: policy.max_failures.min(MAX_FAILURES), ..policy };
        RoutingTable { local_id, k: k as u8, policy, buckets, wide: 0, len: 0, layout: Layout::new(local_id.len()) }
    }

    /// The same table with its `n` farthest buckets widened: bucket `i` of the first `n` holds
    /// `k · 2^(n − i)` contacts (at most [`MAX_BUCKET_CAPACITY`]) once it has split off our
    /// own, so with `n` = 3 and k = 8 the far half of the id space holds 64, the next quarter
    /// 32 and the next eighth 16.
    /// The bucket holding our own id always holds k, and splits as before.
    ///
    /// Why: half of all targets fall in the far half of the id space, and a lookup's first
    /// step starts from the contacts we hold there. The more of that range's sub-ranges they
    /// cover, the nearer the target the first answers start (libtorrent's extended routing
    /// table, 128, 64, 32 and 16 contacts at k = 8, does the same). It costs memory only where
    /// nodes come: the buckets fill as any bucket does, with verified nodes, and nothing is
    /// displaced to make the room.
    ///
    /// ```
    /// use krpc_core::routing::RoutingTable;
    /// use krpc_core::NodeId;
    ///
    /// let table = RoutingTable::new(NodeId::from_array([0; 20]), 8).with_wide_buckets(3);
    /// // One bucket so far: it holds our id, so it holds k.
    /// assert_eq!(table.capacity(0), 8);
    /// ```
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`MAX_WIDE_BUCKETS`].
    #[must_use]
    pub fn with_wide_buckets(mut self, n: u8) -> RoutingTable {
        assert!(n <= MAX_WIDE_BUCKETS, "{n} wide buckets: at most {MAX_WIDE_BUCKETS}");
        self.wide = n;
        self
    }

    /// How many contacts bucket `bucket` may hold: k, or more for one of the farthest buckets
    /// of a table [`with_wide_buckets`](Self::with_wide_buckets) once it has split off ours.
    pub fn capacity(&self, bucket: usize) -> usize {
        let wide = usize::from(self.wide);
        if bucket < wide && bucket < self.last() {
            (self.k() << (wide - bucket)).min(MAX_BUCKET_CAPACITY)
        } else {
            self.k()
        }
    }

    /// How many of the farthest buckets are widened ([`with_wide_buckets`](Self::with_wide_buckets)).
    pub fn wide_buckets(&self) -> u8 {
        self.wide
    }

    /// Our own id.
    pub fn local_id(&self) -> &NodeId {
        &self.local_id
    }

    /// The bucket size.
    pub fn k(&self) -> usize {
        usize::from(self.k)
    }

    /// The node-state policy.
    pub fn policy(&self) -> &NodeStatePolicy {
        &self.policy
    }

    /// The number of contacts.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the table holds no contact.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes one contact takes in this table: the id, the address (6 bytes while every address
    /// is IPv4, 26 once an IPv6 one arrived) and 9 bytes of history (two 4-byte times, and
    /// the failure count and flags in one byte). 35 for a BEP 5 id and IPv4.
    pub fn entry_bytes(&self) -> usize {
        self.layout.stride()
    }

    /// Heap bytes the table holds, in one allocation: [`entry_bytes`](Self::entry_bytes) per
    /// contact, 9 per bucket (its "last changed" time and its length) and one (the bucket
    /// count). Nothing is reserved ahead.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.heap_bytes()
    }

    /// The number of buckets (at least 1, at most the id length in bits).
    pub fn bucket_count(&self) -> usize {
        self.buckets.count()
    }

    /// The index of the bucket `id` belongs to, or `None` if its length differs from the local
    /// id's. The local id itself belongs to the last bucket.
    pub fn bucket_for(&self, id: &NodeId) -> Option<usize> {
        (id.len() == self.local_id.len()).then(|| self.index_for(id))
    }

    /// The contact with this id (a copy: the table stores contacts packed).
    pub fn get(&self, id: &NodeId) -> Option<Contact> {
        self.bucket_for(id).and_then(|i| self.buckets.bucket(self.layout, i).get(self.layout, id))
    }

    /// Whether a contact with this id is in the table.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.bucket_for(id).is_some_and(|i| self.buckets.bucket(self.layout, i).position(self.layout, id).is_some())
    }

    /// Every contact, bucket by bucket from the farthest (bucket 0, ids differing from ours in
    /// the first bit) to the nearest, and within a bucket least recently seen first.
    ///
    /// The JS k-bucket walks its tree by id value instead, so its order depends on the local
    /// id's bits; this order depends only on the distance bands.
    pub fn iter(&self) -> impl Iterator<Item = Contact> + '_ {
        let l = self.layout;
        self.buckets.iter(l).flat_map(move |b| b.contacts(l))
    }

    /// The contacts of one bucket, least recently seen first (empty if there is no such bucket).
    pub fn bucket_contacts(&self, bucket: usize) -> impl ExactSizeIterator<Item = Contact> + '_ {
        let l = self.layout;
        let records: &[u8] = self.buckets.get(l, bucket).map_or(&[], |b| b.records());
        records.chunks_exact(l.stride()).map(move |r| l.decode(r))
    }

    /// How many contacts one bucket holds (0 if there is no such bucket).
    pub fn bucket_len(&self, bucket: usize) -> usize {
        self.buckets.len(bucket)
    }

    /// A summary of every bucket, farthest first.
    pub fn buckets(&self) -> impl Iterator<Item = BucketView> {
        self.buckets.iter(self.layout).enumerate().map(|(index, b)| {
            let (prefix, prefix_bits) = self.prefix_of(index);
            BucketView { index, len: b.len(self.layout), last_changed: b.last_changed, prefix, prefix_bits }
        })
    }

    /// Records that `node` answered one of our queries, so its address is verified, and tries
    /// to store it.
    ///
    /// A full bucket that contains our id splits (possibly several times) until the node's
    /// bucket has room or cannot split. A full bucket that cannot split takes the node only in
    /// place of a bad contact. Splitting is tried before replacing, as k-bucket does, because
    /// it keeps every contact.
    pub fn insert_verified(&mut self, node: NodeInfo, now: Instant) -> InsertOutcome {
        if node.id.len() != self.local_id.len() {
            return InsertOutcome::WrongIdLength;
        }
        if node.id == self.local_id {
            return InsertOutcome::IsLocal;
        }
        self.fit(&node.addr);
        let l = self.layout;
        let mut index = self.index_for(&node.id);
        if let Some(pos) = self.buckets.bucket(l, index).position(l, &node.id) {
            // BEP 5: "When a node in a bucket is pinged and it responds, or a node is added to a
            // bucket, or a node in a bucket is replaced with another node, the bucket's last
            // changed property should be updated."
            let mut contact = self.buckets.bucket(l, index).contact(l, pos);
            self.buckets.set_changed(index, now);
            return match self.buckets.move_to_tail(l, index, pos) {
                Some(pos) => {
                    let previous = contact.node.addr;
                    contact.mark_reply(node.addr, now);
                    self.buckets.set(l, index, pos, &contact);
                    if previous == node.addr {
                        InsertOutcome::Refreshed
                    } else {
                        InsertOutcome::AddressChanged { previous }
                    }
                }
                None => InsertOutcome::Refreshed,
            };
        }
        loop {
            let can_split = index == self.last() && self.buckets.count() < self.id_bits();
            if self.buckets.len(index) < self.capacity(index) {
                self.buckets.push(l, index, &Contact::verified(node, now));
                self.buckets.set_changed(index, now);
                self.len += 1;
                return InsertOutcome::Added;
            }
            if can_split {
                self.split_last();
                index = self.index_for(&node.id);
                continue;
            }
            let worst = self.buckets.bucket(l, index).worst_bad(l, now, &self.policy);
            if let Some(evicted) =
                worst.and_then(|pos| self.buckets.replace(l, index, pos, &Contact::verified(node, now)))
            {
                self.buckets.set_changed(index, now);
                return InsertOutcome::Replaced { evicted };
            }
            return InsertOutcome::BucketFull { bucket: index };
        }
    }

    /// Stores a node restored from a saved table, as questionable: it has not answered this
    /// run, so it counts as neither good nor verified until it does. It only takes free room
    /// (splitting our own bucket as `insert_verified` does) and never replaces anyone; a node
    /// already in the table is left as it is.
    pub fn insert_restored(&mut self, node: NodeInfo, now: Instant) -> InsertOutcome {
        if node.id.len() != self.local_id.len() {
            return InsertOutcome::WrongIdLength;
        }
        if node.id == self.local_id {
            return InsertOutcome::IsLocal;
        }
        let mut index = self.index_for(&node.id);
        if self.buckets.bucket(self.layout, index).position(self.layout, &node.id).is_some() {
            return InsertOutcome::Refreshed;
        }
        self.fit(&node.addr);
        let l = self.layout;
        loop {
            let can_split = index == self.last() && self.buckets.count() < self.id_bits();
            if self.buckets.len(index) < self.capacity(index) {
                self.buckets.push(l, index, &Contact::restored(node, now));
                self.len += 1;
                return InsertOutcome::Added;
            }
            if !can_split {
                return InsertOutcome::BucketFull { bucket: index };
            }
            self.split_last();
            index = self.index_for(&node.id);
        }
    }

    /// Records that a node sent us a query from `addr`.
    ///
    /// A query's source address is not verified (anyone can put any id in a query), so this
    /// never inserts a node nor changes an address: it only refreshes a contact already known
    /// at exactly this address, setting its query and seen times and moving it to the tail.
    /// Returns whether such a contact exists; `false` for an unknown node or one known at
    /// another address, which the caller may ping to verify.
    pub fn record_query(&mut self, id: &NodeId, addr: SocketAddr, now: Instant) -> bool {
        let Some(index) = self.bucket_for(id) else { return false };
        let l = self.layout;
        let bucket = self.buckets.bucket(l, index);
        let Some(pos) = bucket.position(l, id) else { return false };
        let mut contact = bucket.contact(l, pos);
        if contact.node.addr != addr {
            return false;
        }
        match self.buckets.move_to_tail(l, index, pos) {
            Some(pos) => {
                contact.last_query = Some(now);
                contact.last_seen = now;
                self.buckets.set(l, index, pos, &contact);
                true
            }
            None => false,
        }
    }

    /// Records that one of our queries to `id` timed out and returns its new count of
    /// consecutive failures (at most [`MAX_FAILURES`]), or `None` if it is not in the table.
    ///
    /// The contact stays: one timeout never evicts (the JS k-rpc dropped a node on its first
    /// timeout, weakness W5). Once the count reaches [`NodeStatePolicy::max_failures`] the node
    /// is bad and the next node offered to its full bucket replaces it.
    pub fn record_failure(&mut self, id: &NodeId, now: Instant) -> Option<u8> {
        // The contact keeps no failure time: its state needs only the count, and `last_seen`
        // must keep meaning "last heard from".
        let _ = now;
        let index = self.bucket_for(id)?;
        let l = self.layout;
        let bucket = self.buckets.bucket(l, index);
        let pos = bucket.position(l, id)?;
        let mut contact = bucket.contact(l, pos);
        contact.failures = contact.failures.saturating_add(1).min(MAX_FAILURES);
        self.buckets.set(l, index, pos, &contact);
        Some(contact.failures)
    }

    /// Removes a contact and returns it.
    pub fn remove(&mut self, id: &NodeId) -> Option<Contact> {
        let index = self.bucket_for(id)?;
        let l = self.layout;
        let pos = self.buckets.bucket(l, index).position(l, id)?;
        let removed = self.buckets.remove(l, index, pos)?;
        self.len -= 1;
        Some(removed)
    }

    /// Resolves BEP 5's ping-before-evict protocol: `dead` failed to answer, so `replacement`
    /// (a node that answered us, as for [`insert_verified`](Self::insert_verified)) takes its
    /// place, provided both belong to the same bucket.
    ///
    /// BEP 5: "If a node in the bucket fails to respond to a ping, it is suggested to try once
    /// more before discarding the node and replacing it with a new good node." The retry is the
    /// caller's; the table only refuses to evict a node that is good again.
    pub fn swap(&mut self, dead: &NodeId, replacement: NodeInfo, now: Instant) -> SwapOutcome {
        if replacement.id.len() != self.local_id.len() || replacement.id == self.local_id {
            return SwapOutcome::Refused;
        }
        let Some(index) = self.bucket_for(dead) else { return SwapOutcome::DeadNotFound };
        let bucket = self.buckets.bucket(self.layout, index);
        let Some(pos) = bucket.position(self.layout, dead) else { return SwapOutcome::DeadNotFound };
        if bucket.contact(self.layout, pos).state(now, &self.policy) == NodeState::Good {
            return SwapOutcome::DeadIsGood;
        }
        if self.index_for(&replacement.id) != index {
            return SwapOutcome::Refused;
        }
        if bucket.position(self.layout, &replacement.id).is_some() {
            return SwapOutcome::Refused;
        }
        self.fit(&replacement.addr);
        let l = self.layout;
        let Some(evicted) = self.buckets.replace(l, index, pos, &Contact::verified(replacement, now)) else {
            return SwapOutcome::DeadNotFound;
        };
        self.buckets.set_changed(index, now);
        SwapOutcome::Swapped { evicted }
    }

    /// Up to `n` contacts of `bucket` to ping when it refused a node: questionable ones first,
    /// then bad ones, then good ones, each group least recently seen first.
    ///
    /// Oldest first follows k-bucket, which offers the head of the bucket, and BEP 5 ("the
    /// least recently seen node is pinged"): long-lived nodes are the likeliest to stay, so the
    /// network organises around them (tristanls/k-bucket#18). `n` is clamped to [`MAX_K`]; an
    /// unknown bucket gives an empty list.
    pub fn ping_candidates(&self, bucket: usize, n: usize, now: Instant) -> ArrayVec<NodeInfo, MAX_K> {
        let mut out = ArrayVec::new();
        let n = n.min(MAX_K);
        let Some(bucket) = self.buckets.get(self.layout, bucket) else { return out };
        for wanted in [NodeState::Questionable, NodeState::Bad, NodeState::Good] {
            for c in bucket.contacts(self.layout) {
                if out.len() >= n {
                    return out;
                }
                if c.state(now, &self.policy) == wanted {
                    out.push(c.node);
                }
            }
        }
        out
    }

    /// The `n` contacts nearest to `target` by XOR distance, nearest first (`n` is clamped to
    /// [`MAX_K`]).
    pub fn closest(&self, target: &NodeId, n: usize) -> ArrayVec<NodeInfo, MAX_K> {
        self.closest_filtered(target, n, |_| true)
    }

    /// The `n` contacts accepted by `pred` nearest to `target`, nearest first (`n` is clamped
    /// to [`MAX_K`]).
    ///
    /// Only the buckets that can hold an answer are visited. With `c` the number of leading
    /// bits `target` shares with the local id, a contact of bucket `c` is nearer than any other,
    /// the contacts of the buckets after `c` all have their first distance bit at `c` (one band,
    /// visited together), and each bucket before `c` is a band farther than the previous one.
    /// Whole buckets are visited in that order until `n` contacts are found. A target of
    /// another length than the local id makes every bucket a candidate.
    pub fn closest_filtered(
        &self,
        target: &NodeId,
        n: usize,
        mut pred: impl FnMut(&Contact) -> bool,
    ) -> ArrayVec<NodeInfo, MAX_K> {
        let n = n.min(MAX_K);
        let mut out = ArrayVec::new();
        if n == 0 {
            return out;
        }
        if target.len() != self.local_id.len() {
            for bucket in self.buckets.iter(self.layout) {
                offer_bucket(bucket, self.layout, target, n, &mut pred, &mut out);
            }
            return out;
        }
        // Every bucket is one band of XOR distance to the target, and the bands can be listed
        // in order without looking inside them. With c = the target's bucket and x = target ^
        // local: bucket c is nearest; a bucket j > c holds distances equal to x with bit j
        // flipped, so the buckets whose bit of x is 1 come next (lowest j first), then the last
        // bucket (x itself up to its depth), then those whose bit is 0 (highest j first); the
        // buckets below c come last, nearest (highest) first. `offer_bucket` keeps the n best,
        // so the walk may stop as soon as a whole band could not improve on a full result.
        let start = self.index_for(target);
        let last = self.last();
        let x = |bit: usize| target.bit(bit) != self.local_id.bit(bit);
        let order = core::iter::once(start)
            .chain((start + 1..last).filter(|&j| x(j)))
            .chain((start < last).then_some(last))
            .chain((start + 1..last).rev().filter(|&j| !x(j)))
            .chain((0..start).rev());
        for bucket in order {
            if out.len() >= n {
                break;
            }
            offer_bucket(self.buckets.bucket(self.layout, bucket), self.layout, target, n, &mut pred, &mut out);
        }
        out
    }

    /// The buckets unchanged for at least `interval` at `now` (BEP 5: "Buckets that have not
    /// been changed in 15 minutes should be 'refreshed.'", see [`BUCKET_REFRESH_INTERVAL`]).
    pub fn stale_buckets(&self, now: Instant, interval: Duration) -> impl Iterator<Item = usize> {
        self.buckets
            .iter(self.layout)
            .enumerate()
            .filter(move |(_, b)| now.saturating_duration_since(b.last_changed) >= interval)
            .map(|(i, _)| i)
    }

    /// Marks a bucket as refreshed at `now` (after a lookup for an id in its range, BEP 5:
    /// "Buckets are refreshed by picking a random ID in the range of the bucket and performing
    /// a find_nodes search on it."). An unknown bucket is ignored.
    pub fn mark_bucket_refreshed(&mut self, bucket: usize, now: Instant) {
        self.buckets.set_changed(bucket, now);
    }

    /// A random id in `bucket`'s range, never the local id: for a far bucket `i`, the first `i`
    /// bits of the local id, then bit `i` flipped, then random bits; for the last bucket, the
    /// first `last` bits of the local id, then random bits. An index past the last bucket is
    /// treated as the last bucket.
    pub fn random_id_in_bucket<R: rand_core::Rng + ?Sized>(&self, bucket: usize, rng: &mut R) -> NodeId {
        let last = self.last();
        let len = self.local_id.len();
        let mut random = [0u8; MAX_ID_LEN];
        rng.fill_bytes(&mut random[..len]);
        if bucket < last {
            let flipped = self.local_id.with_bit(bucket, !self.local_id.bit(bucket));
            return splice(&flipped, bucket + 1, &random);
        }
        let id = splice(&self.local_id, last, &random);
        if id == self.local_id {
            // The last bit is never part of the prefix (last < bits), so flipping it stays in
            // range.
            let final_bit = len * 8 - 1;
            return id.with_bit(final_bit, !id.bit(final_bit));
        }
        id
    }

    fn id_bits(&self) -> usize {
        self.local_id.len() * 8
    }

    fn last(&self) -> usize {
        self.buckets.count() - 1
    }

    /// The bucket of an id of the local id's length.
    fn index_for(&self, id: &NodeId) -> usize {
        self.local_id.common_prefix_len(id).min(self.last())
    }

    /// Splits the last bucket: its contacts sharing exactly `last` bits with us stay as a far
    /// bucket that never splits again, the nearer ones form the new last bucket.
    fn split_last(&mut self) {
        self.buckets.split_last(self.layout, &self.local_id);
    }

    /// Widens every record before an address that a narrow record cannot hold is stored (an
    /// IPv6 node in a table that had only IPv4 ones). Once only: a table never narrows again.
    fn fit(&mut self, addr: &SocketAddr) {
        if self.layout.wide || Layout::narrow_holds(addr) {
            return;
        }
        let wide = Layout { wide: true, ..self.layout };
        self.buckets.relayout(self.layout, wide);
        self.layout = wide;
    }

    fn prefix_of(&self, index: usize) -> (NodeId, usize) {
        let zero = [0u8; MAX_ID_LEN];
        if index < self.last() {
            let flipped = self.local_id.with_bit(index, !self.local_id.bit(index));
            (splice(&flipped, index + 1, &zero), index + 1)
        } else {
            (splice(&self.local_id, index, &zero), index)
        }
    }
}

/// The first `bits` bits of `prefix` followed by the remaining bits of `rest` (which must be
/// at least as long as `prefix`).
fn splice(prefix: &NodeId, bits: usize, rest: &[u8; MAX_ID_LEN]) -> NodeId {
    let src = prefix.as_bytes();
    let len = src.len();
    let mut buf = *rest;
    let full = (bits / 8).min(len);
    buf[..full].copy_from_slice(&src[..full]);
    let partial = bits % 8;
    if partial != 0 && full < len {
        let mask = !(0xffu8 >> partial);
        buf[full] = (src[full] & mask) | (buf[full] & !mask);
    }
    // Cannot fail: the length is the prefix's, which is valid.
    NodeId::from_bytes(&buf[..len]).unwrap_or(*prefix)
}

/// Offers every contact of `bucket` accepted by `pred` to `out`, which keeps the `n` nearest
/// to `target` sorted nearest first (ties keep their arrival order).
fn offer_bucket(
    bucket: BucketRef<'_>,
    l: Layout,
    target: &NodeId,
    n: usize,
    pred: &mut impl FnMut(&Contact) -> bool,
    out: &mut ArrayVec<NodeInfo, MAX_K>,
) {
    for (i, raw) in bucket.ids(l).enumerate() {
        // The distance first, on the packed id: most contacts lose to a full result's
        // farthest entry, and those are never built.
        let Ok(id) = NodeId::from_bytes(raw) else { continue };
        let id = &id;
        if out.len() >= n && out.last().is_some_and(|worst| target.cmp_distance(&worst.id, id) != Ordering::Greater) {
            continue;
        }
        let pos = out.partition_point(|x| target.cmp_distance(&x.id, id) != Ordering::Greater);
        if pos >= n {
            continue;
        }
        let contact = bucket.contact(l, i);
        if !pred(&contact) {
            continue;
        }
        if out.len() >= n {
            out.pop();
        }
        // pos < n <= MAX_K and pos <= out.len() < n, so this neither overflows nor panics.
        out.insert(pos, contact.node);
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng, SeedableRng};

    use super::bucket::kept;
    use super::*;

    fn id(bytes: &[u8]) -> NodeId {
        NodeId::from_bytes(bytes).unwrap()
    }

    fn addr_for(id: &NodeId) -> SocketAddr {
        let b = id.as_bytes();
        SocketAddr::from(([10, 0, b[0], b[b.len() - 1]], 6881))
    }

    fn node(bytes: &[u8]) -> NodeInfo {
        let id = id(bytes);
        NodeInfo::new(id, addr_for(&id))
    }

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    fn at_mins(m: u64) -> Instant {
        Instant::ZERO + mins(m)
    }

    fn add(table: &mut RoutingTable, bytes: &[u8]) -> InsertOutcome {
        table.insert_verified(node(bytes), Instant::ZERO)
    }

    fn ids_of(nodes: &[NodeInfo]) -> Vec<NodeId> {
        nodes.iter().map(|n| n.id).collect()
    }

    fn bucket_ids(table: &RoutingTable, bucket: usize) -> Vec<NodeId> {
        table.bucket_contacts(bucket).map(|c| c.node.id).collect()
    }

    /// Every structural promise of the table.
    fn check_invariants(table: &RoutingTable) {
        if let Err(violation) = table.check_invariants() {
            panic!("{violation}");
        }
    }

    fn brute_force_closest(
        table: &RoutingTable,
        target: &NodeId,
        n: usize,
        mut pred: impl FnMut(&Contact) -> bool,
    ) -> Vec<NodeInfo> {
        let mut all: Vec<NodeInfo> = table.iter().filter(|c| pred(c)).map(|c| c.node).collect();
        all.sort_by(|a, b| target.cmp_distance(&a.id, &b.id));
        all.truncate(n.min(MAX_K));
        all
    }

    /// An id of the local id's length sharing exactly `depth` leading bits with it.
    fn id_at_depth(local: &NodeId, depth: usize, rng: &mut ChaCha8Rng) -> NodeId {
        let mut random = [0u8; MAX_ID_LEN];
        rng.fill_bytes(&mut random);
        splice(&local.with_bit(depth, !local.bit(depth)), depth + 1, &random)
    }

    /// A random id, half the time one near `local` so that tables grow deep.
    fn random_id(local: &NodeId, rng: &mut ChaCha8Rng) -> NodeId {
        let bits = local.len() * 8;
        if rng.next_u32() % 2 == 0 {
            NodeId::random(local.len(), rng).unwrap()
        } else {
            id_at_depth(local, rng.next_u32() as usize % bits, rng)
        }
    }

    #[test]
    fn first_contact_is_stored() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        assert!(table.is_empty());
        assert_eq!(add(&mut table, &[0x80, 0]), InsertOutcome::Added);
        assert_eq!(table.len(), 1);
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 0])]);
        let contact = table.get(&id(&[0x80, 0])).unwrap();
        assert_eq!(contact.node, node(&[0x80, 0]));
        assert_eq!(contact.last_reply, Some(Instant::ZERO));
        assert_eq!(contact.failures, 0);
    }

    #[test]
    fn duplicate_does_not_grow_the_count() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        assert_eq!(add(&mut table, &[0x80, 0]), InsertOutcome::Added);
        assert_eq!(add(&mut table, &[0x80, 0]), InsertOutcome::Refreshed);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn count_ignores_duplicates() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        assert_eq!(table.len(), 0);
        for bytes in [[1, 1], [1, 2], [1, 1], [2, 1], [1, 3], [2, 1], [1, 4], [1, 1], [2, 2], [1, 2]] {
            let _ = add(&mut table, &bytes);
        }
        assert_eq!(table.len(), 6);
        check_invariants(&table);
    }

    #[test]
    fn reseen_node_moves_to_the_tail() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let _ = add(&mut table, &[0x80, 1]);
        let _ = add(&mut table, &[0x80, 2]);
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 1]), id(&[0x80, 2])]);
        assert_eq!(table.insert_verified(node(&[0x80, 1]), at_mins(1)), InsertOutcome::Refreshed);
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 2]), id(&[0x80, 1])]);
        let contact = table.get(&id(&[0x80, 1])).unwrap();
        // A contact's times are kept rounded down; the bucket's "last changed" is exact.
        assert_eq!(contact.last_seen, kept(at_mins(1)));
        assert_eq!(table.buckets().next().unwrap().last_changed, at_mins(1));
    }

    #[test]
    fn querying_node_moves_to_the_tail() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let _ = add(&mut table, &[0x80, 1]);
        let _ = add(&mut table, &[0x80, 2]);
        assert!(table.record_query(&id(&[0x80, 1]), addr_for(&id(&[0x80, 1])), at_mins(1)));
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 2]), id(&[0x80, 1])]);
        let contact = table.get(&id(&[0x80, 1])).unwrap();
        assert_eq!((contact.last_query, contact.last_seen), (Some(kept(at_mins(1))), kept(at_mins(1))));
        // A query is not one of BEP 5's bucket changes.
        assert_eq!(table.buckets().next().unwrap().last_changed, Instant::ZERO);
    }

    #[test]
    fn contact_beyond_k_in_a_far_bucket_is_refused_and_the_head_is_offered_for_pinging() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        for j in 0..20 {
            assert_eq!(add(&mut table, &[0x80, j]), InsertOutcome::Added);
        }
        // The root splits (it holds our id), but every contact is far, so bucket 0 stays full.
        assert_eq!(add(&mut table, &[0x80, 20]), InsertOutcome::BucketFull { bucket: 0 });
        assert_eq!(table.bucket_count(), 2);
        assert!(!table.contains(&id(&[0x80, 20])));
        let candidates = table.ping_candidates(0, 3, Instant::ZERO);
        assert_eq!(ids_of(&candidates), bucket_ids(&table, 0)[..3]);
        assert_eq!(ids_of(&candidates), [id(&[0x80, 0]), id(&[0x80, 1]), id(&[0x80, 2])]);
        check_invariants(&table);
    }

    /// The JS split.js table: 1-byte ids 0x01..=0x15 around the local id 0x00, k = 20.
    fn split_table() -> RoutingTable {
        let mut table = RoutingTable::new(id(&[0x00]), 20);
        for i in 0x01..=0x14 {
            assert_eq!(add(&mut table, &[i]), InsertOutcome::Added);
        }
        assert_eq!(table.bucket_count(), 1);
        assert_eq!(add(&mut table, &[0x15]), InsertOutcome::Added);
        table
    }

    #[test]
    fn wide_far_buckets_hold_k_times_a_power_of_two_once_split_off_and_our_own_holds_k() {
        let mut table = RoutingTable::new(id(&[0x00, 0x00]), 2).with_wide_buckets(2);
        assert_eq!(table.wide_buckets(), 2);
        // One bucket: it holds our id, so it holds k and splits when full.
        assert_eq!(table.capacity(0), 2);
        assert_eq!(add(&mut table, &[0x80, 0]), InsertOutcome::Added);
        assert_eq!(add(&mut table, &[0x80, 1]), InsertOutcome::Added);
        assert_eq!(add(&mut table, &[0x80, 2]), InsertOutcome::Added, "the full own bucket split");
        assert_eq!(table.bucket_count(), 2);
        // The far half is bucket 0 of 2 widened ones: k · 2^2; our own, now bucket 1: k.
        assert_eq!((table.capacity(0), table.capacity(1)), (8, 2));
        for j in 3..8 {
            assert_eq!(add(&mut table, &[0x80, j]), InsertOutcome::Added, "far contact {j}");
        }
        assert_eq!(add(&mut table, &[0x80, 8]), InsertOutcome::BucketFull { bucket: 0 });
        assert_eq!(table.bucket_len(0), 8);
        // The next quarter: k · 2 once split off.
        for j in 0..3 {
            assert_eq!(add(&mut table, &[0x40, j]), InsertOutcome::Added);
        }
        assert_eq!((table.bucket_count(), table.capacity(1), table.capacity(2)), (3, 4, 2));
        assert_eq!(add(&mut table, &[0x40, 3]), InsertOutcome::Added);
        assert_eq!(add(&mut table, &[0x40, 4]), InsertOutcome::BucketFull { bucket: 1 });
        // The eighth after it is not widened (2 wide buckets): k.
        for j in 0..2 {
            assert_eq!(add(&mut table, &[0x20, j]), InsertOutcome::Added);
        }
        // The third splits our bucket again, then finds its new bucket full at k.
        assert_eq!(add(&mut table, &[0x20, 2]), InsertOutcome::BucketFull { bucket: 2 });
        assert_eq!((table.bucket_count(), table.capacity(2), table.bucket_len(2)), (4, 2, 2));
        assert_eq!(table.len(), 8 + 4 + 2);
        check_invariants(&table);
        // An unwidened table refuses the far half's third contact.
        let mut plain = RoutingTable::new(id(&[0x00, 0x00]), 2);
        for j in 0..3 {
            let _ = add(&mut plain, &[0x80, j]);
        }
        assert_eq!(add(&mut plain, &[0x80, 3]), InsertOutcome::BucketFull { bucket: 0 });
    }

    #[test]
    fn a_widened_bucket_stops_at_255_contacts() {
        let mut table = RoutingTable::new(id(&[0x00, 0x00]), MAX_K).with_wide_buckets(MAX_WIDE_BUCKETS);
        for j in 0..=MAX_K as u8 {
            assert_eq!(add(&mut table, &[0x80, j]), InsertOutcome::Added);
        }
        assert_eq!(table.bucket_count(), 2);
        assert_eq!(table.capacity(0), MAX_BUCKET_CAPACITY, "64 · 16 saturates");
        for j in MAX_K as u8 + 1..=254 {
            assert_eq!(add(&mut table, &[0x80, j]), InsertOutcome::Added);
        }
        assert_eq!(add(&mut table, &[0x80, 255]), InsertOutcome::BucketFull { bucket: 0 });
        assert_eq!(table.bucket_len(0), 255);
        check_invariants(&table);
    }

    #[test]
    #[should_panic(expected = "at most 4")]
    fn more_than_four_wide_buckets_is_a_programming_error() {
        let _ = RoutingTable::new(id(&[0]), 8).with_wide_buckets(MAX_WIDE_BUCKETS + 1);
    }

    #[test]
    fn k_contacts_do_not_split_but_one_more_does_and_every_contact_stays() {
        let mut table = RoutingTable::new(id(&[0x00]), 20);
        let _ = add(&mut table, &[0x01]);
        assert_eq!(table.bucket_count(), 1);
        let table = split_table();
        // 0x10..=0x15 share 3 bits with 0x00; the nearer 0x01..=0x0f went on splitting off.
        assert_eq!(table.bucket_count(), 5);
        assert_eq!(table.len(), 21);
        for i in 0x01..=0x15 {
            assert!(table.contains(&id(&[i])), "{i:#x} was lost");
        }
        assert_eq!(bucket_ids(&table, 3), [0x10, 0x11, 0x12, 0x13, 0x14, 0x15].map(|b| id(&[b])));
        check_invariants(&table);
    }

    #[test]
    fn contact_is_added_into_an_already_split_table() {
        let mut table = split_table();
        assert_eq!(add(&mut table, &[0x16]), InsertOutcome::Added);
        assert_eq!(table.len(), 22);
        check_invariants(&table);
    }

    #[test]
    fn get_on_an_empty_table_finds_nothing() {
        let table = RoutingTable::new(id(&[0x00]), 20);
        assert_eq!(table.get(&id(&[0x01])), None);
        assert!(!table.contains(&id(&[0x01])));
    }

    #[test]
    fn get_finds_a_contact_in_a_split_table() {
        let table = split_table();
        assert_eq!(table.get(&id(&[0x01])).unwrap().node, node(&[0x01]));
        assert_eq!(table.get(&id(&[0x15])).unwrap().node, node(&[0x15]));
        assert_eq!(table.get(&id(&[0x16])), None);
    }

    #[test]
    fn remove_works_in_a_split_table() {
        let mut table = split_table();
        let removed = table.remove(&id(&[0x01])).unwrap();
        assert_eq!(removed.node, node(&[0x01]));
        assert!(!table.contains(&id(&[0x01])));
        assert_eq!(table.remove(&id(&[0x01])), None);
        assert_eq!(table.remove(&id(&[0x15])).unwrap().node, node(&[0x15]));
        assert_eq!(table.len(), 19);
        check_invariants(&table);
    }

    #[test]
    fn only_the_bucket_holding_the_local_id_splits() {
        let mut table = RoutingTable::new(id(&[0, 0]), 2);
        assert_eq!(add(&mut table, &[0x80, 1]), InsertOutcome::Added);
        assert_eq!(add(&mut table, &[0x80, 2]), InsertOutcome::Added);
        assert_eq!(add(&mut table, &[0x80, 3]), InsertOutcome::BucketFull { bucket: 0 });
        assert_eq!(table.bucket_count(), 2);
        for j in 4..10 {
            assert_eq!(add(&mut table, &[0xc0, j]), InsertOutcome::BucketFull { bucket: 0 });
        }
        assert_eq!(table.bucket_count(), 2, "a far bucket split");
        for j in 1..=3 {
            let _ = add(&mut table, &[0x00, j]);
        }
        // 0x0002 and 0x0003 share 14 bits with us, 0x0001 shares 15.
        assert_eq!(table.bucket_count(), 16);
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 1]), id(&[0x80, 2])]);
        assert_eq!(bucket_ids(&table, 14), [id(&[0, 2]), id(&[0, 3])]);
        assert_eq!(bucket_ids(&table, 15), [id(&[0, 1])]);
        check_invariants(&table);
        // At full depth the last bucket cannot split either.
        assert_eq!(add(&mut table, &[0, 0]), InsertOutcome::IsLocal);
        assert_eq!(table.bucket_count(), 16);
    }

    #[test]
    fn iteration_visits_far_buckets_first_in_least_recently_seen_order() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        assert_eq!(table.iter().count(), 0);
        for j in 0..20 {
            let _ = add(&mut table, &[0x80, j]);
        }
        let _ = add(&mut table, &[0x00, 0x01]);
        let _ = table.insert_verified(node(&[0x80, 0]), at_mins(1));
        let order: Vec<NodeId> = table.iter().map(|c| c.node.id).collect();
        let mut expected: Vec<NodeId> = (1..20).map(|j| id(&[0x80, j])).collect();
        expected.push(id(&[0x80, 0]));
        expected.push(id(&[0x00, 0x01]));
        assert_eq!(order, expected);
    }

    #[test]
    fn closest_returns_the_nearest_by_xor() {
        let mut table = RoutingTable::new(id(&[0xff]), 20);
        for i in 0x00..=0x11 {
            let _ = add(&mut table, &[i]);
        }
        let got = table.closest(&id(&[0x15]), 3);
        assert_eq!(ids_of(&got), [id(&[0x11]), id(&[0x10]), id(&[0x05])]);
    }

    #[test]
    fn closest_puts_an_exact_match_first() {
        let mut table = RoutingTable::new(id(&[0xff]), 20);
        for i in 0x00..=0x11 {
            let _ = add(&mut table, &[i]);
        }
        let got = table.closest(&id(&[0x11]), 3);
        assert_eq!(ids_of(&got), [id(&[0x11]), id(&[0x10]), id(&[0x01])]);
    }

    #[test]
    fn closest_crosses_buckets_in_distance_order() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        for i in 0..20 {
            let _ = add(&mut table, &[0x80, i]);
        }
        for i in 0..20 {
            let _ = add(&mut table, &[0x01, i]);
        }
        let _ = add(&mut table, &[0x00, 0x01]);
        assert_eq!(table.len(), 41);
        let target = id(&[0x00, 0x03]);
        let got = ids_of(&table.closest(&target, 22));
        assert_eq!(got.len(), 22);
        assert_eq!(got, ids_of(&brute_force_closest(&table, &target, 22, |_| true)));
        assert_eq!(got[..3], [id(&[0x00, 0x01]), id(&[0x01, 0x03]), id(&[0x01, 0x02])]);
        assert_eq!(got[21], id(&[0x80, 0x03]));
    }

    #[test]
    fn closest_never_returns_more_than_asked_nor_more_than_max_k() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let local = NodeId::random(20, &mut rng).unwrap();
        let mut table = RoutingTable::new(local, MAX_K);
        for _ in 0..2000 {
            let other = NodeId::random(20, &mut rng).unwrap();
            let _ = table.insert_verified(NodeInfo::new(other, addr_for(&other)), Instant::ZERO);
        }
        assert!(table.len() > MAX_K);
        assert!(table.closest(&local, 0).is_empty());
        assert_eq!(table.closest(&local, 5).len(), 5);
        assert_eq!(table.closest(&local, usize::MAX).len(), MAX_K);
    }

    #[test]
    fn closest_matches_a_brute_force_sort_on_random_tables() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        for round in 0..60 {
            let len = [1, 2, 4, 20, 32][round % 5];
            let k = [1, 2, 3, 8, 20][(round / 5) % 5];
            let local = NodeId::random(len, &mut rng).unwrap();
            let mut table = RoutingTable::new(local, k);
            for _ in 0..rng.next_u32() % 400 {
                let other = random_id(&local, &mut rng);
                let _ = table.insert_verified(NodeInfo::new(other, addr_for(&other)), Instant::ZERO);
            }
            check_invariants(&table);
            let existing: Vec<NodeId> = table.iter().map(|c| c.node.id).collect();
            for probe in 0..40 {
                let target = match probe % 5 {
                    0 => local,
                    1 if !existing.is_empty() => existing[rng.next_u32() as usize % existing.len()],
                    // Targets of other lengths are compared with the padding convention.
                    2 => NodeId::random(1 + rng.next_u32() as usize % MAX_ID_LEN, &mut rng).unwrap(),
                    _ => random_id(&local, &mut rng),
                };
                let n = rng.next_u32() as usize % (MAX_K + 6);
                let got = table.closest(&target, n);
                assert_eq!(got.as_slice(), brute_force_closest(&table, &target, n, |_| true), "{target:?} n={n}");
                let keep = |c: &Contact| c.node.id.as_bytes()[len - 1] % 3 != 0;
                let got = table.closest_filtered(&target, n, keep);
                assert_eq!(got.as_slice(), brute_force_closest(&table, &target, n, keep), "filtered {target:?}");
            }
        }
    }

    #[test]
    fn closest_skips_buckets_it_does_not_need() {
        let table = {
            let mut t = RoutingTable::new(id(&[0, 0]), 20);
            for i in 0..20 {
                let _ = add(&mut t, &[0x80, i]);
                let _ = add(&mut t, &[0x01, i]);
            }
            t
        };
        let mut visited = Vec::new();
        let got = table.closest_filtered(&id(&[0x01, 0x55]), 3, |c| {
            visited.push(c.node.id);
            true
        });
        assert_eq!(got.len(), 3);
        assert!(visited.iter().all(|v| v.as_bytes()[0] == 0x01), "a far bucket was scanned");
    }

    #[test]
    fn one_timeout_does_not_evict() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let _ = add(&mut table, &[0x80, 1]);
        assert_eq!(table.record_failure(&id(&[0x80, 1]), at_mins(1)), Some(1));
        assert!(table.contains(&id(&[0x80, 1])));
        assert_eq!(table.get(&id(&[0x80, 1])).unwrap().state(at_mins(1), table.policy()), NodeState::Good);
        assert_eq!(table.record_failure(&id(&[0x80, 9]), at_mins(1)), None);
    }

    #[test]
    fn two_failures_make_a_node_bad_and_a_new_verified_node_replaces_it() {
        let mut table = RoutingTable::new(id(&[0, 0]), 2);
        let _ = add(&mut table, &[0x80, 1]);
        let _ = add(&mut table, &[0x80, 2]);
        assert_eq!(add(&mut table, &[0x80, 3]), InsertOutcome::BucketFull { bucket: 0 });
        let _ = table.record_failure(&id(&[0x80, 2]), at_mins(1));
        assert_eq!(table.insert_verified(node(&[0x80, 3]), at_mins(1)), InsertOutcome::BucketFull { bucket: 0 });
        assert_eq!(table.record_failure(&id(&[0x80, 2]), at_mins(2)), Some(2));
        let bad = table.get(&id(&[0x80, 2])).unwrap();
        assert_eq!(bad.state(at_mins(2), table.policy()), NodeState::Bad);
        assert_eq!(table.insert_verified(node(&[0x80, 3]), at_mins(3)), InsertOutcome::Replaced { evicted: bad });
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 1]), id(&[0x80, 3])]);
        assert_eq!(table.buckets().next().unwrap().last_changed, at_mins(3));
        check_invariants(&table);
    }

    #[test]
    fn replacement_evicts_the_worst_bad_contact() {
        let mut table = RoutingTable::new(id(&[0, 0]), 3);
        for j in 1..=3 {
            let _ = add(&mut table, &[0x80, j]);
        }
        for _ in 0..2 {
            let _ = table.record_failure(&id(&[0x80, 1]), at_mins(1));
        }
        for _ in 0..3 {
            let _ = table.record_failure(&id(&[0x80, 3]), at_mins(1));
        }
        match table.insert_verified(node(&[0x80, 4]), at_mins(2)) {
            InsertOutcome::Replaced { evicted } => assert_eq!(evicted.node.id, id(&[0x80, 3])),
            other => panic!("{other:?}"),
        }
        match table.insert_verified(node(&[0x80, 5]), at_mins(2)) {
            InsertOutcome::Replaced { evicted } => assert_eq!(evicted.node.id, id(&[0x80, 1])),
            other => panic!("{other:?}"),
        }
        assert_eq!(table.insert_verified(node(&[0x80, 6]), at_mins(2)), InsertOutcome::BucketFull { bucket: 0 });
    }

    #[test]
    fn a_reply_resets_the_failure_count() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let _ = add(&mut table, &[0x80, 1]);
        let _ = table.record_failure(&id(&[0x80, 1]), at_mins(1));
        let _ = table.record_failure(&id(&[0x80, 1]), at_mins(1));
        assert_eq!(table.get(&id(&[0x80, 1])).unwrap().state(at_mins(1), table.policy()), NodeState::Bad);
        assert_eq!(table.insert_verified(node(&[0x80, 1]), at_mins(2)), InsertOutcome::Refreshed);
        let contact = table.get(&id(&[0x80, 1])).unwrap();
        assert_eq!(contact.failures, 0);
        assert_eq!(contact.state(at_mins(2), table.policy()), NodeState::Good);
    }

    #[test]
    fn failure_count_saturates() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let _ = add(&mut table, &[0x80, 1]);
        for _ in 0..300 {
            let _ = table.record_failure(&id(&[0x80, 1]), at_mins(1));
        }
        assert_eq!(table.get(&id(&[0x80, 1])).unwrap().failures, MAX_FAILURES);
        assert_eq!(table.record_failure(&id(&[0x80, 1]), at_mins(1)), Some(MAX_FAILURES));
        // A policy that asks for more failures than the table counts gets the most it counts.
        let lenient = NodeStatePolicy { max_failures: 200, ..NodeStatePolicy::DEFAULT };
        let mut table = RoutingTable::with_policy(id(&[0, 0]), 20, lenient);
        assert_eq!(table.policy().max_failures, MAX_FAILURES);
        let _ = table.insert_verified(node(&[0x80, 1]), at_mins(1));
        for _ in 0..MAX_FAILURES {
            let _ = table.record_failure(&id(&[0x80, 1]), at_mins(1));
        }
        let c = table.get(&id(&[0x80, 1])).unwrap();
        assert_eq!(c.state(at_mins(1), table.policy()), NodeState::Bad, "bad after 15, not never");
    }

    #[test]
    fn node_states_change_at_the_fifteen_minute_boundary() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let target = id(&[0x80, 1]);
        let _ = table.insert_verified(node(&[0x80, 1]), at_mins(10));
        let state = |t: &RoutingTable, now: Instant| t.get(&target).unwrap().state(now, t.policy());
        // The reply time is kept rounded down, so the node goes questionable up to one
        // TIME_RESOLUTION before BEP 5's 15 minutes, never after.
        let boundary = kept(at_mins(10)) + mins(15);
        assert!(boundary <= at_mins(25) && at_mins(25) - boundary < TIME_RESOLUTION);
        assert_eq!(state(&table, Instant::from_nanos(boundary.as_nanos() - 1)), NodeState::Good);
        assert_eq!(state(&table, boundary), NodeState::Questionable);
        assert_eq!(state(&table, at_mins(25)), NodeState::Questionable);
        // A query from a node that has replied before makes it good again.
        assert!(table.record_query(&target, addr_for(&target), at_mins(30)));
        assert_eq!(state(&table, at_mins(44)), NodeState::Good);
        assert_eq!(state(&table, at_mins(45)), NodeState::Questionable);
        let _ = table.record_failure(&target, at_mins(46));
        assert_eq!(state(&table, at_mins(46)), NodeState::Questionable);
        let _ = table.record_failure(&target, at_mins(47));
        assert_eq!(state(&table, at_mins(47)), NodeState::Bad);
    }

    #[test]
    fn a_node_answering_past_136_years_or_at_a_saturated_clock_is_good_there() {
        // The fuzzers drive the clock to Instant::MAX. Times kept as 32-bit seconds would stop
        // at 2^32 s (136 years) and read back 448 years old there: no node could be good, and
        // the ping-before-evict check would ping the bucket's answering nodes in turn for ever.
        for late in [Instant::ZERO + Duration::from_secs((1 << 32) + 30), Instant::MAX] {
            let mut table = RoutingTable::new(id(&[0, 0]), 2);
            assert_eq!(table.insert_verified(node(&[0x80, 1]), late), InsertOutcome::Added);
            let c = table.get(&id(&[0x80, 1])).unwrap();
            assert!(c.last_seen <= late && late - c.last_seen < TIME_RESOLUTION, "{late:?}: {c:?}");
            assert_eq!(c.state(late, table.policy()), NodeState::Good, "{late:?}");
            // Good for 15 minutes less at most a tick, then questionable.
            let expiry = c.last_seen + mins(15);
            if expiry < Instant::MAX {
                assert_eq!(c.state(Instant::from_nanos(expiry.as_nanos() - 1), table.policy()), NodeState::Good);
                assert_eq!(c.state(expiry, table.policy()), NodeState::Questionable);
            }
            // A node that answered long ago stays good while it queries us, at that clock too.
            let _ = table.insert_verified(node(&[0x80, 2]), Instant::ZERO);
            assert!(table.record_query(&id(&[0x80, 2]), addr_for(&id(&[0x80, 2])), late));
            let q = table.get(&id(&[0x80, 2])).unwrap();
            assert_eq!((q.last_reply, q.last_query), (Some(Instant::ZERO), Some(c.last_seen)));
            assert_eq!(q.state(late, table.policy()), NodeState::Good, "{late:?}");
        }
    }

    #[test]
    fn record_query_never_inserts_nor_changes_the_address() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let stranger = id(&[0x80, 1]);
        assert!(!table.record_query(&stranger, addr_for(&stranger), at_mins(1)));
        assert!(table.is_empty());
        let _ = add(&mut table, &[0x80, 1]);
        let _ = add(&mut table, &[0x80, 2]);
        let elsewhere = SocketAddr::from(([192, 0, 2, 1], 1));
        assert!(!table.record_query(&stranger, elsewhere, at_mins(1)));
        let contact = table.get(&stranger).unwrap();
        assert_eq!(
            (contact.node.addr, contact.last_query, contact.last_seen),
            (addr_for(&stranger), None, Instant::ZERO)
        );
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 1]), id(&[0x80, 2])]);
        assert!(!table.record_query(&id(&[0x80, 1, 2]), elsewhere, at_mins(1)));
        assert!(!table.record_query(&id(&[0, 0]), elsewhere, at_mins(1)));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn known_node_answering_from_a_new_address_is_updated_and_moved() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let _ = add(&mut table, &[0x80, 1]);
        let _ = add(&mut table, &[0x80, 2]);
        let moved = NodeInfo::new(id(&[0x80, 1]), SocketAddr::from(([192, 0, 2, 7], 7)));
        assert_eq!(
            table.insert_verified(moved, at_mins(1)),
            InsertOutcome::AddressChanged { previous: addr_for(&id(&[0x80, 1])) }
        );
        assert_eq!(table.get(&moved.id).unwrap().node, moved);
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 2]), id(&[0x80, 1])]);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn swap_replaces_a_dead_contact_within_its_bucket() {
        let mut table = RoutingTable::new(id(&[0, 0]), 2);
        let _ = add(&mut table, &[0x80, 1]);
        let _ = add(&mut table, &[0x80, 2]);
        let refused = table.insert_verified(node(&[0x80, 3]), at_mins(20));
        assert_eq!(refused, InsertOutcome::BucketFull { bucket: 0 });
        let candidates = table.ping_candidates(0, 1, at_mins(20));
        assert_eq!(ids_of(&candidates), [id(&[0x80, 1])]);
        // The ping timed out.
        let _ = table.record_failure(&id(&[0x80, 1]), at_mins(20));
        let dead = table.get(&id(&[0x80, 1])).unwrap();
        assert_eq!(table.swap(&dead.node.id, node(&[0x80, 3]), at_mins(21)), SwapOutcome::Swapped { evicted: dead });
        assert_eq!(bucket_ids(&table, 0), [id(&[0x80, 2]), id(&[0x80, 3])]);
        assert_eq!(table.get(&id(&[0x80, 3])).unwrap().last_reply, Some(kept(at_mins(21))));
        assert_eq!(table.buckets().next().unwrap().last_changed, at_mins(21));
        assert_eq!(table.len(), 2);
        check_invariants(&table);
    }

    #[test]
    fn swap_refuses_replacements_that_do_not_fit() {
        let mut table = RoutingTable::new(id(&[0, 0]), 2);
        let _ = add(&mut table, &[0x80, 1]);
        let _ = add(&mut table, &[0x80, 2]);
        let _ = add(&mut table, &[0x00, 1]);
        let now = at_mins(20);
        let dead = id(&[0x80, 1]);
        assert_eq!(table.swap(&dead, node(&[0x00, 2]), now), SwapOutcome::Refused, "another bucket");
        assert_eq!(table.swap(&dead, node(&[0x80, 2]), now), SwapOutcome::Refused, "already present");
        assert_eq!(table.swap(&dead, node(&[0x80, 1]), now), SwapOutcome::Refused, "itself");
        assert_eq!(table.swap(&dead, node(&[0x00, 0]), now), SwapOutcome::Refused, "the local id");
        assert_eq!(table.swap(&dead, node(&[0x80, 3, 3]), now), SwapOutcome::Refused, "wrong length");
        assert_eq!(table.len(), 3);
        assert!(table.contains(&dead));
    }

    #[test]
    fn swap_reports_a_missing_dead_node() {
        let mut table = RoutingTable::new(id(&[0, 0]), 2);
        let _ = add(&mut table, &[0x80, 1]);
        assert_eq!(table.swap(&id(&[0x80, 9]), node(&[0x80, 3]), at_mins(20)), SwapOutcome::DeadNotFound);
        assert_eq!(table.swap(&id(&[0x80]), node(&[0x80, 3]), at_mins(20)), SwapOutcome::DeadNotFound);
        assert!(!table.contains(&id(&[0x80, 3])));
    }

    #[test]
    fn swap_keeps_a_dead_node_that_answered_since() {
        let mut table = RoutingTable::new(id(&[0, 0]), 2);
        let _ = add(&mut table, &[0x80, 1]);
        let _ = add(&mut table, &[0x80, 2]);
        let _ = table.insert_verified(node(&[0x80, 1]), at_mins(20));
        assert_eq!(table.swap(&id(&[0x80, 1]), node(&[0x80, 3]), at_mins(20)), SwapOutcome::DeadIsGood);
        assert!(table.contains(&id(&[0x80, 1])));
        assert!(!table.contains(&id(&[0x80, 3])));
    }

    #[test]
    fn ping_candidates_list_questionable_contacts_first_oldest_first() {
        let mut table = RoutingTable::new(id(&[0, 0]), 4);
        for j in 0..4 {
            let _ = add(&mut table, &[0x80, j]);
        }
        let now = at_mins(20);
        let _ = table.insert_verified(node(&[0x80, 1]), now);
        let _ = table.record_failure(&id(&[0x80, 3]), now);
        let _ = table.record_failure(&id(&[0x80, 3]), now);
        // Order in the bucket: 0, 2, 3 (bad), 1 (good); 0 and 2 are questionable.
        let all = table.ping_candidates(0, 10, now);
        assert_eq!(ids_of(&all), [0, 2, 3, 1].map(|j| id(&[0x80, j])));
        assert_eq!(ids_of(&table.ping_candidates(0, 1, now)), [id(&[0x80, 0])]);
        assert!(table.ping_candidates(5, 3, now).is_empty());
        assert!(table.ping_candidates(0, 0, now).is_empty());
    }

    #[test]
    fn random_id_in_bucket_lands_in_the_requested_bucket_for_every_index() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        for len in [1, 2, 20, 32] {
            let local = NodeId::random(len, &mut rng).unwrap();
            let bits = len * 8;
            let mut table = RoutingTable::new(local, 1);
            assert_ne!(table.random_id_in_bucket(0, &mut rng), local);
            assert_eq!(table.bucket_for(&table.random_id_in_bucket(7, &mut rng)), Some(0));
            // With k = 1, one contact per depth splits the table all the way down.
            for depth in 0..bits {
                let other = id_at_depth(&local, depth, &mut rng);
                assert_eq!(
                    table.insert_verified(NodeInfo::new(other, addr_for(&other)), Instant::ZERO),
                    InsertOutcome::Added
                );
                for bucket in 0..table.bucket_count() {
                    let views: Vec<BucketView> = table.buckets().collect();
                    for _ in 0..4 {
                        let random = table.random_id_in_bucket(bucket, &mut rng);
                        assert_ne!(random, local);
                        assert_eq!(table.bucket_for(&random), Some(bucket), "len {len} bucket {bucket}");
                        assert!(views[bucket].covers(&random));
                    }
                }
            }
            assert_eq!(table.bucket_count(), bits);
            check_invariants(&table);
            // The deepest bucket holds a single id: ours with the last bit flipped.
            let only = local.with_bit(bits - 1, !local.bit(bits - 1));
            assert_eq!(table.random_id_in_bucket(bits - 1, &mut rng), only);
            assert_eq!(table.random_id_in_bucket(usize::MAX, &mut rng), only);
        }
    }

    #[test]
    fn bucket_views_partition_the_id_space() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let local = NodeId::random(2, &mut rng).unwrap();
        let mut table = RoutingTable::new(local, 2);
        for _ in 0..200 {
            let other = random_id(&local, &mut rng);
            let _ = table.insert_verified(NodeInfo::new(other, addr_for(&other)), Instant::ZERO);
        }
        let views: Vec<BucketView> = table.buckets().collect();
        assert!(views.len() > 3);
        for (i, view) in views.iter().enumerate() {
            assert_eq!(view.index, i);
            assert_eq!(view.len, table.bucket_contacts(i).len());
            assert!(table.bucket_contacts(i).all(|c| view.covers(&c.node.id)));
        }
        assert!(views.last().unwrap().covers(&local));
        for _ in 0..500 {
            let probe = NodeId::random(2, &mut rng).unwrap();
            let covering: Vec<usize> = views.iter().filter(|v| v.covers(&probe)).map(|v| v.index).collect();
            assert_eq!(covering, [table.bucket_for(&probe).unwrap()]);
        }
        assert!(!views[0].covers(&id(&[0x80])));
    }

    #[test]
    fn stale_buckets_are_reported_until_refreshed() {
        let mut table = RoutingTable::new(id(&[0, 0]), 2);
        assert_eq!(table.stale_buckets(at_mins(15), BUCKET_REFRESH_INTERVAL).collect::<Vec<_>>(), [0]);
        let _ = table.insert_verified(node(&[0x80, 1]), at_mins(1));
        assert_eq!(table.stale_buckets(at_mins(15), BUCKET_REFRESH_INTERVAL).count(), 0);
        assert_eq!(table.stale_buckets(at_mins(16), BUCKET_REFRESH_INTERVAL).collect::<Vec<_>>(), [0]);
        let _ = table.insert_verified(node(&[0x80, 2]), at_mins(2));
        let _ = table.insert_verified(node(&[0x40, 1]), at_mins(3));
        assert_eq!(table.bucket_count(), 2);
        assert_eq!(table.stale_buckets(at_mins(17), BUCKET_REFRESH_INTERVAL).collect::<Vec<_>>(), [0]);
        assert_eq!(table.stale_buckets(at_mins(18), BUCKET_REFRESH_INTERVAL).collect::<Vec<_>>(), [0, 1]);
        table.mark_bucket_refreshed(0, at_mins(18));
        table.mark_bucket_refreshed(9, at_mins(18));
        assert_eq!(table.stale_buckets(at_mins(18), BUCKET_REFRESH_INTERVAL).collect::<Vec<_>>(), [1]);
        // Failures, queries and removals are not BEP 5 bucket changes.
        let _ = table.record_failure(&id(&[0x40, 1]), at_mins(18));
        let _ = table.record_query(&id(&[0x40, 1]), addr_for(&id(&[0x40, 1])), at_mins(18));
        let _ = table.remove(&id(&[0x40, 1]));
        assert_eq!(table.stale_buckets(at_mins(18), BUCKET_REFRESH_INTERVAL).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn ids_of_the_wrong_length_are_refused() {
        let mut table = RoutingTable::new(id(&[0, 0]), 20);
        let short = node(&[0x80]);
        let long = node(&[0x80, 0, 0]);
        assert_eq!(table.insert_verified(short, Instant::ZERO), InsertOutcome::WrongIdLength);
        assert_eq!(table.insert_verified(long, Instant::ZERO), InsertOutcome::WrongIdLength);
        assert!(table.is_empty());
        let _ = add(&mut table, &[0x80, 0]);
        assert!(!table.contains(&short.id) && !table.contains(&long.id));
        assert_eq!(table.bucket_for(&short.id), None);
        assert_eq!(table.record_failure(&long.id, Instant::ZERO), None);
        assert!(!table.record_query(&long.id, long.addr, Instant::ZERO));
        assert_eq!(table.remove(&short.id), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_local_id_is_never_inserted() {
        let mut table = RoutingTable::new(id(&[0x12, 0x34]), 20);
        assert_eq!(add(&mut table, &[0x12, 0x34]), InsertOutcome::IsLocal);
        assert!(table.is_empty());
        assert!(!table.contains(&id(&[0x12, 0x34])));
    }

    #[test]
    #[should_panic(expected = "outside 1..=64")]
    fn zero_k_is_a_programming_error() {
        let _ = RoutingTable::new(id(&[0]), 0);
    }

    #[test]
    #[should_panic(expected = "outside 1..=64")]
    fn k_above_max_k_is_a_programming_error() {
        let _ = RoutingTable::new(id(&[0]), MAX_K + 1);
    }

    #[derive(Clone, Copy, Debug)]
    struct ModelEntry {
        id: NodeId,
        addr: SocketAddr,
        failures: u8,
    }

    /// Drives the table with random operations and checks every outcome against a plain list of
    /// (id, address, failures), and the structure after every step.
    fn run_against_model(seed: u64, len: usize, k: usize, ops: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let local = NodeId::random(len, &mut rng).unwrap();
        let mut table = RoutingTable::new(local, k);
        let mut model: Vec<ModelEntry> = Vec::new();
        let mut now = Instant::ZERO;
        // How often each outcome was seen, so that the run provably covers them all.
        let mut seen = [0usize; 9];
        let addrs = [1u16, 2, 3].map(|p| SocketAddr::from(([192, 0, 2, 1], p)));
        let find = |model: &[ModelEntry], id: &NodeId| model.iter().position(|e| e.id == *id);
        let pick_id = |rng: &mut ChaCha8Rng, model: &[ModelEntry]| match rng.next_u32() % 4 {
            0 if !model.is_empty() => model[rng.next_u32() as usize % model.len()].id,
            1 => local,
            _ => random_id(&local, rng),
        };
        for step in 0..ops {
            let addr = addrs[rng.next_u32() as usize % addrs.len()];
            let op = rng.next_u32() % 10;
            match op {
                0..=3 => {
                    let id = pick_id(&mut rng, &model);
                    let outcome = table.insert_verified(NodeInfo::new(id, addr), now);
                    seen[match outcome {
                        InsertOutcome::Added => 0,
                        InsertOutcome::Refreshed => 1,
                        InsertOutcome::AddressChanged { .. } => 2,
                        InsertOutcome::Replaced { .. } => 3,
                        InsertOutcome::BucketFull { .. } => 4,
                        _ => 5,
                    }] += 1;
                    match (outcome, find(&model, &id)) {
                        (InsertOutcome::IsLocal, None) => assert_eq!(id, local),
                        (InsertOutcome::Refreshed, Some(i)) => {
                            assert_eq!(model[i].addr, addr);
                            model[i].failures = 0;
                        }
                        (InsertOutcome::AddressChanged { previous }, Some(i)) => {
                            assert_eq!(model[i].addr, previous);
                            assert_ne!(previous, addr);
                            model[i].addr = addr;
                            model[i].failures = 0;
                        }
                        (InsertOutcome::Added, None) => model.push(ModelEntry { id, addr, failures: 0 }),
                        (InsertOutcome::Replaced { evicted }, None) => {
                            let e = find(&model, &evicted.node.id).expect("evicted an unknown node");
                            assert!(model[e].failures >= 2, "evicted a node that is not bad");
                            assert_eq!(table.bucket_for(&evicted.node.id), table.bucket_for(&id));
                            model.remove(e);
                            model.push(ModelEntry { id, addr, failures: 0 });
                        }
                        (InsertOutcome::BucketFull { bucket }, None) => {
                            assert_eq!(table.bucket_for(&id), Some(bucket));
                            let mut contacts = table.bucket_contacts(bucket);
                            assert_eq!(contacts.len(), k);
                            assert!(contacts.all(|c| c.state(now, table.policy()) != NodeState::Bad));
                        }
                        (outcome, known) => panic!("step {step}: {outcome:?} for {id:?} (known: {known:?})"),
                    }
                }
                4 => {
                    let id = pick_id(&mut rng, &model);
                    let expected = find(&model, &id).is_some_and(|i| model[i].addr == addr);
                    assert_eq!(table.record_query(&id, addr, now), expected, "step {step}");
                }
                5 | 6 => {
                    let id = pick_id(&mut rng, &model);
                    let expected = find(&model, &id).map(|i| {
                        model[i].failures = model[i].failures.saturating_add(1);
                        model[i].failures
                    });
                    assert_eq!(table.record_failure(&id, now), expected, "step {step}");
                }
                7 => {
                    let id = pick_id(&mut rng, &model);
                    let removed = table.remove(&id);
                    match find(&model, &id) {
                        Some(i) => {
                            assert_eq!(removed.map(|c| c.node.addr), Some(model[i].addr));
                            model.remove(i);
                        }
                        None => assert_eq!(removed, None),
                    }
                }
                8 => {
                    let dead = pick_id(&mut rng, &model);
                    let replacement = pick_id(&mut rng, &model);
                    let dead_state = table.get(&dead).map(|c| c.state(now, table.policy()));
                    let outcome = table.swap(&dead, NodeInfo::new(replacement, addr), now);
                    let fits = replacement != local
                        && table.bucket_for(&dead) == table.bucket_for(&replacement)
                        && find(&model, &replacement).is_none();
                    let expected = match (find(&model, &dead), dead_state) {
                        _ if replacement == local => SwapOutcome::Refused,
                        (None, _) => SwapOutcome::DeadNotFound,
                        (Some(_), Some(NodeState::Good)) => SwapOutcome::DeadIsGood,
                        (Some(_), _) if !fits => SwapOutcome::Refused,
                        (Some(i), _) => {
                            let evicted_addr = model[i].addr;
                            model.remove(i);
                            model.push(ModelEntry { id: replacement, addr, failures: 0 });
                            match outcome {
                                SwapOutcome::Swapped { evicted } => {
                                    assert_eq!((evicted.node.id, evicted.node.addr), (dead, evicted_addr));
                                }
                                other => panic!("step {step}: {other:?}"),
                            }
                            outcome
                        }
                    };
                    assert_eq!(outcome, expected, "step {step}");
                    seen[match outcome {
                        SwapOutcome::Swapped { .. } => 6,
                        SwapOutcome::DeadIsGood => 7,
                        _ => 8,
                    }] += 1;
                }
                _ => now += Duration::from_secs(u64::from(rng.next_u32() % 600)),
            }
            check_invariants(&table);
            assert_eq!(table.len(), model.len(), "step {step}");
            for entry in &model {
                let contact = table.get(&entry.id).expect("the table lost a node");
                assert_eq!((contact.node.addr, contact.failures), (entry.addr, entry.failures));
            }
            if step % 64 == 0 {
                let target = random_id(&local, &mut rng);
                let got = table.closest(&target, k + 3);
                assert_eq!(got.as_slice(), brute_force_closest(&table, &target, k + 3, |_| true));
            }
        }
        assert!(seen.iter().all(|&n| n > 0), "seed {seed}: some outcome never happened: {seen:?}");
    }

    #[test]
    fn random_operations_agree_with_a_simple_model() {
        run_against_model(1, 1, 3, 3000);
        run_against_model(2, 2, 2, 3000);
        run_against_model(3, 20, 8, 3000);
    }
}

//! One k-bucket: at most k contacts, least recently seen first, stored as packed records.
//!
//! # Why packed
//!
//! A [`Contact`] is 112 bytes: its [`NodeId`] has room for any id up to 32 bytes and its
//! `SocketAddr` for IPv6. A network of a million simulated nodes holds about 140 million
//! contacts, so that size was most of its memory. A bucket instead stores each contact as
//! one record of `id_len + 6 + 9` bytes (35 for a BEP 5 id and an IPv4 address) and builds
//! the [`Contact`] when asked. The tables are per address family (BEP 32), so a table's
//! records hold an IPv4 address in 6 bytes; a table that meets an IPv6 address switches all
//! its records to 26-byte addresses ([`Layout::wide`]). The records of all of a table's
//! buckets live in one allocation ([`Buckets`]) that grows and shrinks with them, in steps of
//! an eighth to a quarter of its size ([`room_for`]): a bucket of 3 contacts costs 3 records,
//! not k.
//!
//! # Record
//!
//! `id` (id_len bytes), the address (6 bytes: IPv4 and port; or 26: IPv6, port, flow info,
//! scope id), the reply time (4 bytes; the restore time for a restored contact, which has
//! none), the query time (4), and one byte of flags (high 4 bits) and the failure count (low 4
//! bits, so counts stop at [`MAX_FAILURES`](super::MAX_FAILURES) = 15). `last_seen` is whichever
//! of the two times was set last, which a flag records.
//!
//! # Times: 4 bytes, ticks of 2^32 ns since `Instant::ZERO`
//!
//! A time is stored as the top 32 bits of its nanosecond count since [`Instant::ZERO`], that
//! is in ticks of 2^32 ns (about 4.29 s, [`TIME_RESOLUTION`](super::TIME_RESOLUTION)),
//! rounded down. Why this unit and this epoch:
//!
//! - **It covers every [`Instant`].** 2^32 ticks of 2^32 ns are the whole 64-bit nanosecond
//!   range, so no time is out of range and nothing saturates or wraps: [`Instant::MAX`] is
//!   tick `u32::MAX`. Whole seconds would run out after 136 years while an [`Instant`] runs
//!   584; the fuzzers drive the clock to [`Instant::MAX`], and there every stored time would
//!   saturate to 136 years, so a node answering at that clock would read back as silent for
//!   448 years: never good again, and the engine's ping-before-evict check (which moves on
//!   to the next questionable node whenever one answers) would ping the bucket's nodes in
//!   turn for ever. In ticks, a node that answers at [`Instant::MAX`] reads back 4.29 s old
//!   and is good, as it was when times were kept exact.
//! - **The resolution is far below what BEP 5 measures.** Its node states work in minutes:
//!   "A good node is a node has responded to one of our queries within the last 15 minutes."
//!   A tick is 0.5% of that window.
//! - **The epoch is fixed.** A per-table epoch would cost a field and could not hold a time
//!   before it (a clock that steps back), which would then read back later than it was;
//!   [`Instant::ZERO`] is before every time. The drivers start their clock at zero.
//! - **Rounding down is conservative and deterministic.** A time read back is never later
//!   than the one stored and less than one tick earlier, and equal times round alike. So a
//!   node goes questionable up to 4.29 s before BEP 5's 15 minutes, never after; a bucket's
//!   oldest contact is still its oldest (ties, which rounding makes likelier, go to the one
//!   nearest the head, as before); and a contact read back, changed and written again keeps
//!   its times (a rounded time rounds to itself).
//!
//! The bucket's own "last changed" time (refresh) is one per bucket, not per record, and
//! stays exact.

use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::contact::{Contact, NodeState, NodeStatePolicy};
use crate::{Instant, NodeId, NodeInfo};

/// The contact has answered (the reply time is a reply, not a restore time).
const HAS_REPLY: u8 = 0x10;
/// The contact has queried us.
const HAS_QUERY: u8 = 0x20;
/// `last_seen` is the query time (else the reply time).
const SEEN_IS_QUERY: u8 = 0x40;
/// Narrow records: the address is an IPv4-mapped IPv6 one. Wide records: it is an IPv4 one.
const OTHER_FORM: u8 = 0x80;

/// Bytes of a record besides the id and the address: two times, flags and failures.
const TAIL: usize = 9;

/// The failure count's bits in the last byte of a record (the flags take the other four).
const FAILURES: u8 = 0x0f;

/// The bits of a time's nanosecond count that a record drops (see the module docs).
const TICK_SHIFT: u32 = 32;

/// A time as a record stores it: its tick, rounded down.
fn to_tick(t: Instant) -> u32 {
    // Cannot fail: a u64 shifted right by 32 fits in 32 bits.
    u32::try_from(t.as_nanos() >> TICK_SHIFT).unwrap_or(u32::MAX)
}

/// The start of a tick: never later than any time stored as that tick.
fn from_tick(tick: u32) -> Instant {
    Instant::from_nanos(u64::from(tick) << TICK_SHIFT)
}

/// What a record keeps of a time: the start of its tick (for the tests' expectations).
#[cfg(test)]
pub(super) fn kept(t: Instant) -> Instant {
    from_tick(to_tick(t))
}

/// How a table's records are laid out: the id length, and whether addresses take 6 bytes
/// (IPv4) or 26 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) id_len: u8,
    pub(super) wide: bool,
}

impl Layout {
    pub(super) fn new(id_len: usize) -> Layout {
        Layout { id_len: id_len as u8, wide: false }
    }

    fn addr_len(self) -> usize {
        if self.wide { 26 } else { 6 }
    }

    /// Bytes per record.
    pub(super) fn stride(self) -> usize {
        self.id_len as usize + self.addr_len() + TAIL
    }

    /// Whether a narrow record can hold `addr`: an IPv4 address, or an IPv4-mapped IPv6 one
    /// without flow info or scope (what a dual-stack socket reports for an IPv4 peer).
    pub(super) fn narrow_holds(addr: &SocketAddr) -> bool {
        match addr {
            SocketAddr::V4(_) => true,
            SocketAddr::V6(a) => a.ip().to_ipv4_mapped().is_some() && a.flowinfo() == 0 && a.scope_id() == 0,
        }
    }

    fn id(self, record: &[u8]) -> &[u8] {
        &record[..self.id_len as usize]
    }

    fn encode(self, c: &Contact, out: &mut [u8]) {
        let n = self.id_len as usize;
        out[..n].copy_from_slice(c.node.id.as_bytes());
        let mut flags = 0;
        let a = &mut out[n..n + self.addr_len()];
        match (self.wide, c.node.addr) {
            (false, SocketAddr::V4(v4)) => {
                a[..4].copy_from_slice(&v4.ip().octets());
                a[4..6].copy_from_slice(&v4.port().to_be_bytes());
            }
            (false, SocketAddr::V6(v6)) => {
                // The table widens before a record that does not fit is written.
                let ip = v6.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED);
                a[..4].copy_from_slice(&ip.octets());
                a[4..6].copy_from_slice(&v6.port().to_be_bytes());
                flags |= OTHER_FORM;
            }
            (true, SocketAddr::V4(v4)) => {
                a[..16].copy_from_slice(&v4.ip().to_ipv6_mapped().octets());
                a[16..18].copy_from_slice(&v4.port().to_be_bytes());
                a[18..26].fill(0);
                flags |= OTHER_FORM;
            }
            (true, SocketAddr::V6(v6)) => {
                a[..16].copy_from_slice(&v6.ip().octets());
                a[16..18].copy_from_slice(&v6.port().to_be_bytes());
                a[18..22].copy_from_slice(&v6.flowinfo().to_be_bytes());
                a[22..26].copy_from_slice(&v6.scope_id().to_be_bytes());
            }
        }
        // last_seen is the reply slot or the query time, whichever was set last.
        let seen_is_query = c.last_query == Some(c.last_seen) && c.last_reply != Some(c.last_seen);
        let reply_slot = match c.last_reply {
            Some(t) => {
                flags |= HAS_REPLY;
                t
            }
            None => c.last_seen,
        };
        if c.last_query.is_some() {
            flags |= HAS_QUERY;
        }
        if seen_is_query {
            flags |= SEEN_IS_QUERY;
        }
        let t = &mut out[n + self.addr_len()..];
        t[..4].copy_from_slice(&to_tick(reply_slot).to_le_bytes());
        t[4..8].copy_from_slice(&c.last_query.map_or(0, to_tick).to_le_bytes());
        t[8] = flags | c.failures.min(super::MAX_FAILURES);
    }

    pub(super) fn decode(self, record: &[u8]) -> Contact {
        let n = self.id_len as usize;
        // Cannot fail: the length is the table's, which is valid.
        let id = NodeId::from_bytes(&record[..n]).unwrap_or(NodeId::from_array([0; 20]));
        let a = &record[n..n + self.addr_len()];
        let t = &record[n + self.addr_len()..];
        let flags = t[8] & !FAILURES;
        let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
        let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let addr = if self.wide {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(ip);
            match ip.to_ipv4_mapped() {
                Some(v4) if flags & OTHER_FORM != 0 => SocketAddr::V4(SocketAddrV4::new(v4, port(&a[16..]))),
                _ => SocketAddr::V6(SocketAddrV6::new(ip, port(&a[16..]), word(&a[18..]), word(&a[22..]))),
            }
        } else {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            if flags & OTHER_FORM != 0 {
                SocketAddr::V6(SocketAddrV6::new(ip.to_ipv6_mapped(), port(&a[4..]), 0, 0))
            } else {
                SocketAddr::V4(SocketAddrV4::new(ip, port(&a[4..])))
            }
        };
        let time = |b: &[u8]| from_tick(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let reply_slot = time(&t[..4]);
        let query = (flags & HAS_QUERY != 0).then(|| time(&t[4..8]));
        let last_seen = match query {
            Some(q) if flags & SEEN_IS_QUERY != 0 => q,
            _ => reply_slot,
        };
        Contact {
            node: NodeInfo::new(id, addr),
            last_seen,
            last_reply: (flags & HAS_REPLY != 0).then_some(reply_slot),
            last_query: query,
            failures: t[8] & FAILURES,
        }
    }
}

/// Every bucket of one table, in one allocation of bytes (with the room [`room_for`] gives):
/// how many buckets there are, each one's "last changed" time and number of records, then all
/// their records, bucket after bucket (farthest first), each bucket's oldest contact first.
///
/// # Layout
///
/// `n - 1` for `n` buckets (one byte: 1 to 256 buckets), `n` times of 8 bytes (nanoseconds
/// since [`Instant::ZERO`], little-endian), `n` lengths of one byte (at most
/// [`MAX_K`](super::MAX_K) = 64 records each), then the records of [`Layout::stride`] bytes.
///
/// # Why one allocation
///
/// A table of a million-node network has about 19 buckets. With one allocation per bucket, each
/// paid the allocator's header and rounding (about 16 bytes) and a 24-byte bucket header,
/// about 0.7 KB per table; here a table pays 9 bytes per bucket and one allocation, and an
/// empty table (the IPv6 one of most nodes) 10 bytes in an allocation of 16. The price is a
/// copy of the records behind a bucket when it grows or shrinks (a few KB at most, and only
/// when a contact is added or removed; refreshing a known contact rewrites it in place), and
/// finding a bucket's first record by adding up the lengths before it.
///
/// BEP 5: "Each bucket should maintain a 'last changed' property to indicate how 'fresh' the
/// contents are." It is kept exact, one per bucket.
#[derive(Debug)]
pub(super) struct Buckets {
    /// Always `room_for(data.len())` bytes of capacity: see [`room_for`].
    data: Vec<u8>,
}

impl Clone for Buckets {
    fn clone(&self) -> Buckets {
        Buckets { data: with_room(&self.data) }
    }
}

/// The capacity a table of `len` bytes keeps: `len` rounded up to a multiple of 16 up to 128
/// bytes, and above that to the next of four steps per doubling (160, 192, 224, 256, 320, …,
/// 4,096, 5,120, 6,144, 7,168, 8,192, …).
///
/// Adding a contact used to reallocate the table every time, to exactly one record more: a
/// call into the allocator for each contact learned, 3% of a joining network's time in the
/// simulator. With this room a table reallocates only when it crosses a step, every eighth to
/// quarter of its size. The steps are the size classes of jemalloc (which rounds every request
/// up to them anyway, so under it the room costs no memory at all) and close to those of other
/// size-class allocators; an allocator without classes pays at most a quarter of the table
/// (about 1 KB for a table of 112 contacts). The capacity depends on the length alone, so
/// equal tables report equal [`Buckets::heap_bytes`] however they got there.
pub(super) fn room_for(len: usize) -> usize {
    let step = if len <= 128 { 16 } else { len.next_power_of_two() / 8 };
    len.max(1).div_ceil(step) * step
}

/// A copy of `bytes` with the capacity [`room_for`] gives its length.
fn with_room(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(room_for(bytes.len()));
    v.extend_from_slice(bytes);
    v
}

/// Bytes of one bucket's "last changed" time.
const TIME: usize = 8;

/// One bucket's records and "last changed" time, read from [`Buckets`].
#[derive(Clone, Copy, Debug)]
pub(super) struct BucketRef<'a> {
    records: &'a [u8],
    pub(super) last_changed: Instant,
}

impl Buckets {
    /// One empty bucket.
    pub(super) fn new(last_changed: Instant) -> Buckets {
        let mut data = [0u8; 1 + TIME + 1];
        data[1..1 + TIME].copy_from_slice(&last_changed.as_nanos().to_le_bytes());
        Buckets { data: with_room(&data) }
    }

    /// The number of buckets.
    pub(super) fn count(&self) -> usize {
        self.data.first().map_or(0, |&n| usize::from(n) + 1)
    }

    /// Where the lengths start, and the records.
    fn offsets(&self) -> (usize, usize) {
        let n = self.count();
        (1 + TIME * n, 1 + (TIME + 1) * n)
    }

    fn lens(&self) -> &[u8] {
        let (lens, records) = self.offsets();
        // Always there: only the test helpers below could cut into them.
        self.data.get(lens..records).unwrap_or(&[])
    }

    fn records(&self) -> &[u8] {
        self.data.get(self.offsets().1..).unwrap_or(&[])
    }

    fn changed(&self, i: usize) -> Instant {
        let at = 1 + TIME * i;
        let mut t = [0u8; TIME];
        t.copy_from_slice(&self.data[at..at + TIME]);
        Instant::from_nanos(u64::from_le_bytes(t))
    }

    /// Heap bytes: the allocation's capacity, [`room_for`] its length.
    pub(super) fn heap_bytes(&self) -> usize {
        self.data.capacity()
    }

    /// Sets the length to `len`, new bytes zero, with the capacity [`room_for`] `len`. (A plain
    /// `resize` would grow the capacity by doubling.)
    fn resize(&mut self, len: usize) {
        let room = room_for(len);
        if room > self.data.capacity() {
            self.data.reserve_exact(room - self.data.len());
        }
        self.data.resize(len, 0);
        if room < self.data.capacity() {
            self.data.shrink_to(room);
        }
    }

    /// Bytes of records held.
    pub(super) fn record_bytes(&self) -> usize {
        self.records().len()
    }

    /// Whether the records are exactly the buckets' contacts, whole.
    pub(super) fn is_whole(&self, l: Layout) -> bool {
        self.data.len() >= self.offsets().1
            && self.records().len() == self.lens().iter().map(|&n| usize::from(n)).sum::<usize>() * l.stride()
    }

    /// The byte range in `data` of bucket `i`'s records (`i` must be a bucket).
    fn range(&self, l: Layout, i: usize) -> core::ops::Range<usize> {
        let lens = self.lens();
        let before: usize = lens[..i].iter().map(|&n| usize::from(n)).sum();
        let (s, base) = (l.stride(), self.offsets().1);
        base + before * s..base + (before + usize::from(lens[i])) * s
    }

    /// Bucket `i` (which must exist).
    pub(super) fn bucket(&self, l: Layout, i: usize) -> BucketRef<'_> {
        // A range past the records (only a corrupted table, which `is_whole` reports) reads
        // as an empty bucket rather than panicking.
        let records = self.data.get(self.range(l, i)).unwrap_or(&[]);
        BucketRef { records, last_changed: self.changed(i) }
    }

    /// Bucket `i`, or `None` if there is no such bucket.
    pub(super) fn get(&self, l: Layout, i: usize) -> Option<BucketRef<'_>> {
        (i < self.count()).then(|| self.bucket(l, i))
    }

    /// Every bucket, farthest first.
    pub(super) fn iter(&self, l: Layout) -> impl ExactSizeIterator<Item = BucketRef<'_>> + '_ {
        let s = l.stride();
        let records = self.records();
        let mut start = 0;
        self.lens().iter().enumerate().map(move |(i, &n)| {
            let end = start + usize::from(n) * s;
            let records = records.get(start..end).unwrap_or(&[]);
            start = end;
            BucketRef { records, last_changed: self.changed(i) }
        })
    }

    /// How many contacts bucket `i` holds (0 if there is no such bucket).
    pub(super) fn len(&self, i: usize) -> usize {
        self.lens().get(i).map_or(0, |&n| usize::from(n))
    }

    /// Sets bucket `i`'s "last changed" time; an unknown bucket is ignored.
    pub(super) fn set_changed(&mut self, i: usize, now: Instant) {
        if i < self.count() {
            let at = 1 + TIME * i;
            self.data[at..at + TIME].copy_from_slice(&now.as_nanos().to_le_bytes());
        }
    }

    /// Rewrites the contact at `pos` of bucket `i`.
    pub(super) fn set(&mut self, l: Layout, i: usize, pos: usize, c: &Contact) {
        let s = l.stride();
        let start = self.range(l, i).start + pos * s;
        l.encode(c, &mut self.data[start..start + s]);
    }

    /// Moves the contact at `pos` of bucket `i` to the bucket's tail (most recently seen),
    /// keeping the others' order; returns its new position.
    pub(super) fn move_to_tail(&mut self, l: Layout, i: usize, pos: usize) -> Option<usize> {
        let s = l.stride();
        let r = self.range(l, i);
        let tail = self.data.get_mut(r.start + pos * s..r.end)?;
        if tail.is_empty() {
            return None;
        }
        tail.rotate_left(s);
        Some(self.len(i) - 1)
    }

    /// Appends a contact to bucket `i`. The caller checks the bucket has room (at most k).
    pub(super) fn push(&mut self, l: Layout, i: usize, contact: &Contact) {
        let s = l.stride();
        let at = self.range(l, i).end;
        let len_at = self.offsets().0 + i;
        self.resize(self.data.len() + s);
        // The buckets after this one move up by one record.
        self.data[at..].rotate_right(s);
        l.encode(contact, &mut self.data[at..at + s]);
        self.data[len_at] += 1;
    }

    /// Evicts the contact at `pos` of bucket `i` for `c`, which goes to the bucket's tail (what
    /// a removal then an append would leave, without resizing the allocation); returns the
    /// evicted contact.
    pub(super) fn replace(&mut self, l: Layout, i: usize, pos: usize, c: &Contact) -> Option<Contact> {
        let evicted = self.get(l, i).filter(|b| pos < b.len(l))?.contact(l, pos);
        let tail = self.move_to_tail(l, i, pos)?;
        self.set(l, i, tail, c);
        Some(evicted)
    }

    /// Removes the contact at `pos` of bucket `i`.
    pub(super) fn remove(&mut self, l: Layout, i: usize, pos: usize) -> Option<Contact> {
        if pos >= self.len(i) {
            return None;
        }
        let s = l.stride();
        let start = self.range(l, i).start + pos * s;
        let len_at = self.offsets().0 + i;
        let removed = l.decode(&self.data[start..start + s]);
        self.data.copy_within(start + s.., start);
        self.resize(self.data.len() - s);
        self.data[len_at] -= 1;
        Some(removed)
    }

    /// The same contacts in another layout.
    pub(super) fn relayout(&mut self, from: Layout, to: Layout) {
        let (_, base) = self.offsets();
        let records = self.records();
        let mut v = Vec::with_capacity(room_for(base + records.len() / from.stride() * to.stride()));
        v.extend_from_slice(&self.data[..base]);
        for r in records.chunks_exact(from.stride()) {
            let start = v.len();
            v.resize(start + to.stride(), 0);
            to.encode(&from.decode(r), &mut v[start..]);
        }
        self.data = v;
    }

    /// Splits the last bucket, which covers every id sharing at least `depth` = its index
    /// leading bits with `local`: the contacts sharing more than `depth` bits move to a new
    /// last bucket and the ones sharing exactly `depth` stay. Both keep their relative order,
    /// and the new bucket inherits `last_changed` because a split is not news about any node.
    /// A table has at most 256 buckets (the caller splits only below the id's bits).
    pub(super) fn split_last(&mut self, l: Layout, local: &NodeId) {
        let s = l.stride();
        let n = self.count();
        let depth = n - 1;
        let r = self.range(l, depth);
        let (lens_at, base) = self.offsets();
        let local = local.as_bytes();
        // The header of n + 1 buckets (the new one's time is the split one's), then the
        // records, the last bucket's partitioned.
        let mut v = Vec::with_capacity(room_for(self.data.len() + TIME + 1));
        v.push(self.data[0].saturating_add(1));
        v.extend_from_slice(&self.data[1..lens_at]);
        v.extend_from_slice(&self.data[1 + TIME * depth..1 + TIME * n]);
        v.extend_from_slice(&self.data[lens_at..base]);
        v.push(0);
        v.extend_from_slice(&self.data[base..r.start]);
        let mut near = 0u8;
        // Those that stay first, then those that move, each in their order.
        for moves in [false, true] {
            for rec in self.data[r.clone()].chunks_exact(s) {
                if (common_prefix_len(local, l.id(rec)) > depth) == moves {
                    v.extend_from_slice(rec);
                    near += u8::from(moves);
                }
            }
        }
        let new_lens = 1 + TIME * (n + 1);
        v[new_lens + depth] -= near;
        v[new_lens + depth + 1] = near;
        self.data = v;
    }

    /// Replaces bucket `i`'s contacts, behind the table's back (tests of the invariant checker).
    #[cfg(test)]
    pub(super) fn replace_all(&mut self, l: Layout, i: usize, contacts: &[Contact]) {
        while self.remove(l, i, 0).is_some() {}
        for c in contacts {
            self.push(l, i, c);
        }
    }

    /// Cuts the records to `len` bytes (tests of the invariant checker only).
    #[cfg(test)]
    pub(super) fn truncate_bytes(&mut self, len: usize) {
        let base = self.offsets().1;
        self.resize((base + len).min(self.data.len()));
    }

    /// Sets the number of buckets, empty ones added at the end (tests of the invariant
    /// checker only); 0 leaves no header at all.
    #[cfg(test)]
    pub(super) fn set_count(&mut self, n: usize) {
        let old = self.count();
        let times: Vec<Instant> = (0..n).map(|i| if i < old { self.changed(i) } else { Instant::ZERO }).collect();
        let lens: Vec<u8> = (0..n).map(|i| self.len(i) as u8).collect();
        let mut v = Vec::new();
        if n > 0 {
            v.push((n - 1) as u8);
            for t in times {
                v.extend_from_slice(&t.as_nanos().to_le_bytes());
            }
            v.extend_from_slice(&lens);
            v.extend_from_slice(self.records());
        }
        self.data = with_room(&v);
    }
}

impl<'a> BucketRef<'a> {
    /// Its records.
    pub(super) fn records(&self) -> &'a [u8] {
        self.records
    }

    pub(super) fn len(&self, l: Layout) -> usize {
        self.records.len() / l.stride()
    }

    /// Its contacts, oldest first.
    pub(super) fn contacts(self, l: Layout) -> impl ExactSizeIterator<Item = Contact> + 'a {
        self.records.chunks_exact(l.stride()).map(move |r| l.decode(r))
    }

    /// Its contacts' ids, oldest first, without building the contacts.
    pub(super) fn ids(self, l: Layout) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        self.records.chunks_exact(l.stride()).map(move |r| l.id(r))
    }

    pub(super) fn contact(&self, l: Layout, pos: usize) -> Contact {
        let s = l.stride();
        l.decode(&self.records[pos * s..(pos + 1) * s])
    }

    pub(super) fn position(&self, l: Layout, id: &NodeId) -> Option<usize> {
        self.ids(l).position(|r| id.is_bytes(r))
    }

    pub(super) fn get(&self, l: Layout, id: &NodeId) -> Option<Contact> {
        self.position(l, id).map(|pos| self.contact(l, pos))
    }

    /// The bad contact to evict first: the one with the most failures, then the least recently
    /// seen, then the one nearest the head.
    pub(super) fn worst_bad(&self, l: Layout, now: Instant, policy: &NodeStatePolicy) -> Option<usize> {
        let mut worst: Option<(usize, Contact)> = None;
        for (i, c) in self.contacts(l).enumerate() {
            if c.state(now, policy) != NodeState::Bad {
                continue;
            }
            let worse = match &worst {
                None => true,
                Some((_, w)) => (c.failures, w.last_seen) > (w.failures, c.last_seen),
            };
            if worse {
                worst = Some((i, c));
            }
        }
        worst.map(|(i, _)| i)
    }
}

/// The number of leading bits two byte strings of the same length share.
pub(super) fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = x ^ y;
        if d != 0 {
            return i * 8 + d.leading_zeros() as usize;
        }
    }
    a.len().min(b.len()) * 8
}

/// A read-only summary of one bucket, from [`RoutingTable::buckets`](super::RoutingTable::buckets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketView {
    /// The bucket's index: for every bucket but the last, the number of leading bits its
    /// contacts share with the local id.
    pub index: usize,
    /// How many contacts it holds.
    pub len: usize,
    /// The last reply from, addition to or replacement in this bucket (BEP 5's "last changed").
    pub last_changed: Instant,
    /// The ids the bucket covers start with the first [`prefix_bits`](Self::prefix_bits) bits of
    /// this id; its remaining bits are zero.
    pub prefix: NodeId,
    /// The length of the prefix in bits: `index + 1` for a far bucket (the shared bits, then the
    /// first differing one), `index` for the last bucket.
    pub prefix_bits: usize,
}

impl BucketView {
    /// Whether `id` falls in this bucket's range.
    pub fn covers(&self, id: &NodeId) -> bool {
        id.len() == self.prefix.len() && id.common_prefix_len(&self.prefix) >= self.prefix_bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    /// One tick: 2^32 ns.
    const TICK: u64 = 1 << 32;

    #[test]
    fn a_bep5_ipv4_record_is_35_bytes_and_a_wide_one_55() {
        assert_eq!(Layout::new(20).stride(), 35);
        assert_eq!(Layout { id_len: 20, wide: true }.stride(), 55);
        assert_eq!(Duration::from_nanos(TICK), super::super::TIME_RESOLUTION);
    }

    #[test]
    fn a_time_reads_back_rounded_down_by_less_than_a_tick() {
        let secs_136_years = Duration::from_secs(1 << 32).as_nanos() as u64;
        let edges = [
            0,
            1,
            TICK - 1,
            TICK,
            TICK + 1,
            60_000_000_000,
            900_000_000_000,
            secs_136_years - 1,
            secs_136_years,
            secs_136_years + 1,
            u64::MAX - TICK,
            u64::MAX - TICK + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &a in &edges {
            let t = Instant::from_nanos(a);
            let back = kept(t);
            assert!(back <= t, "{a}: read back later than stored");
            assert!(t.saturating_duration_since(back) < Duration::from_nanos(TICK), "{a}: a tick or more early");
            assert_eq!(back.as_nanos() % TICK, 0, "{a}: not the start of a tick");
            assert_eq!(kept(back), back, "{a}: a rounded time does not round to itself");
            for &b in &edges {
                if a <= b {
                    assert!(back <= kept(Instant::from_nanos(b)), "{a} <= {b} but not once rounded");
                }
            }
        }
        assert_eq!(kept(Instant::from_nanos(TICK - 1)), Instant::ZERO);
        assert_eq!(kept(Instant::from_nanos(TICK + 1)), Instant::from_nanos(TICK));
    }

    #[test]
    fn times_past_136_years_and_a_saturated_clock_neither_saturate_nor_wrap() {
        // Whole seconds in 32 bits would end at 2^32 s; ticks go on to Instant::MAX.
        let late = Instant::ZERO + Duration::from_secs((1 << 32) + 100);
        assert_eq!(to_tick(Instant::MAX), u32::MAX);
        assert_eq!(kept(Instant::MAX), Instant::from_nanos(u64::MAX - (TICK - 1)));
        let l = Layout::new(20);
        let mut b = Buckets::new(Instant::ZERO);
        let node = NodeInfo::new(NodeId::from_array([1; 20]), "192.0.2.1:1".parse().unwrap());
        for t in [late, Instant::MAX] {
            b.push(l, 0, &Contact { node, last_seen: t, last_reply: Some(t), last_query: Some(t), failures: 0 });
            let c = b.remove(l, 0, 0).unwrap();
            assert_eq!((c.last_seen, c.last_reply, c.last_query), (kept(t), Some(kept(t)), Some(kept(t))));
            assert!(kept(t) <= t && t.saturating_duration_since(kept(t)) < Duration::from_nanos(TICK));
        }
        assert!(kept(late) < kept(Instant::MAX), "the order of late times is kept");
    }

    #[test]
    fn every_contact_reads_back_with_its_times_rounded_down() {
        let id = NodeId::from_array([0xab; 20]);
        let addrs: [SocketAddr; 4] = [
            "192.0.2.1:6881".parse().unwrap(),
            "[::ffff:192.0.2.1]:6881".parse().unwrap(),
            "[2001:db8::1]:6881".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("2001:db8::2".parse().unwrap(), 7, 0x1234, 9)),
        ];
        // Two times in the first tick, one a tick start, one in the third tick, one past 136
        // years and the saturated clock.
        let times = [
            None,
            Some(at(0)),
            Some(at(1_500)),
            Some(Instant::from_nanos(TICK)),
            Some(at(10_000)),
            Some(Instant::ZERO + Duration::from_secs((1 << 32) + 1)),
            Some(Instant::MAX),
        ];
        for (i, addr) in addrs.into_iter().enumerate() {
            for reply in times {
                for query in times {
                    // The table's contacts: last_seen is the reply or the query, whichever was
                    // set last, or (restored, neither) its own.
                    let seens: Vec<Instant> = match (reply, query) {
                        (None, None) => alloc::vec![at(0), at(7), at(1_500), at(10_000), Instant::MAX],
                        _ => reply.into_iter().chain(query).collect(),
                    };
                    for seen in seens {
                        let c = Contact {
                            node: NodeInfo::new(id, addr),
                            last_seen: seen,
                            last_reply: reply,
                            last_query: query,
                            failures: i as u8,
                        };
                        let want = Contact {
                            last_seen: kept(seen),
                            last_reply: reply.map(kept),
                            last_query: query.map(kept),
                            ..c
                        };
                        for wide in [false, true] {
                            let l = Layout { id_len: 20, wide };
                            if !wide && !Layout::narrow_holds(&addr) {
                                continue;
                            }
                            let mut b = Buckets::new(Instant::ZERO);
                            b.push(l, 0, &c);
                            assert_eq!(b.bucket(l, 0).contact(l, 0), want, "{l:?}");
                            // Read back and written again, it stays as it is.
                            b.set(l, 0, 0, &want);
                            assert_eq!(b.bucket(l, 0).contact(l, 0), want, "{l:?}, rewritten");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_failure_count_shares_a_byte_with_the_flags_and_stops_at_15() {
        let l = Layout::new(20);
        let node = NodeInfo::new(NodeId::from_array([3; 20]), "[::ffff:192.0.2.1]:1".parse().unwrap());
        for failures in [0, 1, 14, 15, 16, 200, u8::MAX] {
            let c =
                Contact { node, last_seen: at(9_000), last_reply: Some(at(1)), last_query: Some(at(9_000)), failures };
            let mut b = Buckets::new(Instant::ZERO);
            b.push(l, 0, &c);
            let back = b.bucket(l, 0).contact(l, 0);
            assert_eq!(back.failures, failures.min(super::super::MAX_FAILURES));
            // Every flag survives beside it: the reply, the query, which was last, the mapped form.
            assert_eq!(
                (back.last_reply, back.last_query, back.last_seen),
                (Some(kept(at(1))), Some(kept(at(9_000))), kept(at(9_000)))
            );
            assert_eq!(back.node, node);
        }
    }

    #[test]
    fn records_are_exactly_as_long_as_the_contacts_in_one_allocation() {
        let l = Layout::new(20);
        let mut b = Buckets::new(Instant::ZERO);
        let c = |n: u8| {
            Contact::verified(NodeInfo::new(NodeId::from_array([n; 20]), "192.0.2.1:1".parse().unwrap()), at(0))
        };
        for n in 0..5 {
            b.push(l, 0, &c(n));
        }
        assert_eq!(b.record_bytes(), 5 * 35);
        assert_eq!(b.remove(l, 0, 1), Some(c(1)));
        assert_eq!(b.record_bytes(), 4 * 35);
        assert_eq!(b.move_to_tail(l, 0, 0), Some(3));
        let ids = |b: &Buckets, i: usize| -> Vec<u8> {
            b.bucket(l, i).contacts(l).map(|c| c.node.id.as_bytes()[0]).collect()
        };
        assert_eq!(ids(&b, 0), [2, 3, 4, 0]);
        // The count, the time, the length and the records are 150 bytes, in room for 160.
        assert_eq!(b.heap_bytes(), room_for(1 + 8 + 1 + 4 * 35));
        assert_eq!(b.heap_bytes(), 160);
        assert!(b.is_whole(l));
        // The room follows the length down as well as up, and a clone has the same.
        for _ in 0..4 {
            b.remove(l, 0, 0);
        }
        assert_eq!((b.record_bytes(), b.heap_bytes()), (0, 16));
        assert_eq!(b.clone().heap_bytes(), 16);
    }

    #[test]
    fn a_table_keeps_room_to_the_next_of_four_steps_per_doubling() {
        let rooms: Vec<usize> = [0, 10, 16, 17, 20, 21, 24, 25, 150, 4055, 4096, 4097, 5121].map(room_for).to_vec();
        assert_eq!(rooms, [16, 16, 16, 32, 32, 32, 32, 32, 160, 4096, 4096, 5120, 6144]);
        for len in 1..20_000 {
            let room = room_for(len);
            assert!(room >= len && room <= (len + 15).max(len + len / 4), "{len}: {room}");
            assert!(room_for(room) == room, "a room is its own room: {len}");
        }
    }

    #[test]
    fn buckets_share_the_allocation_in_order_and_keep_their_contacts_apart() {
        let l = Layout::new(20);
        // Local id 0x00..: ids 0x80.. share 0 bits, 0x40.. 1 bit, 0x20.. 2 bits.
        let c = |first: u8, n: u8| {
            let mut id = [n; 20];
            id[0] = first;
            Contact::verified(NodeInfo::new(NodeId::from_array(id), "192.0.2.1:1".parse().unwrap()), at(0))
        };
        let local = NodeId::from_array([0; 20]);
        let mut b = Buckets::new(at(5));
        for (first, n) in [(0x80, 1), (0x40, 2), (0x20, 3), (0x81, 4), (0x41, 5)] {
            b.push(l, 0, &c(first, n));
        }
        b.split_last(l, &local);
        assert_eq!(b.count(), 2);
        let firsts = |b: &Buckets, i: usize| -> Vec<u8> { b.bucket(l, i).ids(l).map(|id| id[0]).collect() };
        assert_eq!(firsts(&b, 0), [0x80, 0x81]);
        assert_eq!(firsts(&b, 1), [0x40, 0x20, 0x41]);
        assert_eq!(b.bucket(l, 1).last_changed, at(5), "a split inherits last_changed");
        b.split_last(l, &local);
        assert_eq!((firsts(&b, 1), firsts(&b, 2)), (alloc::vec![0x40, 0x41], alloc::vec![0x20]));
        // Growing a bucket in the middle moves the ones after it, not their contents.
        b.push(l, 0, &c(0x82, 6));
        b.set_changed(1, at(9));
        assert_eq!(firsts(&b, 0), [0x80, 0x81, 0x82]);
        assert_eq!(firsts(&b, 1), [0x40, 0x41]);
        assert_eq!(firsts(&b, 2), [0x20]);
        assert_eq!(b.bucket(l, 1).last_changed, at(9));
        assert_eq!(b.remove(l, 1, 0), Some(c(0x40, 2)));
        assert_eq!(b.move_to_tail(l, 0, 0), Some(2));
        assert_eq!(firsts(&b, 0), [0x81, 0x82, 0x80]);
        assert_eq!(firsts(&b, 2), [0x20]);
        let all: Vec<usize> = b.iter(l).map(|r| r.len(l)).collect();
        assert_eq!(all, [3, 1, 1]);
        // An eviction is a removal and an append, in place.
        let bytes = b.heap_bytes();
        assert_eq!(b.replace(l, 0, 1, &c(0x83, 7)), Some(c(0x82, 6)));
        assert_eq!(firsts(&b, 0), [0x81, 0x80, 0x83]);
        assert_eq!(b.heap_bytes(), bytes);
        assert_eq!(b.replace(l, 0, 3, &c(0x84, 8)), None, "no such position");
        assert_eq!(b.replace(l, 0, 0, &c(0x82, 6)), Some(c(0x81, 4)));
        assert_eq!(firsts(&b, 0), [0x80, 0x83, 0x82]);
        assert_eq!(b.record_bytes(), 5 * 35);
        assert!(b.is_whole(l));
        // Widened, every contact reads back the same.
        let before: Vec<Contact> = b.iter(l).flat_map(|r| r.contacts(l)).collect();
        let wide = Layout { wide: true, ..l };
        b.relayout(l, wide);
        let after: Vec<Contact> = b.iter(wide).flat_map(|r| r.contacts(wide)).collect();
        assert_eq!(before, after);
        assert_eq!(b.record_bytes(), 5 * 55);
    }
}

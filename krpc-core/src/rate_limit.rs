//! Inbound abuse controls: a per-source limit on unsolicited queries and a global budget for
//! the bytes we send in answer.
//!
//! Only what other nodes ask of us is limited here. Replies to our own queries are bounded by
//! our `concurrency` and matched against transactions before they cost anything.
//!
//! The source table is set-associative (8 slots per set, set chosen by a SipHash keyed from
//! the endpoint's seeded RNG, so an attacker cannot aim many addresses at one set). A slot
//! keeps that 64-bit hash, not the address: two sources whose hashes collide share one
//! budget, which happens for a given pair with probability 2^-64 and, with the keys secret,
//! cannot be aimed (decision 0028). Its first set grows a slot at a time, as sources arrive
//! (most engines of a large network hear from a few sources per window, and 8 slots of 28
//! bytes each were most of an idle engine's limiter); then the table doubles while a set is
//! full of live entries, up to [`RateLimit::sources`]. Counting a known source never
//! allocates. At the
//! cap, a new source takes the slot of the least active one in its set: the limit can be
//! diluted by an attacker who controls very many addresses, but memory cannot grow, and the
//! reply budget still caps what we send. Once a burst of sources has gone quiet, the live
//! entries move to the smallest table that holds them ([`SourceLimiter::shrink`]).

use alloc::vec::Vec;
use core::hash::Hasher;
use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use siphasher::sip::SipHasher13;

use crate::Instant;
use crate::address::is_local;

/// Slots per set. The table doubles when a new source finds its set full of live entries,
/// so the ways decide how full it gets before it grows: with 4, tables of a few hundred live
/// sources grew at about a third full; with 8, they hold about twice as many per slot. A
/// lookup scans one set (8 slots of 28 bytes, four cache lines).
const WAYS: usize = 8;

/// How sources on loopback and private addresses (RFC 1918, ULA, link-local) are counted.
///
/// Test swarms put many nodes on one IP, each on its own port; on the public internet one
/// host has one IP and as many ports as it likes, so ports cannot tell hosts apart there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalSources {
    /// Each `ip:port` is a source of its own (the default).
    PerSocket,
    /// Like public addresses: one source per IP.
    PerIp,
    /// Not limited at all.
    Exempt,
}

/// Limits on unsolicited inbound traffic, part of [`Config`](crate::Config).
///
/// The defaults: a source may send 100 queries in any 10-second window; the 101st blocks it for
/// a minute (every query in that minute is dropped unanswered). libtorrent blocks at 50 packets
/// in 10 s for 5 minutes; we allow twice the rate because a node bootstrapping or refreshing
/// against us legitimately sends bursts, and block for less because a blocked address may be a
/// NAT shared by honest nodes. Sources are public IPv4 addresses, public IPv6 /64 prefixes
/// (one host usually holds a whole /64), and local addresses as [`LocalSources`] says.
///
/// ```
/// use krpc_core::{Config, RateLimit};
/// // What a loopback benchmark needs: no limits at all.
/// let config = Config { rate_limit: RateLimit::OFF, ..Config::dht() };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Queries one source may send per `window`; 0 turns the per-source limit off. Malformed
    /// datagrams that would be answered with a 203 error count as queries.
    pub queries: u32,
    /// The window `queries` are counted in. It restarts with the first query after it ends.
    pub window: Duration,
    /// How long a source that went over the limit is ignored.
    pub block: Duration,
    /// How many sources are tracked at most (rounded down to 8 times a power of two, at least
    /// 8). Each costs 28 bytes; the default 4096 caps the table at 112 KiB. The table grows to
    /// this only while that many sources are active at once.
    pub sources: usize,
    /// How loopback and private sources are counted.
    pub local: LocalSources,
    /// Bytes per second we may send in answer to queries (pongs, responses, errors, whether
    /// the engine or the application wrote them), with a one-second burst; 0 turns the budget
    /// off. While it is spent, queries from nodes that are not in our routing table are
    /// dropped unanswered (and counted); nodes in the table are still answered, within their
    /// per-source limit, so a flood from many addresses cannot cut us off from the nodes we
    /// route through.
    pub reply_bytes_per_sec: u32,
}

impl RateLimit {
    /// No limits: every query is answered (for benchmarks and closed test networks).
    pub const OFF: RateLimit = RateLimit {
        queries: 0,
        window: Duration::from_secs(10),
        block: Duration::from_secs(60),
        sources: 4096,
        local: LocalSources::PerSocket,
        reply_bytes_per_sec: 0,
    };

    /// Whether anything is limited.
    pub fn is_off(&self) -> bool {
        self.queries == 0 && self.reply_bytes_per_sec == 0
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { queries: 100, reply_bytes_per_sec: 1 << 20, ..RateLimit::OFF }
    }
}

/// Address bytes (16), port (2; 0 when the port does not count), kind (1: IPv4, IPv6, IPv6
/// /64 prefix). Only its keyed hash is kept.
type Key = [u8; 19];

/// A `u64` stored as two `u32`s, so that a [`Slot`] is aligned to 4 bytes and packs into 28
/// bytes rather than 32: at one slot per source seen in a window, a busy node holds
/// thousands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct U64([u32; 2]);

impl U64 {
    const fn new(v: u64) -> U64 {
        U64([v as u32, (v >> 32) as u32])
    }

    const fn get(self) -> u64 {
        self.0[0] as u64 | (self.0[1] as u64) << 32
    }
}

/// One tracked source.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The source's keyed hash ([`SourceLimiter::hash`], never 0); 0 marks a free slot. The
    /// address itself is not kept (it was 19 of the 48 bytes a slot cost): a hash that
    /// matches is taken as the same source. See the module documentation for what a collision
    /// costs.
    hash: U64,
    count: u32,
    /// Nanoseconds since `Instant::ZERO`.
    window_start: U64,
    /// Nanoseconds since `Instant::ZERO`.
    blocked_until: U64,
}

impl Slot {
    fn used(&self) -> bool {
        self.hash.get() != 0
    }

    fn hash(&self) -> u64 {
        self.hash.get()
    }

    fn window_start(&self) -> Instant {
        Instant::from_nanos(self.window_start.get())
    }

    fn blocked_until(&self) -> Instant {
        Instant::from_nanos(self.blocked_until.get())
    }
}

const EMPTY: Slot = Slot { hash: U64::new(0), count: 0, window_start: U64::new(0), blocked_until: U64::new(0) };

/// What [`SourceLimiter::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Under the limit (or not limited).
    Admit,
    /// Already blocked.
    Blocked,
    /// This query went over the limit; the source is now blocked.
    NewlyBlocked,
}

/// The per-source counters.
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    /// The SipHash keys; the hasher is built per use from them (16 bytes kept, not its
    /// 72-byte state).
    keys: (u64, u64),
    slots: Vec<Slot>,
    /// When `admit` next looks for slots to give back (once per window at most).
    next_shrink: Instant,
}

impl SourceLimiter {
    /// An empty limiter. Its limit is not kept: every call that needs it is given the
    /// engine's (`Config::rate_limit`), since a simulated network holds a million limiters.
    pub(crate) fn new<R: rand_core::Rng + ?Sized>(rng: &mut R) -> SourceLimiter {
        let (k0, k1) = (rng.next_u64(), rng.next_u64());
        SourceLimiter { keys: (k0, k1), slots: Vec::new(), next_shrink: Instant::ZERO }
    }

    /// Sources tracked right now (live or not yet reused).
    pub(crate) fn tracked(&self) -> usize {
        self.slots.iter().filter(|s| s.used()).count()
    }

    /// Heap bytes held.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Slot>()
    }

    fn key(limit: &RateLimit, from: SocketAddr) -> Option<Key> {
        let ip = match from.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let mut key = [0u8; 19];
        let per_socket = if is_local(ip) {
            match limit.local {
                LocalSources::Exempt => return None,
                LocalSources::PerSocket => true,
                LocalSources::PerIp => false,
            }
        } else {
            false
        };
        match ip {
            IpAddr::V4(v4) => {
                key[..4].copy_from_slice(&v4.octets());
                key[18] = 4;
            }
            // A public IPv6 host usually owns its whole /64: count the prefix.
            IpAddr::V6(v6) if !is_local(ip) => {
                key[..8].copy_from_slice(&v6.octets()[..8]);
                key[18] = 64;
            }
            IpAddr::V6(v6) => {
                key[..16].copy_from_slice(&v6.octets());
                key[18] = 6;
            }
        }
        if per_socket {
            key[16..18].copy_from_slice(&from.port().to_be_bytes());
        }
        Some(key)
    }

    /// The source's keyed hash; never 0, which marks a free slot (a hash of 0 becomes 1: one
    /// more value that collides, out of 2^64).
    fn hash(&self, key: &Key) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(key);
        h.finish().max(1)
    }

    /// Whether a slot no longer restricts anything and may be reused.
    fn idle(slot: &Slot, now: Instant, window: Duration) -> bool {
        !slot.used() || (now >= slot.blocked_until() && now >= slot.window_start().saturating_add(window))
    }

    /// Counts one unsolicited query from `from` at `now`.
    pub(crate) fn admit(&mut self, limit: &RateLimit, now: Instant, from: SocketAddr) -> Admission {
        if limit.queries == 0 {
            return Admission::Admit;
        }
        let Some(key) = Self::key(limit, from) else { return Admission::Admit };
        let hash = self.hash(&key);
        let i = self.slot_for(limit, now, hash);
        let admission = self.count(limit, i, now);
        if now >= self.next_shrink {
            // After counting, so this source is live and keeps its set: a single steady
            // source never makes the table allocate again.
            self.next_shrink = now.saturating_add(limit.window);
            self.shrink(limit, now);
        }
        admission
    }

    fn count(&mut self, limit: &RateLimit, i: usize, now: Instant) -> Admission {
        let (window, block, queries) = (limit.window, limit.block, limit.queries);
        let slot = &mut self.slots[i];
        if now < slot.blocked_until() {
            return Admission::Blocked;
        }
        if now >= slot.window_start().saturating_add(window) {
            slot.window_start = U64::new(now.as_nanos());
            slot.count = 0;
        }
        slot.count = slot.count.saturating_add(1);
        if slot.count > queries {
            slot.blocked_until = U64::new(now.saturating_add(block).as_nanos());
            return Admission::NewlyBlocked;
        }
        Admission::Admit
    }

    /// The slot of the source with this hash, claiming one (growing or evicting) if it has
    /// none.
    fn slot_for(&mut self, limit: &RateLimit, now: Instant, hash: u64) -> usize {
        // Sets come in powers of two (the set is picked by the low bits of the hash).
        let max_slots = prev_power_of_two((limit.sources / WAYS).max(1)) * WAYS;
        loop {
            let n = self.slots.len();
            if n > 0 {
                // Fewer than WAYS slots: the first set, not yet full grown.
                let sets = (n / WAYS).max(1);
                let base = (hash as usize & (sets - 1)) * WAYS;
                let set = base..(base + WAYS).min(n);
                if let Some(i) = set.clone().find(|&i| self.slots[i].hash() == hash) {
                    return i;
                }
                let free = set.clone().find(|&i| Self::idle(&self.slots[i], now, limit.window));
                let victim = free.or_else(|| {
                    (self.slots.len() >= max_slots).then(|| {
                        // At the cap: the source that restricts least, that is unblocked first,
                        // then the one whose window started longest ago.
                        set.clone()
                            .min_by_key(|&i| (self.slots[i].blocked_until(), self.slots[i].window_start()))
                            .unwrap_or(base)
                    })
                });
                if let Some(i) = victim {
                    // The window starts now. (A new slot used to start it at `Instant::ZERO`,
                    // so in an engine's first `window` a source's window ended at `window`,
                    // early.)
                    self.slots[i] = Slot { hash: U64::new(hash), window_start: U64::new(now.as_nanos()), ..EMPTY };
                    return i;
                }
            }
            if n < WAYS {
                // The first set takes one slot more. A full-grown set would give this source
                // its first never-used slot, which is the same position: used slots are
                // always a prefix of a set (growing and shrinking place entries in order, and
                // a slot is never emptied in place), so the decisions are those of a table
                // allocated whole.
                self.slots.reserve_exact(1);
                self.slots.push(Slot { hash: U64::new(hash), window_start: U64::new(now.as_nanos()), ..EMPTY });
                return n;
            }
            self.grow(now, limit.window);
        }
    }

    /// Gives back the room a burst of sources grew, once at most a quarter of the slots still
    /// restrict anyone: the live entries move to the smallest table that holds them all (an
    /// idle entry restricts nothing, so dropping it changes no decision). A table with no live
    /// entry is freed. Without this, every engine that was once queried by many sources (a
    /// node near many joiners) would keep the table at its peak size for good.
    pub(crate) fn shrink(&mut self, limit: &RateLimit, now: Instant) {
        let window = limit.window;
        let live = self.slots.iter().filter(|s| !Self::idle(s, now, window)).count();
        if live * 4 > self.slots.len() {
            return;
        }
        if live == 0 {
            self.slots = Vec::new();
            return;
        }
        let mut sets = live.div_ceil(WAYS).next_power_of_two();
        while sets * WAYS < self.slots.len() {
            if let Some(slots) = self.rehash(sets, now, window) {
                self.slots = slots;
                return;
            }
            sets *= 2;
        }
    }

    /// The live entries in a table of `sets` sets, or `None` if one set cannot hold its share.
    fn rehash(&self, sets: usize, now: Instant, window: Duration) -> Option<Vec<Slot>> {
        if sets == 1 {
            // One set: just its live entries, in order (the first set grows a slot at a time).
            let live = self.slots.iter().filter(|s| !Self::idle(s, now, window)).count();
            if live > WAYS {
                return None;
            }
            let mut slots = Vec::with_capacity(live);
            slots.extend(self.slots.iter().filter(|s| !Self::idle(s, now, window)).copied());
            return Some(slots);
        }
        let mut slots = Vec::new();
        slots.resize(sets * WAYS, EMPTY);
        for slot in self.slots.iter().filter(|s| !Self::idle(s, now, window)) {
            let base = (slot.hash() as usize & (sets - 1)) * WAYS;
            let i = (base..base + WAYS).find(|&i| !slots[i].used())?;
            slots[i] = *slot;
        }
        Some(slots)
    }

    /// Doubles the number of sets. Entries of one set split between two by the next hash
    /// bit, so every entry finds room.
    fn grow(&mut self, now: Instant, window: Duration) {
        let sets = (self.slots.len() / WAYS * 2).max(1);
        let mut slots = Vec::new();
        slots.resize(sets * WAYS, EMPTY);
        for slot in self.slots.iter().filter(|s| !Self::idle(s, now, window)) {
            let base = (slot.hash() as usize & (sets - 1)) * WAYS;
            if let Some(i) = (base..base + WAYS).find(|&i| !slots[i].used()) {
                slots[i] = *slot;
            }
        }
        self.slots = slots;
    }
}

fn prev_power_of_two(n: usize) -> usize {
    if n.is_power_of_two() { n } else { n.next_power_of_two() / 2 }
}

/// The global budget for answers: a token bucket of bytes. Its rate, `per_sec`
/// (`RateLimit::reply_bytes_per_sec`; 0: no budget), is given to each call, not kept.
#[derive(Debug)]
pub(crate) struct ReplyBudget {
    /// May go below zero: an answer is allowed while any budget is left and its whole size is
    /// charged after it is written.
    tokens: i64,
    last: Instant,
}

impl ReplyBudget {
    pub(crate) fn new(per_sec: u32, now: Instant) -> ReplyBudget {
        ReplyBudget { tokens: i64::from(per_sec), last: now }
    }

    /// Whether an answer may be sent at `now`.
    pub(crate) fn allows(&mut self, per_sec: u32, now: Instant) -> bool {
        if per_sec == 0 {
            return true;
        }
        let per_sec = u64::from(per_sec);
        let elapsed = now.saturating_duration_since(self.last);
        if !elapsed.is_zero() {
            self.last = now;
            // At most one second's worth: the bucket holds a one-second burst.
            let nanos = elapsed.as_nanos().min(1_000_000_000) as u64;
            let refill = (per_sec * nanos / 1_000_000_000) as i64;
            self.tokens = self.tokens.saturating_add(refill).min(per_sec as i64);
        }
        self.tokens > 0
    }

    /// Charges an answer of `len` bytes.
    pub(crate) fn spend(&mut self, per_sec: u32, len: usize) {
        if per_sec != 0 {
            // Answers to routing-table nodes are charged even while the budget is spent, so
            // the debt has no floor of its own: saturate rather than wrap.
            self.tokens = self.tokens.saturating_sub(i64::try_from(len).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha12Rng;
    use rand_core::SeedableRng;

    /// A limiter with its limit beside it, as the engine keeps it (in its `Config`).
    struct Limited {
        inner: SourceLimiter,
        limit: RateLimit,
    }

    impl Limited {
        fn admit(&mut self, now: Instant, from: SocketAddr) -> Admission {
            self.inner.admit(&self.limit, now, from)
        }

        fn shrink(&mut self, now: Instant) {
            self.inner.shrink(&self.limit, now)
        }
    }

    impl core::ops::Deref for Limited {
        type Target = SourceLimiter;
        fn deref(&self) -> &SourceLimiter {
            &self.inner
        }
    }

    impl core::ops::DerefMut for Limited {
        fn deref_mut(&mut self) -> &mut SourceLimiter {
            &mut self.inner
        }
    }

    fn limiter(limit: RateLimit) -> Limited {
        Limited { inner: SourceLimiter::new(&mut ChaCha12Rng::from_seed([7; 32])), limit }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const LIMIT: RateLimit = RateLimit {
        queries: 5,
        window: Duration::from_secs(10),
        block: Duration::from_secs(60),
        sources: 64,
        local: LocalSources::PerSocket,
        reply_bytes_per_sec: 0,
    };

    #[test]
    fn blocks_after_the_limit_for_the_block_time() {
        let mut l = limiter(LIMIT);
        let a = addr("1.2.3.4:1000");
        let t = Instant::from_millis(1);
        for _ in 0..5 {
            assert_eq!(l.admit(t, a), Admission::Admit);
        }
        assert_eq!(l.admit(t, a), Admission::NewlyBlocked);
        assert_eq!(l.admit(t + Duration::from_secs(59), a), Admission::Blocked);
        // Another port of the same public IP is the same source.
        assert_eq!(l.admit(t, addr("1.2.3.4:1001")), Admission::Blocked);
        // Other sources are unaffected.
        assert_eq!(l.admit(t, addr("1.2.3.5:1000")), Admission::Admit);
        assert_eq!(l.admit(t + Duration::from_secs(60), a), Admission::Admit);
    }

    #[test]
    fn a_burst_of_sources_gives_its_room_back_and_a_blocked_source_stays_blocked() {
        let mut l = limiter(RateLimit { sources: 4096, ..LIMIT });
        let t = Instant::from_millis(1);
        let blocked = addr("9.9.9.9:1");
        for _ in 0..6 {
            l.admit(t, blocked);
        }
        for i in 0..500u32 {
            let [a, b, c, d] = (0x0100_0000 + i).to_be_bytes();
            assert_eq!(l.admit(t, SocketAddr::from(([a, b, c, d], 1000))), Admission::Admit);
        }
        let peak = l.capacity_bytes();
        assert!(peak >= 500 * core::mem::size_of::<Slot>(), "{peak}");
        // A window later only the blocked source restricts anything.
        let later = t + Duration::from_secs(11);
        l.shrink(later);
        assert!(l.capacity_bytes() <= WAYS * core::mem::size_of::<Slot>(), "{} of {peak}", l.capacity_bytes());
        assert_eq!(l.tracked(), 1);
        assert_eq!(l.admit(later, blocked), Admission::Blocked);
        // Once its block ends, nothing is left.
        l.shrink(t + Duration::from_secs(61));
        assert_eq!(l.capacity_bytes(), 0);
    }

    #[test]
    fn a_slot_keeps_a_hash_not_the_address() {
        // 8 bytes of hash, the count, two times: 28 bytes (it was 48 with the address).
        assert_eq!(core::mem::size_of::<Slot>(), 28);
        let u = U64::new(0x0123_4567_89ab_cdef);
        assert_eq!(u.get(), 0x0123_4567_89ab_cdef);
        assert_eq!(U64::new(u64::MAX).get(), u64::MAX);
    }

    #[test]
    fn the_table_shrinks_to_the_live_sources_and_keeps_their_budgets() {
        let mut l = limiter(RateLimit { sources: 4096, ..LIMIT });
        let t = Instant::from_millis(1);
        // A flood of 1,000 sources that come once...
        for i in 0..1_000u32 {
            l.admit(t, SocketAddr::from((core::net::Ipv4Addr::from(0x0100_0000 + i), 1000)));
        }
        let peak = l.slots.len();
        assert!(peak >= 1_000, "{peak}");
        // ...and 20 that keep coming: 4 queries each, 6 s later, one short of the limit.
        let steady = |i: u32| SocketAddr::from((core::net::Ipv4Addr::from(0x0200_0000 + i), 1000));
        let later = t + Duration::from_secs(6);
        for i in 0..20 {
            for _ in 0..4 {
                assert_eq!(l.admit(later, steady(i)), Admission::Admit);
            }
        }
        // Once the flood's windows end, only the 20 are live: the table moves them to a table
        // of a power-of-two number of sets that holds them, far smaller than the peak.
        let after = t + Duration::from_secs(11);
        l.shrink(after);
        assert!(l.slots.len() < peak / 8, "{} of {peak}", l.slots.len());
        assert!(l.slots.len() >= 20 && (l.slots.len() / WAYS).is_power_of_two(), "{}", l.slots.len());
        assert_eq!(l.tracked(), 20);
        // Each kept its count: the fifth query is admitted, the sixth blocks.
        for i in 0..20 {
            assert_eq!(l.admit(after, steady(i)), Admission::Admit, "source {i}");
            assert_eq!(l.admit(after, steady(i)), Admission::NewlyBlocked, "source {i}");
        }
        // The flood's sources start afresh: forgetting them changed no decision.
        for i in 0..5u32 {
            assert_eq!(
                l.admit(after, SocketAddr::from((core::net::Ipv4Addr::from(0x0100_0000 + i), 1000))),
                Admission::Admit
            );
        }
    }

    #[test]
    fn distinct_sources_keep_distinct_budgets() {
        // 10,000 sources, each at its limit of one query, in a table far below its cap (so
        // nothing is evicted): a source that matched another's slot would find it spent.
        // With 64-bit hashes that has probability about n^2 / 2^65 (3e-12 here).
        let mut l = limiter(RateLimit { sources: 1 << 20, queries: 1, ..LIMIT });
        let t = Instant::from_millis(1);
        for i in 0..10_000u32 {
            let from = SocketAddr::from((core::net::Ipv4Addr::from(0x0100_0000 + i), 1000));
            assert_eq!(l.admit(t, from), Admission::Admit, "source {i}");
        }
        assert_eq!(l.tracked(), 10_000);
        // And each is still limited on its own.
        for i in (0..10_000u32).step_by(97) {
            let from = SocketAddr::from((core::net::Ipv4Addr::from(0x0100_0000 + i), 1001));
            assert_eq!(l.admit(t, from), Admission::NewlyBlocked, "source {i}");
        }
    }

    #[test]
    fn the_window_restarts() {
        let mut l = limiter(LIMIT);
        let a = addr("1.2.3.4:1000");
        for s in 0..50 {
            // 5 per 10 s, spread out: never over.
            assert_eq!(l.admit(Instant::from_millis(s * 2_000 + 1), a), Admission::Admit, "query {s}");
        }
    }

    #[test]
    fn local_sources_follow_the_policy() {
        let (one, two) = (addr("127.0.0.1:1"), addr("127.0.0.1:2"));
        let t = Instant::from_millis(1);
        let mut per_socket = limiter(LIMIT);
        let mut per_ip = limiter(RateLimit { local: LocalSources::PerIp, ..LIMIT });
        let mut exempt = limiter(RateLimit { local: LocalSources::Exempt, ..LIMIT });
        for _ in 0..5 {
            per_socket.admit(t, one);
            per_ip.admit(t, one);
        }
        assert_eq!(per_socket.admit(t, two), Admission::Admit);
        assert_eq!(per_ip.admit(t, two), Admission::NewlyBlocked);
        for _ in 0..100 {
            assert_eq!(exempt.admit(t, one), Admission::Admit);
        }
        assert_eq!(exempt.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_the_64_prefix_and_mapped_ipv4_the_address() {
        let mut l = limiter(LIMIT);
        let t = Instant::from_millis(1);
        for i in 0..5 {
            l.admit(t, SocketAddr::new(IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i)), 1));
        }
        assert_eq!(l.admit(t, addr("[2001:db8:0:1::ffff]:9")), Admission::NewlyBlocked);
        assert_eq!(l.admit(t, addr("[2001:db8:0:2::1]:9")), Admission::Admit);
        for _ in 0..5 {
            l.admit(t, addr("9.9.9.9:1"));
        }
        assert_eq!(l.admit(t, addr("[::ffff:9.9.9.9]:2")), Admission::NewlyBlocked);
    }

    #[test]
    fn the_table_never_exceeds_its_cap() {
        let mut l = limiter(LIMIT);
        let t = Instant::from_millis(1);
        for i in 0..10_000u32 {
            let ip = core::net::Ipv4Addr::from(0x0100_0000 + i);
            assert_eq!(l.admit(t, SocketAddr::new(ip.into(), 1)), Admission::Admit);
            assert!(l.slots.len() <= 64);
        }
        assert_eq!(l.slots.len(), 64);
        // A source blocked before the flood of new ones is still blocked unless evicted;
        // with the table at its cap, at least the most recent sources are tracked.
        assert!(l.tracked() == 64);
    }

    #[test]
    fn the_table_grows_only_with_live_sources() {
        let mut l = limiter(LIMIT);
        for i in 0..10_000u64 {
            // One new source every 20 s: each window has ended before the next arrives.
            let ip = core::net::Ipv4Addr::from(0x0100_0000 + i as u32);
            l.admit(Instant::from_millis(1 + i * 20_000), SocketAddr::new(ip.into(), 1));
        }
        // One live source at a time: the first set never needed a second slot.
        assert_eq!(l.slots.len(), 1);
    }

    #[test]
    fn the_first_set_grows_a_slot_at_a_time_then_the_table_doubles() {
        let mut l = limiter(LIMIT);
        let t = Instant::from_millis(1);
        let source = |i: u32| SocketAddr::new(core::net::Ipv4Addr::from(0x0100_0000 + i).into(), 1);
        for i in 0..WAYS as u32 {
            assert_eq!(l.admit(t, source(i)), Admission::Admit);
            assert_eq!(l.slots.len(), i as usize + 1);
            assert_eq!(l.capacity_bytes(), l.slots.len() * core::mem::size_of::<Slot>(), "exactly sized");
        }
        // A ninth live source finds the one set full: two sets of WAYS.
        l.admit(t, source(100));
        assert_eq!(l.slots.len(), 2 * WAYS);
        assert_eq!(l.tracked(), WAYS + 1);
        // Counting known sources allocates nothing, and each keeps its own count.
        let before = l.capacity_bytes();
        for _ in 0..LIMIT.queries - 1 {
            assert_eq!(l.admit(t, source(3)), Admission::Admit);
        }
        assert_eq!(l.admit(t, source(3)), Admission::NewlyBlocked);
        assert_eq!(l.admit(t, source(4)), Admission::Admit);
        assert_eq!(l.capacity_bytes(), before);
        // Once the burst is over, the one source still blocked keeps one exactly sized set.
        let later = t + LIMIT.window + Duration::from_millis(1);
        assert!(later < t + LIMIT.block, "the block outlasts the window");
        l.shrink(later);
        assert_eq!(l.slots.len(), 1);
        assert_eq!(l.admit(later, source(3)), Admission::Blocked);
        // A new source takes one slot more.
        assert_eq!(l.admit(later, source(7)), Admission::Admit);
        assert_eq!(l.slots.len(), 2);
    }

    #[test]
    fn off_admits_everything_and_tracks_nothing() {
        let mut l = limiter(RateLimit::OFF);
        for _ in 0..1000 {
            assert_eq!(l.admit(Instant::from_millis(1), addr("1.2.3.4:5")), Admission::Admit);
        }
        assert_eq!(l.capacity_bytes(), 0);
    }

    #[test]
    fn the_budget_refills_at_its_rate_with_a_one_second_burst() {
        let start = Instant::from_millis(1);
        let mut b = ReplyBudget::new(1000, start);
        assert!(b.allows(1000, start));
        b.spend(1000, 1500);
        assert!(!b.allows(1000, start));
        // 0.5 s brings back 500 bytes: still in debt by 0.
        assert!(!b.allows(1000, start + Duration::from_millis(500)));
        assert!(b.allows(1000, start + Duration::from_millis(501)));
        // A long pause refills one second's worth, no more.
        assert!(b.allows(1000, start + Duration::from_secs(100)));
        b.spend(1000, 1000);
        assert!(!b.allows(1000, start + Duration::from_secs(100)));
        let mut off = ReplyBudget::new(0, start);
        off.spend(0, usize::MAX / 2);
        assert!(off.allows(0, start));
    }
}

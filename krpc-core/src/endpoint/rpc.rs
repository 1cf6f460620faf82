//! The RPC layer: our queries in flight and the slots they hold, the queues of queries waiting
//! for a slot, admission of unsolicited datagrams (per-source limit, reply byte budget), and
//! the outbound queue with its cap.
//!
//! It knows nothing of what a query is for beyond its [`Purpose`]; the operations part decides
//! what to send, the node layer what to answer. Every datagram the engine sends passes through
//! [`Rpc::push`], so the cap on the outbound queue is checked in one place.
//!
//! Its limits (the timeouts, the queue caps, the rate limits) are the engine's [`Config`],
//! passed to each call that needs one rather than copied in: the engine keeps its
//! configuration whole anyway, and a simulated network holds a million engines.

use alloc::collections::VecDeque;
use arrayvec::ArrayVec;
use core::net::SocketAddr;

use crate::rng::EngineRng;

use crate::config::Config;
use crate::event::{MAX_TRANSACTION_ID_LEN, OpId};
use crate::lean;
use crate::lookup::RttEstimator;
use crate::query::{Peer, Token};
use crate::rate_limit::{Admission, ReplyBudget, SourceLimiter};
use crate::stats::Stats;
use crate::transaction::{Mismatch, Purpose, Transactions, Tx, TxRef, same_endpoint};
use crate::wire::{Dictionary, Want};
use crate::{Instant, NodeId, NodeInfo};

/// Internal pings (verifications, ping/swap checks) run in this many slots of their own,
/// beside the application's `concurrency`: table upkeep is not starved by a busy application,
/// and a steady stream of unknown queriers (each verified by a ping) cannot take the
/// application's slots either.
pub(crate) const INTERNAL_EXTRA_SLOTS: usize = 4;

/// Cap on upkeep pings waiting for a slot (ping/swap and address checks, `add_node`).
pub(crate) const MAX_INTERNAL_PINGS: usize = 64;

/// Pings verifying unknown queriers run in this many slots of their own. Each silent
/// querier holds one for the query timeout, so this is what spoofing must outpace: 16 slots
/// at the default 2 s take 8 silent strangers a second, where 4 shared slots took 2 and also
/// stalled table upkeep.
pub(crate) const VERIFY_SLOTS: usize = 16;

/// Cap on verifications of unknown queriers waiting for a slot.
pub(crate) const MAX_QUEUED_VERIFICATIONS: usize = 64;

/// Who a verification is charged to: one pending per source (an IPv4 address, an IPv6 /64, or
/// on loopback and private networks, where test swarms share hosts, an address and port).
type SourceKey = ([u8; 16], u16);

/// The subnet a verification counts toward for diversity: an IPv4 /24 or IPv6 /48 on the
/// public internet, the address itself on loopback and private networks.
type SubnetKey = [u8; 16];

fn verify_keys(addr: &SocketAddr) -> (SourceKey, SubnetKey) {
    let ip = crate::wire::canonical_ip(addr.ip());
    let local = crate::address::is_local(ip);
    let mut full = [0u8; 16];
    match ip {
        core::net::IpAddr::V4(v4) => full[..4].copy_from_slice(&v4.octets()),
        core::net::IpAddr::V6(v6) => full.copy_from_slice(&v6.octets()),
    }
    if local {
        return ((full, addr.port()), full);
    }
    let (source_len, subnet_len) = if ip.is_ipv4() { (4, 3) } else { (8, 6) };
    let mut source = [0u8; 16];
    source[..source_len].copy_from_slice(&full[..source_len]);
    let mut subnet = [0u8; 16];
    subnet[..subnet_len].copy_from_slice(&full[..subnet_len]);
    // Keep the families apart: an IPv4 /24 never equals an IPv6 prefix.
    subnet[15] = u8::from(ip.is_ipv4());
    ((source, 0), subnet)
}

/// What became of a verification asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VerifyQueued {
    /// Queued.
    Queued,
    /// Its source already has one queued or in flight.
    Duplicate,
    /// Queued in place of a queued one from the most crowded subnet.
    Displaced,
    /// The queue is full of subnets no more crowded than its own: not queued.
    Dropped,
}

/// Longest error message we send; longer ones are cut.
pub(crate) const MAX_ERROR_MESSAGE: usize = 128;

/// A transaction id to echo in an answer.
pub(crate) type Tid = ArrayVec<u8, MAX_TRANSACTION_ID_LEN>;

/// Copies a `t` that the decoder already capped at [`MAX_TRANSACTION_ID_LEN`].
pub(crate) fn tid(t: &[u8]) -> Tid {
    let mut out = ArrayVec::new();
    let _ = out.try_extend_from_slice(&t[..t.len().min(MAX_TRANSACTION_ID_LEN)]);
    out
}

/// A datagram waiting for `poll_transmit`. Answers are encoded when they leave, from the
/// state they describe, so the queue holds no encoded bytes.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One of our queries.
    Query(TxRef),
    /// An empty answer carrying only our id (`ping`, a stored `announce_peer`).
    Pong { to: SocketAddr, t: Tid },
    /// The application's answer (`respond`).
    Response { to: SocketAddr, t: Tid, values: Dictionary, nodes: alloc::vec::Vec<NodeInfo> },
    /// A KRPC error.
    Error { to: SocketAddr, t: Tid, code: i64, message: ErrorText },
    /// Node layer: a `find_node` answer, encoded from the table when it leaves.
    FindNode { to: SocketAddr, t: Tid, target: NodeId, want: Want },
    /// Node layer: a `get_peers` answer, encoded from the table and peer store when it leaves.
    GetPeers { to: SocketAddr, t: Tid, info_hash: NodeId, want: Want, noseed: bool, scrape: bool },
    /// Node layer: a BEP 44 `get` answer, encoded from the table and item store when it leaves.
    GetItem { to: SocketAddr, t: Tid, target: NodeId, want: Want, seq: Option<i64> },
    /// Node layer: a BEP 51 `sample_infohashes` answer, encoded when it leaves.
    Samples { to: SocketAddr, t: Tid, target: NodeId, want: Want },
}

/// The message of a queued KRPC error. The engine's own messages are static or rebuilt when
/// the datagram is encoded, so queueing them allocates nothing; only the application's
/// ([`Endpoint::error`](super::Endpoint::error)) is copied to the heap. Kept inline, the
/// message made every queued datagram 208 bytes (against 128 for the next largest), and an
/// engine keeps a few queue slots between maintenance ticks.
#[derive(Debug)]
pub(crate) enum ErrorText {
    /// One of the engine's fixed messages.
    Static(&'static [u8]),
    /// What was wrong with a malformed query, written out when encoded.
    Malformed(crate::wire::DecodeErrorKind),
    /// The application's message, cut to [`MAX_ERROR_MESSAGE`] bytes.
    Owned(alloc::boxed::Box<[u8]>),
}

impl ErrorText {
    /// The application's message, cut to [`MAX_ERROR_MESSAGE`] bytes.
    pub(crate) fn copy(message: &[u8]) -> ErrorText {
        ErrorText::Owned(message[..message.len().min(MAX_ERROR_MESSAGE)].into())
    }

    /// The message's bytes, written into `scratch` when they are not stored.
    pub(crate) fn bytes<'a>(&'a self, scratch: &'a mut ArrayVec<u8, MAX_ERROR_MESSAGE>) -> &'a [u8] {
        match self {
            ErrorText::Static(m) => &m[..m.len().min(MAX_ERROR_MESSAGE)],
            ErrorText::Owned(m) => m,
            ErrorText::Malformed(kind) => {
                scratch.clear();
                let _ = core::fmt::Write::write_fmt(&mut Truncating(scratch), format_args!("{kind}"));
                scratch
            }
        }
    }
}

/// A `fmt::Write` into a fixed buffer that silently truncates.
struct Truncating<'a>(&'a mut ArrayVec<u8, MAX_ERROR_MESSAGE>);

impl core::fmt::Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.0.remaining_capacity();
        let _ = self.0.try_extend_from_slice(&s.as_bytes()[..s.len().min(room)]);
        Ok(())
    }
}

/// A ping the engine sends for its own bookkeeping.
#[derive(Clone, Debug)]
pub(crate) struct InternalPing {
    pub(crate) addr: SocketAddr,
    pub(crate) expect: Option<NodeId>,
    pub(crate) purpose: Purpose,
}

/// Outcome of matching a reply.
pub(crate) enum Matched {
    /// It answers this transaction, now finished.
    Tx(Tx),
    /// It answers nothing of ours; counted and dropped.
    Unmatched,
}

/// The RPC layer's state.
#[derive(Debug)]
pub(crate) struct Rpc {
    txs: Transactions,
    /// Application queries waiting for one of the `concurrency` slots.
    waiting: VecDeque<(OpId, Peer)>,
    /// Upkeep pings waiting for one of their own slots.
    internal: VecDeque<InternalPing>,
    /// Verifications of unknown queriers waiting for one of theirs, with their keys.
    verify: VecDeque<(InternalPing, SourceKey, SubnetKey)>,
    outbound: VecDeque<Outbound>,
    /// Soft deadlines of lookup queries (`lookup_soft_timeout`), earliest first (kept sorted
    /// on insertion: adaptive soft timeouts differ); entries of answered queries are skipped.
    soft_deadlines: VecDeque<(Instant, TxRef)>,
    /// Round trips of our queries, for the adaptive soft timeout.
    rtt: RttEstimator,
    /// Per-source limit on unsolicited queries.
    limiter: SourceLimiter,
    /// Global budget for the bytes of our answers.
    budget: ReplyBudget,
}

impl Rpc {
    pub(crate) fn new(config: &Config, rng: &mut EngineRng, now: Instant) -> Rpc {
        Rpc {
            txs: Transactions::default(),
            waiting: VecDeque::new(),
            internal: VecDeque::new(),
            verify: VecDeque::new(),
            outbound: VecDeque::new(),
            soft_deadlines: VecDeque::new(),
            rtt: RttEstimator::default(),
            limiter: SourceLimiter::new(rng),
            budget: ReplyBudget::new(config.rate_limit.reply_bytes_per_sec, now),
        }
    }

    // ---- admission of unsolicited datagrams ----

    /// Counts an unsolicited datagram against its source's limit; false if it must be dropped.
    pub(crate) fn admit(&mut self, now: Instant, from: SocketAddr, config: &Config, stats: &mut Stats) -> bool {
        match self.limiter.admit(&config.rate_limit, now, from) {
            Admission::Admit => return true,
            Admission::NewlyBlocked => stats.sources_blocked += 1,
            Admission::Blocked => {}
        }
        stats.rate_limited += 1;
        false
    }

    /// Whether the reply budget has bytes left; counts the answer dropped if not.
    pub(crate) fn within_budget(&mut self, now: Instant, config: &Config, stats: &mut Stats) -> bool {
        let left = self.budget.allows(config.rate_limit.reply_bytes_per_sec, now);
        if !left {
            stats.replies_over_budget += 1;
        }
        left
    }

    /// Sources the rate limiter tracks.
    pub(crate) fn tracked_sources(&self) -> usize {
        self.limiter.tracked()
    }

    // ---- the outbound queue ----

    /// Whether one more datagram fits the outbound queue.
    pub(crate) fn has_room(&self, config: &Config) -> bool {
        self.outbound.len() < config.max_queued_transmits
    }

    /// Queues a datagram; when the queue is full it is dropped and counted. Returns whether
    /// it was queued.
    pub(crate) fn push(&mut self, out: Outbound, config: &Config, stats: &mut Stats) -> bool {
        if !self.has_room(config) {
            stats.transmits_dropped += 1;
            return false;
        }
        lean::push_back(&mut self.outbound, out);
        true
    }

    /// Queues a KRPC error (its message is cut to [`MAX_ERROR_MESSAGE`] bytes when encoded).
    pub(crate) fn push_error(
        &mut self,
        to: SocketAddr,
        t: &[u8],
        code: i64,
        message: ErrorText,
        config: &Config,
        stats: &mut Stats,
    ) -> bool {
        self.push(Outbound::Error { to, t: tid(t), code, message }, config, stats)
    }

    pub(crate) fn pop_outbound(&mut self) -> Option<Outbound> {
        let out = self.outbound.pop_front();
        release_if_empty(&mut self.outbound, KEPT);
        out
    }

    pub(crate) fn has_outbound(&self) -> bool {
        !self.outbound.is_empty()
    }

    /// Counts the bytes of an answer that left against the reply budget.
    pub(crate) fn spend(&mut self, len: usize, config: &Config) {
        self.budget.spend(config.rate_limit.reply_bytes_per_sec, len);
    }

    // ---- queues waiting for a slot ----

    /// Room for `n` more application queries in the waiting queue.
    pub(crate) fn can_queue(&self, n: usize, config: &Config) -> bool {
        self.waiting.len() + n <= config.max_queued_queries
    }

    pub(crate) fn queue_query(&mut self, op: OpId, peer: Peer) {
        lean::push_back(&mut self.waiting, (op, peer));
    }

    /// Queues an internal ping; false (and nothing queued) when [`MAX_INTERNAL_PINGS`] wait.
    pub(crate) fn queue_internal(&mut self, ping: InternalPing) -> bool {
        if self.internal.len() >= MAX_INTERNAL_PINGS {
            return false;
        }
        lean::push_back(&mut self.internal, ping);
        true
    }

    pub(crate) fn waiting_is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub(crate) fn pop_waiting(&mut self) -> Option<(OpId, Peer)> {
        let out = self.waiting.pop_front();
        release_if_empty(&mut self.waiting, KEPT);
        out
    }

    pub(crate) fn pop_internal(&mut self) -> Option<InternalPing> {
        let out = self.internal.pop_front();
        release_if_empty(&mut self.internal, KEPT);
        out
    }

    pub(crate) fn pop_verification(&mut self) -> Option<InternalPing> {
        let out = self.verify.pop_front().map(|(ping, _, _)| ping);
        release_if_empty(&mut self.verify, KEPT);
        out
    }

    /// Asks to verify an unknown querier at `addr` claiming `id`. What one source can cost is
    /// one pending verification (queued or in flight), and a full queue favours diversity:
    /// a newcomer displaces the newest entry of the most crowded subnet, if that subnet holds
    /// more entries than its own.
    pub(crate) fn queue_verification(&mut self, addr: SocketAddr, id: NodeId) -> VerifyQueued {
        let (source, subnet) = verify_keys(&addr);
        let queued = self.verify.iter().any(|(_, s, _)| *s == source);
        let in_flight = self.txs.refs().any(|r| {
            self.txs.get(r).is_some_and(|tx| {
                same_endpoint(&tx.addr, &addr)
                    || (tx.purpose == Purpose::VerifyQuerier && verify_keys(&tx.addr).0 == source)
            })
        });
        if queued || in_flight || self.internal.iter().any(|p| same_endpoint(&p.addr, &addr)) {
            return VerifyQueued::Duplicate;
        }
        let ping = InternalPing { addr, expect: Some(id), purpose: Purpose::VerifyQuerier };
        if self.verify.len() < MAX_QUEUED_VERIFICATIONS {
            lean::push_back(&mut self.verify, (ping, source, subnet));
            return VerifyQueued::Queued;
        }
        // Counted on a sorted copy of the subnets: O(n log n) for each stranger that finds the
        // queue full, which a flood of spoofed sources makes the common case.
        let mut nets: ArrayVec<SubnetKey, MAX_QUEUED_VERIFICATIONS> = self.verify.iter().map(|(_, _, n)| *n).collect();
        nets.sort_unstable();
        let count = |net: &SubnetKey| nets.partition_point(|n| n <= net) - nets.partition_point(|n| n < net);
        let own = count(&subnet);
        let most = nets.chunk_by(|a, b| a == b).map(<[SubnetKey]>::len).max().unwrap_or(0);
        // The newest entry of the most crowded subnet (of the last queued, on a tie) makes room,
        // if that subnet holds more entries than the newcomer's.
        match self.verify.iter().rposition(|(_, _, n)| count(n) == most) {
            Some(i) if most > own => {
                self.verify.remove(i);
                lean::push_back(&mut self.verify, (ping, source, subnet));
                VerifyQueued::Displaced
            }
            _ => VerifyQueued::Dropped,
        }
    }

    // ---- transactions ----

    /// Queries in flight that hold one of the application's `concurrency` slots: all but the
    /// internal pings (stopped operations' queries still in flight included).
    pub(crate) fn app_in_flight(&self) -> usize {
        self.txs.len() - self.txs.internal_len()
    }

    /// Upkeep pings in flight.
    pub(crate) fn maintenance_in_flight(&self) -> usize {
        self.txs.internal_len() - self.txs.querier_len()
    }

    /// Verifications of unknown queriers in flight.
    pub(crate) fn verifications_in_flight(&self) -> usize {
        self.txs.querier_len()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.txs.len()
    }

    /// Registers a query under a fresh random tid and queues it for sending.
    pub(crate) fn start(
        &mut self,
        rng: &mut EngineRng,
        addr: SocketAddr,
        expect_id: Option<NodeId>,
        token: Option<Token>,
        purpose: Purpose,
    ) {
        let r = self.txs.insert(|| rand_core::Rng::next_u32(rng), addr, expect_id, token, purpose);
        lean::push_back(&mut self.outbound, Outbound::Query(r));
    }

    pub(crate) fn tx(&self, r: TxRef) -> Option<&Tx> {
        self.txs.get(r)
    }

    /// Ends a transaction without a reply (it could not be encoded or sent).
    pub(crate) fn take(&mut self, r: TxRef) -> Option<Tx> {
        self.txs.remove(r)
    }

    /// Starts the clock of a query that just left: its deadline, and for a lookup query its
    /// soft deadline.
    pub(crate) fn mark_sent(&mut self, r: TxRef, now: Instant, config: &Config) {
        self.txs.mark_sent(r, now + config.timeout);
        let lookup = self.txs.get(r).is_some_and(|tx| matches!(tx.purpose, Purpose::Lookup(_)));
        if let (true, Some(cap)) = (lookup, config.lookup_soft_timeout) {
            let soft = if config.lookup_adaptive_soft_timeout { self.rtt.soft_timeout(cap) } else { cap };
            self.push_soft_deadline(now + soft, r);
        }
    }

    /// Files the soft deadline of a lookup query. With the adaptive soft timeout a query sent
    /// later may fall due earlier, so the queue is kept sorted (a FIFO would hide a due
    /// deadline behind a later one). Entries of answered queries are dropped first, which
    /// bounds the queue by the queries in flight.
    fn push_soft_deadline(&mut self, deadline: Instant, r: TxRef) {
        let txs = &self.txs;
        self.soft_deadlines.retain(|&(_, r)| txs.get(r).is_some());
        let at = self.soft_deadlines.partition_point(|&(d, _)| d <= deadline);
        self.soft_deadlines.insert(at, (deadline, r));
    }

    /// Matches a reply on (tid, IP, port) and finishes its transaction; unmatched replies are
    /// counted. Every matched reply times the path, for the adaptive soft timeout.
    pub(crate) fn match_reply(
        &mut self,
        t: &[u8],
        from: &SocketAddr,
        now: Instant,
        config: &Config,
        stats: &mut Stats,
    ) -> Matched {
        let r = match self.txs.find(t, from) {
            Ok(r) => r,
            // Never inserted, never surfaced: k-rpc fed these into its table (weakness W3).
            Err(Mismatch::UnknownTid) => {
                stats.unsolicited_replies += 1;
                return Matched::Unmatched;
            }
            Err(Mismatch::WrongAddress) => {
                stats.mismatched_replies += 1;
                return Matched::Unmatched;
            }
        };
        let Some(tx) = self.txs.remove(r) else { return Matched::Unmatched };
        stats.replies_in += 1;
        if let Some(deadline) = tx.deadline {
            // Sent at `deadline - timeout`.
            self.rtt.sample(now.saturating_duration_since(deadline.saturating_sub(config.timeout)));
        }
        Matched::Tx(tx)
    }

    /// Removes and returns one transaction whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Tx> {
        self.txs.pop_expired(now)
    }

    /// The next lookup query past its soft deadline at `now`, still in flight: (where it
    /// went, its lookup).
    pub(crate) fn pop_soft_expired(&mut self, now: Instant) -> Option<(SocketAddr, OpId)> {
        while let Some(&(deadline, r)) = self.soft_deadlines.front() {
            if deadline > now {
                return None;
            }
            self.soft_deadlines.pop_front();
            release_if_empty(&mut self.soft_deadlines, KEPT);
            if let Some(Tx { addr, purpose: Purpose::Lookup(op), .. }) = self.txs.get(r) {
                return Some((*addr, *op));
            }
        }
        None
    }

    /// The earliest query deadline.
    pub(crate) fn next_query_deadline(&mut self) -> Option<Instant> {
        self.txs.next_deadline()
    }

    /// The earliest soft deadline of a lookup query still in flight.
    pub(crate) fn next_soft_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, r)) = self.soft_deadlines.front() {
            if self.txs.get(r).is_some() {
                return Some(deadline);
            }
            self.soft_deadlines.pop_front();
        }
        release_if_empty(&mut self.soft_deadlines, KEPT);
        None
    }

    /// Detaches an operation's transactions: unsent ones are dropped, sent ones still feed
    /// the routing table when answered but reach nobody.
    pub(crate) fn detach(&mut self, op: OpId) {
        let refs: alloc::vec::Vec<_> = self.txs.refs().collect();
        for r in refs {
            let Some(tx) = self.txs.get_mut(r) else { continue };
            if matches!(tx.purpose, Purpose::Op(o) | Purpose::Lookup(o) if o == op) {
                if tx.deadline.is_none() {
                    self.txs.remove(r);
                } else {
                    tx.purpose = Purpose::Detached;
                }
            }
        }
        self.waiting.retain(|(o, _)| *o != op);
    }

    /// Drops everything: queues, queries in flight, datagrams not yet sent.
    pub(crate) fn clear(&mut self) {
        self.waiting.clear();
        self.internal.clear();
        self.verify.clear();
        self.outbound.clear();
        self.soft_deadlines.clear();
        let refs: alloc::vec::Vec<_> = self.txs.refs().collect();
        for r in refs {
            self.txs.remove(r);
        }
    }

    /// Heap bytes of the transaction slab.
    pub(crate) fn txs_bytes(&self) -> usize {
        self.txs.capacity_bytes()
    }

    /// At the maintenance tick: gives back the rate limiter's room for sources that went quiet
    /// (see `SourceLimiter::shrink`), and every empty queue's last [`KEPT`] slots. An engine
    /// that has been quiet for a minute then holds no queue memory at all.
    pub(crate) fn relax(&mut self, now: Instant, config: &Config) {
        self.limiter.shrink(&config.rate_limit, now);
        release_if_empty(&mut self.outbound, 0);
        release_if_empty(&mut self.waiting, 0);
        release_if_empty(&mut self.internal, 0);
        release_if_empty(&mut self.verify, 0);
        if self.txs.len() == 0 {
            release_if_empty(&mut self.soft_deadlines, 0);
        }
        self.txs.relax();
    }

    /// Heap bytes of the rate limiter.
    pub(crate) fn limiter_bytes(&self) -> usize {
        self.limiter.capacity_bytes()
    }

    /// Heap bytes of the queues (outbound, waiting, internal, verification, soft deadlines).
    pub(crate) fn queue_bytes(&self) -> usize {
        self.memory_footprint() - self.txs_bytes() - self.limiter_bytes()
    }

    /// Heap bytes held, for memory accounting.
    pub(crate) fn memory_footprint(&self) -> usize {
        self.txs.capacity_bytes()
            + self.outbound.capacity() * core::mem::size_of::<Outbound>()
            + self.waiting.capacity() * core::mem::size_of::<(OpId, Peer)>()
            + self.internal.capacity() * core::mem::size_of::<InternalPing>()
            + self.verify.capacity() * core::mem::size_of::<(InternalPing, SourceKey, SubnetKey)>()
            + self.soft_deadlines.capacity() * core::mem::size_of::<(Instant, TxRef)>()
            + self.limiter.capacity_bytes()
    }
}

/// The capacity a queue keeps when it empties between maintenance ticks: one slot (see
/// [`lean`]), so that one datagram at a time (answering a ping, matching a reply) never
/// allocates. The maintenance tick gives that back too (`Rpc::relax`).
pub(crate) const KEPT: usize = 1;

/// Gives an emptied queue's memory back once it holds more than `keep` slots. A burst (a
/// join's lookups, a flood of queries) grows the queues, and an idle engine would otherwise
/// keep that capacity for good: in a network of a million engines, that capacity was a third
/// of the memory. The next burst allocates again, a cost paid once per burst rather than per
/// datagram in it.
pub(crate) fn release_if_empty<T>(queue: &mut VecDeque<T>, keep: usize) {
    if queue.is_empty() && queue.capacity() > keep {
        *queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(max_queued_transmits: usize) -> (Rpc, EngineRng, Config) {
        let mut rng = EngineRng::from_seed([3; 32]);
        let config = Config { max_queued_transmits, ..Config::default() };
        (Rpc::new(&config, &mut rng, Instant::ZERO), rng, config)
    }

    #[test]
    fn a_queued_datagram_does_not_carry_an_error_message_inline() {
        // An engine keeps a few outbound slots between maintenance ticks; with the 128-byte
        // message inline every slot was 208 bytes.
        assert!(core::mem::size_of::<Outbound>() <= 128, "{}", core::mem::size_of::<Outbound>());
        let mut scratch = ArrayVec::new();
        assert_eq!(ErrorText::Static(b"Method Unknown").bytes(&mut scratch), b"Method Unknown");
        let kind = crate::wire::DecodeErrorKind::UnexpectedEnd;
        let mut expected = alloc::string::String::new();
        let _ = core::fmt::Write::write_fmt(&mut expected, format_args!("{kind}"));
        assert_eq!(ErrorText::Malformed(kind).bytes(&mut scratch), expected.as_bytes());
    }

    #[test]
    fn the_outbound_cap_is_checked_once_for_every_kind_of_datagram() {
        let (mut rpc, _, config) = rpc(2);
        let mut stats = Stats::default();
        let to: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert!(rpc.push(Outbound::Pong { to, t: tid(b"aa") }, &config, &mut stats));
        assert!(rpc.push_error(to, b"bb", 203, ErrorText::copy(&[b'x'; 500]), &config, &mut stats));
        assert!(!rpc.push(Outbound::Pong { to, t: tid(b"cc") }, &config, &mut stats));
        assert_eq!(stats.transmits_dropped, 1);
        assert!(matches!(rpc.pop_outbound(), Some(Outbound::Pong { .. })));
        match rpc.pop_outbound() {
            Some(Outbound::Error { message, .. }) => {
                assert_eq!(message.bytes(&mut ArrayVec::new()), &[b'x'; MAX_ERROR_MESSAGE][..], "cut")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reply_matches_only_its_query_and_the_soft_deadline_names_the_lookup() {
        let (mut rpc, mut rng, config) = rpc(16);
        let mut stats = Stats::default();
        let to: SocketAddr = "10.0.0.1:1".parse().unwrap();
        rpc.start(&mut rng, to, None, None, Purpose::Lookup(OpId(7)));
        let Some(Outbound::Query(r)) = rpc.pop_outbound() else { panic!() };
        rpc.mark_sent(r, Instant::ZERO, &config);
        let t = rpc.tx(r).unwrap().tid.to_be_bytes();
        assert_eq!(rpc.app_in_flight(), 1);
        assert_eq!(rpc.queue_verification(to, NodeId::from_array([1; 20])), VerifyQueued::Duplicate, "already asked");
        let soft = rpc.next_soft_deadline().unwrap();
        assert!(soft < rpc.next_query_deadline().unwrap());
        assert_eq!(rpc.pop_soft_expired(soft), Some((to, OpId(7))));
        assert!(matches!(
            rpc.match_reply(&t, &"10.0.0.2:1".parse().unwrap(), soft, &config, &mut stats),
            Matched::Unmatched
        ));
        assert_eq!(stats.mismatched_replies, 1);
        assert!(matches!(rpc.match_reply(&t, &to, soft, &config, &mut stats), Matched::Tx(_)));
        assert_eq!(rpc.in_flight(), 0);
        assert!(matches!(rpc.match_reply(&t, &to, soft, &config, &mut stats), Matched::Unmatched));
        assert_eq!(stats.unsolicited_replies, 1);
    }
}

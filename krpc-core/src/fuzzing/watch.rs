//! One [`Endpoint`] under observation: the fuzz drivers issue commands through it and call
//! [`Watched::drain`] after every step, which empties the outputs (the run-loop contract) and
//! checks every invariant that can be seen from outside.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::address::is_never_valid;
use crate::routing::RoutingTable;
use crate::transaction::same_endpoint;
use crate::wire::Body;
use crate::{CommandError, Endpoint, Event, Instant, NodeId, NodeInfo, OpId, ReplyTo, Stats, Transmit};

/// Internal pings may use this many query slots beyond `concurrency` (the engine's
/// `INTERNAL_EXTRA_SLOTS` for upkeep plus `VERIFY_SLOTS` for unknown queriers); the invariant
/// allows exactly that much.
pub(crate) const EXTRA_SLOTS: usize = 4 + 16;

/// How many of each kind of handle the driver remembers for later commands.
const RING: usize = 32;

/// The final event a command must end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Final {
    /// `query`, sent to this address, expecting this id if any: `QueryDone`.
    Query(SocketAddr, Option<NodeId>),
    /// `query_all`: `QueryAllDone`.
    QueryAll,
    /// `closest`, `populate`, `bootstrap`, `find_node`, `get_peers`: `LookupDone`.
    Lookup,
    /// `announce`: `AnnounceDone`.
    Announce,
    /// `get_immutable` / `get_mutable` of this target: `GetItemDone`. For a mutable item,
    /// the key and the minimum `seq` asked for.
    GetItem(NodeId, Option<([u8; 32], Option<i64>)>),
    /// `put_immutable`, `put_mutable`, `put_mutable_next`: `PutItemDone`.
    PutItem,
    /// `crawl` with these caps (`max_info_hashes`, `max_nodes`): `CrawlDone`.
    Crawl(u64, usize),
}

impl Final {
    fn same_kind(self, other: Final) -> bool {
        core::mem::discriminant(&self) == core::mem::discriminant(&other)
    }
}

/// A query the endpoint sent, remembered so that a reply can echo it.
#[derive(Clone, Debug)]
pub(crate) struct SentQuery {
    pub(crate) to: SocketAddr,
    pub(crate) tid: Vec<u8>,
    pub(crate) method: Vec<u8>,
    /// Its `target` argument (`find_node`, BEP 44 `get`), if any.
    pub(crate) target: Option<NodeId>,
}

/// A datagram the endpoint sent.
#[derive(Clone, Debug)]
pub(crate) struct Out {
    pub(crate) to: SocketAddr,
    pub(crate) bytes: Vec<u8>,
}

fn push_ring<T>(ring: &mut Vec<T>, item: T) {
    if ring.len() >= RING {
        ring.remove(0);
    }
    ring.push(item);
}

/// An endpoint with the bookkeeping the invariants need.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) ep: Endpoint,
    /// Size of the buffer handed to `poll_transmit`.
    pub(crate) buf_len: usize,
    /// The latest `now` given to the endpoint.
    latest: Instant,
    /// Operations started by a command that have not ended yet.
    pending: BTreeMap<OpId, Final>,
    /// Every operation seen ending (ours and the engine's own).
    finished: BTreeSet<OpId>,
    /// Every operation id a command returned.
    issued: BTreeSet<OpId>,
    /// Recent operation ids (for `stop` and `cancel`).
    pub(crate) ops: Vec<OpId>,
    /// Recent incoming queries (for `respond` and `error`).
    pub(crate) reply_tos: Vec<ReplyTo>,
    /// Recent `PingSwap` offers: `(oldest, candidate)`.
    pub(crate) ping_swaps: Vec<(Vec<NodeInfo>, NodeInfo)>,
    /// Recent queries sent.
    pub(crate) sent: Vec<SentQuery>,
    /// Recent write tokens the endpoint handed out, with the address they went to.
    pub(crate) tokens: Vec<(SocketAddr, Vec<u8>)>,
    /// Recent transmits (for `fail_transmit`).
    pub(crate) transmits: Vec<Transmit>,
    stats: Stats,
    /// Info-hashes each running crawl reported so far.
    crawl_seen: BTreeMap<OpId, BTreeSet<NodeId>>,
    /// A description of everything that happened, when tracing.
    pub(crate) journal: Option<Vec<String>>,
    /// The application called `respond` or `error` since the last drain (its answers may be
    /// of any size).
    pub(crate) app_replied: bool,
    /// The buffer `drain` hands to `poll_transmit`, kept between calls.
    scratch: Vec<u8>,
}

impl Watched {
    pub(crate) fn new(ep: Endpoint, buf_len: usize, now: Instant) -> Watched {
        let stats = *ep.stats();
        Watched {
            ep,
            buf_len,
            latest: now,
            pending: BTreeMap::new(),
            finished: BTreeSet::new(),
            issued: BTreeSet::new(),
            ops: Vec::new(),
            reply_tos: Vec::new(),
            ping_swaps: Vec::new(),
            sent: Vec::new(),
            tokens: Vec::new(),
            transmits: Vec::new(),
            stats,
            crawl_seen: BTreeMap::new(),
            journal: None,
            app_replied: false,
            scratch: Vec::new(),
        }
    }

    /// Adds a line to the journal, when tracing.
    pub(crate) fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(j) = self.journal.as_mut() {
            j.push(line());
        }
    }

    /// Records a `now` handed to the endpoint.
    pub(crate) fn saw(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
    }

    /// The latest `now` the endpoint was given.
    pub(crate) fn latest(&self) -> Instant {
        self.latest
    }

    /// Commands still waiting for their final event.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Registers the result of a command that starts an operation.
    pub(crate) fn started(&mut self, result: Result<OpId, CommandError>, kind: Final) {
        self.note(|| format!("  command {kind:?} -> {result:?}"));
        match result {
            Ok(op) => {
                assert!(
                    !self.pending.contains_key(&op) && !self.finished.contains(&op),
                    "operation id {op:?} handed out twice"
                );
                self.pending.insert(op, kind);
                self.issued.insert(op);
                push_ring(&mut self.ops, op);
            }
            Err(e) => {
                if self.ep.is_closed() {
                    // An invalid item is refused before anything else is looked at.
                    let invalid_item = matches!(e, CommandError::InvalidItem(_));
                    assert!(e == CommandError::Closed || invalid_item, "a closed endpoint refuses with Closed: {e:?}");
                }
            }
        }
    }

    fn finish(&mut self, op: OpId, kind: Final) {
        assert!(self.finished.insert(op), "second final event for {op:?} ({kind:?})");
        if let Some(expected) = self.pending.remove(&op) {
            assert!(expected.same_kind(kind), "{op:?} was a {expected:?} but ended as {kind:?}");
        }
    }

    fn live(&self, op: OpId, what: &str) {
        assert!(!self.finished.contains(&op), "{what} for {op:?} after its final event");
    }

    /// Empties the outputs at `now` and checks the invariants. `after_timeout`: the last input
    /// was `handle_timeout(now)`, so no deadline may be due any more. Returns what was sent.
    pub(crate) fn drain(&mut self, now: Instant, after_timeout: bool) -> Vec<Out> {
        self.saw(now);
        let closed_before = self.ep.is_closed();
        let mut sent = Vec::new();
        // The transmit buffer is kept between calls (zeroing a new one per call showed in
        // profiles); `poll_transmit` must not rely on its contents anyway.
        let mut buf = core::mem::take(&mut self.scratch);
        buf.resize(self.buf_len, 0);
        let decoder = self.ep.decoder().with_max_len(usize::MAX);
        let (mut queries, mut replies) = (0usize, 0usize);
        while let Some(t) = self.ep.poll_transmit(now, &mut buf) {
            assert!(!closed_before, "a closed endpoint sent a datagram");
            assert!(t.len <= buf.len(), "transmit longer than the buffer");
            assert_ne!(t.destination.port(), 0, "datagram to port 0");
            let bytes = &buf[..t.len];
            let msg = match decoder.decode(bytes) {
                Ok(msg) => msg,
                Err(e) => panic!("the endpoint sent an undecodable datagram ({e}): {bytes:?}"),
            };
            match msg.body {
                Body::Query(q) => {
                    queries += 1;
                    assert!(!is_never_valid(&t.destination), "query to {}", t.destination);
                    // A read-only node's queries carry `ro=1`, but for the probe of an adaptive
                    // node (a `find_node` lookup).
                    let probe = self.ep.config().adaptive_read_only && q.method == b"find_node";
                    let silent = self.ep.is_read_only() || !self.ep.is_serving();
                    assert!(msg.read_only == silent || probe, "ro flag of our query");
                    assert!(!msg.read_only || silent, "ro=1 from a node that answers queries");
                    assert_eq!(msg.transaction_id.len(), crate::transaction::TID_LEN, "our tids are four bytes");
                    let sq = SentQuery {
                        to: t.destination,
                        tid: msg.transaction_id.to_vec(),
                        method: q.method.to_vec(),
                        target: q.args.target(),
                    };
                    push_ring(&mut self.sent, sq);
                }
                Body::Response(f) => {
                    replies += 1;
                    if let Some(token) = f.token() {
                        push_ring(&mut self.tokens, (t.destination, token.to_vec()));
                    }
                }
                Body::Error(_) => replies += 1,
            }
            if !matches!(msg.body, Body::Query(_)) && !self.app_replied {
                // Answers the engine writes on its own must stay small: the node layer's
                // within its byte budget, the others (pongs, 203s) tiny.
                let budget = self.ep.config().dht.as_ref().map_or(256, |d| d.max_reply_len);
                assert!(t.len <= budget, "a {}-byte answer exceeds the reply budget of {budget}: {msg:?}", t.len);
            }
            push_ring(&mut self.transmits, t);
            self.note(|| format!("  sent to {}: {:?}", t.destination, msg));
            sent.push(Out { to: t.destination, bytes: bytes.to_vec() });
        }
        self.drain_events();
        let in_flight = self.ep.in_flight();
        let config = self.ep.config().clone();
        assert!(in_flight <= config.concurrency + EXTRA_SLOTS, "{in_flight} queries in flight");
        assert!(queries <= in_flight, "{queries} queries sent but only {in_flight} in flight");
        assert!(replies <= config.max_queued_transmits, "{replies} replies queued at once");
        let ops = self.ep.operations();
        assert!(
            ops <= config.max_queued_queries + in_flight + config.max_lookups,
            "{ops} operations running (caps: {} queued, {} lookups)",
            config.max_queued_queries,
            config.max_lookups
        );
        if self.ep.is_closed() {
            assert_eq!(ops, 0, "operations survive close");
            assert_eq!(in_flight, 0, "queries in flight survive close");
            assert!(self.pending.is_empty(), "commands without a final event after close: {:?}", self.pending);
        }
        for table in self.ep.routing_tables() {
            check_table(table, self.ep.id(), config.id_len);
        }
        self.check_stats();
        self.check_memory();
        match self.ep.poll_timeout() {
            None => assert!(self.ep.is_closed(), "an open endpoint has no deadline"),
            Some(t) => {
                assert!(!self.ep.is_closed(), "a closed, drained endpoint still has a deadline");
                assert!(t >= self.latest, "poll_timeout {t:?} is before the latest now {:?}", self.latest);
                // Saturated clocks (near Instant::MAX) cannot move past their deadlines.
                let saturated = now.saturating_add(core::time::Duration::from_secs(86_400 * 365)) == Instant::MAX;
                if after_timeout && !saturated && t <= now {
                    panic!("handle_timeout({now:?}) left a deadline due at {t:?} (busy loop)");
                }
            }
        }
        self.app_replied = false;
        self.scratch = buf;
        sent
    }

    fn drain_events(&mut self) {
        let cap = self.ep.config().max_queued_events;
        let k = self.ep.config().k;
        // The most contacts a bucket can hold: k, or a wide bucket's k · 2^n (at most 255).
        let widest = (self.ep.config().k << self.ep.config().wide_buckets).min(crate::routing::MAX_BUCKET_CAPACITY);
        let auto_ping_swap = self.ep.config().auto_ping_swap;
        let (mut count, mut results) = (0usize, 0usize);
        let mut id_changed = false;
        while let Some(event) = self.ep.poll_event() {
            self.note(|| format!("  event {event:?}"));
            count += 1;
            match event {
                Event::QueryDone { op, result } => {
                    results += 1;
                    if let Some(Final::Query(to, expect)) = self.pending.get(&op).copied() {
                        if let Ok(reply) = &result {
                            assert!(same_endpoint(&reply.from(), &to), "{op:?}: reply from {} not {to}", reply.from());
                            if let Some(expect) = expect {
                                assert_eq!(reply.id(), Some(expect), "{op:?}: reply from the wrong node");
                            }
                        }
                    }
                    if let Ok(reply) = &result {
                        let _ = (reply.message(), reply.values(), reply.id());
                    }
                    self.finish(op, Final::Query(SocketAddr::from(([0, 0, 0, 0], 0)), None));
                }
                Event::QueryAllDone { op, result } => {
                    results += 1;
                    assert!(result != Ok(0), "query_all succeeded with no reply");
                    self.finish(op, Final::QueryAll);
                }
                Event::LookupDone { op, closest, replies, .. } => {
                    results += 1;
                    assert!(closest.len() <= k, "LookupDone with {} nodes", closest.len());
                    assert!(closest.len() <= replies, "more closest nodes than replies");
                    if !id_changed {
                        assert!(closest.iter().all(|n| n.node.id != *self.ep.id()), "our own id among the closest");
                    }
                    self.finish(op, Final::Lookup);
                }
                Event::ScrapeDone { op, responses, seeds, peers, .. } => {
                    // Not issued by the fuzzer yet; a scrape is a lookup that ends once.
                    results += 1;
                    assert!(responses > 0 || (seeds, peers) == (0, 0), "{op:?}: an estimate from no filter");
                    self.finish(op, Final::Lookup);
                }
                Event::AnnounceDone { op, result } => {
                    results += 1;
                    assert!(result != Ok(0), "announce succeeded with no node");
                    self.finish(op, Final::Announce);
                }
                Event::ModeChanged { .. } => {
                    results += 1;
                    let config = self.ep.config();
                    assert!(config.adaptive_read_only && !config.read_only, "mode change outside adaptive mode");
                }
                Event::IdChanged { previous, id } => {
                    results += 1;
                    id_changed = true;
                    assert_ne!(previous, id, "IdChanged to the same id");
                }
                Event::Reply { op, reply } => {
                    self.live(op, "Reply");
                    // Engine-internal operations (table refresh, an announce's second phase)
                    // have ids the application never saw: their replies are not reported.
                    assert!(self.issued.contains(&op), "Reply for {op:?}, which no command returned");
                    let _ = (reply.message(), reply.values(), reply.id());
                }
                Event::GetItemDone { op, item, .. } => {
                    results += 1;
                    if let Some(item) = &item {
                        self.check_item(op, item);
                    }
                    self.finish(op, Final::GetItem(NodeId::from_array([0; 20]), None));
                }
                Event::PutItemDone { op, result } => {
                    results += 1;
                    if let Ok(outcome) = &result {
                        // `Ok`: the put was sent, so some node stored it, refused it or
                        // did not answer.
                        let heard = outcome.stored + outcome.failed + outcome.errors.len();
                        assert!(heard >= 1, "{op:?}: a put that reached no node succeeded: {outcome:?}");
                    }
                    self.finish(op, Final::PutItem);
                }
                Event::ItemFound { op, item, .. } => {
                    self.live(op, "ItemFound");
                    assert!(self.issued.contains(&op), "ItemFound for {op:?}, which no command returned");
                    self.check_item(op, &item);
                }
                Event::CrawlFound { op, info_hashes, from } => {
                    self.live(op, "CrawlFound");
                    assert!(!info_hashes.is_empty(), "CrawlFound without info-hashes");
                    assert!(!is_never_valid(&from.addr), "CrawlFound from {}", from.addr);
                    let fresh = self.crawl_seen.entry(op).or_default();
                    for hash in info_hashes {
                        assert!(fresh.insert(hash), "{op:?}: info-hash {hash:?} reported twice");
                    }
                    if let Some(Final::Crawl(cap, _)) = self.pending.get(&op).copied() {
                        assert!(fresh.len() as u64 <= cap, "{op:?}: more info-hashes than its cap {cap}");
                    }
                }
                Event::CrawlDone { op, stats } => {
                    results += 1;
                    self.check_crawl_stats(op, &stats);
                    self.crawl_seen.remove(&op);
                    self.finish(op, Final::Crawl(0, 0));
                }
                Event::Peers { op, peers, .. } => {
                    self.live(op, "Peers");
                    assert!(!peers.is_empty(), "Peers event without peers");
                }
                Event::Query(q) => {
                    // The datagram is decoded again on access: that must never fail.
                    let _ = (q.message(), q.method(), q.args(), q.sender_id(), q.from());
                    assert!(q.reply_to().transaction_id().len() <= crate::MAX_TRANSACTION_ID_LEN);
                    push_ring(&mut self.reply_tos, q.reply_to().clone());
                }
                Event::PingSwap { oldest, candidate } => {
                    assert!(!auto_ping_swap, "PingSwap with the built-in ping/swap on");
                    // At most three (upkeep's `PING_SWAP_OFFER`), and never more than a bucket holds.
                    assert!(oldest.len() <= widest.min(3), "PingSwap offers {} nodes", oldest.len());
                    push_ring(&mut self.ping_swaps, (oldest, candidate));
                }
                Event::NodeAdded(node) | Event::NodeRemoved(node) => {
                    if !id_changed {
                        assert_ne!(node.id, *self.ep.id(), "routing event about our own id");
                    }
                }
                Event::NodeUpdated { node, previous } => {
                    assert_ne!(node.addr, previous, "NodeUpdated without a new address");
                }
            }
        }
        assert!(count <= cap.max(results), "{count} events queued (cap {cap}, {results} results)");
    }

    /// Stops every crawl still running (the end of a run where nodes keep answering); the
    /// caller drains.
    pub(crate) fn stop_crawls(&mut self) {
        let crawls: Vec<OpId> =
            self.pending.iter().filter(|(_, f)| matches!(f, Final::Crawl(..))).map(|(op, _)| *op).collect();
        for op in crawls {
            let _ = self.ep.stop(op);
        }
    }

    /// A crawl's numbers agree with each other and with its caps.
    pub(crate) fn check_crawl_stats(&self, op: OpId, stats: &crate::CrawlStats) {
        if let Some(Final::Crawl(max_hashes, max_nodes)) = self.pending.get(&op).copied() {
            assert!(stats.unique_info_hashes <= max_hashes, "{op:?}: {stats:?} beyond its cap {max_hashes}");
            assert!(stats.nodes_known <= max_nodes, "{op:?}: {stats:?} knows more than {max_nodes} nodes");
        }
        assert!(stats.replies <= stats.queries, "{op:?}: more replies than queries: {stats:?}");
        assert!(stats.nodes_visited <= stats.replies, "{op:?}: {stats:?}");
        assert!(stats.unique_info_hashes <= stats.samples, "{op:?}: {stats:?}");
        if let Some(seen) = self.crawl_seen.get(&op) {
            // Events may be dropped, never invented.
            assert!(seen.len() as u64 <= stats.unique_info_hashes, "{op:?}: {} reported, {stats:?}", seen.len());
        }
    }

    /// An item a `get` surfaced is the one asked for: an immutable value hashing to the
    /// target; a mutable item of the key asked for, under the target, signed, and at least
    /// the minimum `seq` (BEP 44: "the node receiving the response ... must verify the
    /// signature").
    fn check_item(&self, op: OpId, item: &crate::dht::Item) {
        use crate::dht::Item;
        use crate::dht::bep44::immutable_target;
        let Some(Final::GetItem(target, spec)) = self.pending.get(&op).copied() else {
            panic!("{op:?}: an item for an operation that is no pending get: {item:?}");
        };
        match (item, spec) {
            (Item::Immutable { value }, None) => {
                assert_eq!(immutable_target(value), target, "{op:?}: an immutable item under another target");
            }
            (Item::Mutable(m), Some((key, min_seq))) => {
                assert!(m.verify(), "{op:?}: a mutable item whose signature does not verify: {m:?}");
                assert_eq!(m.key, key, "{op:?}: a mutable item of another key");
                assert_eq!(m.target(), target, "{op:?}: a mutable item under another target");
                assert!(min_seq.is_none_or(|s| m.seq >= s), "{op:?}: seq {} below the minimum {min_seq:?}", m.seq);
            }
            _ => panic!("{op:?}: an item of the wrong kind: {item:?}"),
        }
    }

    fn check_stats(&mut self) {
        let (a, b) = (self.stats, *self.ep.stats());
        let pairs = [
            (a.datagrams_in, b.datagrams_in),
            (a.malformed, b.malformed),
            (a.malformed_answered, b.malformed_answered),
            (a.invalid_source, b.invalid_source),
            (a.queries_in, b.queries_in),
            (a.queries_ignored, b.queries_ignored),
            (a.replies_in, b.replies_in),
            (a.unsolicited_replies, b.unsolicited_replies),
            (a.mismatched_replies, b.mismatched_replies),
            (a.timeouts, b.timeouts),
            (a.queries_out, b.queries_out),
            (a.replies_out, b.replies_out),
            (a.transmits_dropped, b.transmits_dropped),
            (a.events_dropped, b.events_dropped),
            (a.nodes_filtered, b.nodes_filtered),
        ];
        assert!(pairs.iter().all(|(x, y)| x <= y), "a counter went down: {a:?} -> {b:?}");
        assert!(b.malformed_answered <= b.malformed && b.malformed <= b.datagrams_in, "stats disagree: {b:?}");
        self.stats = b;
    }

    fn check_memory(&self) {
        use core::mem::size_of;
        let c = self.ep.config();
        // Everything the engine may hold at once, generously: queries waiting, in flight and
        // internal, datagrams, events, lookups with their candidates.
        let queries = c.max_queued_queries + c.concurrency + EXTRA_SLOTS + 64 + 64;
        let table = self.ep.routing_table();
        let bound = 2 * size_of::<Endpoint>()
            + 2 * c.id_len * 8 * c.k * size_of::<crate::routing::Contact>()
            + c.rate_limit.sources * 64
            + 4 * (c.max_queued_transmits + queries) * 512
            + 4 * (c.max_queued_events + queries + c.max_lookups) * size_of::<Event>()
            + 4 * queries * 256
            + c.max_lookups * (1024 + c.max_lookup_candidates * 128);
        let used = self.ep.memory_footprint();
        assert!(used <= bound, "memory footprint {used} above {bound} (table {} contacts)", table.len());
    }

    /// Lets time pass with no traffic answered until every command has ended; panics if one
    /// never does. Datagrams sent meanwhile are dropped.
    pub(crate) fn quiesce(&mut self, mut now: Instant) -> Instant {
        for _ in 0..20_000 {
            if self.pending.is_empty() {
                return now;
            }
            let Some(t) = self.ep.poll_timeout() else { break };
            now = now.max(t);
            self.ep.handle_timeout(now);
            self.drain(now, true);
        }
        if !self.pending.is_empty() {
            // When tracing, the journal shows what the engine did meanwhile (from the start).
            let journal = self.journal.as_ref().map(|j| j[..j.len().min(60)].join("\n")).unwrap_or_default();
            panic!(
                "commands never ended: {:?} (at {now:?}, deadline {:?})\n{journal}",
                self.pending,
                self.ep.poll_timeout()
            );
        }
        now
    }

    /// Closes the endpoint and checks that everything ended and nothing is left.
    pub(crate) fn close(&mut self, now: Instant) {
        self.ep.close(now);
        self.drain(now, false);
        assert!(self.pending.is_empty(), "commands without a final event after close: {:?}", self.pending);
        assert_eq!(self.ep.poll_timeout(), None, "a closed endpoint still has a deadline");
    }
}

/// The routing table's structural invariants ([`RoutingTable::check_invariants`]), and that
/// the table is built around our id at the configured length.
pub(crate) fn check_table(table: &RoutingTable, own: &NodeId, id_len: usize) {
    assert_eq!(table.local_id(), own, "the table is built around another id");
    assert_eq!(own.len(), id_len, "our id is not of the configured length");
    if let Err(violation) = table.check_invariants() {
        panic!("routing table invariant: {violation}");
    }
}

//! Operations: the commands that run over time — `query`, `query_all`, lookups, and the
//! multi-phase `announce` — and their results.
//!
//! Every operation has one [`OpId`] from start to end, whatever phases it goes through: an
//! announce is one [`Op::Announce`] whose phase moves from a `get_peers` lookup to the
//! `announce_peer` queries (BEP 5), with no side map and no id guessed ahead. The part only
//! holds state and turns results into [`Event`]s; it sends nothing itself. What to send next
//! is read from it by the dispatcher (`outbound.rs`), which owns the slots.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use arrayvec::ArrayVec;

use super::crawl::Crawl;
use super::items::{GetItem, PutItem, PutPhase};
use crate::event::{Event, LookupNode, LookupOutcome, OpId};
use crate::lookup::Lookup;
use crate::query::{Peer, Query};
use crate::transaction::Purpose;
use crate::wire::Dictionary;
use crate::{NodeId, QueryError, Reply};

/// What a lookup is for, which decides how it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LookupKind {
    /// `closest`, `populate`, `find_node`, table refresh: ends with [`Event::LookupDone`].
    Plain,
    /// `bootstrap`: when it completes, the buckets it left thin are refreshed.
    Join,
    /// The refresh of one bucket with room, in the IPv6 table if `v6` (after a join, or when
    /// BEP 5's 15-minute refresh finds a stale bucket that is not full): it spreads the
    /// bucket's entries over its range ([`Lookup::step_spread`]) and ends as soon as that
    /// bucket (the one holding the lookup's target) holds `k` nodes, rather than converging on
    /// its random target. Filling the bucket is all it is for; every query after that cost us
    /// and the nodes we asked datagrams and taught the table nothing.
    ///
    /// [`Lookup::step_spread`]: crate::lookup::Lookup::step_spread
    FillBucket { v6: bool },
    /// The probe of a read-only node in adaptive mode: a `find_node` for our own id sent
    /// without `ro=1` (see [`reachability`](super::reachability)).
    Probe,
    /// `get_peers`: each reply's `values` become [`Event::Peers`].
    GetPeers,
    /// BEP 33 `scrape`: a `get_peers` lookup with `scrape=1` whose answers' bloom filters are
    /// united; ends with [`Event::ScrapeDone`].
    Scrape(Box<ScrapeFilters>),
}

/// The union of the BEP 33 filters seen by a scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScrapeFilters {
    seeds: [u8; crate::dht::BLOOM_BYTES],
    peers: [u8; crate::dht::BLOOM_BYTES],
    responses: usize,
}

impl ScrapeFilters {
    pub(crate) fn new() -> Box<ScrapeFilters> {
        Box::new(ScrapeFilters {
            seeds: [0; crate::dht::BLOOM_BYTES],
            peers: [0; crate::dht::BLOOM_BYTES],
            responses: 0,
        })
    }

    /// BEP 33: the filters of several nodes are combined by OR-ing them; the union is the
    /// filter of the union of their swarms, so a peer that several nodes know counts once.
    fn add(&mut self, seeds: &[u8], peers: &[u8]) {
        if seeds.len() != self.seeds.len() || peers.len() != self.peers.len() {
            return;
        }
        self.seeds.iter_mut().zip(seeds).for_each(|(a, b)| *a |= b);
        self.peers.iter_mut().zip(peers).for_each(|(a, b)| *a |= b);
        self.responses += 1;
    }

    fn done(&self, op: OpId, outcome: LookupOutcome) -> Event {
        let estimate = |f: &[u8; crate::dht::BLOOM_BYTES]| libm::round(crate::dht::bloom_estimate(f)).max(0.0) as u64;
        let (seeds, peers) = if self.responses == 0 { (0, 0) } else { (estimate(&self.seeds), estimate(&self.peers)) };
        Event::ScrapeDone { op, seeds, peers, responses: self.responses, outcome }
    }
}

/// The state shared by `query_all` and an announce's second phase.
#[derive(Debug)]
pub(crate) struct QueryAll {
    pub(crate) query: Query,
    outstanding: usize,
    hits: usize,
    /// BEP 44's CAS and sequence errors are what a caller needs to see when nothing stored.
    error_3xx: Option<QueryError>,
    /// Replies are surfaced as [`Event::Reply`] (not for an announce, whose caller only
    /// wants the count).
    report: bool,
}

impl QueryAll {
    fn new(query: Query, outstanding: usize, report: bool) -> QueryAll {
        QueryAll { query, outstanding, hits: 0, error_3xx: None, report }
    }

    /// One query's result: the reply to surface, and the final result when it was the last.
    fn record(&mut self, result: Result<Reply, QueryError>) -> (Option<Reply>, Option<Result<usize, QueryError>>) {
        self.outstanding -= 1;
        let reply = match result {
            Ok(reply) => {
                self.hits += 1;
                self.report.then_some(reply)
            }
            Err(e) => {
                if let QueryError::Remote { code: 300..=399, .. } = e {
                    self.error_3xx.get_or_insert(e);
                }
                None
            }
        };
        let done = (self.outstanding == 0).then(|| {
            if self.hits > 0 { Ok(self.hits) } else { Err(self.error_3xx.take().unwrap_or(QueryError::AllFailed)) }
        });
        (reply, done)
    }

    /// The result when ended early: the successes so far if stopped by the caller.
    fn end_early(&self, error: QueryError) -> Result<usize, QueryError> {
        if self.hits > 0 && error == QueryError::Cancelled { Ok(self.hits) } else { Err(error) }
    }
}

/// An announce (BEP 5): a `get_peers` lookup collecting write tokens, then `announce_peer`
/// to the closest nodes that gave one.
#[derive(Debug)]
pub(crate) struct Announce {
    info_hash: NodeId,
    port: Option<u16>,
    seed: bool,
    phase: AnnouncePhase,
}

#[derive(Debug)]
enum AnnouncePhase {
    Lookup(Lookup),
    Store(QueryAll),
}

impl Announce {
    /// The `announce_peer` query of the second phase.
    fn store_query(&self) -> Query {
        let mut args = Dictionary::new().with_bytes("info_hash", self.info_hash.as_bytes());
        // BEP 5: "implied_port [...] If it is present and non-zero, the port argument should
        // be ignored and the source port of the UDP packet should be used".
        args.insert_int("implied_port", i64::from(self.port.is_none()));
        args.insert_int("port", i64::from(self.port.unwrap_or(0)));
        if self.seed {
            args.insert_int("seed", 1);
        }
        Query::new("announce_peer", args).unwrap_or_else(Query::ping)
    }
}

/// A running operation.
#[derive(Debug)]
pub(crate) enum Op {
    // Every variant is boxed, so that an `Op` is 24 bytes: a B-tree node holds 11 of them
    // whatever their kind, and inline the `Query` and `QueryAll` made it 192 (a 2.2 KB node
    // for an engine running one lookup).
    Query {
        query: Box<Query>,
    },
    QueryAll(Box<QueryAll>),
    Lookup {
        lookup: Box<Lookup>,
        kind: LookupKind,
    },
    Announce(Box<Announce>),
    /// BEP 44 `get_immutable` / `get_mutable`: a lookup with the `get` query.
    GetItem(Box<GetItem>),
    /// BEP 44 put: a `get` lookup collecting tokens, then `put` queries, under one id.
    PutItem(Box<PutItem>),
    /// BEP 51 crawl: `sample_infohashes` queries over the whole id space (`crawl.rs`).
    Crawl(Box<Crawl>),
}

/// How a lookup ended, for the orchestrator.
#[derive(Debug)]
pub(crate) enum LookupEnd {
    /// Report this event.
    Report(Event),
    /// The join completed: report this and refresh the thin buckets, asking first the nodes
    /// the join heard of but never asked (`heard`).
    Joined { event: Event, heard: Vec<crate::NodeInfo> },
    /// An announce's or put's lookup completed: send its query to these token holders under
    /// the same operation id ([`Operations::begin_store`]).
    Store { peers: Vec<Peer> },
}

/// All running operations.
#[derive(Debug)]
pub(crate) struct Operations {
    next: u64,
    ops: BTreeMap<OpId, Op>,
    /// Operations in their lookup phase, in start order; foreground before background is
    /// decided at dispatch.
    lookup_order: Vec<OpId>,
}

impl Operations {
    pub(crate) fn new() -> Operations {
        Operations { next: 1, ops: BTreeMap::new(), lookup_order: Vec::new() }
    }

    fn insert(&mut self, op: Op) -> OpId {
        let id = OpId(self.next);
        self.next += 1;
        if matches!(op, Op::Lookup { .. } | Op::Announce(_) | Op::GetItem(_) | Op::PutItem(_)) {
            self.lookup_order.push(id);
        }
        self.ops.insert(id, op);
        id
    }

    pub(crate) fn start_query(&mut self, query: Query) -> OpId {
        self.insert(Op::Query { query: Box::new(query) })
    }

    pub(crate) fn start_query_all(&mut self, query: Query, peers: usize) -> OpId {
        self.insert(Op::QueryAll(Box::new(QueryAll::new(query, peers, true))))
    }

    pub(crate) fn start_lookup(&mut self, lookup: Lookup, kind: LookupKind) -> OpId {
        self.insert(Op::Lookup { lookup: Box::new(lookup), kind })
    }

    pub(crate) fn start_announce(&mut self, lookup: Lookup, info_hash: NodeId, port: Option<u16>, seed: bool) -> OpId {
        self.insert(Op::Announce(Box::new(Announce { info_hash, port, seed, phase: AnnouncePhase::Lookup(lookup) })))
    }

    pub(crate) fn start_get_item(&mut self, get: GetItem) -> OpId {
        self.insert(Op::GetItem(Box::new(get)))
    }

    pub(crate) fn start_put_item(&mut self, put: PutItem) -> OpId {
        self.insert(Op::PutItem(Box::new(put)))
    }

    pub(crate) fn start_crawl(&mut self, crawl: Crawl) -> OpId {
        self.insert(Op::Crawl(Box::new(crawl)))
    }

    /// The crawl `op`, if it runs.
    pub(crate) fn crawl(&self, op: OpId) -> Option<&Crawl> {
        match self.ops.get(&op)? {
            Op::Crawl(c) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn crawl_mut(&mut self, op: OpId) -> Option<&mut Crawl> {
        match self.ops.get_mut(&op)? {
            Op::Crawl(c) => Some(c),
            _ => None,
        }
    }

    /// Running crawls, in start order.
    pub(crate) fn crawl_ids(&self) -> Vec<OpId> {
        self.ops.iter().filter(|(_, op)| matches!(op, Op::Crawl(_))).map(|(id, _)| *id).collect()
    }

    /// Running crawls, in start order.
    pub(crate) fn crawls(&self) -> impl Iterator<Item = &Crawl> {
        self.ops.values().filter_map(|op| match op {
            Op::Crawl(c) => Some(&**c),
            _ => None,
        })
    }

    /// Ends a crawl: its final event.
    pub(crate) fn finish_crawl(&mut self, op: OpId) -> Option<Event> {
        let event = match self.ops.remove(&op)? {
            Op::Crawl(c) => Some(c.done_event(op)),
            other => {
                self.ops.insert(op, other);
                None
            }
        };
        self.release_if_empty();
        event
    }

    /// Gives back the map's last node (and the lookup order's room) once no operation is
    /// left. An emptied `BTreeMap` keeps its root node, 11 operations wide (about 2 KB), and
    /// every engine ran a join's lookups, so every idle engine kept one. Called where an
    /// operation ends for good, never per datagram; the next operation allocates a node
    /// again, which starting one did anyway (its lookup is boxed).
    fn release_if_empty(&mut self) {
        if self.ops.is_empty() {
            self.ops = BTreeMap::new();
        }
        if self.lookup_order.is_empty() {
            self.lookup_order = Vec::new();
        }
    }

    /// An announce or put moves to its second phase: `peers` queries under the same id.
    pub(crate) fn begin_store(&mut self, op: OpId, peers: usize) {
        match self.ops.get_mut(&op) {
            Some(Op::Announce(a)) => {
                if let AnnouncePhase::Store(all) = &mut a.phase {
                    all.outstanding = peers;
                }
            }
            Some(Op::PutItem(p)) => p.set_outstanding(peers),
            _ => {}
        }
    }

    /// A reply to a BEP 44 operation's `get` lookup: the event to surface (a verified item)
    /// and whether the lookup may end now (an immutable item was found).
    pub(crate) fn on_item_reply(
        &mut self,
        op: OpId,
        from: core::net::SocketAddr,
        f: &crate::wire::Fields<'_>,
    ) -> (Option<Event>, bool) {
        match self.ops.get_mut(&op) {
            Some(Op::GetItem(g)) => g.on_reply(op, from, f),
            Some(Op::PutItem(p)) => {
                p.on_reply(f);
                (None, false)
            }
            _ => (None, false),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Operations in a lookup phase.
    pub(crate) fn lookups(&self) -> usize {
        self.lookup_order.len()
    }

    /// What counts against `max_lookups`: lookups and crawls together.
    pub(crate) fn lookup_slots(&self) -> usize {
        self.lookup_order.len() + self.ops.values().filter(|op| matches!(op, Op::Crawl(_))).count()
    }

    pub(crate) fn contains(&self, op: OpId) -> bool {
        self.ops.contains_key(&op)
    }

    pub(crate) fn ids(&self) -> Vec<OpId> {
        self.ops.keys().copied().collect()
    }

    /// Operations in a lookup phase, in start order.
    pub(crate) fn lookup_order(&self) -> &[OpId] {
        &self.lookup_order
    }

    /// The lookup of an operation in its lookup phase.
    pub(crate) fn lookup(&self, op: OpId) -> Option<&Lookup> {
        match self.ops.get(&op)? {
            Op::Lookup { lookup, .. } => Some(lookup),
            Op::Announce(a) => match &a.phase {
                AnnouncePhase::Lookup(l) => Some(l),
                AnnouncePhase::Store(_) => None,
            },
            Op::GetItem(g) => Some(&g.lookup),
            Op::PutItem(p) => match &p.phase {
                PutPhase::Lookup(l) => Some(l),
                PutPhase::Store(_) => None,
            },
            _ => None,
        }
    }

    pub(crate) fn lookup_mut(&mut self, op: OpId) -> Option<&mut Lookup> {
        match self.ops.get_mut(&op)? {
            Op::Lookup { lookup, .. } => Some(lookup),
            Op::Announce(a) => match &mut a.phase {
                AnnouncePhase::Lookup(l) => Some(l),
                AnnouncePhase::Store(_) => None,
            },
            Op::GetItem(g) => Some(&mut g.lookup),
            Op::PutItem(p) => match &mut p.phase {
                PutPhase::Lookup(l) => Some(l),
                PutPhase::Store(_) => None,
            },
            _ => None,
        }
    }

    /// A scrape's answer carried BEP 33 filters.
    pub(crate) fn record_scrape(&mut self, op: OpId, seeds: &[u8], peers: &[u8]) {
        if let Some(Op::Lookup { kind: LookupKind::Scrape(filters), .. }) = self.ops.get_mut(&op) {
            filters.add(seeds, peers);
        }
    }

    /// Whether `op` is the probe of adaptive mode.
    pub(crate) fn is_probe(&self, op: OpId) -> bool {
        matches!(self.ops.get(&op), Some(Op::Lookup { kind: LookupKind::Probe, .. }))
    }

    /// The family and target of a [`LookupKind::FillBucket`] lookup: the bucket to watch is
    /// the one holding the target (found anew each time, as our own bucket may split).
    pub(crate) fn fill_target(&self, op: OpId) -> Option<(bool, NodeId)> {
        match self.ops.get(&op)? {
            Op::Lookup { lookup, kind: LookupKind::FillBucket { v6 } } => Some((*v6, *lookup.target())),
            _ => None,
        }
    }

    /// Whether the lookup's replies carry peers for the caller (`get_peers`, announce).
    pub(crate) fn wants_peers(&self, op: OpId) -> bool {
        matches!(self.ops.get(&op), Some(Op::Lookup { kind: LookupKind::GetPeers, .. } | Op::Announce(_)))
    }

    /// The query a transaction to `addr` carries, if its operation still runs.
    pub(crate) fn query_of(&self, purpose: Purpose, addr: &core::net::SocketAddr) -> Option<&Query> {
        match purpose {
            Purpose::Op(op) => match self.ops.get(&op)? {
                Op::Query { query } => Some(query),
                Op::QueryAll(all) => Some(&all.query),
                Op::Announce(a) => match &a.phase {
                    AnnouncePhase::Store(all) => Some(&all.query),
                    AnnouncePhase::Lookup(_) => None,
                },
                Op::PutItem(p) => match &p.phase {
                    PutPhase::Store(store) => Some(&store.query),
                    PutPhase::Lookup(_) => None,
                },
                Op::Crawl(c) => c.query_for(addr),
                Op::Lookup { .. } | Op::GetItem(_) => None,
            },
            Purpose::Lookup(op) => self.lookup(op).map(Lookup::query),
            _ => None,
        }
    }

    /// One query of a `query`, `query_all` or announce's store phase got its result. Returns
    /// the events to report: a reply to surface and/or the final result.
    pub(crate) fn on_query_result(
        &mut self,
        op: OpId,
        from: core::net::SocketAddr,
        result: Result<Reply, QueryError>,
    ) -> ArrayVec<Event, 2> {
        let mut events = ArrayVec::new();
        let done = match self.ops.get_mut(&op) {
            Some(Op::Query { .. }) => Some(Event::QueryDone { op, result }),
            Some(Op::QueryAll(all)) => {
                let (reply, done) = all.record(result);
                if let Some(reply) = reply {
                    events.push(Event::Reply { op, reply });
                }
                done.map(|result| Event::QueryAllDone { op, result })
            }
            Some(Op::Announce(a)) => match &mut a.phase {
                AnnouncePhase::Store(all) => all.record(result).1.map(|result| Event::AnnounceDone { op, result }),
                AnnouncePhase::Lookup(_) => None,
            },
            Some(Op::PutItem(p)) => p.on_result(op, from, result),
            _ => None,
        };
        if let Some(done) = done {
            self.ops.remove(&op);
            self.release_if_empty();
            events.push(done);
        }
        events
    }

    /// Ends a lookup phase. `None` when `op` is not in one. `own` is our id now: a lookup that
    /// began before a BEP 42 id change may have met a node with our new id, and we are
    /// never one of a lookup's results (fuzz finding 10).
    pub(crate) fn finish_lookup(
        &mut self,
        op: OpId,
        outcome: LookupOutcome,
        k: usize,
        own: &NodeId,
    ) -> Option<LookupEnd> {
        let end = self.end_lookup(op, outcome, k, own);
        self.release_if_empty();
        end
    }

    fn end_lookup(&mut self, op: OpId, outcome: LookupOutcome, k: usize, own: &NodeId) -> Option<LookupEnd> {
        self.lookup(op)?;
        let not_us = |n: &LookupNode| n.node.id != *own;
        self.lookup_order.retain(|o| *o != op);
        let completed = outcome == LookupOutcome::Completed;
        match self.ops.remove(&op)? {
            Op::Lookup { kind: LookupKind::Scrape(filters), .. } => Some(LookupEnd::Report(filters.done(op, outcome))),
            Op::Lookup { lookup, kind } => {
                let closest = lookup.closest_responders().into_iter().filter(not_us).collect();
                let event = Event::LookupDone { op, replies: lookup.replies(), closest, outcome };
                Some(if kind == LookupKind::Join && completed {
                    LookupEnd::Joined { event, heard: lookup.unasked().filter(|n| n.id != *own).collect() }
                } else {
                    LookupEnd::Report(event)
                })
            }
            Op::Announce(mut a) => {
                let AnnouncePhase::Lookup(lookup) = &a.phase else { return None };
                if !completed {
                    let error =
                        if outcome == LookupOutcome::ShutDown { QueryError::ShutDown } else { QueryError::Cancelled };
                    return Some(LookupEnd::Report(Event::AnnounceDone { op, result: Err(error) }));
                }
                // BEP 33: "Announce only to the K closest nodes that returned a token".
                let closest: Vec<LookupNode> = lookup.closest_responders();
                let peers: Vec<Peer> = closest
                    .into_iter()
                    .filter(not_us)
                    .filter_map(|n| Some(Peer::node(n.node).with_token(n.token?)))
                    .take(k)
                    .collect();
                // Stays registered, under the same id, for its second phase; the orchestrator
                // says how many queries it queued with `begin_store`.
                a.phase = AnnouncePhase::Store(QueryAll::new(a.store_query(), 0, false));
                self.ops.insert(op, Op::Announce(a));
                Some(LookupEnd::Store { peers })
            }
            Op::GetItem(g) => Some(LookupEnd::Report(Event::GetItemDone { op, item: g.best, outcome })),
            Op::PutItem(mut p) => {
                let PutPhase::Lookup(lookup) = &p.phase else { return None };
                if !completed {
                    let error =
                        if outcome == LookupOutcome::ShutDown { QueryError::ShutDown } else { QueryError::Cancelled };
                    return Some(LookupEnd::Report(p.done(op, Some(error))));
                }
                // As for an announce: the k closest nodes that returned a token.
                let peers: Vec<Peer> = lookup
                    .closest_responders()
                    .into_iter()
                    .filter(not_us)
                    .filter_map(|n| Some(Peer::node(n.node).with_token(n.token?)))
                    .take(k)
                    .collect();
                match p.store_query() {
                    Ok((query, seq)) => p.begin_store(query, seq),
                    Err(e) => return Some(LookupEnd::Report(p.done(op, Some(e)))),
                }
                self.ops.insert(op, Op::PutItem(p));
                Some(LookupEnd::Store { peers })
            }
            _ => None,
        }
    }

    /// An announce whose second phase could not start ends here.
    pub(crate) fn fail_store(&mut self, op: OpId, error: QueryError) -> Option<Event> {
        let event = match self.ops.remove(&op)? {
            Op::PutItem(_) => Event::PutItemDone { op, result: Err(error) },
            _ => Event::AnnounceDone { op, result: Err(error) },
        };
        self.release_if_empty();
        Some(event)
    }

    /// Ends a `query`, `query_all` or announce store phase early with `error` (cancel,
    /// shutdown); a stopped `query_all` that already had successes reports their count.
    pub(crate) fn end_early(&mut self, op: OpId, error: QueryError) -> Option<Event> {
        let event = self.stop(op, error);
        self.release_if_empty();
        event
    }

    fn stop(&mut self, op: OpId, error: QueryError) -> Option<Event> {
        Some(match self.ops.remove(&op)? {
            Op::Query { .. } => Event::QueryDone { op, result: Err(error) },
            Op::QueryAll(all) => Event::QueryAllDone { op, result: all.end_early(error) },
            Op::Announce(a) => match &a.phase {
                AnnouncePhase::Store(all) => Event::AnnounceDone { op, result: all.end_early(error) },
                AnnouncePhase::Lookup(_) => {
                    // Not in this state: lookups end through `finish_lookup`.
                    self.ops.insert(op, Op::Announce(a));
                    return None;
                }
            },
            Op::PutItem(mut p) => match &p.phase {
                PutPhase::Store(_) => p.done(op, Some(error)),
                PutPhase::Lookup(_) => {
                    self.ops.insert(op, Op::PutItem(p));
                    return None;
                }
            },
            Op::Crawl(c) => c.done_event(op),
            lookup @ (Op::Lookup { .. } | Op::GetItem(_)) => {
                self.ops.insert(op, lookup);
                return None;
            }
        })
    }

    /// Heap bytes held, for memory accounting (roughly: the map's nodes are estimated).
    pub(crate) fn memory_footprint(&self) -> usize {
        use core::mem::size_of;
        // A B-tree node holds up to 11 entries and is, on average, about two thirds full; a
        // map with one entry holds a whole node.
        let nodes = self.ops.len().div_ceil(7);
        let map = nodes * (16 + 11 * (size_of::<OpId>() + size_of::<Op>()));
        let boxed: usize = self
            .ops
            .iter()
            .map(|(id, op)| {
                let own = match op {
                    Op::Query { .. } => size_of::<Query>(),
                    Op::QueryAll(_) => size_of::<QueryAll>(),
                    Op::Lookup { .. } => size_of::<Lookup>(),
                    Op::Announce(_) => size_of::<Announce>(),
                    Op::GetItem(_) => size_of::<GetItem>(),
                    Op::PutItem(_) => size_of::<PutItem>(),
                    Op::Crawl(c) => size_of::<Crawl>() + c.memory_footprint(),
                };
                own + self.lookup(*id).map_or(0, Lookup::candidate_bytes)
            })
            .sum();
        self.lookup_order.capacity() * size_of::<OpId>() + map + boxed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeInfo;
    use crate::lookup::Params;
    use crate::query::Token;

    fn lookup(target: NodeId) -> Lookup {
        Lookup::new(
            target,
            Query::get_peers(&target),
            false,
            false,
            Params {
                k: 8,
                alpha: 3,
                max_candidates: 64,
                retries: 0,
                restrict_ips: true,
                restrict_local: false,
                paths: 1,
                final_round: true,
                near: 0,
            },
        )
    }

    #[test]
    fn an_operation_is_small_and_the_map_empties_to_nothing() {
        // A B-tree node holds 11 operations: 24-byte ones make it about 0.4 KB, where the
        // inline `Query` made it 2.2 KB.
        assert!(core::mem::size_of::<Op>() <= 32, "{}", core::mem::size_of::<Op>());
        let mut ops = Operations::new();
        let op = ops.start_query(Query::ping());
        assert!(ops.memory_footprint() > 0);
        assert!(ops.end_early(op, QueryError::Cancelled).is_some());
        assert_eq!(ops.len(), 0);
        assert_eq!(ops.memory_footprint(), 0);
    }

    #[test]
    fn an_announce_keeps_one_id_through_both_phases() {
        let mut ops = Operations::new();
        let info_hash = NodeId::from_array([0x42; 20]);
        let mut l = lookup(info_hash);
        let node = NodeInfo::new(NodeId::from_array([0x43; 20]), "10.0.0.1:1".parse().unwrap());
        l.add_node(node);
        let crate::lookup::Step::Query(_) = l.step(true) else { panic!() };
        l.on_reply(&node.addr, Some(node.id), Token::new(b"tok"));
        let op = ops.start_announce(l, info_hash, Some(6881), false);
        assert_eq!(ops.lookups(), 1);
        let Some(LookupEnd::Store { peers }) =
            ops.finish_lookup(op, LookupOutcome::Completed, 8, &NodeId::from_array([0xff; 20]))
        else {
            panic!()
        };
        assert_eq!(peers.len(), 1);
        assert_eq!(ops.lookups(), 0, "out of the lookup phase");
        ops.begin_store(op, peers.len());
        let query = ops
            .query_of(Purpose::Op(op), &"10.0.0.1:1".parse().unwrap())
            .expect("the store queries run under the announce's id");
        assert_eq!(query.method(), b"announce_peer");
        let events = ops.on_query_result(op, node.addr, Err(QueryError::Timeout));
        assert!(matches!(&events[..], [Event::AnnounceDone { op: o, result: Err(QueryError::AllFailed) }] if *o == op));
        assert_eq!(ops.len(), 0);
    }

    #[test]
    fn a_put_keeps_one_id_through_both_phases_and_lists_each_refusal() {
        use super::super::items::{PutItem, PutPayload, PutPhase};
        let mut ops = Operations::new();
        let value = b"5:hello".to_vec();
        let target = crate::dht::bep44::immutable_target(&value);
        let mut l = lookup(target);
        let nodes: Vec<NodeInfo> = (1..=2u8)
            .map(|i| NodeInfo::new(NodeId::from_array([i; 20]), alloc::format!("10.0.0.{i}:1").parse().unwrap()))
            .collect();
        for node in &nodes {
            l.add_node(*node);
        }
        for _ in &nodes {
            let crate::lookup::Step::Query(i) = l.step(true) else { panic!() };
            let (addr, id) = l.candidate(i);
            l.on_reply(&addr, id, Token::new(b"tok"));
        }
        let op = ops.start_put_item(PutItem {
            target,
            payload: PutPayload::Immutable { value },
            phase: PutPhase::Lookup(l),
        });
        let Some(LookupEnd::Store { peers }) =
            ops.finish_lookup(op, LookupOutcome::Completed, 8, &NodeId::from_array([0xff; 20]))
        else {
            panic!()
        };
        assert_eq!(peers.len(), 2);
        assert!(peers.iter().all(|p| p.token.is_some()), "put goes to token holders, with their tokens");
        ops.begin_store(op, peers.len());
        let query = ops
            .query_of(Purpose::Op(op), &"10.0.0.1:1".parse().unwrap())
            .expect("the put queries run under the same id");
        assert_eq!(query.method(), b"put");
        assert_eq!(query.args().get(b"v").and_then(|v| v.as_bytes()), Some(&b"hello"[..]));
        let e302 = QueryError::Remote { code: 302, message: b"seq".to_vec() };
        assert!(ops.on_query_result(op, nodes[0].addr, Err(e302)).is_empty());
        let events = ops.on_query_result(op, nodes[1].addr, Err(QueryError::Timeout));
        let [Event::PutItemDone { op: o, result: Ok(outcome) }] = &events[..] else { panic!("{events:?}") };
        assert_eq!(*o, op);
        assert_eq!((outcome.stored, outcome.failed, outcome.target), (0, 1, target));
        assert_eq!(outcome.errors.len(), 1);
        assert_eq!((outcome.errors[0].from, outcome.errors[0].code), (nodes[0].addr, 302));
        assert_eq!(ops.len(), 0);
    }

    #[test]
    fn a_stopped_announce_in_its_lookup_phase_reports_cancelled() {
        let mut ops = Operations::new();
        let info_hash = NodeId::from_array([1; 20]);
        let op = ops.start_announce(lookup(info_hash), info_hash, None, true);
        assert!(ops.end_early(op, QueryError::Cancelled).is_none(), "lookups end through finish_lookup");
        let end = ops.finish_lookup(op, LookupOutcome::Stopped, 8, &NodeId::from_array([0xff; 20]));
        assert!(matches!(end, Some(LookupEnd::Report(Event::AnnounceDone { result: Err(QueryError::Cancelled), .. }))));
    }

    #[test]
    fn query_all_surfaces_replies_and_prefers_a_3xx_error_over_all_failed() {
        let mut ops = Operations::new();
        let op = ops.start_query_all(Query::ping(), 2);
        let e302 = QueryError::Remote { code: 302, message: b"seq".to_vec() };
        assert!(ops.on_query_result(op, "10.0.0.9:1".parse().unwrap(), Err(e302.clone())).is_empty());
        let events = ops.on_query_result(op, "10.0.0.9:1".parse().unwrap(), Err(QueryError::Timeout));
        assert!(matches!(&events[..], [Event::QueryAllDone { result: Err(e), .. }] if *e == e302));
    }
}

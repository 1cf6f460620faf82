//! Turning queued work into datagrams: concurrency slots, priorities, encoding.

use alloc::vec::Vec;
use core::net::SocketAddr;

use super::{Endpoint, InternalPing, Op, Outbound, Transmit};
use crate::event::{Event, LookupOutcome, OpId};
use crate::lookup::Step;
use crate::query::Token;
use crate::transaction::Purpose;
use crate::wire::{Entry, ErrorOut, Insert, QueryOut, ResponseOut, canonical_ip};
use crate::{Instant, NodeId, NodeInfo, QueryError};

/// Internal pings (verifications, ping/swap checks) run in this many slots of their own,
/// beside the application's `concurrency`: table upkeep is not starved by a busy application,
/// and a steady stream of unknown queriers (each verified by a ping) cannot take the
/// application's slots either.
const INTERNAL_EXTRA_SLOTS: usize = 4;

impl Endpoint {
    fn start_tx(&mut self, addr: SocketAddr, expect_id: Option<NodeId>, token: Option<Token>, purpose: Purpose) {
        let rng = &mut self.rng;
        let r = self.txs.insert(|| rand_core::Rng::next_u32(rng), addr, expect_id, token, purpose);
        self.transmits.push_back(Outbound::Query(r));
    }

    /// Queries in flight that hold one of the application's `concurrency` slots: all but the
    /// internal pings (stopped operations' queries still in flight included).
    fn app_in_flight(&self) -> usize {
        self.txs.len() - self.txs.internal_len()
    }

    /// Fills free concurrency slots in k-rpc's priority order: queued queries first, then
    /// foreground lookups in start order, then background lookups. Internal pings fill their
    /// own slots.
    pub(crate) fn dispatch(&mut self) {
        if self.closed {
            return;
        }
        let cap = self.config.concurrency;
        while self.app_in_flight() < cap {
            let Some((op, peer)) = self.waiting.pop_front() else { break };
            if self.ops.contains_key(&op) {
                self.start_tx(peer.addr, peer.id, peer.token, Purpose::Op(op));
            }
        }
        let order = self.lookup_order.clone();
        for &op in &order {
            if matches!(self.ops.get(&op), Some(Op::Lookup(l)) if !l.background) {
                self.kick_lookup(op);
            }
        }
        while self.txs.internal_len() < INTERNAL_EXTRA_SLOTS {
            let Some(ping) = self.internal.pop_front() else { break };
            self.start_tx(ping.addr, ping.expect, None, ping.purpose);
        }
        let background = self.config.background_concurrency();
        for &op in &order {
            let own = match self.ops.get(&op) {
                Some(Op::Lookup(l)) if l.background => l.in_flight,
                _ => continue,
            };
            // k-rpc's rule: a background lookup starts sending only while few queries are in
            // flight, or while nothing else is (internal pings, in their own slots, do not
            // count: a steady stream of them would hold it back for good).
            let in_flight = self.app_in_flight();
            if in_flight < background || (in_flight == own && self.waiting.is_empty()) {
                self.kick_lookup(op);
            }
        }
    }

    fn kick_lookup(&mut self, op: OpId) {
        loop {
            let may_send = self.app_in_flight() < self.config.concurrency;
            let Some(Op::Lookup(lookup)) = self.ops.get_mut(&op) else { return };
            match lookup.step(may_send) {
                Step::Query(i) => {
                    let c = &lookup.candidates[i];
                    let (addr, id) = (c.addr, c.id);
                    self.start_tx(addr, id, None, Purpose::Lookup(op));
                }
                Step::Wait => return,
                Step::Done => {
                    self.finish_lookup(op, LookupOutcome::Completed);
                    return;
                }
            }
        }
    }

    /// Detaches an operation's transactions: unsent ones are dropped, sent ones still feed
    /// the routing table when answered.
    fn detach(&mut self, op: OpId) {
        let refs: Vec<_> = self.txs.refs().collect();
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

    /// Ends a lookup and reports it.
    pub(crate) fn finish_lookup(&mut self, op: OpId, outcome: LookupOutcome) {
        let Some(Op::Lookup(lookup)) = self.ops.remove(&op) else { return };
        self.lookup_order.retain(|o| *o != op);
        self.detach(op);
        if self.joining == Some(op) {
            self.joining = None;
            if outcome == LookupOutcome::Completed {
                self.refresh_thin_buckets(self.now);
            }
        }
        let closest = lookup.closest_responders();
        if outcome == LookupOutcome::Completed && self.dht_lookup_done(op, lookup.target, &closest) {
            return;
        }
        if outcome != LookupOutcome::Completed
            && self.dht_ops.remove(&op).is_some_and(|d| d != super::server::DhtOp::GetPeers)
        {
            // An announce that ends in its lookup phase.
            let error = if outcome == LookupOutcome::ShutDown { QueryError::ShutDown } else { QueryError::Cancelled };
            self.push_event(Event::AnnounceDone { op, result: Err(error) });
            return;
        }
        self.push_event(Event::LookupDone { op, replies: lookup.replies, closest, outcome });
    }

    /// Ends a `query` or `query_all` early with `error` (cancel, shutdown) — or, for a
    /// stopped `query_all` that already had successes, with their count.
    pub(crate) fn finish_op(&mut self, op: OpId, error: QueryError) {
        let Some(entry) = self.ops.remove(&op) else { return };
        self.detach(op);
        match entry {
            Op::Query { .. } => self.push_event(Event::QueryDone { op, result: Err(error) }),
            Op::QueryAll { hits, .. } => {
                let result = if hits > 0 && error == QueryError::Cancelled { Ok(hits) } else { Err(error) };
                if !self.dht_query_all_done(op, &result) {
                    self.push_event(Event::QueryAllDone { op, result });
                }
            }
            Op::Lookup(_) => {}
        }
    }

    /// Delivers the outcome of one query of a `query` or `query_all`.
    pub(crate) fn op_result(&mut self, op: OpId, result: Result<crate::Reply, QueryError>) {
        // An announce's second phase is a `query_all` of the engine's own: its replies are
        // nobody's `Event::Reply` (the application only knows the announce's id, and an
        // announce reports nothing but peers and its `AnnounceDone`).
        let internal = matches!(self.dht_ops.get(&op), Some(super::server::DhtOp::AnnounceQueries { .. }));
        match self.ops.get_mut(&op) {
            Some(Op::Query { .. }) => {
                self.ops.remove(&op);
                self.push_event(Event::QueryDone { op, result });
            }
            Some(Op::QueryAll { outstanding, hits, error_3xx, stopped, .. }) => {
                *outstanding -= 1;
                let report = match result {
                    Ok(reply) => {
                        *hits += 1;
                        (!*stopped && !internal).then_some(reply)
                    }
                    Err(e) => {
                        // BEP 44's CAS and sequence errors are what a caller needs to see.
                        if let QueryError::Remote { code: 300..=399, .. } = e {
                            error_3xx.get_or_insert(e);
                        }
                        None
                    }
                };
                let done = (*outstanding == 0).then(|| {
                    if *hits > 0 { Ok(*hits) } else { Err(error_3xx.take().unwrap_or(QueryError::AllFailed)) }
                });
                if let Some(reply) = report {
                    self.push_event(Event::Reply { op, reply });
                }
                if let Some(result) = done {
                    self.ops.remove(&op);
                    if !self.dht_query_all_done(op, &result) {
                        self.push_event(Event::QueryAllDone { op, result });
                    }
                }
            }
            _ => {}
        }
    }

    /// Writes the next datagram into `buf` and says where it goes.
    ///
    /// `buf` should hold `max_datagram_len` bytes (1500 suffices for every standard
    /// message). A datagram that does not fit is dropped and counted; a query that does not
    /// fit fails with [`QueryError::TooLarge`].
    ///
    /// Call this after every input and command until it returns `None`.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let now = self.advance(now);
        while let Some(out) = self.transmits.pop_front() {
            let version = self.config.version;
            let version = version.as_ref().map(|v| &v[..]);
            let id = self.id;
            let ip_of = |addr: SocketAddr| if self.config.send_ip { Some(addr) } else { None };
            let empty = &self.empty_dict;
            let (to, written, tx) = match &out {
                Outbound::Query(r) => {
                    let Some(tx) = self.txs.get(*r) else { continue };
                    let ping = &self.ping_query;
                    let query = match tx.purpose {
                        Purpose::Op(op) => match self.ops.get(&op) {
                            Some(Op::Query { query } | Op::QueryAll { query, .. }) => query,
                            _ => continue,
                        },
                        Purpose::Lookup(op) => match self.ops.get(&op) {
                            Some(Op::Lookup(l)) => &l.query,
                            _ => continue,
                        },
                        Purpose::Check | Purpose::Verify => ping,
                        Purpose::Detached => continue,
                    };
                    let tid = tx.tid.to_be_bytes();
                    let mut extra = arrayvec::ArrayVec::<Entry<'_>, 2>::new();
                    extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false });
                    if let Some(token) = &tx.token {
                        extra.push(Entry { key: b"token", value: Insert::Bytes(token.as_bytes()), replace: true });
                    }
                    let out = QueryOut {
                        transaction_id: &tid,
                        method: query.method(),
                        args: query.args(),
                        extra: &extra,
                        read_only: self.config.read_only,
                        version,
                    };
                    (tx.addr, out.encode(buf), Some(*r))
                }
                Outbound::Pong { to, t } => {
                    let extra = [Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false }];
                    let out = ResponseOut { transaction_id: t, values: empty, extra: &extra, ip: ip_of(*to), version };
                    (*to, out.encode(buf), None)
                }
                Outbound::Response { to, t, values, nodes } => {
                    let mut extra = arrayvec::ArrayVec::<Entry<'_>, 3>::new();
                    extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false });
                    // `::ffff:a.b.c.d` (a dual-stack socket's view of an IPv4 peer) is an IPv4 node.
                    let v4 = |n: &NodeInfo| canonical_ip(n.addr.ip()).is_ipv4();
                    if nodes.iter().any(v4) {
                        extra.push(Entry { key: b"nodes", value: Insert::NodesV4(nodes), replace: true });
                    }
                    if !nodes.iter().all(v4) {
                        extra.push(Entry { key: b"nodes6", value: Insert::NodesV6(nodes), replace: true });
                    }
                    let out = ResponseOut { transaction_id: t, values, extra: &extra, ip: ip_of(*to), version };
                    (*to, out.encode(buf), None)
                }
                Outbound::Error { to, t, code, message } => {
                    let out = ErrorOut { transaction_id: t, code: *code, message, ip: ip_of(*to), version };
                    (*to, out.encode(buf), None)
                }
                Outbound::FindNode { to, t, target, want } => {
                    (*to, self.encode_find_node(buf, *to, t, target, *want), None)
                }
                Outbound::GetPeers { to, t, info_hash, want, noseed, scrape } => {
                    let (to, t, info_hash, want, noseed, scrape) =
                        (*to, t.clone(), *info_hash, *want, *noseed, *scrape);
                    (to, self.encode_get_peers(buf, to, &t, &info_hash, want, noseed, scrape), None)
                }
            };
            match written {
                Ok(len) => {
                    match tx {
                        Some(r) => {
                            self.txs.mark_sent(r, now + self.config.timeout);
                            self.stats.queries_out += 1;
                            let lookup = self.txs.get(r).is_some_and(|tx| matches!(tx.purpose, Purpose::Lookup(_)));
                            if let (true, Some(cap)) = (lookup, self.config.lookup_soft_timeout) {
                                let soft = if self.config.lookup_adaptive_soft_timeout {
                                    self.rtt.soft_timeout(cap)
                                } else {
                                    cap
                                };
                                self.push_soft_deadline(now + soft, r);
                            }
                        }
                        None => {
                            self.stats.replies_out += 1;
                            // Whoever the answer is for, it uses the budget; whether a query is
                            // answered at all was decided when it arrived.
                            self.budget.spend(len);
                        }
                    }
                    return Some(Transmit { destination: to, len, tx });
                }
                Err(_) => {
                    self.stats.transmits_dropped += 1;
                    if let Some(tx) = tx.and_then(|r| self.txs.remove(r)) {
                        self.tx_failed(tx, QueryError::TooLarge, now);
                        self.dispatch();
                    }
                }
            }
        }
        None
    }

    /// Tells the engine that the driver could not send `transmit` (unreachable, message too
    /// long, ...): the query it carried fails at once with [`QueryError::SendFailed`] instead
    /// of waiting for its timeout (weakness W8). Replies are simply lost.
    pub fn fail_transmit(&mut self, now: Instant, transmit: &Transmit) {
        let now = self.advance(now);
        if let Some(tx) = transmit.tx.and_then(|r| self.txs.remove(r)) {
            self.tx_failed(tx, QueryError::SendFailed, now);
            self.dispatch();
        }
    }

    /// Files the soft deadline of a lookup query. With the adaptive soft timeout a query sent
    /// later may fall due earlier, so the queue is kept sorted (a FIFO would hide a due
    /// deadline behind a later one from both `handle_timeout` and `poll_timeout`). Entries of
    /// answered queries are dropped first, which bounds the queue by the queries in flight.
    fn push_soft_deadline(&mut self, deadline: Instant, r: crate::transaction::TxRef) {
        let txs = &self.txs;
        self.soft_deadlines.retain(|&(_, r)| txs.get(r).is_some());
        let at = self.soft_deadlines.partition_point(|&(d, _)| d <= deadline);
        self.soft_deadlines.insert(at, (deadline, r));
    }

    pub(crate) fn queue_internal(&mut self, ping: InternalPing) {
        if self.internal.len() < super::MAX_INTERNAL_PINGS {
            self.internal.push_back(ping);
        }
    }
}

//! Turning queued work into datagrams: filling the concurrency slots in priority order
//! (`dispatch`, run once at the end of every input and command) and encoding in
//! `poll_transmit`.

use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::net::SocketAddr;

use super::node_layer::Framing;
use super::rpc::{INTERNAL_EXTRA_SLOTS, Outbound, VERIFY_SLOTS};
use super::{Endpoint, Transmit};
use crate::event::{LookupOutcome, OpId};
use crate::lookup::Step;
use crate::query::Query;
use crate::transaction::Purpose;
use crate::wire::{Dictionary, Entry, ErrorOut, Insert, QueryOut, ResponseOut, canonical_ip};
use crate::{Instant, NodeInfo, QueryError};

/// Lookups a dispatch pass copies on the stack; more are copied into a `Vec`.
const FEW_LOOKUPS: usize = 8;

impl Endpoint {
    /// Fills free concurrency slots in k-rpc's priority order: queued queries first, then
    /// foreground lookups in start order, then background lookups. Internal pings fill their
    /// own slots. Runs until nothing more can start: a lookup that ends here may queue the
    /// next phase of its operation (an announce's `announce_peer` queries), which goes out
    /// in the same input.
    pub(super) fn dispatch(&mut self) {
        while !self.closed && self.dispatch_pass() {}
    }

    /// One pass; whether another is needed.
    fn dispatch_pass(&mut self) -> bool {
        let cap = self.config.concurrency;
        while self.rpc.app_in_flight() < cap {
            let Some((op, peer)) = self.rpc.pop_waiting() else { break };
            if self.ops.contains(op) {
                self.rpc.start(&mut self.rng, peer.addr, peer.id, peer.token, Purpose::Op(op));
            }
        }
        // A copy, since kicking a lookup may end it. This pass runs after every datagram, so
        // the usual few are copied on the stack rather than into a fresh allocation.
        let mut few: ArrayVec<OpId, FEW_LOOKUPS> = ArrayVec::new();
        let many: Vec<OpId>;
        let order: &[OpId] = if self.ops.lookups() <= FEW_LOOKUPS {
            few.extend(self.ops.lookup_order().iter().copied());
            &few
        } else {
            many = self.ops.lookup_order().to_vec();
            &many
        };
        for &op in order {
            if self.ops.lookup(op).is_some_and(|l| !l.is_background()) {
                self.kick_lookup(op);
            }
        }
        self.kick_crawls();
        // Upkeep first, in slots of its own: verifying strangers never holds it up.
        while self.rpc.maintenance_in_flight() < INTERNAL_EXTRA_SLOTS {
            let Some(ping) = self.rpc.pop_internal() else { break };
            self.rpc.start(&mut self.rng, ping.addr, ping.expect, None, ping.purpose);
        }
        while self.rpc.verifications_in_flight() < VERIFY_SLOTS {
            let Some(ping) = self.rpc.pop_verification() else { break };
            self.rpc.start(&mut self.rng, ping.addr, ping.expect, None, ping.purpose);
        }
        let background = self.config.background_concurrency();
        for &op in order {
            let own = match self.ops.lookup(op) {
                Some(l) if l.is_background() => l.in_flight(),
                _ => continue,
            };
            // k-rpc's rule: a background lookup starts sending only while few queries are in
            // flight, or while nothing else is (internal pings, in their own slots, do not
            // count: a steady stream of them would hold it back for good).
            let in_flight = self.rpc.app_in_flight();
            if in_flight < background || (in_flight == own && self.rpc.waiting_is_empty()) {
                self.kick_lookup(op);
            }
        }
        // The waiting queue was drained into the free slots above, so queries waiting now
        // with a slot free were queued during this pass: the next phase of an operation
        // whose lookup just ended.
        !self.rpc.waiting_is_empty() && self.rpc.app_in_flight() < cap
    }

    /// Crawls send after foreground lookups, each within its own concurrency and rate cap
    /// and the endpoint's `concurrency`.
    fn kick_crawls(&mut self) {
        let now = self.now;
        for op in self.ops.crawl_ids() {
            while self.rpc.app_in_flight() < self.config.concurrency {
                let Some(crawl) = self.ops.crawl_mut(op) else { break };
                let Some((addr, id)) = crawl.next_query(now, &mut self.rng) else { break };
                self.rpc.start(&mut self.rng, addr, id, None, Purpose::Op(op));
            }
        }
    }

    fn kick_lookup(&mut self, op: OpId) {
        // The refresh of a bucket a join left thin keeps no more queries in flight than the
        // bucket has room for: each answer fills one slot, so more would be answered only
        // after the bucket is full, for nothing. Its bucket may have filled by other means.
        let room = self.fill_room(op);
        if room == Some(0) {
            self.finish_lookup(op, LookupOutcome::Completed);
            return;
        }
        // A fill spreads its bucket's entries over the bucket's range instead of converging.
        let spread = self.fill_spread(op);
        loop {
            let Some(lookup) = self.ops.lookup_mut(op) else { return };
            let may_send =
                self.rpc.app_in_flight() < self.config.concurrency && room.is_none_or(|room| lookup.in_flight() < room);
            let step = match spread {
                Some(spread) => lookup.step_spread(may_send, spread),
                None => lookup.step(may_send),
            };
            match step {
                Step::Query(i) => {
                    let (addr, id) = lookup.candidate(i);
                    self.rpc.start(&mut self.rng, addr, id, None, Purpose::Lookup(op));
                }
                Step::Wait => return,
                Step::Done => {
                    self.finish_lookup(op, LookupOutcome::Completed);
                    return;
                }
            }
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
        // Built here rather than kept in the struct: neither allocates, and a million
        // simulated engines would carry 120 bytes each for them.
        let ping = Query::ping();
        let empty_dict = Dictionary::new();
        while let Some(out) = self.rpc.pop_outbound() {
            let mut probe_to = None;
            let version = self.config.version;
            let version = version.as_ref().map(|v| &v[..]);
            let id = self.id;
            let ip_of = |addr: SocketAddr| if self.config.send_ip { Some(addr) } else { None };
            let empty = &empty_dict;
            let (to, written, tx) = match &out {
                Outbound::Query(r) => {
                    let Some(tx) = self.rpc.tx(*r) else { continue };
                    let query = match tx.purpose {
                        Purpose::Check | Purpose::Verify | Purpose::VerifyQuerier | Purpose::AddressCheck => &ping,
                        purpose => match self.ops.query_of(purpose, &tx.addr) {
                            Some(query) => query,
                            None => continue,
                        },
                    };
                    let tid = tx.tid.to_be_bytes();
                    let probe = self.read_only && matches!(tx.purpose, Purpose::Lookup(op) if self.ops.is_probe(op));
                    if probe {
                        probe_to = Some(tx.addr);
                    }
                    // A bucket fill asks each node about its own part of the bucket's range.
                    let fill_target = match tx.purpose {
                        Purpose::Lookup(op) => self.fill_query_target(op, &tx.addr),
                        _ => None,
                    };
                    let mut extra = arrayvec::ArrayVec::<Entry<'_>, 3>::new();
                    extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false });
                    if let Some(token) = &tx.token {
                        extra.push(Entry { key: b"token", value: Insert::Bytes(token.as_bytes()), replace: true });
                    }
                    if let Some(target) = &fill_target {
                        extra.push(Entry { key: b"target", value: Insert::Bytes(target.as_bytes()), replace: true });
                    }
                    let out = QueryOut {
                        transaction_id: &tid,
                        method: query.method(),
                        args: query.args(),
                        extra: &extra,
                        // A probe is the one lookup a read-only node sends without `ro=1`.
                        // BEP 43: `ro=1` when we answer no queries, or none but pings.
                        read_only: (self.read_only || !self.serving) && !probe,
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
                    let mut scratch = ArrayVec::new();
                    let message = message.bytes(&mut scratch);
                    let out = ErrorOut { transaction_id: t, code: *code, message, ip: ip_of(*to), version };
                    (*to, out.encode(buf), None)
                }
                Outbound::FindNode { to, t, target, want } => {
                    let framing = Framing { id: &id, version, send_ip: self.config.send_ip, empty };
                    let written = match self.node.as_deref() {
                        Some(node) => node.encode_find_node(&self.tables, now, &framing, buf, *to, t, target, *want),
                        None => continue,
                    };
                    (*to, written, None)
                }
                Outbound::GetPeers { to, t, info_hash, want, noseed, scrape } => {
                    let framing = Framing { id: &id, version, send_ip: self.config.send_ip, empty };
                    let written = match self.node.as_deref_mut() {
                        Some(node) => node.encode_get_peers(
                            &self.tables,
                            now,
                            &mut self.rng,
                            &framing,
                            buf,
                            *to,
                            t,
                            info_hash,
                            *want,
                            *noseed,
                            *scrape,
                        ),
                        None => continue,
                    };
                    (*to, written, None)
                }
                Outbound::Samples { to, t, target, want } => {
                    let framing = Framing { id: &id, version, send_ip: self.config.send_ip, empty };
                    let written = match self.node.as_deref_mut() {
                        Some(node) => {
                            node.encode_samples(&self.tables, now, &mut self.rng, &framing, buf, *to, t, target, *want)
                        }
                        None => continue,
                    };
                    (*to, written, None)
                }
                Outbound::GetItem { to, t, target, want, seq } => {
                    let framing = Framing { id: &id, version, send_ip: self.config.send_ip, empty };
                    let written = match self.node.as_deref() {
                        Some(node) => {
                            node.encode_get_item(&self.tables, now, &framing, buf, *to, t, target, *want, *seq)
                        }
                        None => continue,
                    };
                    (*to, written, None)
                }
            };
            match written {
                Ok(len) => {
                    // A NAT lets in what comes from where we send: remembered, so that only
                    // queries from elsewhere count as proof of reachability.
                    if let Some(reach) = self.reach.as_mut() {
                        reach.sent_to(&to, now);
                        if let Some(addr) = probe_to {
                            reach.probe_sent(addr, now);
                        }
                    }
                    match tx {
                        Some(r) => {
                            self.rpc.mark_sent(r, now, &self.config);
                            self.stats.queries_out += 1;
                        }
                        None => {
                            self.stats.replies_out += 1;
                            // Whoever the answer is for, it uses the budget; whether a query is
                            // answered at all was decided when it arrived.
                            self.rpc.spend(len, &self.config);
                        }
                    }
                    return Some(Transmit { destination: to, len, tx });
                }
                Err(_) => {
                    self.stats.transmits_dropped += 1;
                    if let Some(tx) = tx.and_then(|r| self.rpc.take(r)) {
                        self.tx_failed(tx, QueryError::TooLarge, now);
                        self.finish_input();
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
        if let Some(tx) = transmit.tx.and_then(|r| self.rpc.take(r)) {
            self.tx_failed(tx, QueryError::SendFailed, now);
            self.finish_input();
        }
    }
}

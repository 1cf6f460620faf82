//! Inputs: datagrams from the network. Every byte here is untrusted.

use arrayvec::ArrayVec;
use core::fmt::Write;
use core::net::SocketAddr;

use super::{Endpoint, InternalPing, Op, Outbound};
use crate::address::{is_never_valid, may_query_learned};
use crate::event::{Datagram, Event, IncomingQuery, ReplyTo};
use crate::query::Token;
use crate::rate_limit::Admission;
use crate::transaction::{Mismatch, Purpose, Tx, same_endpoint};
use crate::wire::{Body, Fields, Message, QueryView, salvage_query_transaction_id};
use crate::{Instant, NodeId, NodeInfo, QueryError, Reply};

/// A `fmt::Write` into a fixed buffer that silently truncates.
struct Truncating(ArrayVec<u8, 128>);

impl Write for Truncating {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.0.remaining_capacity();
        let _ = self.0.try_extend_from_slice(&s.as_bytes()[..s.len().min(room)]);
        Ok(())
    }
}

impl Endpoint {
    /// Feeds one received datagram. Malformed input is counted in [`stats`](Self::stats)
    /// and dropped, or — for a query whose `t` can be read — answered with a 203 error
    /// saying what was wrong (BEP 5: "Protocol Error, such as a malformed packet, invalid
    /// arguments, or bad token"). Never panics, whatever the bytes.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let now = self.advance(now);
        if self.closed {
            return;
        }
        self.stats.datagrams_in += 1;
        if from.port() == 0 {
            self.stats.invalid_source += 1;
            return;
        }
        match self.decoder.decode(datagram) {
            Ok(msg) => match msg.body {
                Body::Query(q) => self.handle_query(now, from, datagram, &msg, q),
                _ => self.handle_reply(now, from, datagram, &msg),
            },
            Err(e) => {
                self.stats.malformed += 1;
                if !e.is_protocol_error() || self.config.read_only || !self.admit(now, from) || !self.within_budget(now)
                {
                    return;
                }
                let max_t = self.decoder.max_transaction_id_len();
                if let Some(t) = salvage_query_transaction_id(datagram, max_t) {
                    if self.transmits.len() >= self.config.max_queued_transmits {
                        self.stats.transmits_dropped += 1;
                        return;
                    }
                    let mut message = Truncating(ArrayVec::new());
                    let _ = write!(message, "{}", e.kind);
                    let mut tid = ArrayVec::new();
                    let _ = tid.try_extend_from_slice(t);
                    self.transmits.push_back(Outbound::Error { to: from, t: tid, code: 203, message: message.0 });
                    self.stats.malformed_answered += 1;
                }
            }
        }
    }

    fn handle_query(&mut self, now: Instant, from: SocketAddr, datagram: &[u8], msg: &Message<'_>, q: QueryView<'_>) {
        self.stats.queries_in += 1;
        if self.config.read_only {
            // BEP 43: a read-only node "does not respond to queries".
            self.stats.queries_ignored += 1;
            return;
        }
        // Before anything else: a source over its limit costs no table update, no event, no
        // answer and no verification ping.
        if !self.admit(now, from) {
            return;
        }
        // BEP 43: a querier with `ro=1` must not enter routing tables.
        let querier = q.args.node_id().filter(|id| !msg.read_only && *id != self.id);
        let known = querier.is_some_and(|id| self.table_of_mut(&from).record_query(&id, from, now));
        let unknown = querier.filter(|_| !known);
        // While the reply budget is spent, only nodes already in our table are answered: a
        // flood from many sources must not crowd out the nodes we route through. They stay
        // under their per-source limit, which bounds what spoofing their address can draw.
        if !known && !self.within_budget(now) {
            return;
        }
        let mut t = ArrayVec::new();
        // The decoder caps `t` at the same length as this buffer.
        let _ = t.try_extend_from_slice(msg.transaction_id);
        let served = q.method != b"ping" && self.serve_query(now, from, msg.transaction_id, &q, q.args.want());
        if served {
        } else if q.method == b"ping" && self.config.answer_pings {
            if self.transmits.len() >= self.config.max_queued_transmits {
                self.stats.transmits_dropped += 1;
            } else {
                self.transmits.push_back(Outbound::Pong { to: from, t });
            }
        } else {
            let incoming = IncomingQuery::new(ReplyTo { addr: from, t }, Datagram::new(datagram, self.decoder));
            self.push_event(Event::Query(incoming));
        }
        // Verify after answering, so the answer leaves first.
        if let Some(id) = unknown {
            self.maybe_verify(id, from);
        }
    }

    /// Counts an unsolicited datagram against its source's limit; false if it must be dropped.
    fn admit(&mut self, now: Instant, from: SocketAddr) -> bool {
        match self.limiter.admit(now, from) {
            Admission::Admit => return true,
            Admission::NewlyBlocked => self.stats.sources_blocked += 1,
            Admission::Blocked => {}
        }
        self.stats.rate_limited += 1;
        false
    }

    /// Whether the reply budget has bytes left; counts the answer dropped if not.
    fn within_budget(&mut self, now: Instant) -> bool {
        let left = self.budget.allows(now);
        if !left {
            self.stats.replies_over_budget += 1;
        }
        left
    }

    /// An unknown querier may enter the table only after answering a ping of ours, and only
    /// if its bucket could take it.
    fn maybe_verify(&mut self, id: NodeId, from: SocketAddr) {
        if !self.config.verify_queriers || is_never_valid(&from) {
            return;
        }
        let table = self.table_of(&from);
        let Some(bucket) = table.bucket_for(&id) else { return };
        let last = table.bucket_count() - 1;
        let full = table.bucket_contacts(bucket).len() >= self.config.k;
        if full && (bucket != last || table.bucket_count() >= self.config.id_len * 8) {
            return;
        }
        let pending = self.internal.iter().any(|p| same_endpoint(&p.addr, &from))
            || self.txs.refs().any(|r| self.txs.get(r).is_some_and(|tx| same_endpoint(&tx.addr, &from)));
        if !pending {
            self.queue_internal(InternalPing { addr: from, expect: Some(id), purpose: Purpose::Verify });
            self.dispatch();
        }
    }

    fn handle_reply(&mut self, now: Instant, from: SocketAddr, datagram: &[u8], msg: &Message<'_>) {
        let r = match self.txs.find(msg.transaction_id, &from) {
            Ok(r) => r,
            // Never inserted, never surfaced: k-rpc fed these into its table (weakness W3).
            Err(Mismatch::UnknownTid) => {
                self.stats.unsolicited_replies += 1;
                return;
            }
            Err(Mismatch::WrongAddress) => {
                self.stats.mismatched_replies += 1;
                return;
            }
        };
        let Some(tx) = self.txs.remove(r) else { return };
        self.stats.replies_in += 1;
        if let Some(deadline) = tx.deadline {
            // Sent at `deadline - timeout`: every reply times the path, for the adaptive
            // soft timeout of lookups.
            self.rtt.sample(now.saturating_duration_since(deadline.saturating_sub(self.config.timeout)));
        }
        if let Some(reported) = msg.ip {
            self.dht_ip_vote(reported, from, now);
        }
        let fields = msg.as_response().copied();
        let result: Result<Option<NodeId>, QueryError> = match &msg.body {
            Body::Error(e) => Err(QueryError::Remote { code: e.code, message: e.message.to_vec() }),
            _ => {
                let rid = fields.and_then(|f| f.node_id());
                match tx.expect_id {
                    Some(expected) if rid != Some(expected) => {
                        // The address now answers for someone else: the node we knew there is
                        // gone (k-rpc meant to evict here but passed the wrong object, W4).
                        if self.table_of(&from).get(&expected).is_some_and(|c| same_endpoint(&c.addr(), &from)) {
                            self.remove_node(&expected);
                        }
                        Err(QueryError::UnexpectedNodeId { expected, got: rid })
                    }
                    _ => Ok(rid),
                }
            }
        };
        if let Ok(Some(id)) = result {
            if id != self.id {
                self.learn_verified(NodeInfo::new(id, from), now);
            }
        }
        self.deliver(tx, result, from, datagram, fields, now);
        self.dispatch();
    }

    fn deliver(
        &mut self,
        tx: Tx,
        result: Result<Option<NodeId>, QueryError>,
        from: SocketAddr,
        datagram: &[u8],
        fields: Option<Fields<'_>>,
        now: Instant,
    ) {
        match tx.purpose {
            Purpose::Op(op) => {
                let result = result.map(|_| Reply::new(from, Datagram::new(datagram, self.decoder)));
                self.op_result(op, result);
            }
            Purpose::Lookup(op) => {
                let own = self.id;
                let policy = self.policy;
                let mut filtered = 0;
                let Some(Op::Lookup(lookup)) = self.ops.get_mut(&op) else { return };
                let report = match (&result, fields) {
                    (Ok(rid), Some(f)) => {
                        // A bootstrap entry that turns out to be ourselves is no responder
                        // (k-rpc excludes its own id from the lookup too).
                        let rid = rid.filter(|id| *id != own);
                        lookup.on_reply(&from, rid, f.token().and_then(Token::new));
                        for node in f.nodes().into_iter().flatten().chain(f.nodes6().into_iter().flatten()) {
                            if node.id == own {
                                continue;
                            }
                            if !may_query_learned(&node.addr, policy) {
                                filtered += 1;
                                continue;
                            }
                            lookup.add_node(node);
                        }
                        lookup.report_replies
                    }
                    _ => {
                        lookup.on_failure(&from);
                        false
                    }
                };
                self.stats.nodes_filtered += filtered;
                if let (Ok(_), Some(f)) = (&result, fields) {
                    self.dht_lookup_reply(op, from, &f);
                }
                if report {
                    let reply = Reply::new(from, Datagram::new(datagram, self.decoder));
                    self.push_event(Event::Reply { op, reply });
                }
            }
            Purpose::Check => self.check_result(&tx, result.is_ok(), now),
            Purpose::Verify | Purpose::Detached => {}
        }
    }

    /// A transaction failed without a reply (timeout, send failure, too large).
    pub(crate) fn tx_failed(&mut self, tx: Tx, error: QueryError, now: Instant) {
        if let Some(id) = tx.expect_id {
            if self.table_of(&tx.addr).get(&id).is_some_and(|c| same_endpoint(&c.addr(), &tx.addr)) {
                // One failure never evicts (k-rpc evicted on the first timeout, W5); the
                // ping/swap protocol replaces nodes that stay silent.
                self.table_of_mut(&tx.addr).record_failure(&id, now);
            }
        }
        match tx.purpose {
            Purpose::Op(op) => self.op_result(op, Err(error)),
            Purpose::Lookup(op) => {
                if let Some(Op::Lookup(lookup)) = self.ops.get_mut(&op) {
                    // Only silence is worth another try (`lookup_retries`); an error or a send
                    // failure would come back the same.
                    if error == QueryError::Timeout {
                        lookup.on_timeout(&tx.addr);
                    } else {
                        lookup.on_failure(&tx.addr);
                    }
                }
            }
            Purpose::Check => self.check_result(&tx, false, now),
            Purpose::Verify | Purpose::Detached => {}
        }
    }
}

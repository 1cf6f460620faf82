//! The one datagram path. Every byte here is untrusted.
//!
//! `handle_datagram` decodes once and hands the message on, in one direction:
//! a query goes through admission (the RPC part), touches the routing table, and is answered
//! by the node layer, by the engine (`ping`) or handed to the application; a reply is matched
//! by the RPC part, teaches the routing table, and its result goes to the part that sent the
//! query (`results.rs`).

use core::net::SocketAddr;

use super::Endpoint;
use super::rpc::{ErrorText, Matched, Outbound, VerifyQueued, tid};
use crate::address::is_never_valid;
use crate::event::{Datagram, Event, IncomingQuery, ReplyTo};
use crate::transaction::same_endpoint;
use crate::wire::{Body, Message, QueryView, salvage_query_transaction_id};
use crate::{Instant, NodeId, NodeInfo, QueryError};

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
        match self.decoder().decode(datagram) {
            Ok(msg) => match msg.body {
                Body::Query(q) => self.on_query(now, from, datagram, &msg, q),
                _ => self.on_reply(now, from, datagram, &msg),
            },
            Err(e) => self.on_malformed(now, from, datagram, e),
        }
        self.finish_input();
    }

    fn on_malformed(&mut self, now: Instant, from: SocketAddr, datagram: &[u8], e: crate::wire::DecodeError) {
        self.stats.malformed += 1;
        if !e.is_protocol_error()
            || self.read_only
            || !self.rpc.admit(now, from, &self.config, &mut self.stats)
            || !self.rpc.within_budget(now, &self.config, &mut self.stats)
        {
            return;
        }
        let max_t = self.decoder().max_transaction_id_len();
        if let Some(t) = salvage_query_transaction_id(datagram, max_t) {
            if self.rpc.push_error(from, t, 203, ErrorText::Malformed(e.kind), &self.config, &mut self.stats) {
                self.stats.malformed_answered += 1;
            }
        }
    }

    fn on_query(&mut self, now: Instant, from: SocketAddr, datagram: &[u8], msg: &Message<'_>, q: QueryView<'_>) {
        self.stats.queries_in += 1;
        self.note_query_source(now, from);
        if self.read_only {
            // The one exception, in adaptive mode: the ping a probed node sends back to verify
            // us (our probe went without `ro=1`, so it may add us; it must hear back).
            let probed = self.reach.as_ref().is_some_and(|r| r.was_probed(&from, now));
            if probed
                && q.method == b"ping"
                && self.config.answer_pings
                && self.rpc.admit(now, from, &self.config, &mut self.stats)
            {
                self.rpc.push(Outbound::Pong { to: from, t: tid(msg.transaction_id) }, &self.config, &mut self.stats);
                return;
            }
            // BEP 43: a read-only node "does not respond to queries".
            self.stats.queries_ignored += 1;
            return;
        }
        // Before anything else: a source over its limit costs no table update, no event, no
        // answer and no verification ping.
        if !self.rpc.admit(now, from, &self.config, &mut self.stats) {
            return;
        }
        // BEP 5: "All queries have an id key and value containing the node ID of the querying
        // node." The node layer holds every query to it; without the id it would answer a
        // nameless querier in full (a 66-byte `get_peers` drew 1,016 bytes). The k-rpc parity
        // engine leaves such queries to the application, as k-rpc does.
        if self.node.is_some() && q.args.node_id().is_none() {
            self.rpc.push_error(
                from,
                msg.transaction_id,
                203,
                ErrorText::Static(b"query requires a.id"),
                &self.config,
                &mut self.stats,
            );
            return;
        }
        // BEP 43: a querier with `ro=1` must not enter routing tables.
        let querier = q.args.node_id().filter(|id| !msg.read_only && *id != self.id);
        let known = querier.is_some_and(|id| self.tables.of_mut(&from).record_query(&id, from, now));
        let unknown = querier.filter(|_| !known);
        // While the reply budget is spent, only nodes already in our table are answered: a
        // flood from many sources must not crowd out the nodes we route through. They stay
        // under their per-source limit, which bounds what spoofing their address can draw.
        if !known && !self.rpc.within_budget(now, &self.config, &mut self.stats) {
            return;
        }
        let answer = match self.node.as_deref_mut() {
            Some(node) if q.method != b"ping" => node.answer(now, from, msg.transaction_id, &q),
            _ => None,
        };
        match answer {
            Some(out) => {
                self.rpc.push(out, &self.config, &mut self.stats);
            }
            None if q.method == b"ping" && self.config.answer_pings => {
                self.rpc.push(Outbound::Pong { to: from, t: tid(msg.transaction_id) }, &self.config, &mut self.stats);
            }
            None => {
                let reply_to = ReplyTo { addr: from, t: tid(msg.transaction_id) };
                let incoming = IncomingQuery::new(reply_to, Datagram::new(datagram, self.decoder()));
                self.push_event(Event::Query(incoming));
            }
        }
        // Verify after answering, so the answer leaves first.
        if let Some(id) = unknown {
            self.maybe_verify(id, from, now);
        }
    }

    /// Reachability: a query from an address we have not sent to lately came through no NAT
    /// permission of ours. Our own external address (hairpinning) and addresses lookups may
    /// not query (a LAN neighbour on the public DHT) prove nothing about the internet.
    fn note_query_source(&mut self, now: Instant, from: SocketAddr) {
        if self.reach.is_none() || !crate::address::may_query_learned(&from, self.policy) {
            return;
        }
        if self.external_address().contains(&Some(crate::wire::canonical_ip(from.ip()))) {
            return;
        }
        let Some(reach) = self.reach.as_mut() else { return };
        if reach.query_from(&from, now) {
            self.stats.unsolicited_queries += 1;
            self.update_mode(now);
        }
    }

    /// An unknown querier may enter the table only after answering a ping of ours, and only
    /// if its bucket could take it.
    fn maybe_verify(&mut self, id: NodeId, from: SocketAddr, now: Instant) {
        if !self.config.verify_queriers || is_never_valid(&from) {
            return;
        }
        let table = self.tables.of(&from);
        if table.get(&id).is_some_and(|c| !same_endpoint(&c.addr(), &from))
            && self.address_checks.settled(&id, &from, now)
        {
            return;
        }
        let Some(bucket) = table.bucket_for(&id) else { return };
        let last = table.bucket_count() - 1;
        // k, not the bucket's capacity: a wide bucket's room beyond k (`Config::wide_buckets`)
        // fills only with nodes that answer our own queries. A querier chose to contact us, so
        // verifying it there would let anyone who sends queries have us ping them in return,
        // for room the lookups need least.
        let full = table.bucket_len(bucket) >= self.config.k;
        if full && (bucket != last || table.bucket_count() >= self.config.id_len * 8) {
            return;
        }
        match self.rpc.queue_verification(from, id) {
            VerifyQueued::Queued | VerifyQueued::Duplicate => {}
            VerifyQueued::Displaced | VerifyQueued::Dropped => self.stats.verifications_dropped += 1,
        }
    }

    fn on_reply(&mut self, now: Instant, from: SocketAddr, datagram: &[u8], msg: &Message<'_>) {
        let Matched::Tx(tx) = self.rpc.match_reply(msg.transaction_id, &from, now, &self.config, &mut self.stats)
        else {
            return;
        };
        if let Some(reported) = msg.ip {
            self.on_ip_vote(reported, from, now);
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
                        if self.tables.of(&from).get(&expected).is_some_and(|c| same_endpoint(&c.addr(), &from)) {
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
    }

    /// BEP 42 `ip` field of a reply: one vote for our public address. When the vote settles
    /// on an address our id is not bound to, and the id was not chosen by the application,
    /// a secure id is generated and the routing tables rebuilt around it.
    fn on_ip_vote(&mut self, reported: SocketAddr, voter: SocketAddr, now: Instant) {
        let Some(node) = self.node.as_deref_mut() else { return };
        let Some(ip) = node.vote(reported, voter, now, &self.id) else { return };
        if self.config.id.is_some() {
            return;
        }
        let Ok(new_id) = crate::dht::generate_secure_id(ip, &mut self.rng, self.config.id_len) else { return };
        let previous = self.id;
        self.tables.rebuild(new_id, self.config.k, now);
        self.id = new_id;
        self.push_event(Event::IdChanged { previous, id: new_id });
    }
}

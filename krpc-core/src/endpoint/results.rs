//! Where a query's result goes: the operation that sent it (`query`, `query_all`, a lookup,
//! an announce), or upkeep (a ping/swap check). Also how operations end, and what an ending
//! starts (an announce's second phase, the refresh after a join).

use alloc::vec::Vec;
use core::net::SocketAddr;

use super::Endpoint;
use super::ops::LookupEnd;
use crate::address::{is_never_valid, may_query_learned};
use crate::event::{Datagram, Event, LookupOutcome, OpId};
use crate::lookup::{Spread, subrange};
use crate::query::Token;
use crate::transaction::{Purpose, Tx, same_endpoint};
use crate::wire::Fields;
use crate::{Instant, NodeId, QueryError, Reply};

impl Endpoint {
    /// A matched reply (or remote error) reaches the owner of its transaction.
    pub(super) fn deliver(
        &mut self,
        tx: Tx,
        result: Result<Option<NodeId>, QueryError>,
        from: SocketAddr,
        datagram: &[u8],
        fields: Option<Fields<'_>>,
        now: Instant,
    ) {
        match tx.purpose {
            // The crawl knows the node by the address it asked, which a dual-stack socket may
            // report in another form (`::ffff:a.b.c.d`) for the answer.
            Purpose::Op(op) if self.ops.crawl(op).is_some() => match (result, fields) {
                (Ok(id), Some(f)) => self.crawl_reply(op, tx.addr, id, &f),
                _ => self.crawl_failure(op, tx.addr),
            },
            Purpose::Op(op) => {
                let result = result.map(|_| Reply::new(from, Datagram::new(datagram, self.decoder())));
                self.query_result(op, from, result);
            }
            Purpose::Lookup(op) => self.lookup_reply(op, result, from, datagram, fields),
            Purpose::Check => self.check_result(&tx, result.is_ok(), now),
            Purpose::AddressCheck => self.address_check_result(&tx, result.is_ok(), now),
            Purpose::Verify | Purpose::VerifyQuerier | Purpose::Detached => {}
        }
    }

    fn lookup_reply(
        &mut self,
        op: OpId,
        result: Result<Option<NodeId>, QueryError>,
        from: SocketAddr,
        datagram: &[u8],
        fields: Option<Fields<'_>>,
    ) {
        let own = self.id;
        let policy = self.policy;
        let mut filtered = 0;
        // A bucket fill keeps only names it could put in its bucket: inside the bucket's
        // range and not in the table already. The rest would only lengthen its candidate list.
        let fill = self.fill_depth(op);
        let tables = &self.tables;
        let Some(lookup) = self.ops.lookup_mut(op) else { return };
        let (Ok(rid), Some(f)) = (&result, fields) else {
            lookup.on_failure(&from);
            return;
        };
        // A bootstrap entry that turns out to be ourselves is no responder (k-rpc excludes its
        // own id from the lookup too).
        let rid = rid.filter(|id| *id != own);
        let path = lookup.on_reply(&from, rid, f.token().and_then(Token::new)).unwrap_or(0);
        for node in f.nodes().into_iter().flatten().chain(f.nodes6().into_iter().flatten()) {
            if node.id == own {
                continue;
            }
            if !may_query_learned(&node.addr, policy) {
                filtered += 1;
                continue;
            }
            if let Some((v6, depth)) = fill {
                if node.id.common_prefix_len(lookup.target()) <= depth || tables.family(v6).contains(&node.id) {
                    continue;
                }
            }
            lookup.add_learned(node, path);
        }
        let report = lookup.reports_replies();
        self.stats.nodes_filtered += filtered;
        if self.ops.wants_peers(op) {
            let peers: Vec<SocketAddr> = f.values().collect();
            if !peers.is_empty() {
                self.push_event(Event::Peers { op, from, peers });
            }
        }
        if let (Some(seeds), Some(peers)) = (f.bloom_seeds(), f.bloom_peers()) {
            self.ops.record_scrape(op, seeds, peers);
        }
        if report {
            let reply = Reply::new(from, Datagram::new(datagram, self.decoder()));
            self.push_event(Event::Reply { op, reply });
        }
        // BEP 44: an item in the reply is checked before it is surfaced.
        let (event, done) = self.ops.on_item_reply(op, from, &f);
        if let Some(event) = event {
            self.push_event(event);
        }
        if done || self.bucket_filled(op) {
            self.finish_lookup(op, LookupOutcome::Completed);
        }
    }

    /// Whether `op` is the refresh of a thin bucket after a join and that bucket now holds `k`
    /// nodes. Checked after each reply, whose sender the table has just learned.
    fn bucket_filled(&self, op: OpId) -> bool {
        self.fill_room(op) == Some(0)
    }

    /// For the refresh of a thin bucket after a join: its bucket's depth and the sub-ranges its
    /// entries cover, for [`Lookup::step_spread`](crate::lookup::Lookup::step_spread). `None`
    /// for every other operation, and for a fill whose bucket became our own (the last: a
    /// neighbourhood, not one range) by splits since it started.
    pub(super) fn fill_spread(&self, op: OpId) -> Option<Spread> {
        let (v6, depth) = self.fill_depth(op)?;
        let table = self.tables.family(v6);
        let covered = table.bucket_contacts(depth).fold(0u8, |m, c| m | 1 << subrange(&c.node.id, depth));
        Some(Spread { depth, covered })
    }

    /// The family and depth of a bucket fill's bucket (see [`Endpoint::fill_spread`]).
    fn fill_depth(&self, op: OpId) -> Option<(bool, usize)> {
        let (v6, target) = self.ops.fill_target(op)?;
        let table = self.tables.family(v6);
        let depth = table.bucket_for(&target).filter(|&b| b + 1 < table.bucket_count())?;
        Some((v6, depth))
    }

    /// The target a bucket fill's query to `addr` carries: the sub-range
    /// [`Lookup::step_spread`](crate::lookup::Lookup::step_spread) picked for it.
    pub(super) fn fill_query_target(&self, op: OpId, addr: &SocketAddr) -> Option<NodeId> {
        let (_, depth) = self.fill_depth(op)?;
        self.ops.lookup(op)?.spread_target(addr, depth)
    }

    /// For the refresh of a thin bucket after a join: how many nodes its bucket still lacks.
    /// `None` for every other operation.
    pub(super) fn fill_room(&self, op: OpId) -> Option<usize> {
        let (v6, target) = self.ops.fill_target(op)?;
        let table = self.tables.family(v6);
        let len = table.bucket_for(&target).map_or(0, |b| table.bucket_len(b));
        Some(self.config.k.saturating_sub(len))
    }

    /// A transaction failed without a reply (timeout, send failure, too large).
    pub(super) fn tx_failed(&mut self, tx: Tx, error: QueryError, now: Instant) {
        if let Some(id) = tx.expect_id {
            if self.tables.of(&tx.addr).get(&id).is_some_and(|c| same_endpoint(&c.addr(), &tx.addr)) {
                // One failure never evicts (k-rpc evicted on the first timeout, W5); the
                // ping/swap protocol replaces nodes that stay silent.
                self.tables.of_mut(&tx.addr).record_failure(&id, now);
            }
        }
        match tx.purpose {
            Purpose::Op(op) if self.ops.crawl(op).is_some() => self.crawl_failure(op, tx.addr),
            Purpose::Op(op) => self.query_result(op, tx.addr, Err(error)),
            Purpose::Lookup(op) => {
                if let Some(lookup) = self.ops.lookup_mut(op) {
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
            Purpose::AddressCheck => self.address_check_result(&tx, false, now),
            Purpose::Verify | Purpose::VerifyQuerier | Purpose::Detached => {}
        }
    }

    /// An answer to a crawl's `sample_infohashes`.
    fn crawl_reply(&mut self, op: OpId, from: SocketAddr, id: Option<NodeId>, f: &Fields<'_>) {
        let (own, policy, now) = (self.id, self.policy, self.now);
        let Some(crawl) = self.ops.crawl_mut(op) else { return };
        // A bootstrap entry that turns out to be ourselves is no node to crawl.
        let id = id.filter(|id| *id != own);
        let may_query = |addr: &SocketAddr, id: &NodeId| *id != own && may_query_learned(addr, policy);
        let outcome = crawl.on_reply(op, now, from, id, f, may_query);
        self.stats.nodes_filtered += outcome.filtered;
        if let Some(found) = outcome.found {
            self.push_event(found);
        }
        if outcome.done {
            self.finish_crawl(op);
        }
    }

    /// A crawl's query failed.
    fn crawl_failure(&mut self, op: OpId, from: SocketAddr) {
        if self.ops.crawl_mut(op).is_some_and(|c| c.on_failure(&from)) {
            self.finish_crawl(op);
        }
    }

    /// Ends a crawl and reports it; its queries in flight reach nobody.
    fn finish_crawl(&mut self, op: OpId) {
        if let Some(event) = self.ops.finish_crawl(op) {
            self.rpc.detach(op);
            self.push_event(event);
        }
    }

    /// The outcome of one query of a `query`, `query_all` or an announce's second phase.
    fn query_result(&mut self, op: OpId, from: SocketAddr, result: Result<Reply, QueryError>) {
        for event in self.ops.on_query_result(op, from, result) {
            self.push_event(event);
        }
    }

    /// Ends an operation's lookup phase and reports it, or starts what comes after it.
    pub(super) fn finish_lookup(&mut self, op: OpId, outcome: LookupOutcome) {
        let Some(end) = self.ops.finish_lookup(op, outcome, self.config.k, &self.id) else { return };
        self.rpc.detach(op);
        match end {
            LookupEnd::Report(event) => self.push_event(event),
            LookupEnd::Joined { event, heard } => {
                self.refresh_thin_buckets(self.now, &heard);
                self.push_event(event);
            }
            LookupEnd::Store { peers } => {
                // The second phase of an announce or put: its queries run under the same id.
                let peers: Vec<_> = peers.into_iter().filter(|p| !is_never_valid(&p.addr)).collect();
                if peers.is_empty() || !self.rpc.can_queue(peers.len(), &self.config) {
                    if let Some(event) = self.ops.fail_store(op, QueryError::NoNodes) {
                        self.push_event(event);
                    }
                    return;
                }
                self.ops.begin_store(op, peers.len());
                for peer in peers {
                    self.rpc.queue_query(op, peer);
                }
            }
        }
    }

    /// Ends a `query`, `query_all` or an announce's second phase early with `error`.
    pub(super) fn end_op(&mut self, op: OpId, error: QueryError) {
        if let Some(event) = self.ops.end_early(op, error) {
            self.rpc.detach(op);
            self.push_event(event);
        }
    }
}

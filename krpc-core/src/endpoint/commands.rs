//! Commands: what the application asks of the engine (k-rpc's methods).

use alloc::boxed::Box;
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::net::SocketAddr;

use super::{CommandError, Endpoint, InternalPing, Op, Outbound};
use crate::address::is_never_valid;
use crate::event::{Event, LookupOutcome, OpId, ReplyTo};
use crate::lookup::{Lookup, Params};
use crate::query::{Peer, Query};
use crate::routing::{InsertOutcome, SwapOutcome};
use crate::transaction::Purpose;
use crate::wire::Dictionary;
use crate::{Instant, NodeId, NodeInfo, QueryError};

impl Endpoint {
    fn check_open(&self) -> Result<(), CommandError> {
        if self.closed { Err(CommandError::Closed) } else { Ok(()) }
    }

    /// Sends one query to one peer (k-rpc `query`). `a.id` is filled in when absent, and the
    /// peer's token, if any, is sent as `a.token`. The result arrives as
    /// [`Event::QueryDone`].
    ///
    /// Queries beyond `concurrency` wait in a queue of at most `max_queued_queries`.
    pub fn query(&mut self, now: Instant, peer: impl Into<Peer>, query: Query) -> Result<OpId, CommandError> {
        self.advance(now);
        self.check_open()?;
        let peer = peer.into();
        if is_never_valid(&peer.addr) {
            return Err(CommandError::InvalidAddress);
        }
        if self.waiting.len() >= self.config.max_queued_queries {
            return Err(CommandError::QueueFull);
        }
        let op = self.new_op();
        self.ops.insert(op, Op::Query { query });
        self.waiting.push_back((op, peer));
        self.dispatch();
        Ok(op)
    }

    /// Sends the same query to many peers, each with its own token (k-rpc `queryAll`; the JS
    /// version leaked one node's token to the next, weakness W6). Each success is an
    /// [`Event::Reply`]; the end is [`Event::QueryAllDone`] with the number of successes, or
    /// the first 3xx remote error when none succeeded (BEP 44), else `AllFailed`.
    pub fn query_all(
        &mut self,
        now: Instant,
        peers: impl IntoIterator<Item = Peer>,
        query: Query,
    ) -> Result<OpId, CommandError> {
        self.advance(now);
        self.check_open()?;
        let peers: Vec<Peer> = peers.into_iter().filter(|p| !is_never_valid(&p.addr)).collect();
        if peers.is_empty() {
            return Err(CommandError::NoNodes);
        }
        if self.waiting.len() + peers.len() > self.config.max_queued_queries {
            return Err(CommandError::QueueFull);
        }
        let op = self.new_op();
        let outstanding = peers.len();
        self.ops.insert(op, Op::QueryAll { query, outstanding, hits: 0, error_3xx: None, stopped: false });
        for peer in peers {
            self.waiting.push_back((op, peer));
        }
        self.dispatch();
        Ok(op)
    }

    /// Starts an iterative lookup toward `target`, sending `query` to each node visited
    /// (k-rpc `closest`). Each reply is an [`Event::Reply`]; the end is
    /// [`Event::LookupDone`]. Stop it early with [`stop`](Self::stop).
    pub fn closest(&mut self, now: Instant, target: NodeId, query: Query) -> Result<OpId, CommandError> {
        self.start_lookup(now, target, query, false, true)
    }

    /// A background lookup that only fills the routing table (k-rpc `populate`): it yields
    /// to queries and foreground lookups, starting new queries only while fewer than
    /// `background_concurrency` are in flight or nothing else wants to send.
    pub fn populate(&mut self, now: Instant, target: NodeId, query: Query) -> Result<OpId, CommandError> {
        self.start_lookup(now, target, query, true, false)
    }

    /// Joins the network: `populate` toward our own id with `find_node` (BEP 5: "Upon
    /// inserting the first node into its routing table and when starting up thereafter, the
    /// node should attempt to find the closest nodes in the DHT to itself."). When it
    /// completes, every bucket it left with fewer than `k` nodes is refreshed in the
    /// background with a lookup of a random id in its range, as libtorrent does after its
    /// bootstrap: the lookup toward our id fills the buckets near us, not the ones between.
    pub fn bootstrap(&mut self, now: Instant) -> Result<OpId, CommandError> {
        let id = self.id;
        let op = self.populate(now, id, Query::find_node(&id))?;
        self.joining = Some(op);
        Ok(op)
    }

    pub(crate) fn start_lookup(
        &mut self,
        now: Instant,
        target: NodeId,
        query: Query,
        background: bool,
        report_replies: bool,
    ) -> Result<OpId, CommandError> {
        self.advance(now);
        self.check_open()?;
        if target.len() != self.config.id_len {
            return Err(CommandError::WrongIdLength);
        }
        if self.lookup_order.len() >= self.config.max_lookups {
            return Err(CommandError::TooManyLookups);
        }
        let op = self.new_op();
        let mut lookup = Lookup::new(target, query, background, report_replies, Params::of(&self.config));
        // Both families: a single-stack node has one empty table, a dual-stack one searches
        // through either (BEP 32 lets one lookup use `nodes` and `nodes6`).
        let mut seeds = self.table.closest(&target, self.config.k).to_vec();
        seeds.extend(self.table6.closest(&target, self.config.k));
        // k-rpc falls back to the bootstrap nodes while the table is smaller than the
        // bootstrap list; here they are asked whenever the table cannot fill one bucket.
        if seeds.len() < self.config.k {
            for addr in self.config.bootstrap.clone() {
                lookup.add_seed_addr(addr);
            }
        }
        for node in seeds {
            lookup.add_node(node);
        }
        self.ops.insert(op, Op::Lookup(Box::new(lookup)));
        self.lookup_order.push(op);
        self.dispatch();
        Ok(op)
    }

    /// Stops a lookup or `query_all`: no new queries, no further [`Event::Reply`] (k-rpc
    /// kept calling `visit` for replies already in flight, weakness W13). The final event
    /// follows at once. For a single `query` this is [`cancel`](Self::cancel).
    pub fn stop(&mut self, op: OpId) -> Result<(), CommandError> {
        self.check_open()?;
        let op = self.dht_running_op(op);
        match self.ops.get(&op) {
            Some(Op::Lookup(_)) => {
                self.finish_lookup(op, LookupOutcome::Stopped);
                self.dispatch();
                Ok(())
            }
            Some(Op::QueryAll { .. }) => {
                self.finish_op(op, QueryError::Cancelled);
                self.dispatch();
                Ok(())
            }
            Some(Op::Query { .. }) => self.cancel(op),
            None => Err(CommandError::UnknownOperation),
        }
    }

    /// Cancels any running command: it resolves now with [`QueryError::Cancelled`] (a lookup
    /// with [`LookupOutcome::Stopped`]). Its queries in flight still feed the routing table
    /// when answered.
    pub fn cancel(&mut self, op: OpId) -> Result<(), CommandError> {
        self.check_open()?;
        let op = self.dht_running_op(op);
        match self.ops.get(&op) {
            None => Err(CommandError::UnknownOperation),
            Some(Op::Lookup(_)) => self.stop(op),
            Some(_) => {
                self.finish_op(op, QueryError::Cancelled);
                self.dispatch();
                Ok(())
            }
        }
    }

    /// Answers an incoming query (k-rpc `response`). `r.id` is filled in when absent, and
    /// `nodes` are written as compact node info: IPv4 ones as `nodes`, IPv6 ones as `nodes6`
    /// (k-rpc wrote zeros for IPv6, weakness W15).
    pub fn respond(&mut self, to: &ReplyTo, values: Dictionary, nodes: &[NodeInfo]) -> Result<(), CommandError> {
        self.check_open()?;
        if self.transmits.len() >= self.config.max_queued_transmits {
            self.stats.transmits_dropped += 1;
            return Err(CommandError::TransmitQueueFull);
        }
        self.transmits.push_back(Outbound::Response { to: to.addr, t: to.t.clone(), values, nodes: nodes.to_vec() });
        Ok(())
    }

    /// Answers an incoming query with a KRPC error (k-rpc `error`), always as BEP 5's
    /// `[code, message]` (weakness W20). Messages longer than 128 bytes are cut.
    pub fn error(&mut self, to: &ReplyTo, code: i64, message: &[u8]) -> Result<(), CommandError> {
        self.check_open()?;
        if self.transmits.len() >= self.config.max_queued_transmits {
            self.stats.transmits_dropped += 1;
            return Err(CommandError::TransmitQueueFull);
        }
        let mut m = ArrayVec::new();
        let _ = m.try_extend_from_slice(&message[..message.len().min(128)]);
        self.transmits.push_back(Outbound::Error { to: to.addr, t: to.t.clone(), code, message: m });
        Ok(())
    }

    /// Asks a node to join the routing table: it is pinged and enters when it answers
    /// (bittorrent-dht's `addNode` does the same for nodes without an id).
    pub fn add_node(&mut self, now: Instant, addr: SocketAddr, id: Option<NodeId>) -> Result<(), CommandError> {
        self.advance(now);
        self.check_open()?;
        if is_never_valid(&addr) {
            return Err(CommandError::InvalidAddress);
        }
        if self.internal.len() >= super::MAX_INTERNAL_PINGS {
            return Err(CommandError::QueueFull);
        }
        self.internal.push_back(InternalPing { addr, expect: id, purpose: Purpose::Verify });
        self.dispatch();
        Ok(())
    }

    /// Inserts a node the application vouches for (restored from a saved table, say), as if
    /// it had answered us. Returns whether it is now in the table.
    pub fn insert_node(&mut self, now: Instant, node: NodeInfo) -> bool {
        let now = self.advance(now);
        if self.closed || is_never_valid(&node.addr) {
            return false;
        }
        let inserted = self.learn_verified(node, now);
        // A full bucket queues a ping/swap check: send it now, not at the next input.
        self.dispatch();
        inserted
    }

    /// Removes a node from the routing tables (both, for a node known at an IPv4 and an IPv6
    /// address); [`Event::NodeRemoved`] follows for each entry removed.
    pub fn remove_node(&mut self, id: &NodeId) -> bool {
        // A dual-stack node may be in both tables.
        let mut removed = false;
        for contact in [self.table.remove(id), self.table6.remove(id)].into_iter().flatten() {
            self.push_event(Event::NodeRemoved(contact.node));
            removed = true;
        }
        removed
    }

    /// Resolves a [`Event::PingSwap`]: `dead` leaves, `candidate` takes its place (k-rpc's
    /// `swap`). Refused when `dead` is good again, the two belong to different buckets, the
    /// candidate's address can never be a node, or the endpoint is closed.
    pub fn swap(&mut self, now: Instant, dead: &NodeId, candidate: NodeInfo) -> bool {
        let now = self.advance(now);
        // As in `insert_node`: an address that can never be a node never enters a table,
        // which lookups and refreshes would then query.
        if self.closed || is_never_valid(&candidate.addr) {
            return false;
        }
        match self.table_of_mut(&candidate.addr).swap(dead, candidate, now) {
            SwapOutcome::Swapped { evicted } => {
                self.push_event(Event::NodeRemoved(evicted.node));
                self.push_event(Event::NodeAdded(candidate));
                true
            }
            _ => false,
        }
    }

    /// Closes the endpoint: every running command resolves exactly once with a shut-down
    /// result (k-rpc lost callbacks here, weakness W7), queued datagrams are discarded, and
    /// later commands are refused.
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.closed = true;
        let ops: Vec<OpId> = self.ops.keys().copied().collect();
        for op in ops {
            if matches!(self.ops.get(&op), Some(Op::Lookup(_))) {
                self.finish_lookup(op, LookupOutcome::ShutDown);
            } else {
                self.finish_op(op, QueryError::ShutDown);
            }
        }
        self.waiting.clear();
        self.internal.clear();
        self.swap_checks.clear();
        self.transmits.clear();
        let refs: Vec<_> = self.txs.refs().collect();
        for r in refs {
            self.txs.remove(r);
        }
    }

    /// Inserts a verified node and reports the change; runs the ping/swap protocol when its
    /// bucket is full. Returns whether the node is in the table afterwards.
    pub(crate) fn learn_verified(&mut self, node: NodeInfo, now: Instant) -> bool {
        if !self.dht_admits(&node) {
            return false;
        }
        match self.table_of_mut(&node.addr).insert_verified(node, now) {
            InsertOutcome::Added => {
                self.push_event(Event::NodeAdded(node));
                true
            }
            InsertOutcome::Refreshed => true,
            InsertOutcome::AddressChanged { previous } => {
                self.push_event(Event::NodeUpdated { node, previous });
                true
            }
            InsertOutcome::Replaced { evicted } => {
                self.push_event(Event::NodeRemoved(evicted.node));
                self.push_event(Event::NodeAdded(node));
                true
            }
            InsertOutcome::BucketFull { bucket } => {
                self.bucket_full(bucket, node, now);
                false
            }
            InsertOutcome::IsLocal | InsertOutcome::WrongIdLength => false,
        }
    }
}

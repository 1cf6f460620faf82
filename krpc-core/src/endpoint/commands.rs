//! Commands: what the application asks of the engine (k-rpc's methods, and the node layer's
//! `find_node`, `get_peers` and `announce`). Each checks its arguments, hands the work to the
//! part that runs it, and ends with the one dispatch of the input.

use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use super::ops::LookupKind;
use super::rpc::{InternalPing, Outbound, tid};
use super::{CommandError, Endpoint};
use crate::address::is_never_valid;
use crate::event::{Event, LookupOutcome, OpId, ReplyTo};
use crate::lookup::{Lookup, Params};
use crate::query::{Peer, Query};
use crate::routing::SwapOutcome;
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
        if !self.rpc.can_queue(1) {
            return Err(CommandError::QueueFull);
        }
        let op = self.ops.start_query(query);
        self.rpc.queue_query(op, peer);
        self.finish_input();
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
        if !self.rpc.can_queue(peers.len()) {
            return Err(CommandError::QueueFull);
        }
        let op = self.ops.start_query_all(query, peers.len());
        for peer in peers {
            self.rpc.queue_query(op, peer);
        }
        self.finish_input();
        Ok(op)
    }

    /// Starts an iterative lookup toward `target`, sending `query` to each node visited
    /// (k-rpc `closest`). Each reply is an [`Event::Reply`]; the end is
    /// [`Event::LookupDone`]. Stop it early with [`stop`](Self::stop).
    pub fn closest(&mut self, now: Instant, target: NodeId, query: Query) -> Result<OpId, CommandError> {
        self.start_lookup(now, target, query, false, true, LookupKind::Plain)
    }

    /// A background lookup that only fills the routing table (k-rpc `populate`): it yields
    /// to queries and foreground lookups, starting new queries only while fewer than
    /// `background_concurrency` are in flight or nothing else wants to send.
    pub fn populate(&mut self, now: Instant, target: NodeId, query: Query) -> Result<OpId, CommandError> {
        self.start_lookup(now, target, query, true, false, LookupKind::Plain)
    }

    /// Joins the network: `populate` toward our own id with `find_node` (BEP 5: "Upon
    /// inserting the first node into its routing table and when starting up thereafter, the
    /// node should attempt to find the closest nodes in the DHT to itself."). When it
    /// completes, every bucket it left with fewer than `k` nodes is refreshed in the
    /// background with a lookup of a random id in its range, as libtorrent does after its
    /// bootstrap: the lookup toward our id fills the buckets near us, not the ones between.
    pub fn bootstrap(&mut self, now: Instant) -> Result<OpId, CommandError> {
        let id = self.id;
        self.start_lookup(now, id, Query::find_node(&id), true, false, LookupKind::Join)
    }

    /// Runs `find_node` toward `target`: a lookup whose result is the closest nodes.
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> Result<OpId, CommandError> {
        self.closest(now, target, Query::find_node(&target))
    }

    /// Looks up peers for `info_hash`: each reply carrying `values` is reported as
    /// [`Event::Peers`]; the end is [`Event::LookupDone`], whose `closest` carry the write
    /// tokens an announce needs.
    pub fn get_peers(&mut self, now: Instant, info_hash: NodeId) -> Result<OpId, CommandError> {
        self.start_lookup(now, info_hash, Query::get_peers(&info_hash), false, false, LookupKind::GetPeers)
    }

    /// Announces that we have `info_hash` on `port` (`None`: the port the datagrams leave
    /// from, BEP 5's `implied_port`): a `get_peers` lookup, then `announce_peer` to the `k`
    /// closest nodes that gave a token (BEP 33: "Announce only to the K closest nodes that
    /// returned a token"). Peers found on the way are reported as [`Event::Peers`]; the end
    /// is [`Event::AnnounceDone`] with the number of nodes that stored us.
    pub fn announce(
        &mut self,
        now: Instant,
        info_hash: NodeId,
        port: Option<u16>,
        seed: bool,
    ) -> Result<OpId, CommandError> {
        let lookup = self.new_lookup(now, info_hash, Query::get_peers(&info_hash), false, false)?;
        let op = self.ops.start_announce(lookup, info_hash, port, seed);
        self.finish_input();
        Ok(op)
    }

    /// Our public address as voted by the `ip` fields of replies (BEP 42), per family.
    pub fn external_address(&self) -> [Option<IpAddr>; 2] {
        self.node.as_deref().map_or([None, None], |n| n.external_address())
    }

    /// A lookup seeded from both tables (and the bootstrap nodes while the tables are thin),
    /// once the caps allow it.
    fn new_lookup(
        &mut self,
        now: Instant,
        target: NodeId,
        query: Query,
        background: bool,
        report_replies: bool,
    ) -> Result<Lookup, CommandError> {
        self.advance(now);
        self.check_open()?;
        if target.len() != self.config.id_len {
            return Err(CommandError::WrongIdLength);
        }
        if self.ops.lookups() >= self.config.max_lookups {
            return Err(CommandError::TooManyLookups);
        }
        let mut lookup = Lookup::new(target, query, background, report_replies, Params::of(&self.config));
        // Both families: a single-stack node has one empty table, a dual-stack one searches
        // through either (BEP 32 lets one lookup use `nodes` and `nodes6`).
        let seeds = self.tables.lookup_seeds(&target, self.config.k);
        // k-rpc falls back to the bootstrap nodes while the table is smaller than the
        // bootstrap list; here they are asked whenever the table cannot fill one bucket.
        if seeds.len() < self.config.k {
            for addr in &self.config.bootstrap {
                lookup.add_seed_addr(*addr);
            }
        }
        for node in seeds {
            lookup.add_node(node);
        }
        Ok(lookup)
    }

    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        target: NodeId,
        query: Query,
        background: bool,
        report_replies: bool,
        kind: LookupKind,
    ) -> Result<OpId, CommandError> {
        let lookup = self.new_lookup(now, target, query, background, report_replies)?;
        let op = self.ops.start_lookup(lookup, kind);
        self.finish_input();
        Ok(op)
    }

    /// Stops a lookup or `query_all`: no new queries, no further [`Event::Reply`] (k-rpc
    /// kept calling `visit` for replies already in flight, weakness W13). The final event
    /// follows at once. For a single `query` this is [`cancel`](Self::cancel).
    pub fn stop(&mut self, op: OpId) -> Result<(), CommandError> {
        self.check_open()?;
        if !self.ops.contains(op) {
            return Err(CommandError::UnknownOperation);
        }
        if self.ops.lookup(op).is_some() {
            self.finish_lookup(op, LookupOutcome::Stopped);
        } else {
            // A `query` is cancelled; a `query_all` or an announce storing reports what it has.
            self.end_op(op, QueryError::Cancelled);
        }
        self.finish_input();
        Ok(())
    }

    /// Cancels any running command: it resolves now with [`QueryError::Cancelled`] (a lookup
    /// with [`LookupOutcome::Stopped`]). Its queries in flight still feed the routing table
    /// when answered.
    pub fn cancel(&mut self, op: OpId) -> Result<(), CommandError> {
        self.stop(op)
    }

    /// Answers an incoming query (k-rpc `response`). `r.id` is filled in when absent, and
    /// `nodes` are written as compact node info: IPv4 ones as `nodes`, IPv6 ones as `nodes6`
    /// (k-rpc wrote zeros for IPv6, weakness W15).
    pub fn respond(&mut self, to: &ReplyTo, values: Dictionary, nodes: &[NodeInfo]) -> Result<(), CommandError> {
        self.check_open()?;
        let out = Outbound::Response { to: to.addr, t: tid(&to.t), values, nodes: nodes.to_vec() };
        if !self.rpc.push(out, &mut self.stats) {
            return Err(CommandError::TransmitQueueFull);
        }
        Ok(())
    }

    /// Answers an incoming query with a KRPC error (k-rpc `error`), always as BEP 5's
    /// `[code, message]` (weakness W20). Messages longer than 128 bytes are cut.
    pub fn error(&mut self, to: &ReplyTo, code: i64, message: &[u8]) -> Result<(), CommandError> {
        self.check_open()?;
        if !self.rpc.push_error(to.addr, &to.t, code, message, &mut self.stats) {
            return Err(CommandError::TransmitQueueFull);
        }
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
        if !self.rpc.queue_internal(InternalPing { addr, expect: id, purpose: Purpose::Verify }) {
            return Err(CommandError::QueueFull);
        }
        self.finish_input();
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
        self.finish_input();
        inserted
    }

    /// Removes a node from the routing tables (both, for a node known at an IPv4 and an IPv6
    /// address); [`Event::NodeRemoved`] follows for each entry removed.
    pub fn remove_node(&mut self, id: &NodeId) -> bool {
        let removed: Vec<_> = self.tables.remove(id).collect();
        for contact in &removed {
            self.push_event(Event::NodeRemoved(contact.node));
        }
        !removed.is_empty()
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
        match self.tables.of_mut(&candidate.addr).swap(dead, candidate, now) {
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
        for op in self.ops.ids() {
            if self.ops.lookup(op).is_some() {
                self.finish_lookup(op, LookupOutcome::ShutDown);
            } else {
                self.end_op(op, QueryError::ShutDown);
            }
        }
        self.swap_checks.clear();
        self.address_checks.clear();
        self.rpc.clear();
    }
}

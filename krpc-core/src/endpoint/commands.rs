//! Commands: what the application asks of the engine (k-rpc's methods, the node layer's
//! `find_node`, `get_peers` and `announce`, and BEP 44's puts and gets). Each checks its arguments, hands the work to the
//! part that runs it, and ends with the one dispatch of the input.

use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use super::items::{GetItem, ItemSpec, PutItem, PutPayload, PutPhase};
use super::ops::LookupKind;
use super::rpc::{InternalPing, Outbound, tid};
use super::{CommandError, Endpoint};
use crate::address::is_never_valid;
use crate::dht::bep44::ed25519_dalek::SigningKey;
use crate::dht::bep44::{ItemError, MutableItem, check_value, immutable_target, mutable_target};
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
        if !self.rpc.can_queue(1, &self.config) {
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
        if !self.rpc.can_queue(peers.len(), &self.config) {
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

    /// BEP 33 scrape: a `get_peers` lookup with `scrape=1`; the `BFsd`/`BFpe` bloom filters of
    /// every node that answers with them are united, and the end is [`Event::ScrapeDone`] with
    /// the estimated seeds and peers (BEP 33's estimator on the union).
    pub fn scrape(&mut self, now: Instant, info_hash: NodeId) -> Result<OpId, CommandError> {
        let args = Dictionary::new().with_bytes("info_hash", info_hash.as_bytes()).with_int("scrape", 1);
        let query = Query::new("get_peers", args).unwrap_or_else(|| Query::get_peers(&info_hash));
        let kind = LookupKind::Scrape(super::ops::ScrapeFilters::new());
        self.start_lookup(now, info_hash, query, false, false, kind)
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

    /// Stores an immutable item (BEP 44): `value` is bencoded (a string is `5:hello`), at
    /// most 1000 bytes, canonical. A `get` lookup toward SHA-1(`value`) collects write
    /// tokens, then `put` goes to the `k` closest nodes that gave one. The end is
    /// [`Event::PutItemDone`], whose [`PutOutcome`](crate::PutOutcome) counts the nodes that
    /// stored it and lists each refusal.
    ///
    /// Items expire after 2 hours on most nodes (BEP 44): to keep one alive, put it again
    /// every hour.
    ///
    /// # Example
    /// ```
    /// use core::net::SocketAddr;
    /// use krpc_core::{Config, Endpoint, Event, Instant};
    /// use krpc_core::dht::{DhtConfig, Item, bep44::immutable_target};
    ///
    /// // Ten nodes on a line, each bootstrapping from the first.
    /// let now = Instant::ZERO;
    /// let addrs: Vec<SocketAddr> = (1..=10).map(|i| format!("127.0.0.{i}:6881").parse().unwrap()).collect();
    /// let mut nodes: Vec<Endpoint> = (0..10u8)
    ///     .map(|i| {
    ///         let config = Config { dht: Some(DhtConfig::default().into()), bootstrap: vec![addrs[0]], ..Config::default() };
    ///         Endpoint::new(config, [i; 32], now).unwrap()
    ///     })
    ///     .collect();
    /// let mut events = Vec::new();
    /// let mut run = |nodes: &mut Vec<Endpoint>, events: &mut Vec<(usize, Event)>| {
    ///     let mut buf = [0u8; 1500];
    ///     loop {
    ///         let mut moved = false;
    ///         for i in 0..nodes.len() {
    ///             while let Some(t) = nodes[i].poll_transmit(now, &mut buf) {
    ///                 if let Some(to) = addrs.iter().position(|a| *a == t.destination) {
    ///                     nodes[to].handle_datagram(now, addrs[i], &buf[..t.len]);
    ///                 }
    ///                 moved = true;
    ///             }
    ///             while let Some(e) = nodes[i].poll_event() {
    ///                 events.push((i, e));
    ///             }
    ///         }
    ///         if !moved {
    ///             break;
    ///         }
    ///     }
    /// };
    /// for node in nodes.iter_mut().skip(1) {
    ///     node.bootstrap(now).unwrap();
    /// }
    /// run(&mut nodes, &mut events);
    ///
    /// let put = nodes[3].put_immutable(now, b"12:Hello World!").unwrap();
    /// run(&mut nodes, &mut events);
    /// let stored = events.iter().find_map(|(_, e)| match e {
    ///     Event::PutItemDone { op, result: Ok(outcome) } if *op == put => Some(outcome.stored),
    ///     _ => None,
    /// });
    /// assert!(stored.unwrap() > 0);
    ///
    /// let get = nodes[8].get_immutable(now, immutable_target(b"12:Hello World!")).unwrap();
    /// run(&mut nodes, &mut events);
    /// assert!(events.iter().any(|(_, e)| matches!(e,
    ///     Event::GetItemDone { op, item: Some(Item::Immutable { value }), .. }
    ///         if *op == get && value == b"12:Hello World!")));
    /// ```
    pub fn put_immutable(&mut self, now: Instant, value: &[u8]) -> Result<OpId, CommandError> {
        check_value(value).map_err(CommandError::InvalidItem)?;
        let target = immutable_target(value);
        self.start_put(now, target, PutPayload::Immutable { value: value.to_vec() })
    }

    /// Stores a signed mutable item (BEP 44) under SHA-1(`k` ‖ salt); sign it with
    /// [`MutableItem::sign`]. With `cas`, nodes holding another `seq` refuse it with 301.
    /// The end is [`Event::PutItemDone`]: 302 errors there mean nodes hold a higher `seq`.
    ///
    /// Republishing: putting the same item again (same `seq`, same value) resets its 2-hour
    /// expiry on the nodes that hold it and stores it on new ones; anyone holding the item can
    /// do so, no private key needed. Do it every hour to keep an item alive.
    pub fn put_mutable(&mut self, now: Instant, item: MutableItem, cas: Option<i64>) -> Result<OpId, CommandError> {
        if !item.verify() {
            return Err(CommandError::InvalidItem(ItemError::InvalidSignature));
        }
        let target = item.target();
        self.start_put(now, target, PutPayload::Mutable { item, cas })
    }

    /// Read-modify-write of a mutable item (BEP 44): the `get` lookup reads the current `seq`
    /// from the nodes, then `value` is signed with `seq + 1` (1 if none was found) and put
    /// with `cas` = the `seq` read, so that a concurrent writer makes the put fail with 301
    /// instead of being overwritten. The end is [`Event::PutItemDone`] with the `seq` stored.
    /// To derive the value from the current one, read it first with
    /// [`get_mutable`](Self::get_mutable) and [`put_mutable`](Self::put_mutable) the result
    /// with `seq + 1` and `cas`.
    pub fn put_mutable_next(
        &mut self,
        now: Instant,
        key: &SigningKey,
        salt: &[u8],
        value: &[u8],
    ) -> Result<OpId, CommandError> {
        // Signed now once to check the arguments; signed again with the right `seq` later.
        MutableItem::sign(key, salt, 1, value).map_err(CommandError::InvalidItem)?;
        let target = mutable_target(&key.verifying_key().to_bytes(), salt);
        let payload = PutPayload::Next { key: key.clone(), salt: salt.to_vec(), value: value.to_vec(), seen: None };
        self.start_put(now, target, payload)
    }

    /// Looks up an immutable item (BEP 44). A reply's value is surfaced only if its SHA-1 is
    /// `target`; the first such ends the lookup: [`Event::ItemFound`], then
    /// [`Event::GetItemDone`].
    pub fn get_immutable(&mut self, now: Instant, target: NodeId) -> Result<OpId, CommandError> {
        self.start_get(now, target, ItemSpec::Immutable)
    }

    /// Looks up the mutable item of `key` and `salt` (BEP 44; the salt is the caller's, never
    /// taken from a reply). Each reply whose signature verifies and whose `seq` is at least
    /// `min_seq` is an [`Event::ItemFound`] as it arrives; the end, [`Event::GetItemDone`],
    /// carries the one with the highest `seq`.
    pub fn get_mutable(
        &mut self,
        now: Instant,
        key: [u8; 32],
        salt: &[u8],
        min_seq: Option<i64>,
    ) -> Result<OpId, CommandError> {
        if salt.len() > crate::dht::MAX_SALT_LEN {
            return Err(CommandError::InvalidItem(ItemError::SaltTooBig));
        }
        let spec = ItemSpec::Mutable { key, salt: salt.to_vec(), min_seq };
        self.start_get(now, mutable_target(&key, salt), spec)
    }

    /// Crawls the DHT for info-hashes with BEP 51 `sample_infohashes`: the id space is walked
    /// with spread targets (a bit-reversed counter: halves, quarters, eighths, ...), each query
    /// going to the node nearest its target among those known, so that the `nodes` of the
    /// answers fill every region. Nodes come from both routing tables (and the bootstrap
    /// nodes while the tables cannot fill a bucket), then from the answers.
    ///
    /// - Each node is asked again only once its `interval` has passed (BEP 51: "the number of
    ///   seconds the querying node should wait before querying the node again"), clamped to
    ///   [`MIN_CRAWL_INTERVAL`](crate::MIN_CRAWL_INTERVAL)..=[`MAX_CRAWL_INTERVAL`](crate::MAX_CRAWL_INTERVAL).
    ///   Nodes that fail, or answer without `samples` (no BEP 51: their `nodes` are still
    ///   used), are not asked again.
    /// - At most `rate` queries a second and `concurrency` in flight.
    /// - New info-hashes stream as [`Event::CrawlFound`]; at most `max_info_hashes` are kept
    ///   for deduplication, and reaching it ends the crawl.
    ///
    /// The end is [`Event::CrawlDone`] with [`CrawlStats`](crate::CrawlStats): when the cap
    /// is reached, when [`stop`](Self::stop)ped (or cancelled, or the endpoint closes), or
    /// when no node is left to ask, now or after an interval. A crawl does not end while
    /// nodes wait for their interval: stop it when it has run long enough.
    ///
    /// A crawl is a client operation: it needs no node layer, and runs the same in k-rpc
    /// parity mode ([`Config::default`](crate::Config::default)) and with
    /// [`read_only`](crate::Config::read_only) (its queries then carry `ro=1`). Refused with
    /// [`CommandError::InvalidConfig`] for a zero cap, rate or concurrency, with
    /// [`CommandError::NoNodes`] when there is no node to start from, and with
    /// [`CommandError::TooManyLookups`] when `max_lookups` lookups and crawls run.
    pub fn crawl(&mut self, now: Instant, config: crate::CrawlConfig) -> Result<OpId, CommandError> {
        self.advance(now);
        self.check_open()?;
        if config.rate == 0 || config.concurrency == 0 || config.max_nodes == 0 || config.max_info_hashes == 0 {
            return Err(CommandError::InvalidConfig);
        }
        if self.ops.lookup_slots() >= self.config.max_lookups {
            return Err(CommandError::TooManyLookups);
        }
        let own = self.id;
        let seeds: Vec<NodeInfo> = self
            .tables
            .v4()
            .iter()
            .chain(self.tables.v6().iter())
            .map(|c| c.node)
            .filter(|n| n.id != own && !is_never_valid(&n.addr))
            .collect();
        let bootstrap: Vec<SocketAddr> = if seeds.len() < self.config.k {
            self.config.bootstrap.iter().copied().filter(|a| !is_never_valid(a)).collect()
        } else {
            Vec::new()
        };
        if seeds.is_empty() && bootstrap.is_empty() {
            return Err(CommandError::NoNodes);
        }
        let crawl = super::crawl::Crawl::new(config, self.config.id_len, self.now, seeds, bootstrap);
        let op = self.ops.start_crawl(crawl);
        self.finish_input();
        Ok(op)
    }

    /// What the crawl `op` has done so far; `None` once it ended (its
    /// [`Event::CrawlDone`] has the final numbers) or for another kind of operation.
    pub fn crawl_stats(&self, op: OpId) -> Option<crate::CrawlStats> {
        self.ops.crawl(op).map(super::crawl::Crawl::stats)
    }

    fn start_get(&mut self, now: Instant, target: NodeId, spec: ItemSpec) -> Result<OpId, CommandError> {
        let lookup = self.new_lookup(now, target, spec.query(&target), false, false)?;
        let op = self.ops.start_get_item(GetItem { spec, lookup, best: None });
        self.finish_input();
        Ok(op)
    }

    fn start_put(&mut self, now: Instant, target: NodeId, payload: PutPayload) -> Result<OpId, CommandError> {
        let lookup = self.new_lookup(now, target, ItemSpec::Immutable.query(&target), false, false)?;
        let op = self.ops.start_put_item(PutItem { target, payload, phase: PutPhase::Lookup(lookup) });
        self.finish_input();
        Ok(op)
    }

    /// BEP 44 items the node layer stores for others, and the bytes they count against
    /// [`ItemStoreLimits::max_bytes`](crate::dht::ItemStoreLimits::max_bytes); `None` without
    /// the node layer.
    pub fn stored_items(&self) -> Option<(usize, usize)> {
        self.node.as_deref().map(|n| n.stored_items())
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
        self.new_lookup_seeded(now, target, query, background, report_replies, self.config.k)
    }

    /// [`new_lookup`](Self::new_lookup) seeded with at most `table_seeds` nodes of each
    /// routing table (the nearest the target), where a lookup takes `k`.
    pub(super) fn new_lookup_seeded(
        &mut self,
        now: Instant,
        target: NodeId,
        query: Query,
        background: bool,
        report_replies: bool,
        table_seeds: usize,
    ) -> Result<Lookup, CommandError> {
        self.advance(now);
        self.check_open()?;
        if target.len() != self.config.id_len {
            return Err(CommandError::WrongIdLength);
        }
        // Crawls hold lookup slots too: a lookup started beside `max_lookups` crawls would
        // break the cap (found by the `endpoint` and `sim` fuzz targets).
        if self.ops.lookup_slots() >= self.config.max_lookups {
            return Err(CommandError::TooManyLookups);
        }
        // The neighbourhood needs a size estimated from a full set of our own neighbours: a
        // node that knows a handful has no idea of the DHT's size yet.
        let params = Params::of(&self.config).with_dht_size(&self.config, self.dht_size_estimate(8));
        let mut lookup = Lookup::new(target, query, background, report_replies, params);
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
        // Each table's nodes come nearest first.
        let mut taken = [0usize; 2];
        for node in seeds {
            let taken = &mut taken[usize::from(super::tables::is_v6(&node.addr))];
            if *taken < table_seeds {
                *taken += 1;
                lookup.add_node(node);
            }
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
        if !self.rpc.push(out, &self.config, &mut self.stats) {
            return Err(CommandError::TransmitQueueFull);
        }
        Ok(())
    }

    /// Answers an incoming query with a KRPC error (k-rpc `error`), always as BEP 5's
    /// `[code, message]` (weakness W20). Messages longer than 128 bytes are cut.
    pub fn error(&mut self, to: &ReplyTo, code: i64, message: &[u8]) -> Result<(), CommandError> {
        self.check_open()?;
        if !self.rpc.push_error(
            to.addr,
            &to.t,
            code,
            super::rpc::ErrorText::copy(message),
            &self.config,
            &mut self.stats,
        ) {
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
    /// candidate's address can never be a node, the diversity rules
    /// ([`Config::restrict_routing_ips`](crate::Config::restrict_routing_ips)) refuse it, or
    /// the endpoint is closed.
    pub fn swap(&mut self, now: Instant, dead: &NodeId, candidate: NodeInfo) -> bool {
        let now = self.advance(now);
        // As in `insert_node`: an address that can never be a node never enters a table,
        // which lookups and refreshes would then query.
        if self.closed || is_never_valid(&candidate.addr) {
            return false;
        }
        // The candidate was admitted when the bucket refused it; the table may have changed
        // since (`diversity_admits_replacing`).
        if !self.diversity_admits_replacing(&candidate, Some(dead)) {
            self.stats.diversity_refused += 1;
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

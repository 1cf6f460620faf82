//! [`Endpoint`]: the one `&mut` entry point to all KRPC state of one UDP socket.
//!
//! The endpoint only orchestrates. Its state lives in typed parts, each in its own file with
//! private fields, and data flows one way: an input enters here, goes to the part that owns
//! it, and what the parts decide comes back as datagrams (the RPC part's outbound queue),
//! events (the event queue) and deadlines (the timer table).
//!
//! | file | part | owns |
//! |---|---|---|
//! | `rpc.rs` | [`Rpc`](rpc::Rpc) | queries in flight, slots, waiting queues, admission, the outbound queue |
//! | `ops.rs` | [`Operations`](ops::Operations) | `query`, `query_all`, lookups, announce, BEP 44 get/put (state in `items.rs`), BEP 51 crawls (state in `crawl.rs`) |
//! | `tables.rs` | [`Tables`](tables::Tables) | the two BEP 32 routing tables |
//! | `node_layer.rs` | [`NodeLayer`](node_layer::NodeLayer) | tokens, peer store, BEP 42 votes |
//! | `upkeep.rs` | [`SwapChecks`](upkeep::SwapChecks), [`AddressChecks`](upkeep::AddressChecks) | ping/swap checks of full buckets; claims on known ids; refresh |
//! | `events.rs` | [`Events`](events::Events) | the capped event queue |
//! | `state.rs` | — | saving and restoring the id and the tables' nodes |
//! | `status.rs` | — | the operator's snapshot: id, external address, reachability, table sizes, DHT size estimate |
//! | `reachability.rs` | [`Tracker`](reachability::Tracker) | addresses we sent to, unsolicited queries, the probes of adaptive mode |
//! | `timer.rs` | [`TimerTable`](timer::TimerTable) | one deadline per kind of timer |
//!
//! The orchestration is spread by direction: `inbound.rs` (the one datagram path),
//! `commands.rs` (the application's commands), `outbound.rs` (dispatch into free slots and
//! encoding in `poll_transmit`), `results.rs` (how a query's result reaches its operation),
//! `upkeep.rs` (timeouts, refresh, ping/swap).

mod commands;
mod crawl;
mod events;
mod inbound;
mod items;
mod node_layer;
mod ops;
mod outbound;
pub mod reachability;
mod results;
mod rpc;
mod state;
mod status;

pub use self::crawl::{CrawlConfig, CrawlStats, MAX_CRAWL_INTERVAL, MAX_SAMPLES_PER_REPLY, MIN_CRAWL_INTERVAL};
pub use self::reachability::Reachability;
pub use self::state::{MAX_SAVED_NODES, STATE_VERSION, SavedState, StateError};
pub use self::status::{NodeStatus, estimate_dht_size};
mod tables;
mod timer;
mod upkeep;

use alloc::boxed::Box;
use core::net::SocketAddr;
use core::time::Duration;

use crate::rng::EngineRng;
use rand_core::Rng;

use crate::address::AddressPolicy;
use crate::config::{Config, ConfigError};
use crate::event::Event;
use crate::routing::RoutingTable;
use crate::stats::Stats;
use crate::transaction::TxRef;
use crate::wire::Decoder;
use crate::{Instant, NodeId};

use self::events::Events;
use self::node_layer::NodeLayer;
use self::ops::Operations;
use self::rpc::Rpc;
use self::tables::Tables;
use self::timer::{Timer, TimerTable};
use self::upkeep::{AddressChecks, SwapChecks};

/// How often the engine looks for stale buckets and an empty routing table.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// A datagram for the driver to send: `len` bytes at the start of the buffer given to
/// [`Endpoint::poll_transmit`], to `destination`.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the buffer to send.
    pub len: usize,
    pub(crate) tx: Option<TxRef>,
}

/// Why a command was refused. Refusals are immediate; nothing is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The endpoint was closed.
    Closed,
    /// `query_all` with no nodes ("No nodes to query").
    NoNodes,
    /// Too many queries already wait for a concurrency slot (`max_queued_queries`).
    QueueFull,
    /// Too many lookups already run (`max_lookups`).
    TooManyLookups,
    /// Too many outbound datagrams already wait (`max_queued_transmits`).
    TransmitQueueFull,
    /// The address can never be a DHT node (port 0, unspecified, broadcast, multicast).
    InvalidAddress,
    /// The target's length is not the configured id length.
    WrongIdLength,
    /// No operation with this id is running.
    UnknownOperation,
    /// A BEP 44 item the nodes would refuse (value too big or not canonical bencode, salt
    /// too long, negative `seq`, a signature that does not verify).
    InvalidItem(crate::dht::ItemError),
    /// A command's configuration is unusable (a [`CrawlConfig`] with a zero `rate`,
    /// `concurrency`, `max_nodes` or `max_info_hashes`).
    InvalidConfig,
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CommandError::Closed => "endpoint is closed",
            CommandError::NoNodes => "No nodes to query",
            CommandError::QueueFull => "too many queries waiting",
            CommandError::TooManyLookups => "too many lookups running",
            CommandError::TransmitQueueFull => "too many datagrams waiting to be sent",
            CommandError::InvalidAddress => "address can never be a DHT node",
            CommandError::WrongIdLength => "id length differs from the configured one",
            CommandError::UnknownOperation => "no such operation",
            CommandError::InvalidItem(_) => "invalid BEP 44 item",
            CommandError::InvalidConfig => "invalid command configuration",
        })
    }
}

impl core::error::Error for CommandError {}

/// All KRPC protocol state for one UDP socket: routing table, queries in flight, lookups.
/// It performs no I/O and never reads a clock.
///
/// # Run loop
/// The driver owns a socket and a clock and repeats:
/// 1. feed inputs: [`handle_datagram`](Self::handle_datagram) for each received datagram,
///    [`handle_timeout`](Self::handle_timeout) when the deadline from `poll_timeout` passes;
/// 2. issue commands ([`query`](Self::query), [`closest`](Self::closest), ...) as the
///    application asks;
/// 3. drain outputs, **after every input or command**: [`poll_transmit`](Self::poll_transmit)
///    until `None` (send each datagram), [`poll_event`](Self::poll_event) until `None`, then
///    [`poll_timeout`](Self::poll_timeout) for the next deadline.
///
/// Four kinds of methods: inputs (`handle_*`), commands (return an [`OpId`](crate::OpId) or a refusal;
/// their results arrive as [`Event`]s), outputs (`poll_*`), getters. Time passed in `now`
/// never goes backwards inside the engine: an earlier `now` is treated as the latest seen.
///
/// # Limits
/// Every queue and table is capped by [`Config`]: queries waiting for a slot
/// (`max_queued_queries`), lookups (`max_lookups`), candidates per lookup
/// (`max_lookup_candidates`), outbound datagrams (`max_queued_transmits`), events
/// (`max_queued_events`), queries in flight (`concurrency` plus a few internal pings), the
/// routing table (`k` per bucket, one bucket per id bit), the sources tracked by the rate
/// limiter ([`RateLimit::sources`](crate::RateLimit::sources)).
///
/// # Example
/// Two endpoints wired together in memory: a pings b.
/// ```
/// use core::net::SocketAddr;
/// use krpc_core::{Config, Endpoint, Event, Instant, Peer, Query};
///
/// let addrs: [SocketAddr; 2] = ["127.0.0.1:1001".parse().unwrap(), "127.0.0.1:1002".parse().unwrap()];
/// let now = Instant::ZERO;
/// let mut nodes = [
///     Endpoint::new(Config::default(), [1; 32], now).unwrap(),
///     Endpoint::new(Config::default(), [2; 32], now).unwrap(),
/// ];
/// let op = nodes[0].query(now, Peer::addr(addrs[1]), Query::ping()).unwrap();
///
/// // The run loop of a (very small) network: deliver every datagram until all are quiet.
/// let mut buf = [0u8; 1500];
/// let mut events = Vec::new();
/// loop {
///     let mut moved = false;
///     for i in 0..2 {
///         while let Some(t) = nodes[i].poll_transmit(now, &mut buf) {
///             let to = addrs.iter().position(|a| *a == t.destination).unwrap();
///             nodes[to].handle_datagram(now, addrs[i], &buf[..t.len]);
///             moved = true;
///         }
///         while let Some(e) = nodes[i].poll_event() {
///             events.push((i, e));
///         }
///     }
///     if !moved {
///         break;
///     }
/// }
/// let b_id = *nodes[1].id();
/// assert!(events.iter().any(|(i, e)| *i == 0
///     && matches!(e, Event::QueryDone { op: o, result: Ok(reply) } if *o == op && reply.id() == Some(b_id))));
/// // b answered, so a knows it; b verified a with a ping of its own, so b knows a.
/// assert!(nodes[0].routing_table().contains(&b_id));
/// assert!(nodes[1].routing_table().contains(nodes[0].id()));
/// ```
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    policy: AddressPolicy,
    id: NodeId,
    rng: EngineRng,
    now: Instant,
    closed: bool,
    timers: TimerTable,
    rpc: Rpc,
    ops: Operations,
    tables: Tables,
    /// The BEP 5 node layer, when [`Config::dht`] is set.
    node: Option<Box<NodeLayer>>,
    /// BEP 43 read-only right now: `Config::read_only`, or adaptive mode before the node
    /// saw that it is reachable.
    read_only: bool,
    /// Something answers the node-layer queries (see [`Endpoint::set_serving`]); if not, our
    /// queries carry `ro=1`.
    serving: bool,
    /// Reachability, with the node layer.
    /// Boxed: it holds the probe's list of nodes (about 1.4 KB), which an engine without the
    /// node layer should not carry in its struct.
    reach: Option<Box<reachability::Tracker>>,
    swap_checks: SwapChecks,
    address_checks: AddressChecks,
    events: Events,
    stats: Stats,
}

impl Endpoint {
    /// Creates an endpoint. All randomness (our id if none is configured, transaction ids,
    /// refresh targets) comes from `seed`: the same seed and inputs give the same outputs.
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Result<Endpoint, ConfigError> {
        Self::with_rng(config, EngineRng::from_seed(seed), now)
    }

    /// Creates an endpoint seeded from another RNG (say, the operating system's).
    pub fn from_rng<R: Rng + ?Sized>(config: Config, rng: &mut R, now: Instant) -> Result<Endpoint, ConfigError> {
        Self::with_rng(config, EngineRng::from_rng(rng), now)
    }

    fn with_rng(mut config: Config, mut rng: EngineRng, now: Instant) -> Result<Endpoint, ConfigError> {
        config.validate()?;
        // The list lives as long as the engine (it bootstraps again if its tables empty), and a
        // list pushed one address at a time holds room for four: a simulator of a million
        // engines pays for that slack a million times.
        config.bootstrap.shrink_to_fit();
        let id = match config.id {
            Some(id) => id,
            None => NodeId::random(config.id_len, &mut rng).map_err(|_| ConfigError::IdLength)?,
        };
        let policy = crate::address::effective_policy(config.address_policy, &config.bootstrap);
        let node = config.dht.as_deref().map(|d| NodeLayer::new(d.clone(), &mut rng, now));
        let rpc = Rpc::new(&config, &mut rng, now);
        let read_only = config.read_only || (config.adaptive_read_only && node.is_some());
        let reach = node.is_some().then(|| Box::new(reachability::Tracker::new(&rng, now, !read_only)));
        let mut timers = TimerTable::default();
        timers.set(Timer::Maintenance, Some(now + MAINTENANCE_INTERVAL));
        timers.set(Timer::NodeLayer, node.as_ref().map(|n| n.next_deadline()));
        Ok(Endpoint {
            policy,
            id,
            rng,
            now,
            closed: false,
            timers,
            rpc,
            ops: Operations::new(),
            tables: Tables::new(id, config.k, config.wide_buckets, now),
            node,
            read_only,
            serving: true,
            reach,
            swap_checks: SwapChecks::default(),
            address_checks: AddressChecks::default(),
            events: Events::default(),
            stats: Stats::default(),
            config,
        })
    }

    /// Our node id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Whether we are BEP 43 read-only right now (`ro=1` in our queries, no answers):
    /// [`Config::read_only`], or adaptive mode before the node saw that it is reachable.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Says whether this node answers the DHT's node-layer queries (`find_node`, `get_peers`,
    /// `announce_peer`, ...). With the node layer the engine does; without it (k-rpc parity)
    /// the engine answers pings and hands every other query to the application, which may or
    /// may not answer. A node that does not must say so: its queries then carry `ro=1`
    /// (BEP 43), so that others keep it out of their routing tables instead of routing
    /// lookups into silence. Pings are still answered. Default: serving. The drivers call
    /// this as an application starts and stops taking queries.
    ///
    /// ```
    /// use krpc_core::{Config, Endpoint, Instant};
    /// let mut ep = Endpoint::new(Config::default(), [7; 32], Instant::ZERO).unwrap();
    /// assert!(ep.is_serving());
    /// ep.set_serving(false); // nobody answers find_node or get_peers: our queries carry ro=1
    /// assert!(!ep.is_serving() && !ep.is_read_only());
    /// ```
    pub fn set_serving(&mut self, serving: bool) {
        self.serving = serving;
    }

    /// Whether this node answers the node-layer queries (see [`set_serving`](Self::set_serving)).
    pub fn is_serving(&self) -> bool {
        self.serving
    }

    /// Whether nodes we never contacted reach us (see [`reachability`]); `Unknown` without
    /// the node layer.
    pub fn reachability(&self) -> Reachability {
        self.reach.as_ref().map_or(Reachability::Unknown, |r| r.state(self.now))
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routing table of IPv4 nodes (read-only; change it with
    /// [`add_node`](Self::add_node), [`remove_node`](Self::remove_node) and
    /// [`swap`](Self::swap)). Nodes at IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a
    /// dual-stack socket reports) are IPv4 nodes.
    pub fn routing_table(&self) -> &RoutingTable {
        self.tables.v4()
    }

    /// The routing table of IPv6 nodes. BEP 32 keeps one table per address family; both use
    /// our one node id. It stays empty unless IPv6 nodes answer us.
    pub fn routing_table6(&self) -> &RoutingTable {
        self.tables.v6()
    }

    /// Both routing tables, IPv4 first.
    pub fn routing_tables(&self) -> [&RoutingTable; 2] {
        [self.tables.v4(), self.tables.v6()]
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Sources the rate limiter tracks right now (at most
    /// [`RateLimit::sources`](crate::RateLimit::sources)).
    pub fn tracked_sources(&self) -> usize {
        self.rpc.tracked_sources()
    }

    /// Our queries in flight.
    pub fn in_flight(&self) -> usize {
        self.rpc.in_flight()
    }

    /// Commands still running (queries, query_all, lookups).
    pub fn operations(&self) -> usize {
        self.ops.len()
    }

    /// True after [`close`](Self::close).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The decoder this endpoint uses (for drivers and tools that decode the same way). It is
    /// built from the configuration on each call (a copy of a few integers) rather than kept.
    pub fn decoder(&self) -> Decoder {
        Decoder::new().with_id_len(self.config.id_len).with_max_len(self.config.max_datagram_len)
    }

    /// Approximate heap bytes held by this endpoint's own structures (routing table
    /// included), for memory accounting in simulations.
    pub fn memory_footprint(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.tables.memory_footprint()
            + self.rpc.memory_footprint()
            + self.events.memory_footprint()
            + self.ops.memory_footprint()
            + self.node.as_ref().map_or(0, |n| n.memory_footprint())
            + self.reach.as_ref().map_or(0, |r| r.memory_footprint())
            + self.swap_checks.memory_footprint()
            + self.address_checks.memory_footprint()
            + self.config_heap_bytes()
    }

    /// What the configuration holds on the heap: the bootstrap list and the boxed node-layer
    /// settings.
    fn config_heap_bytes(&self) -> usize {
        self.config.bootstrap.capacity() * core::mem::size_of::<SocketAddr>()
            + self.config.dht.as_ref().map_or(0, |_| core::mem::size_of::<crate::dht::DhtConfig>())
    }

    /// [`memory_footprint`](Self::memory_footprint) split by part, for finding where the bytes
    /// of a large simulation go: `(part, bytes)` pairs in a fixed order.
    #[doc(hidden)]
    pub fn memory_parts(&self) -> [(&'static str, usize); 11] {
        [
            ("endpoint_struct", core::mem::size_of::<Self>()),
            ("tables", self.tables.memory_footprint()),
            ("rpc_txs", self.rpc.txs_bytes()),
            ("rpc_queues", self.rpc.queue_bytes()),
            ("rate_limiter", self.rpc.limiter_bytes()),
            ("events", self.events.memory_footprint()),
            ("ops", self.ops.memory_footprint()),
            ("node_layer", self.node.as_ref().map_or(0, |n| n.memory_footprint())),
            ("reachability", self.reach.as_ref().map_or(0, |r| r.memory_footprint())),
            ("upkeep_checks", self.swap_checks.memory_footprint() + self.address_checks.memory_footprint()),
            ("config", self.config_heap_bytes()),
        ]
    }

    /// The next event, oldest first.
    ///
    /// Call this after every input and command until it returns `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the earliest query
    /// deadline or maintenance tick. While datagrams or events are waiting it returns the
    /// latest `now` seen (never earlier), so a driver cannot sleep on pending work; `None`
    /// once closed and drained.
    ///
    /// Call this after: `handle_datagram`, `handle_timeout`, any command, and after draining
    /// `poll_transmit` and `poll_event`.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.rpc.has_outbound() || !self.events.is_empty() {
            return Some(self.now);
        }
        if self.closed {
            return None;
        }
        self.rearm();
        Some(self.timers.next()?.max(self.now))
    }

    /// Files each part's earliest deadline in the timer table. The maintenance timer is set
    /// where it fires (`upkeep.rs`); the others follow state that changes on every input and
    /// every datagram sent, so they are read here, where the table is read.
    fn rearm(&mut self) {
        self.timers.set(Timer::QueryTimeout, self.rpc.next_query_deadline());
        self.timers.set(Timer::SoftTimeout, self.rpc.next_soft_deadline());
        self.timers.set(Timer::NodeLayer, self.node.as_ref().map(|n| n.next_deadline()));
        let slots_free = self.rpc.app_in_flight() < self.config.concurrency;
        self.timers.set(Timer::Crawl, self.ops.crawls().filter_map(|c| c.deadline(slots_free)).min());
    }

    /// Time does not go backwards inside the engine.
    fn advance(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    /// The end of every input and command: queued work goes into free slots, from this one
    /// place.
    fn finish_input(&mut self) {
        self.dispatch();
    }

    fn push_event(&mut self, event: Event) {
        self.events.push(event, self.config.max_queued_events, &mut self.stats);
    }
}

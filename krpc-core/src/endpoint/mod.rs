//! [`Endpoint`]: the one `&mut` entry point to all KRPC state of one UDP socket.

mod commands;
mod dispatch;
mod inbound;
mod maintenance;
mod server;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::net::SocketAddr;
use core::time::Duration;

use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

use crate::config::{AddressPolicy, Config, ConfigError};
pub(crate) use crate::event::MAX_TRANSACTION_ID_LEN;
use crate::event::{Event, OpId};
use crate::lookup::Lookup;
use crate::query::{Peer, Query};
use crate::rate_limit::{ReplyBudget, SourceLimiter};
use crate::routing::RoutingTable;
use crate::stats::Stats;
use crate::transaction::{Transactions, TxRef};
use crate::wire::{Decoder, Dictionary};
use crate::{Instant, NodeId, NodeInfo};

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
        })
    }
}

impl core::error::Error for CommandError {}

/// A datagram waiting for `poll_transmit`.
#[derive(Debug)]
pub(crate) enum Outbound {
    Query(TxRef),
    Pong {
        to: SocketAddr,
        t: ArrayVec<u8, MAX_TRANSACTION_ID_LEN>,
    },
    Response {
        to: SocketAddr,
        t: ArrayVec<u8, MAX_TRANSACTION_ID_LEN>,
        values: Dictionary,
        nodes: Vec<NodeInfo>,
    },
    Error {
        to: SocketAddr,
        t: ArrayVec<u8, MAX_TRANSACTION_ID_LEN>,
        code: i64,
        message: ArrayVec<u8, 128>,
    },
    /// Node layer: a `find_node` answer, encoded from the table when it leaves.
    FindNode {
        to: SocketAddr,
        t: ArrayVec<u8, MAX_TRANSACTION_ID_LEN>,
        target: NodeId,
        want: crate::wire::Want,
    },
    /// Node layer: a `get_peers` answer, encoded from the table and peer store when it leaves.
    GetPeers {
        to: SocketAddr,
        t: ArrayVec<u8, MAX_TRANSACTION_ID_LEN>,
        info_hash: NodeId,
        want: crate::wire::Want,
        noseed: bool,
        scrape: bool,
    },
}

/// A running command.
#[derive(Debug)]
pub(crate) enum Op {
    Query { query: Query },
    QueryAll { query: Query, outstanding: usize, hits: usize, error_3xx: Option<crate::QueryError>, stopped: bool },
    Lookup(alloc::boxed::Box<Lookup>),
}

/// A ping the engine sends for its own bookkeeping.
#[derive(Clone, Debug)]
pub(crate) struct InternalPing {
    pub(crate) addr: SocketAddr,
    pub(crate) expect: Option<NodeId>,
    pub(crate) purpose: crate::transaction::Purpose,
}

/// A full bucket's pending ping/swap: `candidate` waits while `checking` is pinged.
#[derive(Clone, Debug)]
pub(crate) struct SwapCheck {
    pub(crate) bucket: usize,
    pub(crate) candidate: NodeInfo,
    pub(crate) checking: Option<NodeId>,
}

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
/// Four kinds of methods: inputs (`handle_*`), commands (return an [`OpId`] or a refusal;
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
    pub(crate) config: Config,
    pub(crate) policy: AddressPolicy,
    pub(crate) decoder: Decoder,
    pub(crate) id: NodeId,
    pub(crate) rng: ChaCha12Rng,
    /// BEP 5's table: IPv4 contacts (IPv4-mapped IPv6 addresses included).
    pub(crate) table: RoutingTable,
    /// BEP 32: "a separate routing table" for IPv6 contacts, so that neither family's nodes
    /// crowd the other's out of a bucket.
    pub(crate) table6: RoutingTable,
    pub(crate) now: Instant,
    pub(crate) closed: bool,
    pub(crate) next_op: u64,
    pub(crate) ops: BTreeMap<OpId, Op>,
    /// Lookups in start order; foreground before background is decided at dispatch.
    pub(crate) lookup_order: Vec<OpId>,
    pub(crate) txs: Transactions,
    pub(crate) waiting: VecDeque<(OpId, Peer)>,
    pub(crate) internal: VecDeque<InternalPing>,
    pub(crate) swap_checks: Vec<SwapCheck>,
    pub(crate) transmits: VecDeque<Outbound>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    /// Soft deadlines of lookup queries (`lookup_soft_timeout`), earliest first (kept sorted
    /// on insertion: adaptive soft timeouts differ); entries of answered queries are skipped.
    pub(crate) soft_deadlines: VecDeque<(Instant, TxRef)>,
    /// Round trips of our queries, for the adaptive soft timeout.
    pub(crate) rtt: crate::lookup::RttEstimator,
    pub(crate) next_maintenance: Instant,
    /// Kept so that answering a ping never allocates.
    pub(crate) empty_dict: Dictionary,
    pub(crate) ping_query: Query,
    /// The BEP 5 node layer, when [`Config::dht`] is set.
    pub(crate) dht: Option<alloc::boxed::Box<server::DhtState>>,
    /// Lookups and `query_all`s that belong to node-layer operations.
    pub(crate) dht_ops: BTreeMap<OpId, server::DhtOp>,
    /// The running `bootstrap` lookup, whose end refreshes the buckets it left thin.
    pub(crate) joining: Option<OpId>,
    /// Per-source limit on unsolicited queries.
    pub(crate) limiter: SourceLimiter,
    /// Global budget for the bytes of our answers.
    pub(crate) budget: ReplyBudget,
}

/// Whether `addr` is an IPv6 node (not an IPv4-mapped one).
pub(crate) fn is_v6(addr: &SocketAddr) -> bool {
    crate::wire::canonical_ip(addr.ip()).is_ipv6()
}

/// Cap on internal pings waiting for a slot (verifications and ping/swap checks).
pub(crate) const MAX_INTERNAL_PINGS: usize = 64;

impl Endpoint {
    /// Creates an endpoint. All randomness (our id if none is configured, transaction ids,
    /// refresh targets) comes from `seed`: the same seed and inputs give the same outputs.
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Result<Endpoint, ConfigError> {
        Self::with_rng(config, ChaCha12Rng::from_seed(seed), now)
    }

    /// Creates an endpoint seeded from another RNG (say, the operating system's).
    pub fn from_rng<R: Rng + ?Sized>(config: Config, rng: &mut R, now: Instant) -> Result<Endpoint, ConfigError> {
        Self::with_rng(config, ChaCha12Rng::from_rng(rng), now)
    }

    fn with_rng(config: Config, mut rng: ChaCha12Rng, now: Instant) -> Result<Endpoint, ConfigError> {
        config.validate()?;
        let id = match config.id {
            Some(id) => id,
            None => NodeId::random(config.id_len, &mut rng).map_err(|_| ConfigError::IdLength)?,
        };
        let decoder = Decoder::new().with_id_len(config.id_len).with_max_len(config.max_datagram_len);
        let policy = crate::address::effective_policy(config.address_policy, &config.bootstrap);
        let dht = config.dht.clone().map(|d| server::DhtState::new(d, &mut rng, now));
        let limiter = SourceLimiter::new(config.rate_limit, &mut rng);
        let budget = ReplyBudget::new(config.rate_limit.reply_bytes_per_sec, now);
        let mut table = RoutingTable::new(id, config.k);
        for bucket in 0..table.bucket_count() {
            table.mark_bucket_refreshed(bucket, now);
        }
        let table6 = table.clone();
        Ok(Endpoint {
            policy,
            decoder,
            id,
            rng,
            table,
            table6,
            now,
            closed: false,
            next_op: 1,
            ops: BTreeMap::new(),
            lookup_order: Vec::new(),
            txs: Transactions::default(),
            waiting: VecDeque::new(),
            internal: VecDeque::new(),
            swap_checks: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            soft_deadlines: VecDeque::new(),
            rtt: crate::lookup::RttEstimator::default(),
            next_maintenance: now + MAINTENANCE_INTERVAL,
            empty_dict: Dictionary::new(),
            ping_query: Query::ping(),
            dht,
            dht_ops: BTreeMap::new(),
            joining: None,
            limiter,
            budget,
            config,
        })
    }

    /// Our node id.
    pub fn id(&self) -> &NodeId {
        &self.id
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
        &self.table
    }

    /// The routing table of IPv6 nodes. BEP 32 keeps one table per address family; both use
    /// our one node id. It stays empty unless IPv6 nodes answer us.
    pub fn routing_table6(&self) -> &RoutingTable {
        &self.table6
    }

    /// Both routing tables, IPv4 first.
    pub fn routing_tables(&self) -> [&RoutingTable; 2] {
        [&self.table, &self.table6]
    }

    /// The table a node at `addr` belongs in.
    pub(crate) fn table_of(&self, addr: &SocketAddr) -> &RoutingTable {
        if is_v6(addr) { &self.table6 } else { &self.table }
    }

    pub(crate) fn table_of_mut(&mut self, addr: &SocketAddr) -> &mut RoutingTable {
        if is_v6(addr) { &mut self.table6 } else { &mut self.table }
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Sources the rate limiter tracks right now (at most
    /// [`RateLimit::sources`](crate::RateLimit::sources)).
    pub fn tracked_sources(&self) -> usize {
        self.limiter.tracked()
    }

    /// Our queries in flight.
    pub fn in_flight(&self) -> usize {
        self.txs.len()
    }

    /// Commands still running (queries, query_all, lookups).
    pub fn operations(&self) -> usize {
        self.ops.len()
    }

    /// True after [`close`](Self::close).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The decoder this endpoint uses (for drivers and tools that decode the same way).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Approximate heap bytes held by this endpoint's own structures (routing table
    /// included), for memory accounting in simulations.
    pub fn memory_footprint(&self) -> usize {
        core::mem::size_of::<Self>()
            + (self.table.bucket_count() + self.table6.bucket_count())
                * self.config.k
                * core::mem::size_of::<crate::routing::Contact>()
            + self.txs.capacity_bytes()
            + self.transmits.capacity() * core::mem::size_of::<Outbound>()
            + self.events.capacity() * core::mem::size_of::<Event>()
            + self.waiting.capacity() * core::mem::size_of::<(OpId, Peer)>()
            + self.internal.capacity() * core::mem::size_of::<InternalPing>()
            + self.soft_deadlines.capacity() * core::mem::size_of::<(Instant, TxRef)>()
            + self.lookup_order.capacity() * 8
            + self.ops.len() * (core::mem::size_of::<Op>() + 32)
            + self.limiter.capacity_bytes()
    }

    /// The next event, oldest first.
    ///
    /// Call this after every input and command until it returns `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
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
        if !self.transmits.is_empty() || !self.events.is_empty() {
            return Some(self.now);
        }
        if self.closed {
            return None;
        }
        let mut next = match self.txs.next_deadline() {
            Some(d) => d.min(self.next_maintenance),
            None => self.next_maintenance,
        };
        if let Some(rotation) = self.dht_next_deadline() {
            next = next.min(rotation);
        }
        if let Some(soft) = self.next_soft_deadline() {
            next = next.min(soft);
        }
        Some(next.max(self.now))
    }

    /// The earliest soft deadline of a lookup query still in flight.
    fn next_soft_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, r)) = self.soft_deadlines.front() {
            if self.txs.get(r).is_some() {
                return Some(deadline);
            }
            self.soft_deadlines.pop_front();
        }
        None
    }

    pub(crate) fn advance(&mut self, now: Instant) -> Instant {
        // Time does not go backwards inside the engine.
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    pub(crate) fn new_op(&mut self) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        id
    }

    pub(crate) fn push_event(&mut self, event: Event) {
        // Results of operations (bounded by the operation caps) are never dropped; when the
        // queue is full, notices (routing changes, replies, incoming queries) go, oldest first.
        let droppable = |e: &Event| {
            !matches!(
                e,
                Event::QueryDone { .. }
                    | Event::QueryAllDone { .. }
                    | Event::LookupDone { .. }
                    | Event::AnnounceDone { .. }
                    | Event::IdChanged { .. }
            )
        };
        if self.events.len() >= self.config.max_queued_events {
            if let Some(i) = self.events.iter().position(droppable) {
                self.events.remove(i);
                self.stats.events_dropped += 1;
            } else if droppable(&event) {
                self.stats.events_dropped += 1;
                return;
            }
        }
        self.events.push_back(event);
    }
}

//! Every knob of the engine, with k-rpc's defaults and names, validated at construction.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;

// `AddressPolicy` lives in `address` (which filters by it), so the dependency runs one way:
// address <- rate_limit <- config.
use crate::address::AddressPolicy;
use crate::dht::DhtConfig;
use crate::rate_limit::RateLimit;
use crate::routing::{MAX_K, MAX_WIDE_BUCKETS};
use crate::{MAX_ID_LEN, NodeId};

/// Configuration of an [`Endpoint`](crate::Endpoint).
///
/// Field names follow k-rpc's options where one exists. Build with struct update syntax:
///
/// ```
/// use krpc_core::Config;
/// let config = Config { k: 8, concurrency: 4, ..Config::default() };
/// assert!(config.validate().is_ok());
/// assert_eq!(config.background_concurrency(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our node id; `None` draws a random one of `id_len` bytes from the seeded RNG
    /// (k-rpc `id`/`nodeId`, default random).
    pub id: Option<NodeId>,
    /// Length of every node id, `target` and `info_hash`, in bytes (k-rpc `idLength`, 20).
    /// Incoming ids of another length are refused; `id`, when given, must have this length.
    pub id_len: usize,
    /// Bucket size of the routing table and breadth of a lookup (k-rpc `k`, 20; BEP 5 uses 8).
    pub k: usize,
    /// How many of our queries may be in flight at once, all kinds together (k-rpc
    /// `concurrency`, 16).
    pub concurrency: usize,
    /// How many queries one lookup keeps in flight (its α). `None`: `concurrency`, as k-rpc.
    pub lookup_parallelism: Option<usize>,
    /// How many more times a lookup asks a candidate whose query timed out before giving up on
    /// it. BEP 5's KRPC never resends and k-rpc asks each node once, but with datagram loss a
    /// live node whose query or answer was lost is then missing from the result for good
    /// (jech/dht resends too). Remote errors and wrong ids are never retried.
    pub lookup_retries: u8,
    /// libtorrent's "short timeout": after this long without an answer, a lookup query stops
    /// counting against α, so a silent candidate no longer holds up the lookup, but the query
    /// stays open and a late answer is still used until `timeout`. `None` disables it; a value
    /// of `timeout` or more never fires.
    pub lookup_soft_timeout: Option<Duration>,
    /// Shorten the soft timeout to what the network needs: the 90th percentile of the round
    /// trips of about the last hundred answers (twice the slowest of the first few before 8
    /// were timed), never below 250 ms nor above `lookup_soft_timeout`. On a fast network a
    /// silent candidate then frees its slot (and is retried) in a few hundred milliseconds
    /// instead of a second; on a slow one nothing changes. A percentile and not TCP's
    /// `srtt + 4·rttvar` (RFC 6298, used before): a node's peers are all over the world, and
    /// that spread put `srtt + 4·rttvar` at the cap (`docs/simulation.md`, "A percentile soft
    /// timeout"). No effect without `lookup_soft_timeout`.
    pub lookup_adaptive_soft_timeout: bool,
    /// How long a query waits for its answer: exactly this, not 1–1.25× (k-rpc `timeout`,
    /// 2 s; weakness W9).
    pub timeout: Duration,
    /// Nodes to ask when the routing table cannot seed a lookup (k-rpc `bootstrap`). The core
    /// takes resolved addresses only; empty means none. Drivers resolve host names they are
    /// given; k-rpc's default routers are [`DEFAULT_BOOTSTRAP`], opt-in, so that nothing
    /// reaches the public DHT unless asked to.
    pub bootstrap: Vec<SocketAddr>,
    /// Which learned addresses lookups may query.
    pub address_policy: AddressPolicy,
    /// Answer `ping` queries inside the engine (no allocation, no event). On by default;
    /// switch off to see every ping as an [`Event::Query`](crate::Event::Query).
    pub answer_pings: bool,
    /// Run the ping/swap protocol inside the engine when a full bucket refuses a node. On by
    /// default; when off, [`Event::PingSwap`](crate::Event::PingSwap) leaves it to the
    /// application.
    pub auto_ping_swap: bool,
    /// Verify unknown queriers with a `ping` before they may enter the routing table
    /// (BEP 5's good-node rule; k-rpc inserted them unverified, weakness W16).
    pub verify_queriers: bool,
    /// BEP 43 read-only mode: `ro=1` in every query, incoming queries are not answered.
    ///
    /// The rule (issue 14): a node that does not answer the node-layer queries (`find_node`,
    /// `get_peers`, ...) must send `ro=1`, or others add it to their tables and route lookups
    /// into silence. With the node layer ([`dht`](Self::dht)) the engine answers them; without
    /// it (k-rpc parity, [`Config::default`]) the application is assumed to answer the
    /// [`Event::Query`](crate::Event::Query)s it gets, as bittorrent-dht does on top of k-rpc:
    /// an application that does not must set this.
    pub read_only: bool,
    /// Adaptive read-only mode (mainline's adaptive mode): start read-only (BEP 43) and become
    /// a full node once the node sees that it is reachable: an unsolicited query arrived (from
    /// an address we had not sent to for at least
    /// [`CONTACT_MEMORY`](crate::reachability::CONTACT_MEMORY)) and our external address is
    /// confirmed (BEP 42 vote). While read-only the node probes now and then; a full node that
    /// turns [`Firewalled`](crate::Reachability::Firewalled) goes back to read-only. Each switch
    /// is an [`Event::ModeChanged`](crate::Event::ModeChanged). See
    /// [`reachability`](crate::reachability). Needs the node layer ([`dht`](Self::dht)); no
    /// effect without it, nor when [`read_only`](Self::read_only) is set (always read-only).
    /// Off in [`Config::default`] and [`Config::dht`], on in [`Config::adaptive`].
    pub adaptive_read_only: bool,
    /// `v`, our client version, sent in every message (`None`: omitted).
    pub version: Option<[u8; 4]>,
    /// Put the querier's address in every response as `ip` (BEP 42).
    pub send_ip: bool,
    /// Buckets unchanged for this long are refreshed with a lookup of a random id in their
    /// range (BEP 5: 15 minutes).
    pub bucket_refresh: Duration,
    /// Decoder limit: the longest datagram accepted.
    pub max_datagram_len: usize,
    /// Cap: queries waiting for a concurrency slot (k-rpc's unbounded `pending`, W10).
    pub max_queued_queries: usize,
    /// Cap: lookups (`closest`, `populate`) running at once.
    pub max_lookups: usize,
    /// Cap: candidates one lookup remembers; the farthest are dropped first.
    pub max_lookup_candidates: usize,
    /// Cap: outbound datagrams waiting for `poll_transmit` (responses beyond it are dropped
    /// and counted).
    pub max_queued_transmits: usize,
    /// Cap: events waiting for `poll_event`; beyond it the oldest routing events are dropped
    /// and counted (results of operations are never dropped).
    pub max_queued_events: usize,
    /// The built-in BEP 5 node layer (`None`: k-rpc parity, every query but `ping` goes to
    /// the application). See [`Config::dht`].
    ///
    /// Boxed so that a configuration without the node layer, which every engine keeps, does
    /// not carry its 168 bytes: `Some(DhtConfig { .. }.into())` builds one.
    pub dht: Option<Box<DhtConfig>>,
    /// Limits on unsolicited queries per source and on the bytes we send in answer; on by
    /// default ([`RateLimit::OFF`] turns them off).
    pub rate_limit: RateLimit,
    /// Diversity of the routing tables, against Sybil and eclipse attacks (libtorrent's
    /// `dht_restrict_routing_ips`): one entry per IP address in a table, and one per IPv4 /24
    /// or IPv6 /64 in a bucket. On by default.
    pub restrict_routing_ips: bool,
    /// Diversity of lookups (libtorrent's `dht_restrict_search_ips`): one candidate per IPv4
    /// /24 or IPv6 /64 in a lookup, so that one subnet cannot fill the nodes asked or the
    /// result. On by default.
    pub restrict_search_ips: bool,
    /// Apply [`restrict_routing_ips`](Self::restrict_routing_ips) and
    /// [`restrict_search_ips`](Self::restrict_search_ips) to loopback and private addresses
    /// too. Off by default: test swarms and LANs put many nodes in one subnet.
    pub restrict_local_ips: bool,
    /// How many disjoint paths a lookup follows (S/Kademlia, Baumgart and Mies 2007), 1 to 4.
    /// The nodes of the routing table that seed a lookup are dealt to the paths in turn; a
    /// node named in an answer joins the path of the node that named it, unless a path
    /// already has it; each path ends by the Kademlia rule (its k nearest candidates have
    /// answered), and the lookup when all have. With attackers on many subnets, which the
    /// diversity rules cannot tell from honest nodes, a path that meets an attacker can be led
    /// astray, but the others still reach the honest nodes nearest the target. Each path
    /// costs about as many queries as a one-path lookup. Default 1.
    pub lookup_disjoint_paths: usize,
    /// Kademlia's final round: once the nearest candidate of a lookup has answered (so the
    /// answers so far named nothing nearer), the lookup asks the rest of its k nearest at once
    /// instead of α at a time. They are the nodes it would ask anyway, so this costs almost no
    /// queries and saves a round trip at the end (`docs/simulation.md`, "The final round").
    /// Default on.
    pub lookup_final_round: bool,
    /// The neighbourhood of a lookup's target, in multiples of the expected distance of its
    /// k-th nearest node: a candidate nearer than that is asked at once, without waiting for
    /// an α slot, as in the final round. The expected distance is k / N of the id space, with
    /// N the DHT's size estimated from how densely the nodes nearest our own id sit around it
    /// ([`NodeStatus::dht_size_estimate`](crate::NodeStatus::dht_size_estimate)), once the
    /// routing table holds the 8 nodes that estimate is fitted to (off before). Such
    /// candidates are almost all among the k nearest, which the lookup asks anyway, so this
    /// costs few queries and saves the round trips the α cap would add once the lookup is
    /// near its target (`docs/simulation.md`, "The neighbourhood"). A wrong estimate only
    /// moves the radius: too many nodes shrinks it (plain α), too few widens it (at most k in
    /// flight). 0 turns it off. Default 2.
    pub lookup_neighbourhood: u32,
    /// How many of the routing table's farthest buckets hold more than k: bucket `i` of the
    /// first `n` holds `k · 2^(n − i)` (at most 255), so 3 at k = 8 gives 64, 32 and 16 for
    /// the far half, quarter and eighth of the id space; libtorrent's extended routing table
    /// is 4 (128, 64, 32, 16). A lookup's first step starts from those buckets, and the more
    /// of them we hold the nearer its first answers start. The room beyond k fills only with
    /// nodes that answer our own queries: queriers are verified (`verify_queriers`) only
    /// into the first k places, so the widening sends no query of its own, and nothing is
    /// displaced to make room (`docs/simulation.md`, "Wide far buckets"). 0 turns it off; at
    /// most 4. Default 3.
    pub wide_buckets: u8,
}

/// Public routers of the BitTorrent DHT, as host names for a driver to resolve: nothing
/// contacts them unless they are passed on (e.g. to `Builder::bootstrap_hosts`).
///
/// `dht.libtorrent.org:25401` comes first: libtorrent and the Rust `mainline` crate use it.
/// Then k-rpc's three routers; `router.bittorrent.com` and `router.utorrent.com` were reported
/// offline in 2024. The list is long on purpose: a node needs one answer to join, and the
/// routers come and go (this list was not checked from the network it was written on).
pub const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "dht.libtorrent.org:25401",
    "router.bittorrent.com:6881",
    "router.utorrent.com:6881",
    "dht.transmissionbt.com:6881",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            id: None,
            id_len: 20,
            k: 20,
            concurrency: 16,
            lookup_parallelism: Some(4),
            lookup_retries: 1,
            lookup_soft_timeout: Some(Duration::from_secs(1)),
            lookup_adaptive_soft_timeout: true,
            timeout: Duration::from_secs(2),
            bootstrap: Vec::new(),
            address_policy: AddressPolicy::Auto,
            answer_pings: true,
            auto_ping_swap: true,
            verify_queriers: true,
            read_only: false,
            adaptive_read_only: false,
            version: Some(*b"KR\x00\x01"),
            send_ip: true,
            bucket_refresh: Duration::from_secs(15 * 60),
            max_datagram_len: 8192,
            max_queued_queries: 1024,
            max_lookups: 64,
            max_lookup_candidates: 256,
            max_queued_transmits: 1024,
            max_queued_events: 4096,
            dht: None,
            rate_limit: RateLimit::default(),
            restrict_routing_ips: true,
            restrict_search_ips: true,
            restrict_local_ips: false,
            lookup_disjoint_paths: 1,
            lookup_final_round: true,
            lookup_neighbourhood: 2,
            wide_buckets: 3,
        }
    }
}

/// Why a [`Config`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `id_len` is 0 or above [`MAX_ID_LEN`].
    IdLength,
    /// `id` does not have `id_len` bytes.
    IdDoesNotMatchLength,
    /// `k` is 0 or above the routing table's maximum bucket size.
    K,
    /// `concurrency` is 0.
    Concurrency,
    /// `lookup_parallelism` is 0.
    LookupParallelism,
    /// `timeout` or `lookup_soft_timeout` is zero.
    Timeout,
    /// A cap is zero, or `max_lookup_candidates` is below `k`.
    Cap(&'static str),
    /// A bootstrap address can never be a DHT node: port 0, or an unspecified, broadcast,
    /// multicast or `0.0.0.0/8` IP.
    BootstrapAddress,
    /// `lookup_disjoint_paths` is 0 or above 4.
    DisjointPaths,
    /// `wide_buckets` is above 4 ([`MAX_WIDE_BUCKETS`]).
    WideBuckets,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::IdLength => write!(f, "id_len must be 1..={MAX_ID_LEN}"),
            ConfigError::IdDoesNotMatchLength => f.write_str("id must have id_len bytes"),
            ConfigError::K => write!(f, "k must be 1..={MAX_K}"),
            ConfigError::Concurrency => f.write_str("concurrency must be at least 1"),
            ConfigError::LookupParallelism => f.write_str("lookup_parallelism must be at least 1"),
            ConfigError::Timeout => f.write_str("timeout and lookup_soft_timeout must be positive"),
            ConfigError::Cap(name) => write!(f, "{name} is too small"),
            ConfigError::BootstrapAddress => f.write_str("bootstrap addresses need a port and a unicast IP"),
            ConfigError::DisjointPaths => f.write_str("lookup_disjoint_paths must be 1..=4"),
            ConfigError::WideBuckets => write!(f, "wide_buckets must be 0..={MAX_WIDE_BUCKETS}"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl Config {
    /// A mainline DHT node: BEP 5's `k` = 8, lookups with α = 4, and the built-in node layer
    /// answering `find_node`, `get_peers` and `announce_peer`.
    ///
    /// ```
    /// let config = krpc_core::Config::dht();
    /// assert_eq!(config.k, 8);
    /// assert!(config.dht.is_some());
    /// ```
    pub fn dht() -> Config {
        Config { k: 8, lookup_parallelism: Some(4), dht: Some(Box::default()), ..Config::default() }
    }

    /// [`Config::dht`] in adaptive read-only mode ([`adaptive_read_only`](Self::adaptive_read_only)):
    /// the node starts read-only and becomes a full node once it sees that others can reach it.
    /// What a long-running node behind an unknown network should use (`krpc serve` does).
    ///
    /// ```
    /// let config = krpc_core::Config::adaptive();
    /// assert!(config.adaptive_read_only && !config.read_only && config.dht.is_some());
    /// ```
    pub fn adaptive() -> Config {
        Config { adaptive_read_only: true, ..Config::dht() }
    }

    /// k-rpc's `backgroundConcurrency`: `concurrency / 4`, but at least 1 (k-rpc lets it
    /// reach 0 below a concurrency of 4, which starves background lookups; W21).
    pub fn background_concurrency(&self) -> usize {
        (self.concurrency / 4).max(1)
    }

    /// The α of a lookup.
    pub fn lookup_alpha(&self) -> usize {
        self.lookup_parallelism.unwrap_or(self.concurrency).min(self.concurrency).max(1)
    }

    /// Checks every field; invalid values are errors, never silently replaced (k-rpc turned
    /// `concurrency: 0` into 16 and never checked the id length, W21).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id_len == 0 || self.id_len > MAX_ID_LEN {
            return Err(ConfigError::IdLength);
        }
        if self.id.is_some_and(|id| id.len() != self.id_len) {
            return Err(ConfigError::IdDoesNotMatchLength);
        }
        if self.k == 0 || self.k > MAX_K {
            return Err(ConfigError::K);
        }
        if self.concurrency == 0 {
            return Err(ConfigError::Concurrency);
        }
        if self.lookup_parallelism == Some(0) {
            return Err(ConfigError::LookupParallelism);
        }
        if self.timeout.is_zero() || self.lookup_soft_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Timeout);
        }
        for (name, v) in [
            ("max_datagram_len", self.max_datagram_len),
            ("max_queued_queries", self.max_queued_queries),
            ("max_lookups", self.max_lookups),
            ("max_queued_transmits", self.max_queued_transmits),
            ("max_queued_events", self.max_queued_events),
        ] {
            if v == 0 {
                return Err(ConfigError::Cap(name));
            }
        }
        if self.max_lookup_candidates < self.k {
            return Err(ConfigError::Cap("max_lookup_candidates"));
        }
        if self.lookup_disjoint_paths == 0 || self.lookup_disjoint_paths > crate::lookup::MAX_PATHS {
            return Err(ConfigError::DisjointPaths);
        }
        if self.wide_buckets > MAX_WIDE_BUCKETS {
            return Err(ConfigError::WideBuckets);
        }
        if let Some(d) = &self.dht {
            if d.reply_nodes == 0 || d.reply_nodes > MAX_K / 2 {
                return Err(ConfigError::Cap("dht.reply_nodes"));
            }
            if d.max_reply_len < 256 {
                return Err(ConfigError::Cap("dht.max_reply_len"));
            }
        }
        let limit = &self.rate_limit;
        if limit.queries > 0 && (limit.window.is_zero() || limit.sources == 0) {
            return Err(ConfigError::Cap("rate_limit"));
        }
        // Lookups query the bootstrap nodes as they are; the engine never sends a query to an
        // address that cannot be a node (a multicast one would reach a whole network).
        if self.bootstrap.iter().any(crate::address::is_never_valid) {
            return Err(ConfigError::BootstrapAddress);
        }
        Ok(())
    }
}

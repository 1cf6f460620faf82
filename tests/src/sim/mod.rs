//! A deterministic network of krpc engines: N [`Endpoint`]s on a virtual network with a
//! virtual clock, driven exactly as a real driver would drive them, plus an oracle that knows
//! the true closest nodes to any target.
//!
//! # Model
//! * **Time** is virtual: a step jumps to the next thing that happens — a datagram arriving,
//!   an engine deadline (`poll_timeout`) or a scripted action (a lookup starting, a node
//!   joining or leaving, a partition starting or healing). Deliveries and actions sit in
//!   priority queues; engine deadlines sit in a queue of `(deadline, node)` refreshed whenever
//!   a node is touched, with stale entries skipped when they surface, so a step costs
//!   O(log N) however many nodes there are. Deliveries and deadlines are calendar queues
//!   (`calendar.rs`: time buckets in front of a heap, the order of one heap).
//! * **Threads** ([`Scenario::threads`]): windows of the link's shortest delay may run their
//!   nodes on several threads, and their sends are replayed in single-thread order (see
//!   `parallel.rs`), so the trace is the same for any number of threads.
//! * **Randomness** comes from seeded ChaCha8 generators only, one stream per purpose (the
//!   population and its routing tables, the link, the workload), and each engine gets its own
//!   seed derived from the scenario's. Same scenario, same seed: the same datagrams at the same
//!   instants, which [`Sim::trace_hash`] fingerprints.
//! * **Addresses**: node `i` lives at 10/8 plus a bijective scramble of `i + 1`
//!   ([`attack::scramble24`]), port 6881, so mapping an address to a node is arithmetic and
//!   nodes spread over as many /24s as on the Internet; attackers have their own range
//!   (see [`attack`]). A run may put nodes on public-looking addresses and several nodes
//!   behind one IP on different ports ([`ips`]; then [`Sim::addr`] is the address).
//! * **The application** is a [`Responder`]: it answers `find_node` and
//!   `get_peers` from the routing table.
//!
//! # Use
//! ```no_run
//! use krpc_tests::sim::{Scenario, Sim, report::Summary};
//! let mut sim = Sim::new(Scenario { nodes: 2_000, ..Scenario::default() });
//! sim.build();
//! let records = sim.run_lookups(200, 20.0);
//! let summary = Summary::of(&records);
//! assert!(summary.success_rate > 0.99);
//! ```

pub mod answer;
pub mod attack;
mod calendar;
pub mod census;
pub mod crawl;
pub mod ips;
pub mod link;
pub mod nat;
pub mod oracle;
pub mod overlap;
mod parallel;
mod prefetch;
pub mod profile;
pub mod report;
pub mod spread;
pub mod svg;
mod trace;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use krpc_core::wire::Message;
use krpc_core::{
    AddressPolicy, Config, Endpoint, Event, IncomingQuery, Instant, LookupNode, LookupOutcome, NodeId, NodeInfo, OpId,
    Query,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use self::answer::Responder;
use self::calendar::{Calendar, Timed};
use self::link::{Link, below, chance, exponential};
use self::oracle::Oracle;

/// How the network comes to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Build {
    /// Realistic join: a few seed nodes know each other; every other node starts with an empty
    /// routing table, joins at a steady rate through two random seeds with `bootstrap()` (a
    /// `find_node` lookup for its own id), and its table fills from that lookup and from the
    /// nodes that later query it (and answer its verification ping).
    Join {
        /// How many seed nodes.
        seeds: usize,
        /// Joins per second of virtual time.
        per_second: f64,
        /// How long the network runs on its own once everyone has joined (with a short
        /// `bucket_refresh` in the engine configuration, this is when tables fill up).
        settle: Duration,
    },
    /// Routing tables drawn the way long-running ones look: for every bucket depth, up to k
    /// random nodes of the population whose ids fall in that bucket's range, inserted with
    /// `insert_node`. Fast enough for millions of nodes; nobody has exchanged a datagram yet.
    Preseed,
}

/// A partition: for a while, a fraction of the nodes cannot exchange datagrams with the rest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partition {
    /// Share of the nodes on the minority side.
    pub fraction: f64,
    /// When it starts, counted from the start of the lookup workload.
    pub after: Duration,
    /// How long it lasts.
    pub duration: Duration,
}

/// A share of the nodes running with another bucket size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OtherK {
    /// Share of the nodes.
    pub fraction: f64,
    /// Their k.
    pub k: usize,
}

/// Everything that defines a simulation run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Seed of every random decision.
    pub seed: u64,
    /// Nodes in the initial population.
    pub nodes: usize,
    /// The engine configuration of every node (its `id`, `bootstrap`, `address_policy` and,
    /// for the special nodes below, `k` and `read_only` are filled in per node).
    pub engine: Config,
    /// How the network is built.
    pub build: Build,
    /// The link.
    pub link: Link,
    /// Share of the nodes that are silent: present in routing tables, answering nothing. With
    /// [`Build::Join`] they join like everyone else and fall silent once the network is built;
    /// with [`Build::Preseed`] they never run.
    pub dead: f64,
    /// Share of the nodes in BEP 43 read-only mode (they look up, never answer, never enter a
    /// routing table).
    pub read_only: f64,
    /// Share of the nodes with another bucket size, if any.
    pub other_k: Option<OtherK>,
    /// How many nodes a `find_node`/`get_peers` answer carries; `None`: the responder's k.
    pub answer_k: Option<usize>,
    /// Churn during the workload: this share of the live population leaves per minute of
    /// virtual time (silently, as real nodes do), and as many new nodes join through three
    /// random live nodes.
    pub churn_per_minute: f64,
    /// A partition during the workload, if any.
    pub partition: Option<Partition>,
    /// Full routing-table checks: every this many steps, `invariant_sample` nodes (round
    /// robin) are checked; cheap checks run on every node touched.
    pub invariant_every: u64,
    /// Nodes checked in full at each full check.
    pub invariant_sample: usize,
    /// Sybil or eclipse attackers, if any (see [`attack`]); needs [`Build::Preseed`].
    pub attack: Option<attack::Attack>,
    /// The k nodes nearest each lookup target hold a value: they answer its `get_peers` with
    /// one peer, as after an announce, and each lookup records when the first `values`
    /// arrived ([`LookupRecord::values_after`]). Always so in attack runs.
    pub holders: bool,
    /// Share of the nodes behind an address-restricted NAT (see [`nat`]).
    pub nat: f64,
    /// Session lengths ([`profile::Sessions`]): during the workload each node leaves when its
    /// session ends and new nodes join at the rate that keeps the population steady. Replaces
    /// `churn_per_minute`'s memoryless departures.
    pub sessions: Option<profile::Sessions>,
    /// A share of the nodes behind shared IPs (see [`ips`]).
    pub shared_ips: Option<ips::SharedIps>,
    /// Public-looking node addresses, to which the engine's diversity rules and per-IP limits
    /// apply (see [`ips`]); private ones (10/8, exempt) otherwise.
    pub public_ips: bool,
    /// When a measured lookup ends, count the routing tables holding each true nearest node it
    /// missed ([`Missed::tables`], [`Missed::held_by_responders`]): a scan of every table per
    /// missed node, so off unless asked for.
    pub count_missed_holders: bool,
    /// Threads to run on. With more than one, the join build and [`Sim::run_for`] go by
    /// windows of the link's shortest delay, each window's nodes split among the threads (see
    /// `parallel.rs`); the trace is the same for any number. Pre-seeding, the measured lookups
    /// and runs whose nodes read one another stay on one thread.
    pub threads: usize,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seed: 1,
            nodes: 1_000,
            engine: Config::default(),
            build: Build::Preseed,
            link: Link::default(),
            dead: 0.0,
            read_only: 0.0,
            other_k: None,
            answer_k: None,
            churn_per_minute: 0.0,
            partition: None,
            invariant_every: 50_000,
            invariant_sample: 200,
            attack: None,
            holders: false,
            nat: 0.0,
            sessions: None,
            shared_ips: None,
            public_ips: false,
            count_missed_holders: false,
            threads: 1,
        }
    }
}

/// The seeds a test should run: the one in `KRPC_SIM_SEED` if set (to replay a failure), else
/// `default`.
pub fn seeds_or_env(default: &[u64]) -> Vec<u64> {
    match std::env::var("KRPC_SIM_SEED").ok().and_then(|s| s.trim().parse().ok()) {
        Some(seed) => vec![seed],
        None => default.to_vec(),
    }
}

/// Prints how to replay a run if the thread panics while this guard lives.
#[derive(Debug)]
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    #[allow(clippy::print_stderr)] // the one message a failing simulation must leave behind
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("simulation failed with seed {0}; replay with KRPC_SIM_SEED={0}", self.0);
        }
    }
}

/// The engine settings of a BEP 5 node: k = 8 and the engine's lookup defaults (α = 4, one
/// retry, 1 s soft timeout), concurrency 16.
pub fn bep5_config() -> Config {
    Config { k: 8, ..Config::default() }
}

/// The shape of the JS k-rpc lookup on this engine: k = 20, concurrency 16, every slot usable
/// by one lookup (α = 16), no retries and no soft timeout.
pub fn krpc_parity_config() -> Config {
    Config {
        k: 20,
        concurrency: 16,
        lookup_parallelism: None,
        lookup_retries: 0,
        lookup_soft_timeout: None,
        lookup_final_round: false,
        lookup_neighbourhood: 0,
        wide_buckets: 0,
        ..Config::default()
    }
}

/// A stock client's lookup for contrast: libtorrent's traversal (RC_2_1 `traversal_algorithm`
/// and `rpc_manager`): `dht_search_branching` 5 outstanding queries, a slot freed after a 1 s
/// short timeout, given up on after 15 s, never resent, no final round; and its extended
/// routing table (`dht_extended_routing_table`, on by default: 128, 64, 32 and 16 contacts in
/// the four farthest buckets at k = 8). The rest of `base` is kept.
pub fn libtorrent_lookup_config(base: Config) -> Config {
    Config {
        lookup_parallelism: Some(5),
        lookup_soft_timeout: Some(Duration::from_secs(1)),
        lookup_adaptive_soft_timeout: false,
        timeout: Duration::from_secs(15),
        lookup_retries: 0,
        lookup_final_round: false,
        lookup_neighbourhood: 0,
        wide_buckets: 4,
        ..base
    }
}

/// What happened to one measured lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupRecord {
    /// The node that ran it.
    pub initiator: u32,
    /// Its target.
    pub target: NodeId,
    /// The initiator's k: the size of the result and of the truth it is compared with.
    pub k: usize,
    /// When it started.
    pub started: Instant,
    /// How long it took, `None` if it never finished.
    pub duration: Option<Duration>,
    /// Queries it sent (retries included).
    pub queries: u32,
    /// Replies to those queries.
    pub replies: u32,
    /// Rounds: the longest chain of dependent queries. A candidate from the routing table is
    /// round 1; one first learned from a reply to a round-r query is round r + 1; this is the
    /// highest round of any candidate queried.
    pub rounds: u32,
    /// Responders in the result.
    pub responders: usize,
    /// How many of the true k closest live nodes the result holds, the initiator itself counted
    /// as found when it is one of them.
    pub found: usize,
    /// Of those, how many are other nodes (the initiator excluded).
    pub found_others: usize,
    /// How many of the true 8 closest live nodes the result holds (the initiator counted as
    /// for `found`): BEP 5's k, to compare lookups of different k.
    pub found8: usize,
    /// How it ended, `None` if it never did.
    pub outcome: Option<LookupOutcome>,
    /// In an attack run or with [`Scenario::holders`], whether an honest node answered with
    /// `values`; `None` otherwise.
    pub values: Option<bool>,
    /// How long after its start the first `values` arrived (what a `get_peers` caller waits
    /// for its first peers), if they did.
    pub values_after: Option<Duration>,
    /// The true 8 closest live nodes the result lacks (the initiator never counts as missed),
    /// and how far the lookup got toward each: what to look at when recall falls.
    pub missed: Vec<Missed>,
    /// The nodes the lookup returned, nearest first (simulated nodes only).
    pub returned: Vec<u32>,
}

/// One of the true nearest nodes a finished lookup did not return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missed {
    /// The node.
    pub node: u32,
    /// The lookup knew of it: an answer named it, or it was asked (from the table).
    pub known: bool,
    /// The lookup queried it.
    pub asked: bool,
    /// It answered the lookup.
    pub answered: bool,
    /// When the lookup ended: how many running engines held it in a routing table (with
    /// [`Scenario::count_missed_holders`]).
    pub tables: Option<u32>,
    /// When the lookup ended: how many of the nodes that answered the lookup held it in their
    /// routing table, so could have named it (with [`Scenario::count_missed_holders`]).
    pub held_by_responders: Option<u32>,
}

impl LookupRecord {
    /// Share of the true k closest live nodes found.
    pub fn recall(&self) -> f64 {
        self.found as f64 / self.k as f64
    }

    /// Share of the true 8 closest live nodes found.
    pub fn recall8(&self) -> f64 {
        self.found8 as f64 / 8.0
    }

    /// Success: the lookup completed and at least one responder is among the true k closest
    /// live nodes (other than the initiator), i.e. a `get_peers` would have reached a node
    /// that stores the peers announced for this target.
    pub fn success(&self) -> bool {
        // Under attack: the lookup reached an honest node holding the value.
        if let Some(got) = self.values {
            return got;
        }
        self.outcome == Some(LookupOutcome::Completed) && self.found_others >= 1
    }
}

/// Counters of the network itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Steps taken (deliveries, timers, actions).
    pub steps: u64,
    /// Datagrams the engines sent.
    pub sent: u64,
    /// Lost by the link.
    pub lost: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Arrived at a silent or departed node, or at no node at all.
    pub to_nobody: u64,
    /// Queries answered by the responder.
    pub answered: u64,
    /// Nodes that left (churn).
    pub left: u64,
    /// Nodes that joined after the build (churn).
    pub joined: u64,
    /// Full routing-table checks done.
    pub full_checks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Not created yet (a join is scheduled).
    Waiting,
    /// Running.
    Alive,
    /// In routing tables, answering nothing.
    Silent,
    /// Gone (churn).
    Left,
}

struct Node {
    id: NodeId,
    ep: Option<Box<Endpoint>>,
    status: Status,
    read_only: bool,
    k: usize,
    /// Partition side.
    minority: bool,
    /// Falls silent once the network is built.
    doomed: bool,
}

/// Shrinks a heap that holds far more room than entries (after a burst, or once the joins
/// scheduled up front are done), keeping room for twice what is left. Its order is untouched.
fn give_back_room<T: Ord>(heap: &mut BinaryHeap<T>) {
    if heap.capacity() > 4 * heap.len() + 4096 {
        heap.shrink_to(2 * heap.len() + 1024);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Join(u32),
    StartLookup,
    Leave,
    /// Node `i`'s session ends ([`Scenario::sessions`]).
    Depart(u32),
    ChurnJoin,
    PartitionStart,
    PartitionEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Packet {
    at: u64,
    seq: u64,
    to: u32,
    from: u32,
    slot: u32,
}

impl Timed for Packet {
    fn due(&self) -> u64 {
        self.at
    }
}

/// Datagrams in flight are queued by slices of 2^18 ns (262 µs) over 2^11 slices (537 ms): the
/// `internet` link delays at most 300 ms; a longer delay waits in the calendar's far heap. An
/// emptied slice keeps room for 256 datagrams (at most 16 MiB over the ring).
const DELIVERY_SLICE_SHIFT: u32 = 18;
const DELIVERY_SLICES: u32 = 11;
const DELIVERY_KEEP: usize = 256;
/// Engine deadlines by slices of 2^20 ns (1 ms) over 2^17 slices (137 s): the timeouts of
/// queries and lookups and most ticks of upkeep fall within (with 2^12 slices, 4.3 s, the rest
/// waiting in the far heap, 100,000 joined nodes built in 104.1 s on two threads against 99.9).
/// An emptied slice keeps room for 32 deadlines (at most 64 MiB).
const DEADLINE_SLICE_SHIFT: u32 = 20;
const DEADLINE_SLICES: u32 = 17;
const DEADLINE_KEEP: usize = 32;

/// A lookup being measured.
struct Tracked {
    op: OpId,
    record: usize,
    queries: u32,
    replies: u32,
    max_round: u32,
    /// Round of each candidate (by node index) learned so far.
    round_of: HashMap<u32, u32>,
    /// Round of each query in flight, by (destination, transaction id).
    pending: HashMap<(u32, u32), u32>,
    /// Nodes queried, and those that answered.
    asked: std::collections::HashSet<u32>,
    answered: std::collections::HashSet<u32>,
    /// An honest node answered with `values`.
    got_values: bool,
    /// When the first `values` arrived.
    first_values: Option<Instant>,
}

/// The address of node `i` in the default layout (private, one IP per node); a run's own
/// layout is [`Sim::addr`].
pub fn addr_of(i: u32) -> SocketAddr {
    if i >= attack::ATTACKER_BASE {
        return attack::attacker_addr(i - attack::ATTACKER_BASE);
    }
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ips::PRIVATE_NET | attack::scramble24(i + 1)), ips::PORT))
}

/// The node at `addr`, if it is a simulated node's address.
pub fn index_of(addr: &SocketAddr) -> Option<u32> {
    ips::index_of(addr).or_else(|| attack::attacker_code(addr).map(|code| attack::ATTACKER_BASE + code))
}

/// Where progress lines go.
type Progress = Box<dyn FnMut(&str)>;

/// The moment the simulation starts: late enough that preseeded nodes can be created up to a
/// minute "earlier", which spreads their maintenance ticks.
const EPOCH: Instant = Instant::from_millis(60_000);

/// The simulated network.
pub struct Sim {
    scenario: Scenario,
    nodes: Vec<Node>,
    oracle: Oracle,
    now: Instant,
    deliveries: Calendar<Packet>,
    payloads: Vec<Vec<u8>>,
    free_payloads: Vec<u32>,
    timers: Calendar<(u64, u32)>,
    timer_at: Vec<u64>,
    actions: BinaryHeap<Reverse<(u64, u64, Action)>>,
    seq: u64,
    build_rng: ChaCha8Rng,
    net_rng: ChaCha8Rng,
    work_rng: ChaCha8Rng,
    responder: Responder,
    tracked: BTreeMap<u32, Tracked>,
    records: Vec<LookupRecord>,
    lookups_to_start: usize,
    lookup_gap: Duration,
    joining: BTreeMap<u32, OpId>,
    joins_scheduled: usize,
    churn: bool,
    /// Every live node has its departure scheduled ([`Scenario::sessions`]); once per run.
    sessions_started: bool,
    /// Nodes whose session ended while churn was off: they leave as soon as it is back on.
    deferred_departs: Vec<u32>,
    /// A `Leave` and a `ChurnJoin` of the churn chains are waiting in the timer heap: each chain
    /// has at most one event pending, so turning churn off and on again never runs two chains.
    churn_pending: [bool; 2],
    partitioned: bool,
    busy: Vec<bool>,
    busy_count: usize,
    trace: trace::Trace,
    stats: NetStats,
    steps_since_check: u64,
    check_cursor: usize,
    buf: Vec<u8>,
    progress: Option<Progress>,
    /// Events of commands issued through [`Sim::command`], kept once [`Sim::keep_events`] is on.
    kept: Option<Vec<(u32, Event)>>,
    /// Nodes running a command issued with [`Sim::command`]: churn does not take them away.
    pinned: std::collections::BTreeSet<u32>,
    attackers: Option<attack::Attackers>,
    /// The info-hashes each node holds, once placed for a crawl ([`crawl`]).
    samples: Option<Vec<Vec<NodeId>>>,
    nats: nat::Nats,
    ips: ips::Ips,
    /// Windows whose nodes ran on more than one thread ([`Scenario::threads`]).
    shared_windows: u64,
    /// Windows whose sends were replayed while the next window ran (`parallel.rs`).
    late_replays: u64,
    /// While set, [`send`](Self::send) records instead of sending: a join between two
    /// windows, whose sends go behind the last window's, not yet replayed (`parallel.rs`).
    held: Option<parallel::Arena>,
}

impl Sim {
    /// Draws the population (ids, silent, read-only and other-k nodes) of `scenario`. Nothing
    /// runs until [`build`](Self::build).
    pub fn new(mut scenario: Scenario) -> Sim {
        if let Some(a) = scenario.attack {
            attack::configure(&mut scenario.engine, a.defences);
        }
        let mut build_rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0xb0b0_0000_0000_0001);
        let net_rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x11c0_0000_0000_0002);
        let work_rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x3030_0000_0000_0003);
        let seeds = match scenario.build {
            Build::Join { seeds, .. } => seeds.max(1),
            Build::Preseed => 0,
        };
        let mut nodes = Vec::with_capacity(scenario.nodes);
        for i in 0..scenario.nodes {
            let mut b = [0u8; 20];
            build_rng.fill_bytes(&mut b);
            let special = i >= seeds;
            let doomed = chance(&mut build_rng, scenario.dead) && special;
            let read_only = chance(&mut build_rng, scenario.read_only) && special && !doomed;
            let k = match scenario.other_k {
                Some(o) if chance(&mut build_rng, o.fraction) && special => o.k,
                _ => scenario.engine.k,
            };
            let minority = scenario.partition.is_some_and(|p| chance(&mut build_rng, p.fraction));
            nodes.push(Node {
                id: NodeId::from_array(b),
                ep: None,
                status: Status::Waiting,
                read_only,
                k,
                minority,
                doomed,
            });
        }
        let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
        let n = nodes.len();
        let ips = ips::Ips::new(&scenario);
        Sim {
            oracle: Oracle::new(&ids),
            nodes,
            now: EPOCH,
            deliveries: Calendar::new(DELIVERY_SLICE_SHIFT, DELIVERY_SLICES, DELIVERY_KEEP),
            payloads: Vec::new(),
            free_payloads: Vec::new(),
            timers: Calendar::new(DEADLINE_SLICE_SHIFT, DEADLINE_SLICES, DEADLINE_KEEP),
            timer_at: vec![u64::MAX; n],
            actions: BinaryHeap::new(),
            seq: 0,
            build_rng,
            net_rng,
            work_rng,
            responder: answer::answer_from_routing_table,
            tracked: BTreeMap::new(),
            records: Vec::new(),
            lookups_to_start: 0,
            lookup_gap: Duration::ZERO,
            joining: BTreeMap::new(),
            joins_scheduled: 0,
            churn: false,
            sessions_started: false,
            deferred_departs: Vec::new(),
            churn_pending: [false; 2],
            partitioned: false,
            busy: vec![false; n],
            busy_count: 0,
            trace: trace::Trace::default(),
            stats: NetStats::default(),
            steps_since_check: 0,
            check_cursor: 0,
            buf: vec![0u8; 1500],
            progress: None,
            kept: None,
            pinned: Default::default(),
            attackers: attack::attackers_for(scenario.attack, n, scenario.seed),
            samples: None,
            nats: nat::Nats::new(&scenario, &ips),
            ips,
            scenario,
            shared_windows: 0,
            late_replays: 0,
            held: None,
        }
    }

    /// Receives progress lines while the network is built (the simulator itself prints nothing).
    pub fn set_progress(&mut self, f: impl FnMut(&str) + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// Replaces the application that answers queries.
    pub fn set_responder(&mut self, responder: Responder) {
        self.responder = responder;
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Network counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Every node ever created, live or not.
    pub fn population(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes running (not silent, not departed).
    pub fn live_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| n.status == Status::Alive).count()
    }

    /// The endpoint of node `i`, if it runs.
    pub fn endpoint(&self, i: u32) -> Option<&Endpoint> {
        self.nodes.get(i as usize).and_then(|n| n.ep.as_deref())
    }

    /// The id of node `i`.
    pub fn id(&self, i: u32) -> NodeId {
        self.nodes[i as usize].id
    }

    /// The fingerprint of every datagram sent so far: FNV-1a over (time, sender, destination,
    /// bytes) of each.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The simulated node that `info` names: the one at its address, if it carries that id now.
    /// `None` for an attacker's address or for an entry left by a node that has since taken
    /// another id.
    pub fn node_named(&self, info: &NodeInfo) -> Option<u32> {
        index_of(&info.addr).filter(|&j| self.nodes.get(j as usize).is_some_and(|n| n.id == info.id))
    }

    /// Whether node `i` answers queries now (the oracle's notion of live).
    pub fn answers(&self, i: u32) -> bool {
        let n = &self.nodes[i as usize];
        // Adaptive nodes answer once they left read-only mode; NATed ones answer strangers never.
        n.status == Status::Alive
            && !n.read_only
            && !self.nats.is_behind(i)
            && n.ep.as_deref().is_none_or(|ep| !ep.is_read_only())
    }

    /// How many running engines hold node `i` in a routing table.
    pub fn tables_holding(&self, i: u32) -> usize {
        let id = self.nodes[i as usize].id;
        self.nodes.iter().filter_map(|n| n.ep.as_deref()).filter(|ep| ep.routing_table().contains(&id)).count()
    }

    /// Running nodes in BEP 43 read-only mode right now (adaptive ones included).
    pub fn read_only_nodes(&self) -> usize {
        self.nodes.iter().filter_map(|n| n.ep.as_deref()).filter(|ep| ep.is_read_only()).count()
    }

    /// Who is behind a NAT (see [`nat`]).
    pub fn nats(&self) -> &nat::Nats {
        &self.nats
    }

    /// The true `k` closest nodes that answer queries, nearest first.
    pub fn true_closest(&self, target: &NodeId, k: usize) -> Vec<u32> {
        self.oracle.closest(target, k, |i| self.answers(i))
    }

    fn endpoint_config(&self, i: u32, bootstrap: Vec<SocketAddr>) -> Config {
        let n = &self.nodes[i as usize];
        let mut config = Config {
            id: Some(n.id),
            k: n.k,
            read_only: n.read_only || self.scenario.engine.read_only,
            bootstrap,
            address_policy: AddressPolicy::Any,
            ..self.scenario.engine.clone()
        };
        self.nats.configure(i, &self.scenario, &mut config);
        // Holders answer `get_peers` with a value from the simulator (`answer_holder`). The
        // node layer would answer it itself, from an empty peer store, and no lookup would
        // ever see a value: it hands `get_peers` to the simulator instead, so that a value
        // takes the same path whether or not a node runs the node layer.
        if self.scenario.holders || self.attackers.is_some() {
            if let Some(dht) = config.dht.as_mut() {
                if !dht.application_methods.iter().any(|m| m == b"get_peers") {
                    dht.application_methods.push(b"get_peers".to_vec());
                }
            }
        }
        config
    }

    fn create_endpoint(&mut self, i: u32, bootstrap: Vec<SocketAddr>, created: Instant) {
        let config = self.endpoint_config(i, bootstrap);
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.scenario.seed.to_le_bytes());
        seed[8..12].copy_from_slice(&i.to_le_bytes());
        seed[12] = 0x5e;
        let ep = Endpoint::new(config, seed, created)
            .unwrap_or_else(|e| panic!("invalid engine configuration for node {i}: {e}"));
        let node = &mut self.nodes[i as usize];
        node.ep = Some(Box::new(ep));
        node.status = Status::Alive;
    }

    fn report_progress(&mut self, line: &str) {
        if let Some(p) = self.progress.as_mut() {
            p(line);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Building

    /// Builds the network as the scenario says, then silences the dead share.
    pub fn build(&mut self) {
        match self.scenario.build {
            Build::Preseed => self.preseed(),
            Build::Join { seeds, per_second, settle } => self.join(seeds.max(1), per_second, settle),
        }
        let doomed: Vec<u32> = (0..self.nodes.len() as u32).filter(|&i| self.nodes[i as usize].doomed).collect();
        for i in doomed {
            self.silence(i);
        }
    }

    fn silence(&mut self, i: u32) {
        let node = &mut self.nodes[i as usize];
        node.ep = None;
        if node.status == Status::Alive || node.status == Status::Waiting {
            node.status = Status::Silent;
        }
        self.timer_at[i as usize] = u64::MAX;
        self.set_busy(i, false);
    }

    /// Draws every routing table from the population (see [`Build::Preseed`]).
    fn preseed(&mut self) {
        let n = self.nodes.len();
        let mut picked: Vec<u32> = Vec::new();
        for i in 0..n as u32 {
            if self.nodes[i as usize].doomed {
                // Never runs; only appears in others' tables.
                self.nodes[i as usize].status = Status::Silent;
                continue;
            }
            // Created up to a minute before the simulation starts, so that the maintenance
            // ticks of a million nodes do not all fall on the same instant.
            let created = EPOCH.saturating_sub(Duration::from_nanos(self.build_rng.next_u64() % 60_000_000_000));
            self.create_endpoint(i, Vec::new(), created);
            let own = self.nodes[i as usize].id;
            let k = self.nodes[i as usize].k;
            let mut ep = self.nodes[i as usize].ep.take().unwrap_or_else(|| unreachable!());
            for depth in 0..160 {
                let far = own.with_bit(depth, !own.bit(depth));
                let range = self.oracle.with_prefix(&far, depth + 1);
                picked.clear();
                // Attackers drawn into this bucket take their share of its k slots first.
                let k = k - self.preseed_attackers(&mut ep, created, &far, depth + 1, range.len(), k);
                let range = self.oracle.with_prefix(&far, depth + 1);
                let eligible = |x: &([u8; 20], u32)| !self.nodes[x.1 as usize].read_only;
                if range.len() <= 4 * k {
                    picked.extend(range.iter().filter(|x| eligible(x)).map(|x| x.1));
                    // Partial Fisher–Yates: the first k are a uniform sample.
                    for j in 0..picked.len().min(k) {
                        let r = j + below(&mut self.build_rng, picked.len() - j);
                        picked.swap(j, r);
                    }
                    picked.truncate(k);
                } else {
                    let mut attempts = 0;
                    while picked.len() < k && attempts < 16 * k {
                        attempts += 1;
                        let x = range[below(&mut self.build_rng, range.len())];
                        if eligible(&x) && !picked.contains(&x.1) {
                            picked.push(x.1);
                        }
                    }
                }
                for &j in &picked {
                    ep.insert_node(created, NodeInfo::new(self.nodes[j as usize].id, self.addr(j)));
                    // Drain as we go, so the event queue never grows (its capacity would stay).
                    while ep.poll_event().is_some() {}
                }
                if self.oracle.with_prefix(&own, depth + 1).len() <= 1 {
                    break;
                }
            }
            self.nodes[i as usize].ep = Some(ep);
            self.touch(i);
            if (i + 1) % 10_000 == 0 || i as usize + 1 == n {
                let line = format!("preseeded {}/{} routing tables", i + 1, n);
                self.report_progress(&line);
            }
        }
    }

    /// Seeds, then everyone else joins through two random seeds (see [`Build::Join`]).
    fn join(&mut self, seeds: usize, per_second: f64, settle: Duration) {
        let n = self.nodes.len();
        let seeds = seeds.min(n);
        for i in 0..seeds as u32 {
            self.create_endpoint(i, Vec::new(), self.now);
        }
        for i in 0..seeds as u32 {
            for j in 0..seeds as u32 {
                if i != j {
                    let info = NodeInfo::new(self.nodes[j as usize].id, self.addr(j));
                    let now = self.now;
                    if let Some(ep) = self.nodes[i as usize].ep.as_mut() {
                        ep.insert_node(now, info);
                    }
                }
            }
            self.touch(i);
        }
        let gap = Duration::from_secs_f64(1.0 / per_second.max(1e-3));
        let mut at = self.now;
        for i in seeds as u32..n as u32 {
            at += gap;
            self.schedule(at, Action::Join(i));
            self.joins_scheduled += 1;
        }
        let total = self.joins_scheduled;
        let mut reported = 0;
        let mut report = |sim: &mut Sim| {
            let done = total - sim.joins_scheduled - sim.joining.len();
            if done >= reported + 10_000 || (done == total && reported < total) {
                reported = done;
                let line = format!(
                    "joined {done}/{total} nodes at t={:.0}s virtual ({} datagrams)",
                    (sim.now - EPOCH).as_secs_f64(),
                    sim.stats.sent
                );
                sim.report_progress(&line);
            }
        };
        // By windows while joins are still to come (the end depends on no window's events),
        // then one step at a time until the last join's lookup ends.
        self.advance(u64::MAX, |sim| sim.joins_scheduled == 0, &mut report);
        while self.joins_scheduled > 0 || !self.joining.is_empty() {
            if !self.step() {
                break;
            }
            report(self);
        }
        // Let the last verifications and answers settle.
        self.run_for(settle);
    }

    fn do_join(&mut self, i: u32, bootstrap: Vec<SocketAddr>) {
        let now = self.now;
        self.create_endpoint(i, bootstrap, now);
        let op = self.nodes[i as usize]
            .ep
            .as_mut()
            .and_then(|ep| ep.bootstrap(now).ok())
            .unwrap_or_else(|| panic!("node {i} could not start its bootstrap (seed {})", self.scenario.seed));
        self.joining.insert(i, op);
        self.touch(i);
    }

    // -----------------------------------------------------------------------------------------
    // The run loop

    fn schedule(&mut self, at: Instant, action: Action) {
        self.seq += 1;
        self.actions.push(Reverse((at.as_nanos(), self.seq, action)));
    }

    /// The earliest valid engine deadline, with stale queue entries dropped.
    fn next_timer(&mut self) -> Option<(u64, u32)> {
        while let Some(&(at, i)) = self.timers.peek() {
            if self.timer_at[i as usize] == at {
                return Some((at, i));
            }
            self.timers.pop();
        }
        None
    }

    /// Does the next thing that happens. Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let delivery = self.deliveries.peek().map(|p| p.at);
        let timer = self.next_timer().map(|(at, _)| at);
        let action = self.actions.peek().map(|Reverse(a)| a.0);
        // Ties: deliveries, then timers, then actions.
        let mut best: Option<(u64, u8)> = None;
        for (at, class) in [(delivery, 0u8), (timer, 1), (action, 2)] {
            if let Some(at) = at {
                if best.is_none_or(|b| (at, class) < b) {
                    best = Some((at, class));
                }
            }
        }
        let Some((at, class)) = best else { return false };
        let at = Instant::from_nanos(at);
        if at > self.now {
            self.now = at;
        }
        self.stats.steps += 1;
        match class {
            0 => {
                let Some(p) = self.deliveries.pop() else { return false };
                self.prefetch_next_delivery();
                self.deliver(p);
            }
            1 => {
                let Some((_, i)) = self.timers.pop() else { return false };
                self.prefetch_next_delivery();
                self.timer_at[i as usize] = u64::MAX;
                let now = self.now;
                if let Some(ep) = self.nodes[i as usize].ep.as_mut() {
                    ep.handle_timeout(now);
                    self.touch(i);
                }
            }
            _ => {
                let Some(Reverse((_, _, action))) = self.actions.pop() else { return false };
                // Every join is scheduled up front, so the heap's peak is its first moment;
                // without this its room for a million joins (32 MB) outlives them.
                give_back_room(&mut self.actions);
                self.act(action);
            }
        }
        self.steps_since_check += 1;
        if self.steps_since_check >= self.scenario.invariant_every {
            self.steps_since_check = 0;
            self.check_sample();
        }
        true
    }

    /// Steps until virtual time reaches `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.advance(end.as_nanos(), |_| false, &mut |_| {});
        loop {
            let next = [
                self.deliveries.peek().map(|p| p.at),
                self.next_timer().map(|(at, _)| at),
                self.actions.peek().map(|Reverse(a)| a.0),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(at) if at <= end.as_nanos() => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    /// Starts loading what the next delivery reads first (its node's record and engine, its
    /// bytes) while this event runs (see `prefetch.rs`). Reading where the engine and the bytes
    /// live waits for the node's record and the payload slot, which load together.
    fn prefetch_next_delivery(&mut self) {
        let Some(&Packet { to, slot, .. }) = self.deliveries.peek() else { return };
        let (Some(node), Some(bytes)) = (self.nodes.get(to as usize), self.payloads.get(slot as usize)) else {
            return;
        };
        prefetch::prefetch(node);
        prefetch::prefetch(bytes);
        if let Some(ep) = node.ep.as_deref() {
            prefetch::prefetch(ep);
        }
        prefetch::prefetch(bytes.as_slice());
    }

    fn deliver(&mut self, p: Packet) {
        // The slot is freed only once its buffer is back: answers sent while handling this
        // datagram must not reuse it.
        if !self.nats.admits(p.to, self.ips.host(p.from), self.now) {
            self.free_payloads.push(p.slot);
            return;
        }
        let bytes = std::mem::take(&mut self.payloads[p.slot as usize]);
        let to = p.to;
        let now = self.now;
        let from = self.addr(p.from);
        match self.nodes[to as usize].ep.as_mut() {
            Some(ep) => {
                if let Some(t) = self.tracked.get_mut(&to) {
                    tap_in(t, p.from, &bytes, now);
                }
                ep.handle_datagram(now, from, &bytes);
                self.touch(to);
            }
            None => self.stats.to_nobody += 1,
        }
        // Keep the buffer for the next datagram, unless far more buffers wait than datagrams
        // travel: a burst (every node joining within seconds) leaves its peak of buffers
        // behind otherwise, about 0.7 KB per node at 2,000 joins per second. The slot stays
        // (so slots are handed out in the same order); only its allocation goes.
        if self.free_payloads.len() <= 2 * self.deliveries.len() + 1024 {
            self.payloads[p.slot as usize] = bytes;
        }
        self.free_payloads.push(p.slot);
        self.deliveries.give_back_room();
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Join(i) => {
                self.joins_scheduled -= 1;
                let seeds = match self.scenario.build {
                    Build::Join { seeds, .. } => seeds.max(1).min(self.nodes.len()),
                    Build::Preseed => 1,
                };
                let mut bootstrap = Vec::with_capacity(2);
                for _ in 0..2.min(seeds) {
                    let mut s = below(&mut self.build_rng, seeds) as u32;
                    while bootstrap.contains(&self.addr(s)) {
                        s = (s + 1) % seeds as u32;
                    }
                    bootstrap.push(self.addr(s));
                }
                self.do_join(i, bootstrap);
            }
            Action::StartLookup => self.start_lookup(),
            Action::Leave => {
                self.churn_pending[0] = false;
                if !self.churn {
                    // Churn was turned off after this event was scheduled: the chain ends here
                    // (it starts again when churn resumes).
                    return;
                }
                if let Some(i) = self.pick_live(|sim, i| !sim.tracked.contains_key(&i) && !sim.pinned.contains(&i)) {
                    self.leave(i);
                }
                self.schedule_churn(Action::Leave);
            }
            Action::Depart(i) => {
                if self.nodes[i as usize].status != Status::Alive {
                    // A node already gone stays gone.
                } else if !self.churn {
                    // The session is over but churn is paused (between workloads): dropping the
                    // departure would make the node immortal, so it leaves when churn resumes.
                    self.deferred_departs.push(i);
                } else if self.tracked.contains_key(&i) || self.pinned.contains(&i) {
                    // Running a measured lookup or a command: it leaves a little later.
                    self.schedule(self.now + Duration::from_secs(30), Action::Depart(i));
                } else {
                    self.leave(i);
                }
            }
            Action::ChurnJoin => {
                self.churn_pending[1] = false;
                if !self.churn {
                    // As for `Leave`: no join once churn is off.
                    return;
                }
                let mut b = [0u8; 20];
                self.work_rng.fill_bytes(&mut b);
                let i = self.nodes.len() as u32;
                let id = NodeId::from_array(b);
                self.nodes.push(Node {
                    id,
                    ep: None,
                    status: Status::Waiting,
                    read_only: false,
                    k: self.scenario.engine.k,
                    minority: false,
                    doomed: false,
                });
                self.timer_at.push(u64::MAX);
                self.busy.push(false);
                self.oracle.insert(&id, i);
                let mut bootstrap = Vec::with_capacity(3);
                for _ in 0..3 {
                    if let Some(j) = self.pick_live(|sim, j| !sim.nodes[j as usize].read_only) {
                        if !bootstrap.contains(&self.addr(j)) {
                            bootstrap.push(self.addr(j));
                        }
                    }
                }
                self.stats.joined += 1;
                self.do_join(i, bootstrap);
                if let Some(sessions) = self.scenario.sessions {
                    let at = self.now + sessions.sample(&mut self.work_rng);
                    self.schedule(at, Action::Depart(i));
                }
                self.schedule_churn(Action::ChurnJoin);
            }
            Action::PartitionStart => self.partitioned = true,
            Action::PartitionEnd => self.partitioned = false,
        }
    }

    /// A random live node accepted by `ok` (a few tries, then a scan from a random start).
    fn pick_live(&mut self, ok: impl Fn(&Sim, u32) -> bool) -> Option<u32> {
        let n = self.nodes.len();
        for _ in 0..64 {
            let i = below(&mut self.work_rng, n) as u32;
            if self.nodes[i as usize].status == Status::Alive && ok(self, i) {
                return Some(i);
            }
        }
        let start = below(&mut self.work_rng, n);
        (0..n)
            .map(|d| ((start + d) % n) as u32)
            .find(|&i| self.nodes[i as usize].status == Status::Alive && ok(self, i))
    }

    /// Node `i` leaves, silently, as real nodes do.
    fn leave(&mut self, i: u32) {
        let node = &mut self.nodes[i as usize];
        node.ep = None;
        node.status = Status::Left;
        self.timer_at[i as usize] = u64::MAX;
        self.set_busy(i, false);
        self.joining.remove(&i);
        self.stats.left += 1;
    }

    /// With [`Scenario::sessions`]: every live node gets the rest of its session (drawn from
    /// the equilibrium residual), and joins start at the rate that keeps the population
    /// steady (live nodes / mean session).
    fn start_sessions(&mut self) {
        let Some(sessions) = self.scenario.sessions else { return };
        for i in 0..self.nodes.len() as u32 {
            if self.nodes[i as usize].status == Status::Alive {
                let at = self.now + sessions.residual(&mut self.work_rng);
                self.schedule(at, Action::Depart(i));
            }
        }
        self.schedule_churn(Action::ChurnJoin);
    }

    fn schedule_churn(&mut self, action: Action) {
        let per_minute = match (self.scenario.sessions, action) {
            (Some(s), Action::ChurnJoin) => 60.0 / s.mean().as_secs_f64(),
            (Some(_), _) => 0.0,
            (None, _) => self.scenario.churn_per_minute,
        };
        let chain = usize::from(matches!(action, Action::ChurnJoin));
        if !self.churn || per_minute <= 0.0 || self.churn_pending[chain] {
            return;
        }
        self.churn_pending[chain] = true;
        let live = self.live_nodes().max(1) as f64;
        let per_second = live * per_minute / 60.0;
        let mean = Duration::from_secs_f64(1.0 / per_second);
        let at = self.now + exponential(&mut self.work_rng, mean);
        self.schedule(at, action);
    }

    /// Drains node `i`'s outputs (answering the queries it surfaces) and refreshes its timer.
    fn touch(&mut self, i: u32) {
        let Some(mut ep) = self.nodes[i as usize].ep.take() else { return };
        let now = self.now;
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let mut moved = false;
            while let Some(t) = ep.poll_transmit(now, &mut buf) {
                moved = true;
                let bytes = &buf[..t.len];
                if let Some(tracked) = self.tracked.get_mut(&i) {
                    tap_out(tracked, &t.destination, bytes);
                }
                self.send(i, t.destination, bytes);
            }
            while let Some(e) = ep.poll_event() {
                moved = true;
                self.on_event(i, &mut ep, e);
            }
            if !moved {
                break;
            }
        }
        self.buf = buf;
        let next = ep.poll_timeout().map_or(u64::MAX, |t| t.as_nanos());
        if next != self.timer_at[i as usize] {
            self.timer_at[i as usize] = next;
            if next != u64::MAX {
                self.timers.push((next, i));
            }
        }
        // Every change of a node's deadline leaves its old entry in the queue (skipped when it
        // comes up), so without this the queue grows with the number of events, not of nodes.
        if self.timers.len() > 2 * self.nodes.len() + 1024 {
            self.compact_timers();
        }
        check_cheap(i, &ep, now, self.scenario.seed);
        let busy = ep.operations() > 0;
        self.nodes[i as usize].ep = Some(ep);
        self.set_busy(i, busy);
    }

    /// Rebuilds the deadline queue from the live deadlines alone. Entries are unique
    /// `(deadline, node)` pairs, so the order they come out in is the same.
    fn compact_timers(&mut self) {
        self.timers.clear();
        for (i, &at) in self.timer_at.iter().enumerate() {
            if at != u64::MAX {
                self.timers.push((at, i as u32));
            }
        }
        self.timers.give_back_room();
    }

    fn set_busy(&mut self, i: u32, busy: bool) {
        let slot = &mut self.busy[i as usize];
        if *slot != busy {
            *slot = busy;
            if busy {
                self.busy_count += 1;
            } else {
                self.busy_count -= 1;
            }
        }
    }

    fn send(&mut self, from: u32, to: SocketAddr, bytes: &[u8]) {
        if let Some(held) = self.held.as_mut() {
            held.hold(self.now.as_nanos(), from, to, bytes);
            return;
        }
        self.stats.sent += 1;
        self.trace.record(self.now.as_nanos(), from, &to, bytes);
        let lost = chance(&mut self.net_rng, self.scenario.link.loss);
        let latency = self.scenario.link.delay(from, index_of(&to), &mut self.net_rng);
        let dup = chance(&mut self.net_rng, self.scenario.link.duplicate);
        if let Some(code) = attack::attacker_code(&to) {
            self.deliver_to_attacker(from, code, bytes, latency, lost);
            return;
        }
        let Some(dest) = index_of(&to).filter(|&d| (d as usize) < self.nodes.len()) else {
            self.stats.to_nobody += 1;
            return;
        };
        // The NAT sees the datagram leave, whatever the link does with it next.
        self.nats.sent(from, self.ips.host(dest), self.now);
        if lost {
            self.stats.lost += 1;
            return;
        }
        if self.partitioned && self.nodes[from as usize].minority != self.nodes[dest as usize].minority {
            self.stats.partitioned += 1;
            return;
        }
        self.enqueue(self.now + latency, from, dest, bytes);
        if dup {
            self.stats.duplicated += 1;
            let again = self.scenario.link.delay(from, Some(dest), &mut self.net_rng);
            self.enqueue(self.now + again, from, dest, bytes);
        }
    }

    fn enqueue(&mut self, at: Instant, from: u32, to: u32, bytes: &[u8]) {
        let slot = match self.free_payloads.pop() {
            Some(s) => s,
            None => {
                self.payloads.push(Vec::new());
                (self.payloads.len() - 1) as u32
            }
        };
        let buf = &mut self.payloads[slot as usize];
        buf.clear();
        buf.extend_from_slice(bytes);
        self.seq += 1;
        self.deliveries.push(Packet { at: at.as_nanos(), seq: self.seq, to, from, slot });
    }

    fn on_event(&mut self, i: u32, ep: &mut Endpoint, e: Event) {
        match e {
            Event::Query(q) => {
                let count = self.scenario.answer_k.unwrap_or(ep.config().k);
                if !self.answer_holder(i, ep, &q, count) {
                    answer_query(i, ep, &q, count, self.samples.as_deref(), self.responder, self.now);
                }
                self.stats.answered += 1;
            }
            Event::LookupDone { op, closest, outcome, .. } => {
                if self.joining.get(&i) == Some(&op) {
                    self.joining.remove(&i);
                }
                if self.tracked.get(&i).is_some_and(|t| t.op == op) {
                    let Some(t) = self.tracked.remove(&i) else { return };
                    self.finish_lookup(i, t, &closest, outcome, self.now);
                }
            }
            other => {
                if let Some(kept) = self.kept.as_mut() {
                    kept.push((i, other));
                }
            }
        }
    }

    /// Fills in the record of node `i`'s measured lookup, which ended at `now` with `closest`.
    fn finish_lookup(&mut self, i: u32, t: Tracked, closest: &[LookupNode], outcome: LookupOutcome, now: Instant) {
        let rec = &self.records[t.record];
        let found_in = |truth: &[u32]| {
            let hits = closest
                .iter()
                .filter_map(|n| self.node_named(&n.node))
                .filter(|j| *j != i && truth.contains(j))
                .count();
            (hits, truth.contains(&i))
        };
        let (found_others, own) = found_in(&self.true_closest(&rec.target, rec.k));
        let truth8 = self.true_closest(&rec.target, 8);
        let (found8, own8) = found_in(&truth8);
        let returned: Vec<u32> = closest.iter().filter_map(|n| index_of(&n.node.addr)).collect();
        let count = self.scenario.count_missed_holders;
        let missed = truth8
            .iter()
            .filter(|&&j| j != i && !returned.contains(&j))
            .map(|&j| {
                let id = self.nodes[j as usize].id;
                // Responders include attackers (indices past the population).
                let holds = |n: &u32| {
                    self.nodes
                        .get(*n as usize)
                        .and_then(|n| n.ep.as_deref())
                        .is_some_and(|ep| ep.routing_table().contains(&id))
                };
                Missed {
                    node: j,
                    known: t.round_of.contains_key(&j),
                    asked: t.asked.contains(&j),
                    answered: t.answered.contains(&j),
                    tables: count.then(|| self.tables_holding(j) as u32),
                    held_by_responders: count.then(|| t.answered.iter().filter(|n| holds(n)).count() as u32),
                }
            })
            .collect();
        let rec = &mut self.records[t.record];
        rec.queries = t.queries;
        rec.replies = t.replies;
        rec.rounds = t.max_round;
        rec.duration = Some(now - rec.started);
        rec.responders = closest.len();
        rec.found_others = found_others;
        rec.found = found_others + usize::from(own);
        rec.found8 = found8 + usize::from(own8);
        rec.outcome = Some(outcome);
        rec.values = rec.values.map(|_| t.got_values);
        rec.values_after = t.first_values.map(|at| at - rec.started);
        rec.missed = missed;
        rec.returned = returned;
    }

    // -----------------------------------------------------------------------------------------
    // Hooks for workloads other than lookups (BEP 44 puts and gets)

    /// From now on, keeps the events the simulator does not consume itself (results of
    /// commands issued with [`command`](Self::command)) for [`take_events`](Self::take_events).
    pub fn keep_events(&mut self) {
        self.kept.get_or_insert_with(Vec::new);
    }

    /// The events kept since the last call, with the index of the node that emitted each.
    pub fn take_events(&mut self) -> Vec<(u32, Event)> {
        self.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Runs `f` on live node `i` now and sends what it queued; `None` if `i` is not running.
    /// The node is pinned: churn leaves it alone until [`unpin_all`](Self::unpin_all).
    pub fn command<T>(&mut self, i: u32, f: impl FnOnce(&mut Endpoint, Instant) -> T) -> Option<T> {
        let now = self.now;
        let out = f(self.nodes.get_mut(i as usize)?.ep.as_mut()?, now);
        self.pinned.insert(i);
        self.touch(i);
        Some(out)
    }

    /// Lets churn take any node again.
    pub fn unpin_all(&mut self) {
        self.pinned.clear();
    }

    /// A random live node.
    pub fn random_live_node(&mut self) -> Option<u32> {
        self.pick_live(|_, _| true)
    }

    /// Turns the scenario's churn (`churn_per_minute` or [`Scenario::sessions`]) on or off outside
    /// [`run_lookups`](Self::run_lookups).
    pub fn set_churn(&mut self, on: bool) {
        let was = self.churn;
        self.churn = on;
        if on && !was && self.scenario.churn_per_minute > 0.0 {
            self.schedule_churn(Action::Leave);
            self.schedule_churn(Action::ChurnJoin);
        }
        if on && !was && self.scenario.sessions.is_some() {
            self.resume_sessions();
        }
    }

    /// Churn is back on with [`Scenario::sessions`]: the first time, every live node gets its
    /// departure; later, the joins restart and the sessions that ended during the pause end now.
    fn resume_sessions(&mut self) {
        if !self.sessions_started {
            self.sessions_started = true;
            self.start_sessions();
            return;
        }
        self.schedule_churn(Action::ChurnJoin);
        let now = self.now;
        for i in std::mem::take(&mut self.deferred_departs) {
            self.schedule(now, Action::Depart(i));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Measuring lookups

    /// Runs `count` measured lookups (`closest` with `get_peers` toward random targets, from
    /// random live nodes, at most one per node at a time), started at `per_second` on average
    /// (Poisson arrivals), with churn and the partition of the scenario active meanwhile.
    /// Returns one record per lookup, in start order, after every one has finished (or 10
    /// minutes of virtual time after the last start, for a lookup that never does).
    pub fn run_lookups(&mut self, count: usize, per_second: f64) -> Vec<LookupRecord> {
        let first = self.records.len();
        self.lookups_to_start = count;
        self.lookup_gap = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
        let now = self.now;
        if count > 0 {
            self.schedule(now, Action::StartLookup);
        }
        if self.scenario.churn_per_minute > 0.0 {
            self.churn = true;
            self.schedule_churn(Action::Leave);
            self.schedule_churn(Action::ChurnJoin);
        }
        if self.scenario.sessions.is_some() {
            self.churn = true;
            self.resume_sessions();
        }
        if let Some(p) = self.scenario.partition {
            self.schedule(now + p.after, Action::PartitionStart);
            self.schedule(now + p.after + p.duration, Action::PartitionEnd);
        }
        let mut last_start = now;
        while self.lookups_to_start > 0 || !self.tracked.is_empty() {
            if self.lookups_to_start > 0 {
                last_start = self.now;
            }
            if self.now > last_start + Duration::from_secs(600) || !self.step() {
                break;
            }
        }
        self.churn = false;
        // Unfinished lookups stay unfinished in their records.
        for t in std::mem::take(&mut self.tracked).into_values() {
            let rec = &mut self.records[t.record];
            rec.queries = t.queries;
            rec.replies = t.replies;
            rec.rounds = t.max_round;
            rec.values = rec.values.map(|_| t.got_values);
            rec.values_after = t.first_values.map(|at| at - rec.started);
        }
        self.records[first..].to_vec()
    }

    fn start_lookup(&mut self) {
        if self.lookups_to_start == 0 {
            return;
        }
        self.lookups_to_start -= 1;
        if self.lookups_to_start > 0 {
            let at = self.now + exponential(&mut self.work_rng, self.lookup_gap);
            self.schedule(at, Action::StartLookup);
        }
        let Some(i) = self.pick_live(|sim, i| !sim.tracked.contains_key(&i) && !sim.joining.contains_key(&i)) else {
            return;
        };
        let mut b = [0u8; 20];
        self.work_rng.fill_bytes(&mut b);
        let target = NodeId::from_array(b);
        self.eclipse(&target);
        let now = self.now;
        let k = self.nodes[i as usize].k;
        let Some(ep) = self.nodes[i as usize].ep.as_mut() else { return };
        let record = LookupRecord {
            initiator: i,
            target,
            k,
            started: now,
            duration: None,
            queries: 0,
            replies: 0,
            rounds: 0,
            responders: 0,
            found: 0,
            found_others: 0,
            found8: 0,
            outcome: None,
            values: (self.attackers.is_some() || self.scenario.holders).then_some(false),
            values_after: None,
            missed: Vec::new(),
            returned: Vec::new(),
        };
        match ep.closest(now, target, Query::get_peers(&target)) {
            Ok(op) => {
                self.records.push(record);
                let tracked = Tracked {
                    op,
                    record: self.records.len() - 1,
                    queries: 0,
                    replies: 0,
                    max_round: 0,
                    round_of: HashMap::new(),
                    pending: HashMap::new(),
                    asked: Default::default(),
                    answered: Default::default(),
                    got_values: false,
                    first_values: None,
                };
                self.tracked.insert(i, tracked);
            }
            Err(_) => self.records.push(record),
        }
        self.touch(i);
    }

    // -----------------------------------------------------------------------------------------
    // Invariants

    fn violation(&self, what: &str) -> ! {
        violated(self.now, self.scenario.seed, what)
    }

    /// Everything about one routing table: its structural invariants
    /// ([`RoutingTable::check_invariants`](krpc_core::routing::RoutingTable::check_invariants):
    /// at most k per bucket, each contact in the bucket its id belongs to, no own id, no id
    /// twice, counts that add up), k as configured, and every contact a real node at its real
    /// address (nothing invented or spoofed entered the table).
    pub fn check_table(&self, i: u32) -> Result<(), String> {
        let Some(ep) = self.nodes[i as usize].ep.as_deref() else { return Ok(()) };
        let table = ep.routing_table();
        if table.local_id() != ep.id() {
            return Err(format!("node {i}: the table is built around another id"));
        }
        if table.k() != ep.config().k {
            return Err(format!("node {i}: the table's k is {}, not the configured {}", table.k(), ep.config().k));
        }
        table.check_invariants().map_err(|violation| format!("node {i}: {violation}"))?;
        for c in table.iter() {
            match index_of(&c.addr()) {
                Some(j) if (j as usize) < self.nodes.len() && self.nodes[j as usize].id == *c.id() => {}
                Some(j) if self.is_attacker(j, c.id()) => {}
                _ => return Err(format!("node {i} holds {:?} at {}, which is no such node", c.id(), c.addr())),
            }
        }
        Ok(())
    }

    fn check_sample(&mut self) {
        let n = self.nodes.len();
        for _ in 0..self.scenario.invariant_sample.min(n) {
            let i = (self.check_cursor % n) as u32;
            self.check_cursor += 1;
            if let Err(e) = self.check_table(i) {
                self.violation(&e);
            }
        }
        self.stats.full_checks += 1;
    }

    /// Checks every routing table in full.
    pub fn check_all_tables(&self) -> Result<(), String> {
        (0..self.nodes.len() as u32).try_for_each(|i| self.check_table(i))
    }

    /// Runs without new work until no live node has an operation left (every lookup, join
    /// and refresh resolved), for at most `limit` of virtual time.
    pub fn drain_operations(&mut self, limit: Duration) -> Result<Duration, String> {
        let start = self.now;
        let end = start + limit;
        while self.busy_count > 0 {
            if self.now > end || !self.step() {
                let stuck: Vec<String> = (0..self.nodes.len())
                    .filter(|&i| self.busy[i])
                    .take(5)
                    .map(|i| {
                        let ops = self.nodes[i].ep.as_ref().map_or(0, |e| e.operations());
                        format!("node {i} ({ops} operations)")
                    })
                    .collect();
                return Err(format!(
                    "{} nodes still have operations after {limit:?} (seed {}): {}",
                    self.busy_count,
                    self.scenario.seed,
                    stuck.join(", ")
                ));
            }
        }
        Ok(self.now - start)
    }

    // -----------------------------------------------------------------------------------------
    // Memory

    /// Per live engine: (`memory_footprint()` bytes, routing-table entries), summed.
    pub fn footprint(&self) -> (usize, usize, usize) {
        let mut bytes = 0;
        let mut entries = 0;
        let mut engines = 0;
        for ep in self.nodes.iter().filter_map(|n| n.ep.as_deref()) {
            bytes += ep.memory_footprint();
            entries += ep.routing_table().len();
            engines += 1;
        }
        (engines, bytes, entries)
    }

    /// Per live engine, [`Endpoint::memory_parts`] averaged: where an engine's bytes go.
    pub fn memory_parts(&self) -> Vec<(&'static str, f64)> {
        let mut sums: Vec<(&'static str, usize)> = Vec::new();
        let mut engines = 0usize;
        for ep in self.nodes.iter().filter_map(|n| n.ep.as_deref()) {
            let parts = ep.memory_parts();
            if sums.is_empty() {
                sums = parts.iter().map(|&(name, _)| (name, 0)).collect();
            }
            for (sum, (_, bytes)) in sums.iter_mut().zip(parts) {
                sum.1 += bytes;
            }
            engines += 1;
        }
        sums.into_iter().map(|(name, bytes)| (name, bytes as f64 / engines.max(1) as f64)).collect()
    }

    /// The simulator's own heap, per node, by part: what a node costs beyond its engine
    /// ([`memory_parts`](Self::memory_parts)). Capacities, not lengths, where they can be
    /// read: what is held.
    pub fn sim_parts(&self) -> Vec<(&'static str, f64)> {
        use std::mem::size_of;
        let payload_bytes: usize = self.payloads.iter().map(Vec::capacity).sum();
        let parts = [
            ("timer_heap", self.timers.heap_bytes() + self.timer_at.capacity() * 8),
            (
                "link_queues",
                self.deliveries.heap_bytes()
                    + self.payloads.capacity() * size_of::<Vec<u8>>()
                    + payload_bytes
                    + self.free_payloads.capacity() * 4,
            ),
            ("actions", self.actions.capacity() * size_of::<Reverse<(u64, u64, Action)>>()),
            (
                "node_records",
                self.nodes.capacity() * size_of::<Node>()
                    + self.busy.capacity()
                    + self.oracle.heap_bytes()
                    + self
                        .samples
                        .as_ref()
                        .map_or(0, |s| s.iter().map(|v| 24 + v.capacity() * size_of::<NodeId>()).sum()),
            ),
            // The three maps' entries at a rough 64 bytes each (B-tree share included).
            (
                "lookups",
                self.records.capacity() * size_of::<LookupRecord>()
                    + (self.tracked.len() + self.joining.len() + self.pinned.len()) * 64,
            ),
        ];
        let n = self.nodes.len().max(1) as f64;
        parts.into_iter().map(|(name, bytes)| (name, bytes as f64 / n)).collect()
    }

    /// A one-line description of the network's state, for logs.
    pub fn describe(&self) -> String {
        let (engines, bytes, entries) = self.footprint();
        let mut s = String::new();
        let _ = write!(
            s,
            "{} nodes ({} running), {} routing entries ({:.1} per engine), engines {:.1} MB by memory_footprint",
            self.nodes.len(),
            engines,
            entries,
            entries as f64 / engines.max(1) as f64,
            bytes as f64 / 1e6
        );
        let _ = write!(s, "; per engine:");
        for (name, bytes) in self.memory_parts() {
            let _ = write!(s, " {name} {bytes:.0}");
        }
        let _ = write!(s, "; simulator per node:");
        for (name, bytes) in self.sim_parts() {
            let _ = write!(s, " {name} {bytes:.0}");
        }
        s
    }
}

/// Attributes a datagram the initiator of a measured lookup sends: a `get_peers` query
/// is the lookup's (the initiator runs no other measured lookup, and the engine's own
/// lookups use `find_node`).
fn tap_out(t: &mut Tracked, to: &SocketAddr, bytes: &[u8]) {
    let Ok(msg) = Message::decode(bytes) else { return };
    if msg.as_query().is_none_or(|q| q.method != b"get_peers") {
        return;
    }
    let Some(dest) = index_of(to) else { return };
    let Ok(tid) = <[u8; 4]>::try_from(msg.transaction_id) else { return };
    let round = *t.round_of.entry(dest).or_insert(1);
    t.pending.insert((dest, u32::from_be_bytes(tid)), round);
    t.asked.insert(dest);
    t.queries += 1;
    t.max_round = t.max_round.max(round);
}

/// Attributes a datagram the initiator of a measured lookup receives: an answer to one of
/// its queries teaches it candidates one round later than the query.
fn tap_in(t: &mut Tracked, from: u32, bytes: &[u8], now: Instant) {
    let Ok(msg) = Message::decode(bytes) else { return };
    let Ok(tid) = <[u8; 4]>::try_from(msg.transaction_id) else { return };
    let Some(round) = t.pending.remove(&(from, u32::from_be_bytes(tid))) else { return };
    let Some(r) = msg.as_response() else { return };
    t.replies += 1;
    t.answered.insert(from);
    if from < attack::ATTACKER_BASE && r.values().next().is_some() {
        t.got_values = true;
        t.first_values.get_or_insert(now);
    }
    for node in r.nodes().into_iter().flatten() {
        if let Some(j) = index_of(&node.addr) {
            t.round_of.entry(j).or_insert(round + 1);
        }
    }
}

/// Stops the run: an invariant does not hold.
fn violated(now: Instant, seed: u64, what: &str) -> ! {
    panic!("invariant violated at t={:?} (replay with KRPC_SIM_SEED={seed}): {what}", now.as_duration())
}

/// Checks that cost O(1): run on every node touched.
fn check_cheap(i: u32, ep: &Endpoint, now: Instant, seed: u64) {
    let config = ep.config();
    let table = ep.routing_table();
    // Internal pings may use 4 slots beyond `concurrency`, and verifications of unknown
    // queriers 16 more (`VERIFY_SLOTS` in krpc-core's `endpoint/rpc.rs`). A node near many
    // joiners at once reaches it: 21 in flight at 100,000 joined nodes.
    if ep.in_flight() > config.concurrency + 4 + 16 {
        violated(now, seed, &format!("node {i} has {} queries in flight", ep.in_flight()));
    }
    if ep.operations() > config.max_lookups {
        violated(now, seed, &format!("node {i} runs {} operations", ep.operations()));
    }
    let capacity: usize = (0..table.bucket_count()).map(|b| table.capacity(b)).sum();
    if table.bucket_count() > 160 || table.len() > capacity {
        violated(now, seed, &format!("node {i}: {} contacts in {} buckets", table.len(), table.bucket_count()));
    }
    if table.contains(ep.id()) {
        violated(now, seed, &format!("node {i} holds itself"));
    }
}

/// What the application of node `i` does with a query its engine surfaced, when no value
/// holder answered it: `sample_infohashes` from the placed store, `get_peers` as the node
/// layer would (a node running it hands `get_peers` over only when values are placed,
/// `endpoint_config`), anything else through the run's [`Responder`].
fn answer_query(
    i: u32,
    ep: &mut Endpoint,
    q: &IncomingQuery,
    count: usize,
    samples: Option<&[Vec<NodeId>]>,
    responder: Responder,
    now: Instant,
) {
    if crawl::answer_samples(samples, i, ep, q, count) {
        // Answered.
    } else if ep.config().dht.is_some() && q.method() == b"get_peers" {
        answer::answer_get_peers(ep, q, count, now);
    } else {
        responder(ep, q, count);
    }
}

//! The BEP 51 crawl: one [`Crawl`] state machine per [`Endpoint::crawl`](super::Endpoint::crawl),
//! held in [`Op::Crawl`](super::ops::Op) like every other operation.
//!
//! The crawl walks the id space with spread targets and sends `sample_infohashes` to the node
//! it knows nearest to each target, so that the `nodes` of the answers fill the frontier in
//! every region. Each node is asked again only after the `interval` it gave (BEP 51:
//! "interval: the number of seconds the querying node should wait before querying the node
//! again"). Sending is paced by a rate cap (one query every `1 s / rate`), whose next slot the
//! endpoint files in its timer table.
//!
//! Memory is bounded by the caller's caps: the dedupe set by `max_info_hashes`, the node
//! memory (frontier, nodes waiting for their interval, nodes that failed) by `max_nodes`. When
//! the node memory is full, newly learned nodes are refused: evicting a node waiting for its
//! interval would forget the interval (and so break the promise above), and evicting a node
//! never asked in favour of another never asked gains nothing.
//!
//! The part only holds state and decides; the endpoint sends (`outbound.rs`) and reports.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use rand_core::Rng;

use crate::event::{Event, OpId};
use crate::query::Query;
use crate::wire::Fields;
use crate::{Instant, NodeId, NodeInfo};

/// The shortest interval honoured: BEP 51 allows 0, but asking a node again at once would
/// spend the whole rate on one node of a small network. A minute is polite and still far
/// shorter than what deployed nodes give (libtorrent: 6 hours).
pub const MIN_CRAWL_INTERVAL: Duration = Duration::from_secs(60);

/// The longest interval honoured: a hostile or broken node asking for years is asked again
/// after 6 hours, libtorrent's own maximum `sample_infohashes_interval`. A node that answers
/// with samples but no `interval` is asked again after this too.
pub const MAX_CRAWL_INTERVAL: Duration = Duration::from_secs(21_600);

/// At most this many samples of one answer are read (a datagram of `max_datagram_len` holds
/// far fewer; this keeps the cost of one answer bounded whatever the configuration).
pub const MAX_SAMPLES_PER_REPLY: usize = 1024;

/// What a crawl may do; [`Endpoint::crawl`](crate::Endpoint::crawl) takes it.
///
/// ```
/// let config = krpc_core::CrawlConfig::default().with_rate(50).with_max_info_hashes(10_000);
/// assert_eq!((config.rate, config.concurrency), (50, 8));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrawlConfig {
    /// The most unique info-hashes reported (the dedupe set's cap); the crawl ends with
    /// [`Event::CrawlDone`] when it is reached. Default 1,000,000 (about 50 MB).
    pub max_info_hashes: usize,
    /// The most nodes remembered: the frontier, the nodes waiting for their interval, the
    /// nodes that failed. Beyond it, newly learned nodes are refused. Default 100,000.
    pub max_nodes: usize,
    /// Queries per second, at most; default 20. 0 is refused
    /// ([`CommandError::InvalidConfig`](crate::CommandError::InvalidConfig)).
    pub rate: u32,
    /// `sample_infohashes` queries in flight at once, default 8 (they also take the endpoint's
    /// `concurrency` slots). 0 is refused.
    pub concurrency: usize,
}

impl Default for CrawlConfig {
    fn default() -> CrawlConfig {
        CrawlConfig { max_info_hashes: 1_000_000, max_nodes: 100_000, rate: 20, concurrency: 8 }
    }
}

impl CrawlConfig {
    /// The default configuration. The struct is non-exhaustive: set the public fields
    /// afterwards, or chain the `with_` methods.
    pub fn new() -> CrawlConfig {
        CrawlConfig::default()
    }

    /// The same with `max_info_hashes` set.
    pub fn with_max_info_hashes(mut self, max_info_hashes: usize) -> CrawlConfig {
        self.max_info_hashes = max_info_hashes;
        self
    }

    /// The same with `max_nodes` set.
    pub fn with_max_nodes(mut self, max_nodes: usize) -> CrawlConfig {
        self.max_nodes = max_nodes;
        self
    }

    /// The same with `rate` set.
    pub fn with_rate(mut self, rate: u32) -> CrawlConfig {
        self.rate = rate;
        self
    }

    /// The same with `concurrency` set.
    pub fn with_concurrency(mut self, concurrency: usize) -> CrawlConfig {
        self.concurrency = concurrency;
        self
    }
}

/// What a crawl has done so far ([`Endpoint::crawl_stats`](crate::Endpoint::crawl_stats),
/// [`Event::CrawlDone`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrawlStats {
    /// `sample_infohashes` queries sent.
    pub queries: u64,
    /// Answers received (with or without samples).
    pub replies: u64,
    /// Distinct nodes that answered at least once.
    pub nodes_visited: u64,
    /// Info-hashes received in samples, repeats included.
    pub samples: u64,
    /// Distinct info-hashes reported in [`Event::CrawlFound`].
    pub unique_info_hashes: u64,
    /// Nodes remembered now (at most `max_nodes`).
    pub nodes_known: usize,
    /// Answers without `samples`: nodes that do not support BEP 51 answer like `find_node`;
    /// their `nodes` are used, and they are not asked again.
    pub unsupported: u64,
    /// Queries that failed: timeouts, KRPC errors, send failures.
    pub failures: u64,
    /// Answers dropped as malformed (a `samples` string whose length is not a multiple of the
    /// id length, no responder id). Their `nodes` are not used.
    pub malformed: u64,
    /// Learned nodes refused because the node memory was full.
    pub nodes_refused: u64,
}

/// What the crawl remembers of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeState {
    /// Never asked, or its interval has passed: in the frontier.
    Fresh,
    /// A query to it is in flight.
    Asked,
    /// Answered with samples; asked again at this time.
    Waiting(Instant),
    /// Failed, answered without samples or with garbage: never asked again.
    Finished,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    id: Option<NodeId>,
    state: NodeState,
    visited: bool,
}

/// What one answer changed, for the endpoint to report.
#[derive(Debug, Default)]
pub(crate) struct ReplyOutcome {
    /// [`Event::CrawlFound`], when the answer had new info-hashes.
    pub(crate) found: Option<Event>,
    /// Learned nodes dropped by the address policy.
    pub(crate) filtered: u64,
    /// The crawl is over (cap reached, or nothing left to ask).
    pub(crate) done: bool,
}

/// One running crawl.
#[derive(Debug)]
pub(crate) struct Crawl {
    config: CrawlConfig,
    stats: CrawlStats,
    /// The dedupe set, at most `max_info_hashes`.
    seen: BTreeSet<NodeId>,
    /// Every node remembered, by address (at most `max_nodes`).
    nodes: BTreeMap<SocketAddr, Node>,
    /// Fresh nodes with an id, sorted by id: the one nearest a target is a neighbour of it.
    frontier: BTreeSet<(NodeId, SocketAddr)>,
    /// Fresh nodes known only by address (bootstrap nodes), asked first.
    unnamed: VecDeque<SocketAddr>,
    /// Nodes waiting for their interval, soonest first.
    waiting: BTreeSet<(Instant, SocketAddr)>,
    /// Queries started and not yet answered, with what they carry (a different target each).
    in_flight: Vec<(SocketAddr, Query)>,
    /// The rate cap: no query before this.
    next_send: Instant,
    spacing: Duration,
    /// The target walk: the bit-reversed counter spreads the targets over the id space at every
    /// scale (halves, then quarters, then eighths...).
    walk: u32,
    id_len: usize,
}

impl Crawl {
    /// A crawl starting from `seeds` (nodes of the routing tables) and `bootstrap` addresses.
    /// `config` was checked by the caller (rate and concurrency non-zero).
    pub(crate) fn new(
        config: CrawlConfig,
        id_len: usize,
        now: Instant,
        seeds: impl IntoIterator<Item = NodeInfo>,
        bootstrap: impl IntoIterator<Item = SocketAddr>,
    ) -> Crawl {
        // Rounded up, so that `rate` queries never fit in less than a second.
        let spacing = Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(config.rate.max(1))));
        let mut crawl = Crawl {
            config,
            stats: CrawlStats::default(),
            seen: BTreeSet::new(),
            nodes: BTreeMap::new(),
            frontier: BTreeSet::new(),
            unnamed: VecDeque::new(),
            waiting: BTreeSet::new(),
            in_flight: Vec::new(),
            next_send: now,
            spacing,
            walk: 0,
            id_len,
        };
        for node in seeds {
            crawl.learn(node.addr, Some(node.id));
        }
        for addr in bootstrap {
            crawl.learn(addr, None);
        }
        crawl
    }

    /// Whether there is nothing to ask, now or later: the crawl is over.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.frontier.is_empty() && self.unnamed.is_empty() && self.waiting.is_empty() && self.in_flight.is_empty()
    }

    pub(crate) fn stats(&self) -> CrawlStats {
        CrawlStats { nodes_known: self.nodes.len(), ..self.stats.clone() }
    }

    pub(crate) fn done_event(&self, op: OpId) -> Event {
        Event::CrawlDone { op, stats: self.stats() }
    }

    /// Remembers a node, if the memory has room and it is new.
    fn learn(&mut self, addr: SocketAddr, id: Option<NodeId>) {
        if self.nodes.contains_key(&addr) {
            return;
        }
        if self.nodes.len() >= self.config.max_nodes {
            self.stats.nodes_refused += 1;
            return;
        }
        self.nodes.insert(addr, Node { id, state: NodeState::Fresh, visited: false });
        match id {
            Some(id) => {
                self.frontier.insert((id, addr));
            }
            None => self.unnamed.push_back(addr),
        }
    }

    /// Nodes whose interval has passed go back to the frontier.
    fn promote(&mut self, now: Instant) {
        while let Some(&(due, addr)) = self.waiting.first() {
            if due > now {
                break;
            }
            self.waiting.pop_first();
            if let Some(node) = self.nodes.get_mut(&addr) {
                node.state = NodeState::Fresh;
                match node.id {
                    Some(id) => {
                        self.frontier.insert((id, addr));
                    }
                    None => self.unnamed.push_back(addr),
                }
            }
        }
    }

    /// The next spread target: the bit-reversed walk counter as its first bytes, the rest
    /// random.
    fn next_target(&mut self, rng: &mut impl Rng) -> Option<NodeId> {
        let mut bytes = [0u8; crate::MAX_ID_LEN];
        let bytes = &mut bytes[..self.id_len];
        rng.fill_bytes(bytes);
        let prefix = self.walk.reverse_bits().to_be_bytes();
        let n = prefix.len().min(bytes.len());
        bytes[..n].copy_from_slice(&prefix[..n]);
        self.walk = self.walk.wrapping_add(1);
        NodeId::from_bytes(bytes).ok()
    }

    /// The fresh node nearest `target`: the one sharing the longest prefix with it is its
    /// neighbour in id order, on one side or the other.
    fn nearest(&self, target: &NodeId) -> Option<(NodeId, SocketAddr)> {
        let low = SocketAddr::from(([0, 0, 0, 0], 0));
        let above = self.frontier.range((*target, low)..).next();
        let below = self.frontier.range(..(*target, low)).next_back();
        match (above, below) {
            (Some(a), Some(b)) => Some(if target.cmp_distance(&a.0, &b.0).is_le() { *a } else { *b }),
            (a, b) => a.or(b).copied(),
        }
    }

    /// The next query to send, if the rate cap, the crawl's concurrency and the frontier allow
    /// one now: where to, and the id expected there. The caller checked the endpoint's slots.
    pub(crate) fn next_query(&mut self, now: Instant, rng: &mut impl Rng) -> Option<(SocketAddr, Option<NodeId>)> {
        if self.in_flight.len() >= self.config.concurrency || now < self.next_send {
            return None;
        }
        self.promote(now);
        let target = self.next_target(rng)?;
        let (addr, id) = match self.unnamed.pop_front() {
            Some(addr) => (addr, None),
            None => {
                let (id, addr) = self.nearest(&target)?;
                self.frontier.remove(&(id, addr));
                (addr, Some(id))
            }
        };
        if let Some(node) = self.nodes.get_mut(&addr) {
            node.state = NodeState::Asked;
        }
        self.in_flight.push((addr, Query::sample_infohashes(&target)));
        self.stats.queries += 1;
        self.next_send = self.next_send.max(now) + self.spacing;
        Some((addr, id))
    }

    /// The query a crawl transaction to `addr` carries.
    pub(crate) fn query_for(&self, addr: &SocketAddr) -> Option<&Query> {
        self.in_flight.iter().find(|(a, _)| a == addr).map(|(_, q)| q)
    }

    /// When the crawl wants to be woken: its next rate slot while it has someone to ask, or
    /// the end of the soonest interval. `None` while its queries fill its concurrency (their
    /// answers and timeouts wake it), or when `slots_free` is false (the endpoint's slots are
    /// full: a freed slot comes with an input, which dispatches).
    pub(crate) fn deadline(&self, slots_free: bool) -> Option<Instant> {
        if !slots_free || self.in_flight.len() >= self.config.concurrency {
            return None;
        }
        if !self.frontier.is_empty() || !self.unnamed.is_empty() {
            return Some(self.next_send);
        }
        self.waiting.first().map(|&(due, _)| due.max(self.next_send))
    }

    fn take_in_flight(&mut self, addr: &SocketAddr) -> bool {
        match self.in_flight.iter().position(|(a, _)| a == addr) {
            Some(i) => {
                self.in_flight.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn finish(&mut self, addr: &SocketAddr) {
        if let Some(node) = self.nodes.get_mut(addr) {
            node.state = NodeState::Finished;
        }
    }

    /// A query failed (timeout, KRPC error, send failure): the node is not asked again.
    /// Returns whether the crawl is over.
    pub(crate) fn on_failure(&mut self, from: &SocketAddr) -> bool {
        if self.take_in_flight(from) {
            self.stats.failures += 1;
            self.finish(from);
        }
        self.is_exhausted()
    }

    /// An answer from `from` whose id is `id` (`None`: it sent no valid id). Every byte is
    /// untrusted: a `samples` string whose length is not a multiple of the id length drops the
    /// whole answer (BEP 51: "samples: a string of 20-byte info-hashes"; a partial hash says
    /// the rest cannot be trusted either).
    pub(crate) fn on_reply(
        &mut self,
        op: OpId,
        now: Instant,
        from: SocketAddr,
        id: Option<NodeId>,
        f: &Fields<'_>,
        mut may_query: impl FnMut(&SocketAddr, &NodeId) -> bool,
    ) -> ReplyOutcome {
        let mut out = ReplyOutcome::default();
        if !self.take_in_flight(&from) {
            return out;
        }
        self.stats.replies += 1;
        let samples = f.samples_raw();
        let Some(id) = id.filter(|_| samples.is_none_or(|s| s.len() % self.id_len == 0)) else {
            self.stats.malformed += 1;
            self.finish(&from);
            out.done = self.is_exhausted();
            return out;
        };
        let first_visit = match self.nodes.get_mut(&from) {
            Some(node) => {
                node.id.get_or_insert(id);
                !core::mem::replace(&mut node.visited, true)
            }
            None => true,
        };
        if first_visit {
            self.stats.nodes_visited += 1;
        }
        for node in f.nodes().into_iter().flatten().chain(f.nodes6().into_iter().flatten()) {
            if may_query(&node.addr, &node.id) {
                self.learn(node.addr, Some(node.id));
            } else {
                out.filtered += 1;
            }
        }
        match samples {
            Some(raw) => {
                // BEP 51: "the number of seconds the querying node should wait before querying
                // the node again", clamped (a negative or absurd value is a hostile one).
                let secs = f.interval().unwrap_or(MAX_CRAWL_INTERVAL.as_secs() as i64);
                let interval = Duration::from_secs(secs.max(0) as u64).clamp(MIN_CRAWL_INTERVAL, MAX_CRAWL_INTERVAL);
                let due = now + interval;
                if let Some(node) = self.nodes.get_mut(&from) {
                    node.state = NodeState::Waiting(due);
                    self.waiting.insert((due, from));
                }
                let mut new = Vec::new();
                for chunk in raw.chunks_exact(self.id_len).take(MAX_SAMPLES_PER_REPLY) {
                    self.stats.samples += 1;
                    let Ok(hash) = NodeId::from_bytes(chunk) else { continue };
                    if self.seen.len() < self.config.max_info_hashes && self.seen.insert(hash) {
                        new.push(hash);
                    }
                }
                self.stats.unique_info_hashes = self.seen.len() as u64;
                if !new.is_empty() {
                    out.found = Some(Event::CrawlFound { op, from: NodeInfo::new(id, from), info_hashes: new });
                }
                if self.seen.len() >= self.config.max_info_hashes {
                    out.done = true;
                }
            }
            None => {
                // Answered like `find_node`: no BEP 51 here.
                self.stats.unsupported += 1;
                self.finish(&from);
            }
        }
        out.done |= self.is_exhausted();
        out
    }

    /// Heap bytes held, roughly, for memory accounting.
    pub(crate) fn memory_footprint(&self) -> usize {
        // A B-tree entry costs about its key and value plus a share of its node.
        let id = core::mem::size_of::<NodeId>();
        let addr = core::mem::size_of::<SocketAddr>();
        self.seen.len() * (id + 8)
            + self.nodes.len() * (addr + core::mem::size_of::<Node>() + 8)
            + self.frontier.len() * (id + addr + 8)
            + self.waiting.len() * (addr + 16)
            + self.unnamed.capacity() * addr
            + self.in_flight.capacity() * (addr + core::mem::size_of::<Query>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_spreads_the_targets_over_the_space_at_every_scale() {
        let mut crawl = Crawl::new(CrawlConfig::default(), 20, Instant::ZERO, [], []);
        let mut rng = rand_chacha::ChaCha12Rng::from_seed([0; 32]);
        use rand_core::SeedableRng;
        let firsts: Vec<u8> = (0..8).map(|_| crawl.next_target(&mut rng).unwrap().as_bytes()[0] >> 5).collect();
        // Eight targets fall in eight different eighths of the space.
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<u8>>(), "{firsts:?}");
        assert_eq!(&firsts[..2], &[0, 4], "halves first");
    }

    #[test]
    fn the_nearest_fresh_node_is_found_on_either_side_of_the_target() {
        let addr = |i: u8| SocketAddr::from(([10, 0, 0, i], 1));
        let id = |b: u8| NodeId::from_array([b; 20]);
        let seeds =
            [NodeInfo::new(id(0x10), addr(1)), NodeInfo::new(id(0x80), addr(2)), NodeInfo::new(id(0xf0), addr(3))];
        let crawl = Crawl::new(CrawlConfig::default(), 20, Instant::ZERO, seeds, []);
        assert_eq!(crawl.nearest(&id(0x81)).map(|n| n.1), Some(addr(2)), "below it");
        assert_eq!(crawl.nearest(&id(0x7f)).map(|n| n.1), Some(addr(1)), "below, in the same half");
        assert_eq!(crawl.nearest(&id(0x05)).map(|n| n.1), Some(addr(1)), "above it");
        assert_eq!(crawl.nearest(&id(0xff)).map(|n| n.1), Some(addr(3)));
    }

    #[test]
    fn the_rate_spacing_is_rounded_up() {
        let config = CrawlConfig { rate: 3, ..CrawlConfig::default() };
        let crawl = Crawl::new(config, 20, Instant::ZERO, [], []);
        assert!(crawl.spacing * 3 >= Duration::from_secs(1));
    }
}

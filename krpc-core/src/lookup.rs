//! One iterative lookup (`closest`, `populate`): candidates ordered by XOR distance to the
//! target, queried α at a time, finished when the k closest have all answered.
//!
//! Fixes against k-rpc (weakness W14): candidates that time out or fail lose their place among
//! the k closest instead of blocking it; bootstrap nodes are asked only through the same
//! concurrency budget; the lookup converges by rule (the k closest live candidates answered),
//! not by exhausting its table; and tokens are kept per responder.
//!
//! Tuned in simulation (`docs/simulation.md`):
//! - α (`lookup_parallelism`) counts only queries that are not *slow*: a query unanswered
//!   after `lookup_soft_timeout` frees its slot (libtorrent's short timeout) but stays open,
//!   and a late answer is still used;
//! - a candidate whose query went unanswered is asked again up to `lookup_retries` times:
//!   at its soft timeout when one is configured (the first query stays open, whichever answer
//!   comes first counts), else at its timeout;
//! - a candidate whose last try is slow no longer holds up the end of the lookup: the lookup
//!   ends when the k closest candidates that are neither failed nor slow have answered. A
//!   slow node that answers before the end is used like any other;
//! - the final round (`lookup_final_round`): once the nearest candidate still in the running
//!   has answered, nothing in flight has named a nearer one yet, and the lookup asks the rest
//!   of its k nearest at once instead of α at a time. Maymounkov and Mazières (Kademlia,
//!   2002, section 2.3): "If a round of FIND_NODEs fails to return a node any closer than the
//!   closest already seen, the initiator resends the FIND_NODE to all of the k closest nodes
//!   it has not already queried." These are the nodes the lookup would ask anyway, so it
//!   costs almost no queries and saves the last round trip.
//! - the neighbourhood (`lookup_neighbourhood`): a candidate within a few times the expected
//!   distance of the target's k-th nearest node (k / N of the id space, N the DHT's estimated
//!   size) is asked at once too, as in the final round. The answer that first names the
//!   target's neighbours usually names several; with α slots they would be asked one round
//!   trip after another, though the lookup must ask nearly all of them anyway.

use alloc::vec::Vec;
use core::net::SocketAddr;

/// The most disjoint paths one lookup can run ([`Params::paths`]).
pub(crate) const MAX_PATHS: usize = 4;
use core::time::Duration;

use crate::event::LookupNode;
use crate::query::{Query, Token};
use crate::transaction::same_endpoint;
use crate::{NodeId, NodeInfo};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CandidateState {
    /// To be asked (again, after a try that went unanswered, when `tries > 0`).
    Fresh,
    /// Asked; waiting for the answer.
    InFlight,
    /// Answered.
    Replied,
    /// Out of the lookup: an error, a wrong id, a failed send, or every try unanswered.
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    /// `None` for bootstrap nodes, whose id we learn from their reply.
    id: Option<NodeId>,
    addr: SocketAddr,
    state: CandidateState,
    token: Option<Token>,
    /// Queries sent to it so far (at most `1 + retries`).
    tries: u8,
    /// Of those, the ones still open (a late answer to an earlier try still counts).
    open: u8,
    /// Its latest try is past the soft timeout: it holds no α slot.
    slow: bool,
    /// The disjoint path it belongs to: the path of the node that named it first (seeds are
    /// dealt to the paths in turn). Always 0 with one path.
    path: u8,
    /// For a lookup that fills a bucket ([`Lookup::step_spread`]): the sub-range of the
    /// bucket's range its latest query asked about.
    sub: u8,
}

impl Candidate {
    fn fresh(id: Option<NodeId>, addr: SocketAddr, path: u8) -> Candidate {
        Candidate { id, addr, state: CandidateState::Fresh, token: None, tries: 0, open: 0, slow: false, path, sub: 0 }
    }

    /// Whether it still keeps the lookup from ending: not failed, and not an unanswered last
    /// try past its soft timeout.
    fn pending(&self, retries: u8) -> bool {
        match self.state {
            CandidateState::Fresh => true,
            CandidateState::InFlight => !(self.slow && self.tries > retries),
            CandidateState::Replied | CandidateState::Failed => false,
        }
    }

    /// Whether it is out of the k closest: failed, or given up on (see `pending`).
    fn out(&self, retries: u8) -> bool {
        self.state == CandidateState::Failed
            || (self.state == CandidateState::InFlight && self.slow && self.tries > retries)
    }
}

#[derive(Debug)]
pub(crate) struct Lookup {
    target: NodeId,
    query: Query,
    background: bool,
    /// `closest` reports each reply; `populate` only fills the routing table.
    report_replies: bool,
    /// Sorted by distance to `target`, nearest first; id-less (bootstrap) ones at the front.
    candidates: Vec<Candidate>,
    /// [`endpoint_key`] of each candidate's address, in the same order. Every answer names up
    /// to k nodes, each looked up among the candidates by address before it is added; a scan
    /// of these 8-byte keys reads a fraction of the memory a scan of the candidates would.
    keys: Vec<u64>,
    /// Queries of this lookup in flight, slow ones and earlier tries included.
    in_flight: usize,
    /// Candidates holding an α slot: asked, and their latest try not slow.
    active: usize,
    /// `in_flight` and `active` per disjoint path.
    path_in_flight: [usize; MAX_PATHS],
    path_active: [usize; MAX_PATHS],
    /// How many disjoint paths (1 to [`MAX_PATHS`]).
    paths: u8,
    /// The path the next seed is dealt to.
    next_path: u8,
    replies: usize,
    queries_sent: usize,
    k: usize,
    alpha: usize,
    max_candidates: usize,
    retries: u8,
    restrict_ips: bool,
    restrict_local: bool,
    final_round: bool,
    /// [`neighbourhood_radius`]: a candidate nearer than this (the first 128 bits of its
    /// distance) is asked without waiting for an α slot. 0: none is.
    near: u128,
}

/// A key that endpoints equal by [`same_endpoint`] share: the canonical IP (an IPv4-mapped IPv6
/// address is its IPv4 address) and the port. Exact for IPv4; an IPv6 address is folded, so two
/// may share a key and [`Lookup::position_at`] compares the addresses themselves on a match.
fn endpoint_key(addr: &SocketAddr) -> u64 {
    let port = u64::from(addr.port());
    match crate::wire::canonical_ip(addr.ip()) {
        core::net::IpAddr::V4(v4) => u64::from(u32::from(v4)) << 16 | port,
        core::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            // Set bit 63 so that no IPv6 key equals an IPv4 one (those stay below 2^48).
            ((bits >> 64) as u64 ^ (bits as u64).rotate_left(29) ^ port.rotate_left(48)) | 1 << 63
        }
    }
}

/// The radius of a target's neighbourhood (the first 128 bits of an XOR distance): `factor`
/// times the expected distance of the k-th nearest of `dht_size` uniformly spread ids, k / N
/// of the id space. 0 (nothing is near) when `factor` is 0 or the size unknown; the whole
/// space when the product passes it.
pub(crate) fn neighbourhood_radius(dht_size: Option<u64>, k: usize, factor: u32) -> u128 {
    match dht_size {
        Some(n) if n > 0 && factor > 0 => {
            (u128::MAX / u128::from(n)).saturating_mul((k as u128).saturating_mul(u128::from(factor)))
        }
        _ => 0,
    }
}

/// What the lookup wants next.
pub(crate) enum Step {
    /// Query this candidate (index into `candidates`); it is now in flight.
    Query(usize),
    /// Nothing to send now; answers are pending.
    Wait,
    /// The lookup is complete.
    Done,
}

/// The bits after a bucket's prefix that split its range into the sub-ranges a bucket fill
/// spreads over ([`Lookup::step_spread`]): 8, as many as a BEP 5 bucket has entries.
pub(crate) const SPREAD_BITS: usize = 3;

/// The sub-range of a bucket at `depth` (its ids share `depth` bits with ours and differ in
/// the next) that `id` falls in: its [`SPREAD_BITS`] bits after the first `depth + 1`. Ids too
/// short to have them fall in sub-range 0.
pub(crate) fn subrange(id: &NodeId, depth: usize) -> u8 {
    (0..SPREAD_BITS).fold(0, |acc, j| (acc << 1) | u8::from(id.bit(depth + 1 + j)))
}

/// What a bucket fill knows of its bucket when it picks the next query
/// ([`Lookup::step_spread`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spread {
    /// The bucket's depth: its range is the ids that share the lookup target's first
    /// `depth + 1` bits.
    pub(crate) depth: usize,
    /// The sub-ranges ([`subrange`]) the bucket's entries cover already, one bit each.
    pub(crate) covered: u8,
}

/// The shortest adaptive soft timeout: below this, ordinary jitter would mark live nodes slow.
pub(crate) const MIN_SOFT_TIMEOUT: Duration = Duration::from_millis(250);

/// Upper bounds of the round-trip bands of [`RttEstimator`], in milliseconds: steps of √2 from
/// 71 ms, the last band open. Past 9 s every answer lands in the last band, and a soft timeout
/// that long is above any cap that makes sense.
const RTT_BANDS_MS: [u64; 16] =
    [71, 100, 141, 200, 283, 400, 566, 800, 1131, 1600, 2263, 3200, 4525, 6400, 9051, u64::MAX];

/// Answers the histogram holds before it halves every band.
const RTT_WINDOW: u32 = 128;

/// Answers timed before the adaptive soft timeout trusts its estimate.
const MIN_RTT_SAMPLES: u32 = 8;

/// The share of live answers the adaptive soft timeout waits for, in tenths.
const SOFT_QUANTILE_TENTHS: u32 = 9;

/// The round trips of our queries, for the adaptive soft timeout: a histogram of answers per
/// band of round-trip time, 16 bytes. The soft timeout is its 90th percentile.
///
/// A percentile rather than TCP's `srtt + 4·rttvar` (RFC 6298), which this used first: a
/// node's queries go to peers all over the world, each pair with its own round trip, and a
/// spread that wide put `srtt + 4·rttvar` at the 1 s cap (docs/simulation.md, "A percentile
/// soft timeout"), so a silent node held its slot, and then the end of the lookup, for a second and
/// again for its retry. The 90th percentile frees the slot of a silent node as soon as 9 answers
/// in 10 would have come, at the cost of a second query to the slowest tenth of live nodes
/// (whose first answer still counts).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RttEstimator {
    /// Answers per band of [`RTT_BANDS_MS`]; all halved when they reach [`RTT_WINDOW`], so
    /// that the estimate follows about the last hundred answers.
    counts: [u8; 16],
}

impl RttEstimator {
    /// Takes one round trip into account.
    pub(crate) fn sample(&mut self, rtt: Duration) {
        let ms = u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX);
        let band = RTT_BANDS_MS.iter().position(|&upper| ms < upper).unwrap_or(RTT_BANDS_MS.len() - 1);
        if self.total() >= RTT_WINDOW {
            for c in &mut self.counts {
                *c /= 2;
            }
        }
        self.counts[band] += 1;
    }

    fn total(&self) -> u32 {
        self.counts.iter().map(|&c| u32::from(c)).sum()
    }

    /// The soft timeout for a query sent now: the 90th percentile of the answers timed so far,
    /// interpolated within its band, within [`MIN_SOFT_TIMEOUT`] and `cap`. Until
    /// [`MIN_RTT_SAMPLES`] answers were timed, twice the upper bound of the slowest answer's
    /// band; `cap` itself before the first.
    pub(crate) fn soft_timeout(&self, cap: Duration) -> Duration {
        let total = self.total();
        if total == 0 {
            return cap;
        }
        if total < MIN_RTT_SAMPLES {
            // Too few for a percentile: twice the slowest answer so far (its band's bound).
            let slowest = self.counts.iter().rposition(|&c| c > 0).map_or(u64::MAX, |b| RTT_BANDS_MS[b]);
            return Duration::from_millis(slowest.saturating_mul(2)).clamp(MIN_SOFT_TIMEOUT.min(cap), cap);
        }
        // The rank of the percentile, in tenths of an answer so that it is exact.
        let rank = total * SOFT_QUANTILE_TENTHS;
        let mut below = 0u32;
        let mut lower = 0u64;
        let mut at = cap;
        for (band, &upper) in RTT_BANDS_MS.iter().enumerate() {
            let here = u32::from(self.counts[band]);
            if (below + here) * 10 >= rank && here > 0 {
                if upper == u64::MAX {
                    break; // past the last bounded band: the cap
                }
                // Linear within the band: the share of its answers the rank needs.
                let within = u64::from(rank - below * 10);
                let ms = lower + (upper - lower) * within / (u64::from(here) * 10);
                at = Duration::from_millis(ms);
                break;
            }
            below += here;
            lower = upper;
        }
        at.clamp(MIN_SOFT_TIMEOUT.min(cap), cap)
    }
}

/// The knobs of one lookup, from [`Config`](crate::Config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// How many closest responders end the lookup.
    pub(crate) k: usize,
    /// Queries in flight (slow ones excluded).
    pub(crate) alpha: usize,
    /// Cap on remembered candidates.
    pub(crate) max_candidates: usize,
    /// Extra tries after a try went unanswered.
    pub(crate) retries: u8,
    /// One candidate per IPv4 /24 or IPv6 /64 (`restrict_search_ips`), loopback and private
    /// addresses included only when `restrict_local`.
    pub(crate) restrict_ips: bool,
    pub(crate) restrict_local: bool,
    /// Disjoint paths (`lookup_disjoint_paths`), 1 to [`MAX_PATHS`].
    pub(crate) paths: u8,
    /// Ask the rest of the k nearest at once once the nearest has answered
    /// (`lookup_final_round`).
    pub(crate) final_round: bool,
    /// Candidates nearer than this are asked at once ([`neighbourhood_radius`]).
    pub(crate) near: u128,
}

impl Params {
    pub(crate) fn of(config: &crate::Config) -> Params {
        Params {
            k: config.k,
            alpha: config.lookup_alpha(),
            max_candidates: config.max_lookup_candidates,
            retries: config.lookup_retries,
            restrict_ips: config.restrict_search_ips,
            restrict_local: config.restrict_local_ips,
            paths: config.lookup_disjoint_paths.clamp(1, MAX_PATHS) as u8,
            final_round: config.lookup_final_round,
            near: 0,
        }
    }

    /// The same, with the neighbourhood of a DHT of `dht_size` nodes (estimated by the
    /// caller, who has the routing table).
    pub(crate) fn with_dht_size(self, config: &crate::Config, dht_size: Option<u64>) -> Params {
        Params { near: neighbourhood_radius(dht_size, config.k, config.lookup_neighbourhood), ..self }
    }
}

/// The subnet a candidate counts toward for [`Params::restrict_ips`]: its IPv4 /24 or IPv6
/// /64, `None` when exempt.
fn subnet_of(addr: &SocketAddr, restrict_local: bool) -> Option<u128> {
    let ip = crate::wire::canonical_ip(addr.ip());
    if crate::address::is_local(ip) && !restrict_local {
        return None;
    }
    Some(match ip {
        core::net::IpAddr::V4(v4) => u128::from(u32::from(v4) >> 8),
        core::net::IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
    })
}

impl Lookup {
    /// Heap bytes of the candidate list, for memory accounting.
    pub(crate) fn candidate_bytes(&self) -> usize {
        self.candidates.capacity() * core::mem::size_of::<Candidate>()
    }

    /// The id the lookup converges on.
    pub(crate) fn target(&self) -> &NodeId {
        &self.target
    }

    /// The query sent to every node visited.
    pub(crate) fn query(&self) -> &Query {
        &self.query
    }

    /// A background lookup (`populate`, refresh): it yields to everything else.
    pub(crate) fn is_background(&self) -> bool {
        self.background
    }

    /// Whether each reply is reported (`closest`).
    pub(crate) fn reports_replies(&self) -> bool {
        self.report_replies
    }

    /// Queries of this lookup in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Replies received so far.
    pub(crate) fn replies(&self) -> usize {
        self.replies
    }

    /// Nodes named in answers that this lookup never asked (ids known, no query sent): what a
    /// join heard of on its way, which the refresh of its thin buckets asks first.
    pub(crate) fn unasked(&self) -> impl Iterator<Item = NodeInfo> + '_ {
        self.candidates.iter().filter(|c| c.state == CandidateState::Fresh && c.tries == 0).filter_map(|c| {
            let id = c.id?;
            Some(NodeInfo::new(id, c.addr))
        })
    }

    /// Where candidate `i` (as named by [`Step::Query`]) is, and its id if known.
    pub(crate) fn candidate(&self, i: usize) -> (SocketAddr, Option<NodeId>) {
        let c = &self.candidates[i];
        (c.addr, c.id)
    }

    pub(crate) fn new(target: NodeId, query: Query, background: bool, report_replies: bool, params: Params) -> Lookup {
        let Params { k, alpha, max_candidates, retries, restrict_ips, restrict_local, paths, final_round, near } =
            params;
        Lookup {
            target,
            query,
            background,
            report_replies,
            candidates: Vec::new(),
            keys: Vec::new(),
            in_flight: 0,
            active: 0,
            path_in_flight: [0; MAX_PATHS],
            path_active: [0; MAX_PATHS],
            paths: paths.clamp(1, MAX_PATHS as u8),
            next_path: 0,
            replies: 0,
            queries_sent: 0,
            k,
            alpha,
            max_candidates,
            retries,
            restrict_ips,
            restrict_local,
            final_round,
            near,
        }
    }

    /// The first candidate at `addr` or with id `id`.
    fn position_of(&self, id: Option<&NodeId>, addr: &SocketAddr) -> Option<usize> {
        let by_addr = self.position_at(addr, |_| true);
        let Some(id) = id else { return by_addr };
        // Ids are unique among the candidates, and the ones with an id are sorted by distance
        // to the target after the id-less ones: so the id, if there, is within the run of
        // candidates at its distance, which starts where the nearer ones end. (The run is one
        // candidate long unless ids of another length than the target's pad to equal
        // distances.) Only candidates before `by_addr` can come first.
        let end = by_addr.unwrap_or(self.candidates.len());
        let seeds = self.seeds().min(end);
        let target = &self.target;
        let from = seeds
            + self.candidates[seeds..end]
                .partition_point(|c| c.id.as_ref().is_some_and(|cid| target.cmp_distance(cid, id).is_lt()));
        let by_id = self.candidates[from..end]
            .iter()
            .take_while(|c| c.id.as_ref().is_some_and(|cid| target.cmp_distance(cid, id).is_eq()))
            .position(|c| c.id.as_ref() == Some(id))
            .map(|i| i + from);
        by_id.or(by_addr)
    }

    /// The first candidate at `addr` (the same endpoint, [`same_endpoint`]) for which `pred`
    /// holds.
    fn position_at(&self, addr: &SocketAddr, mut pred: impl FnMut(&Candidate) -> bool) -> Option<usize> {
        let key = endpoint_key(addr);
        let mut from = 0;
        while let Some(i) = self.keys[from..].iter().position(|&k| k == key) {
            let at = from + i;
            let c = &self.candidates[at];
            if same_endpoint(&c.addr, addr) && pred(c) {
                return Some(at);
            }
            from = at + 1;
        }
        None
    }

    /// How many id-less (bootstrap) candidates lead the list.
    fn seeds(&self) -> usize {
        self.candidates.iter().take_while(|c| c.id.is_none()).count()
    }

    /// Inserts a candidate at `at`, keeping [`Lookup::keys`] in step.
    fn insert_candidate(&mut self, at: usize, c: Candidate) {
        self.keys.insert(at, endpoint_key(&c.addr));
        self.candidates.insert(at, c);
    }

    /// Removes the candidate at `i`, keeping [`Lookup::keys`] in step.
    fn remove_candidate(&mut self, i: usize) -> Candidate {
        self.keys.remove(i);
        self.candidates.remove(i)
    }

    /// The path the next seed goes to: seeds are dealt to the paths in turn.
    fn deal_path(&mut self) -> u8 {
        let p = self.next_path;
        self.next_path = (p + 1) % self.paths;
        p
    }

    /// Adds a bootstrap node (no id): asked before any id-bearing candidate.
    pub(crate) fn add_seed_addr(&mut self, addr: SocketAddr) {
        if self.position_of(None, &addr).is_none() && self.candidates.len() < self.max_candidates {
            let at = self.seeds();
            let path = self.deal_path();
            self.insert_candidate(at, Candidate::fresh(None, addr, path));
        }
    }

    /// Adds a node from the routing table (a seed of the lookup), dealt to the next path.
    pub(crate) fn add_node(&mut self, node: NodeInfo) {
        if self.position_of(Some(&node.id), &node.addr).is_some() {
            return;
        }
        let path = self.deal_path();
        self.add_on_path(node, path);
    }

    /// Adds a node named in a reply of a candidate on `path` (see [`Lookup::on_reply`]).
    pub(crate) fn add_learned(&mut self, node: NodeInfo, path: u8) {
        self.add_on_path(node, path.min(self.paths - 1));
    }

    /// Adds a node on `path`. Duplicates (same id or same address) are ignored, whatever
    /// their path: a node belongs to one path only, which is what keeps the paths disjoint
    /// (S/Kademlia). When full, the farthest candidate with no query open makes room, or the
    /// new one is dropped if it is the farthest.
    fn add_on_path(&mut self, node: NodeInfo, path: u8) {
        if self.position_of(Some(&node.id), &node.addr).is_some() {
            return;
        }
        let seeds = self.seeds();
        let target = self.target;
        let mut at = seeds
            + self.candidates[seeds..]
                .partition_point(|c| c.id.as_ref().is_some_and(|id| target.cmp_distance(id, &node.id).is_lt()));
        // One candidate per subnet (libtorrent's `restrict_search_ips`): one subnet cannot
        // fill the set of nodes asked, nor the result, with ids it chose near the target. A
        // nearer newcomer takes the place of a farther one not yet asked, so that entries
        // named in `nodes` lists cannot block a subnet's real node.
        if self.restrict_ips {
            if let Some(net) = subnet_of(&node.addr, self.restrict_local) {
                let same =
                    self.candidates[seeds..].iter().position(|c| subnet_of(&c.addr, self.restrict_local) == Some(net));
                if let Some(i) = same.map(|i| i + seeds) {
                    let c = &self.candidates[i];
                    if i < at && c.id.is_some() || c.state != CandidateState::Fresh || c.tries > 0 {
                        return;
                    }
                    self.remove_candidate(i);
                    if i < at {
                        at -= 1;
                    }
                }
            }
        }
        if self.candidates.len() >= self.max_candidates {
            if at >= self.candidates.len() {
                return;
            }
            match self.candidates.iter().rposition(|c| c.open == 0 && c.id.is_some()) {
                Some(far) if far >= at => {
                    self.remove_candidate(far);
                }
                _ => return,
            }
        }
        self.insert_candidate(at, Candidate::fresh(Some(node.id), node.addr, path));
    }

    /// The next action, given that `may_send` more queries can leave now.
    ///
    /// Each path is a lookup of its own over its own candidates: it is complete when its k
    /// nearest candidates still in the running have answered (or when it has nothing left to
    /// ask and nothing in flight that could change that), and the lookup is complete when
    /// every path is. With one path this is the plain Kademlia rule.
    ///
    /// A path keeps α queries in flight, or up to k once the nearest of its candidates still
    /// in the running has answered (the final round, when `final_round` is on) or while the
    /// candidate it would ask next lies in the target's neighbourhood (`near`).
    pub(crate) fn step(&mut self, may_send: bool) -> Step {
        // Bootstrap nodes first, within α; then the nearest fresh candidate among the k
        // nearest that are still in the running.
        let paths = usize::from(self.paths);
        let mut window = [0usize; MAX_PATHS];
        let mut all_replied = [true; MAX_PATHS];
        let mut pick: [Option<usize>; MAX_PATHS] = [None; MAX_PATHS];
        let mut full = 0;
        // Whether the nearest candidate of the path (with an id, still in the running) has
        // answered.
        let mut converged = [false; MAX_PATHS];
        // Whether the candidate the path would ask next is a neighbour of the target.
        let mut neighbour = [false; MAX_PATHS];
        let retries = self.retries;
        for (i, c) in self.candidates.iter().enumerate() {
            let p = usize::from(c.path);
            if c.id.is_none() {
                if c.state == CandidateState::Fresh && pick[p].is_none() {
                    pick[p] = Some(i);
                }
                if c.pending(retries) {
                    all_replied[p] = false;
                }
                continue;
            }
            if c.out(retries) || window[p] == self.k {
                continue;
            }
            window[p] += 1;
            if window[p] == self.k {
                full += 1;
            }
            if window[p] == 1 {
                converged[p] = c.state == CandidateState::Replied;
            }
            if c.pending(retries) {
                all_replied[p] = false;
            }
            if c.state == CandidateState::Fresh && pick[p].is_none() {
                pick[p] = Some(i);
                neighbour[p] = c.id.is_some_and(|id| self.target.distance(&id).top128() < self.near);
            }
            if full == paths {
                break;
            }
        }
        // The path to query next: of those not complete with a candidate to ask and a free
        // α slot, the one with the fewest queries out (the lowest on a tie).
        let mut next: Option<usize> = None;
        let mut busy = false;
        for p in 0..paths {
            if window[p] == self.k && all_replied[p] {
                continue;
            }
            match pick[p] {
                Some(_) if may_send && self.path_active[p] < self.slots(converged[p], neighbour[p]) => {
                    next = Some(next.map_or(p, |q| if self.path_active[p] < self.path_active[q] { p } else { q }));
                }
                Some(_) => busy = true,
                // Only slow queries left: wait for their answers or timeouts, unless none of
                // them can change the result any more.
                None if self.path_in_flight[p] > 0 && (!all_replied[p] || window[p] < self.k) => busy = true,
                None => {}
            }
        }
        match next {
            Some(p) => {
                let i = pick[p].unwrap_or_default();
                self.ask(i);
                Step::Query(i)
            }
            None if busy => Step::Wait,
            None => Step::Done,
        }
    }

    /// Candidate `i` is asked: it is in flight and holds a slot of its path.
    fn ask(&mut self, i: usize) {
        let c = &mut self.candidates[i];
        c.state = CandidateState::InFlight;
        c.tries = c.tries.saturating_add(1);
        c.open = c.open.saturating_add(1);
        c.slow = false;
        let p = usize::from(c.path);
        self.active += 1;
        self.in_flight += 1;
        self.path_active[p] += 1;
        self.path_in_flight[p] += 1;
        self.queries_sent += 1;
    }

    /// The next query of a lookup that only fills one bucket (the join's refresh of a thin
    /// bucket), picked to spread the bucket's entries over its range rather than to converge.
    ///
    /// A lookup gains, per hop, the bits its target shares with the best entry of the bucket
    /// it goes through. Entries drawn evenly from a bucket's range match a random target on
    /// about log2(k) bits beyond the bucket's prefix; the nodes a lookup of one target meets
    /// are bunched around it, and Kademlia keeps the first it puts in a bucket. So each query
    /// of a fill asks about a different sub-range ([`subrange`]) that no entry covers yet
    /// (the answer names nodes there: [`Lookup::spread_target`] is the target it carries), and
    /// goes first to a candidate of the range in an uncovered sub-range (its answer puts it
    /// in the bucket). Candidates of covered sub-ranges, and candidates outside the range
    /// (which only name nodes), are asked when no query is out that could still name better
    /// ones. Every answer from inside the range fills a slot, as before; the caller keeps no
    /// more queries in flight than the bucket has room for, and ends the fill once it is full.
    pub(crate) fn step_spread(&mut self, may_send: bool, spread: Spread) -> Step {
        // Nothing may leave and something is out: the answer is to wait, whatever the list
        // holds (the engine asks every lookup after each input, so this is the common case).
        if !may_send && self.in_flight > 0 {
            return Step::Wait;
        }
        let Spread { depth, covered } = spread;
        let target = self.target;
        let in_range = |id: &NodeId| id.common_prefix_len(&target) > depth;
        // Sub-ranges an open query will cover (its node is in the range: its answer puts it in
        // the bucket), and those open queries ask about.
        let (mut filling, mut asked) = (0u8, 0u8);
        for c in self.candidates.iter().filter(|c| c.open > 0) {
            asked |= 1 << c.sub;
            if let Some(id) = c.id.filter(|id| in_range(id)) {
                filling |= 1 << subrange(&id, depth);
            }
        }
        let uncovered = !(covered | filling);
        // (class, index): 0 an uncovered sub-range of the range, 1 the range, 2 elsewhere.
        let mut pick: Option<(u8, usize)> = None;
        for (i, c) in self.candidates.iter().enumerate() {
            if c.state != CandidateState::Fresh {
                continue;
            }
            let class = match c.id {
                Some(id) if in_range(&id) && uncovered & (1 << subrange(&id, depth)) != 0 => 0,
                Some(id) if in_range(&id) => 1,
                _ => 2,
            };
            if pick.is_none_or(|(best, _)| class < best) {
                pick = Some((class, i));
                if class == 0 {
                    break;
                }
            }
        }
        let Some((class, i)) = pick else {
            return if self.in_flight > 0 { Step::Wait } else { Step::Done };
        };
        if !may_send || (class > 0 && self.in_flight > 0) {
            return Step::Wait;
        }
        // Ask about an uncovered sub-range other than the candidate's own (its answer covers
        // that one); failing that, about the candidate's own, then about the target's.
        let own = self.candidates[i].id.filter(|id| in_range(id)).map(|id| subrange(&id, depth));
        let wanted = uncovered & !asked;
        let others = own.map_or(wanted, |o| wanted & !(1 << o));
        let sub =
            if others != 0 { others.trailing_zeros() as u8 } else { own.unwrap_or_else(|| subrange(&target, depth)) };
        self.candidates[i].sub = sub;
        self.ask(i);
        Step::Query(i)
    }

    /// The target a bucket fill's query to `addr` asks about ([`Lookup::step_spread`]): the
    /// lookup's target moved into the sub-range picked for that query. `None` if no query to
    /// `addr` is open.
    pub(crate) fn spread_target(&self, addr: &SocketAddr, depth: usize) -> Option<NodeId> {
        let i = self.in_flight_at(addr)?;
        let sub = self.candidates[i].sub;
        let mut id = self.target;
        for j in 0..SPREAD_BITS {
            // Bits past the id's end are ignored.
            id = id.with_bit(depth + 1 + j, (sub >> (SPREAD_BITS - 1 - j)) & 1 == 1);
        }
        Some(id)
    }

    /// The α slots of a path: α, or k in the final round or for a neighbour of the target
    /// (it would be asked anyway, so at once).
    fn slots(&self, converged: bool, neighbour: bool) -> usize {
        if (self.final_round && converged) || neighbour { self.alpha.max(self.k) } else { self.alpha }
    }

    /// Index of the candidate at `addr` with a query open.
    pub(crate) fn in_flight_at(&self, addr: &SocketAddr) -> Option<usize> {
        self.position_at(addr, |c| c.open > 0)
    }

    /// Closes one open query of the candidate at index `i`; returns whether it was the last.
    fn close_one(&mut self, i: usize) -> bool {
        self.in_flight -= 1;
        self.path_in_flight[usize::from(self.candidates[i].path)] -= 1;
        let c = &mut self.candidates[i];
        c.open -= 1;
        c.open == 0
    }

    /// The candidate at index `i` stops holding an α slot, if it held one.
    fn release(&mut self, i: usize) {
        let c = &mut self.candidates[i];
        if c.state == CandidateState::InFlight && !c.slow {
            c.slow = true;
            self.active -= 1;
            self.path_active[usize::from(c.path)] -= 1;
        }
    }

    /// Records an answer from the candidate at `addr` (to any of its tries). Returns the
    /// path the nodes named in the answer go on (pass it to [`Lookup::add_learned`]), `None`
    /// when the answer is not this lookup's to use.
    pub(crate) fn on_reply(&mut self, addr: &SocketAddr, id: Option<NodeId>, token: Option<Token>) -> Option<u8> {
        let i = self.in_flight_at(addr)?;
        self.close_one(i);
        let path = self.candidates[i].path;
        if self.candidates[i].state == CandidateState::Replied {
            // A second try answered too.
            return Some(path);
        }
        self.release(i);
        let mut c = self.remove_candidate(i);
        c.state = CandidateState::Replied;
        c.slow = false;
        c.token = token;
        if id.is_some() {
            self.replies += 1;
        }
        if c.id.is_none() {
            // A bootstrap node told us who it is: it now has a place by distance, unless
            // another candidate already holds that id.
            match id {
                Some(id) if !self.candidates.iter().any(|o| o.id == Some(id)) => c.id = Some(id),
                _ => {
                    self.insert_candidate(0, c);
                    return Some(path);
                }
            }
        }
        let target = self.target;
        let seeds = self.seeds();
        let at = match c.id {
            Some(cid) => {
                seeds
                    + self.candidates[seeds..]
                        .partition_point(|o| o.id.as_ref().is_some_and(|oid| target.cmp_distance(oid, &cid).is_lt()))
            }
            None => seeds,
        };
        self.insert_candidate(at, c);
        Some(path)
    }

    /// Records a failure (error, wrong id, send failure) of the candidate at `addr`: it is out.
    pub(crate) fn on_failure(&mut self, addr: &SocketAddr) {
        if let Some(i) = self.in_flight_at(addr) {
            self.close_one(i);
            if matches!(self.candidates[i].state, CandidateState::InFlight | CandidateState::Fresh) {
                self.release(i);
                self.candidates[i].state = CandidateState::Failed;
            }
        }
    }

    /// Records that a query to the candidate at `addr` timed out. When it was the candidate's
    /// last open try, the candidate is asked again if it has retries left (and was not already
    /// re-asked at its soft timeout), else it is out.
    pub(crate) fn on_timeout(&mut self, addr: &SocketAddr) {
        if let Some(i) = self.in_flight_at(addr) {
            let last = self.close_one(i);
            if last && self.candidates[i].state == CandidateState::InFlight {
                self.release(i);
                let c = &mut self.candidates[i];
                c.slow = false;
                c.state = if c.tries <= self.retries { CandidateState::Fresh } else { CandidateState::Failed };
            }
        }
    }

    /// Records that the latest query to the candidate at `addr` passed the soft timeout: it
    /// frees its α slot and, with retries left, is asked again now; its open queries still
    /// count if answered.
    pub(crate) fn on_soft_timeout(&mut self, addr: &SocketAddr) {
        if let Some(i) = self.in_flight_at(addr) {
            self.release(i);
            let c = &mut self.candidates[i];
            if c.state == CandidateState::InFlight && c.tries <= self.retries {
                c.state = CandidateState::Fresh;
            }
        }
    }

    /// The k closest responders, nearest first.
    pub(crate) fn closest_responders(&self) -> Vec<LookupNode> {
        self.candidates
            .iter()
            .filter(|c| c.state == CandidateState::Replied)
            .filter_map(|c| Some(LookupNode { node: NodeInfo::new(c.id?, c.addr), token: c.token.clone() }))
            .take(self.k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        let mut a = [0u8; 20];
        a[0] = b;
        NodeId::from_array(a)
    }

    fn node(b: u8) -> NodeInfo {
        NodeInfo::new(id(b), SocketAddr::from(([10, 0, 0, b], 1000 + u16::from(b))))
    }

    /// One path, 16 candidates, no retries, no diversity rule, no final round, no neighbourhood.
    fn params(k: usize, alpha: usize) -> Params {
        Params {
            k,
            alpha,
            max_candidates: 16,
            retries: 0,
            restrict_ips: false,
            restrict_local: false,
            paths: 1,
            final_round: false,
            near: 0,
        }
    }

    fn lookup(k: usize, alpha: usize, max: usize) -> Lookup {
        Lookup::new(id(0), Query::ping(), false, true, Params { max_candidates: max, ..params(k, alpha) })
    }

    fn lookup_with_paths(k: usize, alpha: usize, paths: u8) -> Lookup {
        Lookup::new(id(0), Query::ping(), false, true, Params { max_candidates: 32, paths, ..params(k, alpha) })
    }

    /// Answers the query `step` asks for, with `named` learned from it; returns its id byte.
    fn answer(l: &mut Lookup, named: &[u8]) -> u8 {
        let Step::Query(i) = l.step(true) else { panic!("expected a query") };
        let (addr, id) = l.candidate(i);
        let path = l.on_reply(&addr, id, None).expect("an answer to an open query");
        for &b in named {
            l.add_learned(node(b), path);
        }
        id.unwrap().as_bytes()[0]
    }

    #[test]
    fn a_subrange_is_the_three_bits_after_the_buckets_prefix() {
        // Depth 0: bit 0 is the bucket's, bits 1-3 the sub-range.
        assert_eq!(subrange(&id(0b1101_0000), 0), 0b101);
        // Depth 2: bits 0-2 the bucket's prefix, bits 3-5 the sub-range.
        assert_eq!(subrange(&id(0b0001_0100), 2), 0b101);
        let mut last = [0u8; 20];
        last[19] = 0b11;
        assert_eq!(subrange(&NodeId::from_array(last), 157), 0b110, "bits past the id read as 0");
    }

    #[test]
    fn a_bucket_fill_asks_each_uncovered_subrange_first_and_about_another_one() {
        // The bucket at depth 0 around target 0x80: ids 0x80-0xff, sub-range = bits 1-3.
        let mut l = Lookup::new(id(0x80), Query::find_node(&id(0x80)), true, false, params(8, 8));
        for b in [0x80, 0x81, 0x90, 0x10] {
            l.add_node(node(b));
        }
        let ask = |l: &mut Lookup, covered: u8| match l.step_spread(true, Spread { depth: 0, covered }) {
            Step::Query(i) => {
                let (addr, id) = l.candidate(i);
                let asked = l.spread_target(&addr, 0).expect("an open query");
                (id.unwrap().as_bytes()[0], asked.as_bytes()[0])
            }
            Step::Wait => (0, 0),
            Step::Done => (1, 1),
        };
        // 0x80 (sub-range 0) is asked about sub-range 1; 0x90 (sub-range 1, which 0x80's
        // answer will not cover) about sub-range 2.
        assert_eq!(ask(&mut l, 0), (0x80, 0x90));
        assert_eq!(ask(&mut l, 0), (0x90, 0xa0));
        // 0x81 would fill sub-range 0 again, and 0x10 is outside the range: while answers that
        // may name better candidates are out, neither is asked.
        assert_eq!(ask(&mut l, 0), (0, 0), "waits");
        for b in [0x80, 0x90] {
            l.on_reply(&node(b).addr, Some(id(b)), None).expect("open");
        }
        // Nothing out any more: the range's last candidate, then the one outside it, each
        // about an uncovered sub-range.
        assert_eq!(ask(&mut l, 0b11), (0x81, 0xa0));
        l.on_reply(&node(0x81).addr, Some(id(0x81)), None).expect("open");
        assert_eq!(ask(&mut l, 0b11), (0x10, 0xa0));
        l.on_reply(&node(0x10).addr, Some(id(0x10)), None).expect("open");
        assert_eq!(ask(&mut l, 0b11), (1, 1), "done");
        assert_eq!(l.queries_sent, 4);
    }

    #[test]
    fn disjoint_paths_deal_the_seeds_and_keep_what_they_learn_to_themselves() {
        let mut l = lookup_with_paths(1, 1, 2);
        for b in [10, 20] {
            l.add_node(node(b));
        }
        let path_of = |l: &Lookup, b: u8| l.candidates.iter().find(|c| c.id == Some(id(b))).unwrap().path;
        assert_eq!((path_of(&l, 10), path_of(&l, 20)), (0, 1), "seeds dealt in turn");
        // Path 0 (10) answers first and names 3 and 20: 3 joins path 0; 20 stays on path 1,
        // which had it first.
        assert_eq!(answer(&mut l, &[3, 20]), 10);
        assert_eq!(path_of(&l, 3), 0);
        assert_eq!(path_of(&l, 20), 1);
        // Path 0 converges on 3 (k = 1); path 1 asks 20, which names 3 and 4: 3 stays on path
        // 0, 4 joins path 1.
        assert_eq!(answer(&mut l, &[]), 3);
        assert_eq!(answer(&mut l, &[3, 4]), 20);
        assert_eq!(path_of(&l, 3), 0, "a path cannot take over a node another path found first");
        assert_eq!(path_of(&l, 4), 1);
        assert_eq!(answer(&mut l, &[]), 4);
        assert!(matches!(l.step(true), Step::Done));
    }

    #[test]
    fn a_lookup_on_two_paths_ends_only_when_both_have_converged() {
        // k = 1: a path is complete when its nearest live candidate has answered.
        let mut l = lookup_with_paths(1, 1, 2);
        for b in [10, 20] {
            l.add_node(node(b));
        }
        assert_eq!(answer(&mut l, &[1]), 10); // path 0 learns 1, nearer than everything
        assert_eq!(answer(&mut l, &[]), 1);
        // One path would stop here: its nearest candidate has answered. Path 1 has not
        // converged yet, so 20 is still asked.
        assert_eq!(answer(&mut l, &[]), 20);
        assert!(matches!(l.step(true), Step::Done));
        let closest = l.closest_responders();
        assert_eq!(closest[0].node, node(1));
    }

    #[test]
    fn one_path_behaves_as_plain_kademlia() {
        let mut l = lookup_with_paths(1, 1, 1);
        for b in [10, 20] {
            l.add_node(node(b));
        }
        assert_eq!(answer(&mut l, &[]), 10);
        assert!(matches!(l.step(true), Step::Done), "the nearest candidate answered: done, 20 never asked");
    }

    #[test]
    fn candidates_stay_sorted_by_distance_and_unique() {
        let mut l = lookup(2, 2, 10);
        for b in [9, 3, 7, 3, 1] {
            l.add_node(node(b));
        }
        let ids: Vec<u8> = l.candidates.iter().map(|c| c.id.unwrap().as_bytes()[0]).collect();
        assert_eq!(ids, [1, 3, 7, 9]);
    }

    #[test]
    fn the_farthest_candidate_makes_room_when_full() {
        let mut l = lookup(2, 2, 3);
        for b in [1, 5, 9] {
            l.add_node(node(b));
        }
        l.add_node(node(12)); // farther than all: dropped
        l.add_node(node(2)); // evicts 9
        let ids: Vec<u8> = l.candidates.iter().map(|c| c.id.unwrap().as_bytes()[0]).collect();
        assert_eq!(ids, [1, 2, 5]);
    }

    #[test]
    fn queries_go_nearest_first_within_alpha_and_finish_when_k_closest_replied() {
        let mut l = lookup(2, 2, 10);
        for b in [4, 2, 8] {
            l.add_node(node(b));
        }
        let Step::Query(i) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[i].addr, node(2).addr);
        let Step::Query(j) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[j].addr, node(4).addr);
        assert!(matches!(l.step(true), Step::Wait), "alpha reached");
        l.on_failure(&node(2).addr);
        // 2 failed: 8 enters the window of the k=2 closest live candidates.
        let Step::Query(m) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[m].addr, node(8).addr);
        l.on_reply(&node(4).addr, Some(id(4)), None);
        l.add_node(node(1)); // learned from the reply: nearer than everything
        let Step::Query(n) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[n].addr, node(1).addr);
        l.on_reply(&node(1).addr, Some(id(1)), Token::new(b"tok"));
        // window = {1, 4}, both replied: done even though 8 is still in flight.
        assert!(matches!(l.step(true), Step::Done));
        let closest = l.closest_responders();
        assert_eq!(closest.len(), 2);
        assert_eq!(closest[0].node, node(1));
        assert_eq!(closest[0].token, Token::new(b"tok"));
        assert_eq!(l.replies, 2);
    }

    fn asked(l: &mut Lookup) -> Vec<u8> {
        let mut out = Vec::new();
        while let Step::Query(i) = l.step(true) {
            out.push(l.candidates[i].id.unwrap().as_bytes()[0]);
        }
        out
    }

    fn reply(l: &mut Lookup, b: u8, named: &[u8]) {
        let path = l.on_reply(&node(b).addr, Some(id(b)), None).expect("an open query");
        for &n in named {
            l.add_learned(node(n), path);
        }
    }

    #[test]
    fn the_final_round_asks_the_rest_of_the_k_nearest_at_once_once_the_nearest_answered() {
        for final_round in [false, true] {
            let params = Params { final_round, ..params(3, 1) };
            let mut l = Lookup::new(id(0), Query::ping(), false, true, params);
            for b in [2, 4, 6, 8, 10] {
                l.add_node(node(b));
            }
            assert_eq!(asked(&mut l), [2], "α = 1 while nothing has answered");
            reply(&mut l, 2, &[]);
            if !final_round {
                assert_eq!(asked(&mut l), [4], "α at a time without the final round");
                continue;
            }
            // 2 is the nearest and answered without naming anyone nearer: the final round
            // asks the rest of the k = 3 nearest (4 and 6), not 8 or 10.
            assert_eq!(asked(&mut l), [4, 6]);
            // 4 names 1, nearer than 2: the lookup is no longer converged, back to α = 1,
            // which 6 still holds.
            reply(&mut l, 4, &[1]);
            assert!(asked(&mut l).is_empty(), "6 holds the only slot");
            reply(&mut l, 6, &[]);
            assert_eq!(asked(&mut l), [1]);
            reply(&mut l, 1, &[]);
            assert!(matches!(l.step(true), Step::Done), "1, 2 and 4 answered");
            assert_eq!(l.queries_sent, 4, "8 and 10 were never asked");
        }
    }

    #[test]
    fn the_neighbourhood_radius_is_factor_times_k_over_n_of_the_space() {
        assert_eq!(neighbourhood_radius(None, 8, 2), 0, "no estimate, no neighbourhood");
        assert_eq!(neighbourhood_radius(Some(65_536), 8, 0), 0, "turned off");
        assert_eq!(neighbourhood_radius(Some(0), 8, 2), 0);
        assert_eq!(neighbourhood_radius(Some(65_536), 8, 2), (u128::MAX >> 16) * 16);
        assert_eq!(neighbourhood_radius(Some(1), 8, 2), u128::MAX, "a tiny DHT is all neighbourhood");
    }

    #[test]
    fn a_candidate_in_the_neighbourhood_is_asked_without_an_alpha_slot() {
        // Near: distances to target 0 below that of id(5), i.e. ids 1 to 4.
        let near = id(0).distance(&id(5)).top128();
        let params = Params { near, ..params(4, 1) };
        let mut l = Lookup::new(id(0), Query::ping(), false, true, params);
        for b in [6, 8, 10] {
            l.add_node(node(b));
        }
        assert_eq!(asked(&mut l), [6], "α = 1 outside the neighbourhood");
        reply(&mut l, 6, &[2, 3, 7]);
        assert_eq!(asked(&mut l), [2, 3], "both neighbours at once; 7 waits for a slot");
        reply(&mut l, 2, &[]);
        reply(&mut l, 3, &[]);
        assert_eq!(asked(&mut l), [7], "back to α = 1 outside it");
        reply(&mut l, 7, &[]);
        assert!(matches!(l.step(true), Step::Done), "2, 3, 6 and 7 answered");
    }

    #[test]
    fn bootstrap_seeds_are_asked_first_and_placed_by_id_after_replying() {
        let mut l = lookup(1, 1, 10);
        let seed: SocketAddr = "10.9.9.9:6881".parse().unwrap();
        l.add_node(node(7));
        l.add_seed_addr(seed);
        let Step::Query(i) = l.step(true) else { panic!() };
        assert_eq!(l.candidates[i].addr, seed);
        l.on_reply(&seed, Some(id(3)), None);
        assert_eq!(l.candidates[0].id, Some(id(3)));
        assert!(matches!(l.step(true), Step::Done), "k=1 and the closest (3) replied");
    }

    #[test]
    fn an_empty_lookup_is_done_at_once() {
        let mut l = lookup(8, 3, 10);
        assert!(matches!(l.step(true), Step::Done));
    }

    fn with_retries(k: usize, alpha: usize, retries: u8) -> Lookup {
        Lookup::new(id(0), Query::ping(), false, true, Params { max_candidates: 10, retries, ..params(k, alpha) })
    }

    fn queried(l: &mut Lookup) -> SocketAddr {
        let Step::Query(i) = l.step(true) else { panic!("expected a query") };
        l.candidates[i].addr
    }

    #[test]
    fn a_timed_out_candidate_is_asked_again_while_it_has_retries_left() {
        let mut l = with_retries(1, 1, 1);
        l.add_node(node(1));
        l.add_node(node(2));
        assert_eq!(queried(&mut l), node(1).addr);
        l.on_timeout(&node(1).addr);
        assert_eq!(queried(&mut l), node(1).addr, "second try before anyone farther");
        l.on_timeout(&node(1).addr);
        assert_eq!(queried(&mut l), node(2).addr, "out of retries: the next one takes its place");
        l.on_reply(&node(2).addr, Some(id(2)), None);
        assert!(matches!(l.step(true), Step::Done));
        assert_eq!(l.queries_sent, 3);
    }

    #[test]
    fn errors_are_never_retried() {
        let mut l = with_retries(1, 1, 3);
        l.add_node(node(1));
        l.add_node(node(2));
        assert_eq!(queried(&mut l), node(1).addr);
        l.on_failure(&node(1).addr);
        assert_eq!(queried(&mut l), node(2).addr);
    }

    #[test]
    fn a_slow_query_frees_its_slot_and_is_retried_at_once_and_either_answer_counts() {
        let mut l = with_retries(2, 1, 1);
        for b in [1, 2, 3] {
            l.add_node(node(b));
        }
        assert_eq!(queried(&mut l), node(1).addr);
        assert!(matches!(l.step(true), Step::Wait), "α = 1");
        l.on_soft_timeout(&node(1).addr);
        assert_eq!(queried(&mut l), node(1).addr, "retried at its soft timeout");
        assert_eq!(l.in_flight, 2, "both tries are open");
        l.on_soft_timeout(&node(1).addr);
        assert_eq!(queried(&mut l), node(2).addr, "its last try is slow too: the slot moves on");
        // The first try answers late: the candidate counts, once.
        l.on_reply(&node(1).addr, Some(id(1)), None);
        l.on_reply(&node(1).addr, Some(id(1)), None);
        assert_eq!(l.replies, 1);
        assert_eq!(l.in_flight, 1, "only 2's query is open");
        l.on_reply(&node(2).addr, Some(id(2)), None);
        assert!(matches!(l.step(true), Step::Done));
        let ids: Vec<NodeInfo> = l.closest_responders().into_iter().map(|n| n.node).collect();
        assert_eq!(ids, [node(1), node(2)]);
    }

    #[test]
    fn a_candidate_whose_last_try_is_slow_no_longer_holds_up_the_end() {
        let mut l = with_retries(2, 2, 0);
        for b in [1, 2, 3] {
            l.add_node(node(b));
        }
        assert_eq!(queried(&mut l), node(1).addr);
        assert_eq!(queried(&mut l), node(2).addr);
        l.on_reply(&node(2).addr, Some(id(2)), None);
        assert!(matches!(l.step(true), Step::Wait), "1 is among the 2 closest and may still answer");
        l.on_soft_timeout(&node(1).addr);
        assert_eq!(queried(&mut l), node(3).addr, "1 is given up: 3 enters the 2 closest");
        l.on_reply(&node(3).addr, Some(id(3)), None);
        assert!(matches!(l.step(true), Step::Done), "2 and 3 are the closest responders");
    }

    #[test]
    fn a_slow_candidate_that_answers_before_the_end_takes_its_place_in_the_result() {
        let mut l = with_retries(2, 1, 0);
        for b in [1, 2, 3, 4] {
            l.add_node(node(b));
        }
        assert_eq!(queried(&mut l), node(1).addr);
        l.on_soft_timeout(&node(1).addr);
        assert_eq!(queried(&mut l), node(2).addr);
        l.on_reply(&node(1).addr, Some(id(1)), None);
        l.on_reply(&node(2).addr, Some(id(2)), None);
        assert!(matches!(l.step(true), Step::Done));
        let ids: Vec<NodeInfo> = l.closest_responders().into_iter().map(|n| n.node).collect();
        assert_eq!(ids, [node(1), node(2)]);
    }

    #[test]
    fn the_adaptive_soft_timeout_follows_the_measured_round_trips_within_its_bounds() {
        let cap = Duration::from_secs(1);
        let ms = Duration::from_millis;
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.soft_timeout(cap), cap, "nothing measured yet");
        for _ in 0..7 {
            rtt.sample(ms(150));
        }
        assert_eq!(rtt.soft_timeout(cap), ms(400), "7 answers are too few: twice the slowest band's bound");
        rtt.sample(ms(150));
        assert_eq!(rtt.soft_timeout(cap), MIN_SOFT_TIMEOUT, "steady 150 ms: the floor");

        // 80 answers around 200 ms and 20 around 500 ms: the 90th percentile lies halfway
        // into the 400–566 ms band (10 of its 20 answers).
        let mut spread = RttEstimator::default();
        for i in 0..100 {
            spread.sample(ms(if i % 5 == 0 { 500 } else { 150 }));
        }
        assert_eq!(spread.soft_timeout(cap), ms(483));
        assert_eq!(spread.soft_timeout(ms(300)), ms(300), "never above the configured value");

        let mut slow = RttEstimator::default();
        for _ in 0..20 {
            slow.sample(ms(3_000));
        }
        assert_eq!(slow.soft_timeout(cap), cap, "slow network: the cap");
        let mut lost = RttEstimator::default();
        for _ in 0..20 {
            lost.sample(Duration::from_secs(60));
        }
        assert_eq!(lost.soft_timeout(cap), cap, "past the bands: the cap");
    }

    #[test]
    fn the_round_trip_histogram_forgets_old_answers_by_halving() {
        let ms = Duration::from_millis;
        let mut rtt = RttEstimator::default();
        // 300 slow answers, then 300 fast ones: a few halvings later the slow ones are under a
        // tenth and no longer set the 90th percentile.
        for _ in 0..300 {
            rtt.sample(ms(700));
        }
        assert!(rtt.soft_timeout(Duration::from_secs(1)) > ms(566), "the slow band");
        for _ in 0..300 {
            rtt.sample(ms(50));
        }
        assert!(rtt.total() <= RTT_WINDOW, "{:?}", rtt.counts);
        assert!(u32::from(rtt.counts[7]) * 10 < rtt.total(), "{:?}", rtt.counts);
        assert_eq!(rtt.soft_timeout(Duration::from_secs(1)), MIN_SOFT_TIMEOUT);
    }

    #[test]
    fn one_candidate_per_subnet_the_nearer_one_while_neither_is_asked() {
        let params = Params { max_candidates: 64, restrict_ips: true, ..params(8, 3) };
        let mut l = Lookup::new(id(0), Query::ping(), false, true, params);
        let at = |b: u8, host: [u8; 4]| NodeInfo::new(id(b), SocketAddr::from((host, 6881)));
        l.add_node(at(9, [66, 6, 6, 1]));
        l.add_node(at(12, [66, 6, 6, 2]));
        assert_eq!(l.candidates.len(), 1, "a farther one from the same /24 is ignored");
        l.add_node(at(3, [66, 6, 6, 3]));
        assert_eq!(l.candidates.len(), 1);
        assert_eq!(l.candidates[0].id, Some(id(3)), "a nearer one takes the place of one not yet asked");
        let Step::Query(_) = l.step(true) else { panic!() };
        l.add_node(at(1, [66, 6, 6, 4]));
        assert_eq!(l.candidates[0].id, Some(id(3)), "once asked, it stays");
        l.add_node(at(2, [66, 6, 7, 1]));
        l.add_node(at(4, [10, 0, 0, 1]));
        l.add_node(at(5, [10, 0, 0, 2]));
        assert_eq!(l.candidates.len(), 4, "other subnets, and private addresses, are not limited");
    }

    /// `position_of` and `in_flight_at` find what a scan of every candidate finds, with
    /// addresses shared by several ids, IPv4-mapped IPv6 addresses, bootstrap nodes and ids of
    /// other lengths than the target's (whose distances can tie).
    #[test]
    fn finding_a_candidate_by_key_and_distance_agrees_with_a_plain_scan() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let addr_of = |n: u64| -> SocketAddr {
            let v4 = core::net::Ipv4Addr::new(10, 0, (n % 3) as u8, (n % 7) as u8);
            match n % 4 {
                0 => SocketAddr::from((v4.to_ipv6_mapped(), 6881)),
                1 => SocketAddr::from((core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, (n % 5) as u16), 6881)),
                _ => SocketAddr::from((v4, 6880 + (n % 2) as u16)),
            }
        };
        let id_of = |n: u64| -> NodeId {
            // Ids of 16 and 17 bytes tie when their first 16 bytes agree and the 17th is 0xff:
            // both read as padded with 0xff against the 20-byte target.
            let len = [16, 17].get((n % 9) as usize).copied().unwrap_or(20);
            let first = if len == 20 { (n % 16) as u8 * 16 } else { (n % 4) as u8 * 64 };
            let bytes: alloc::vec::Vec<u8> =
                (0..len).map(|i| [first, 0, 0xff][usize::from(i > 0) + usize::from(i >= 16)]).collect();
            NodeId::from_bytes(&bytes).unwrap()
        };
        for _ in 0..200 {
            let mut l = Lookup::new(id(0), Query::ping(), false, true, Params { max_candidates: 40, ..params(8, 3) });
            for _ in 0..60 {
                match next(5) {
                    0 => l.add_seed_addr(addr_of(next(40))),
                    1 => {
                        if let Step::Query(i) = l.step(true) {
                            let (addr, _) = l.candidate(i);
                            let _ = l.on_reply(&addr, Some(id_of(next(40))), None);
                        }
                    }
                    _ => l.add_learned(NodeInfo::new(id_of(next(40)), addr_of(next(40))), 0),
                }
                assert_eq!(l.keys.len(), l.candidates.len());
                for n in 0..40 {
                    let (id, addr) = (id_of(n), addr_of(n + next(3)));
                    let plain = l.candidates.iter().position(|c| same_endpoint(&c.addr, &addr) || c.id == Some(id));
                    assert_eq!(l.position_of(Some(&id), &addr), plain);
                    let plain = l.candidates.iter().position(|c| same_endpoint(&c.addr, &addr));
                    assert_eq!(l.position_of(None, &addr), plain);
                    let plain = l.candidates.iter().position(|c| c.open > 0 && same_endpoint(&c.addr, &addr));
                    assert_eq!(l.in_flight_at(&addr), plain);
                }
            }
        }
    }
}

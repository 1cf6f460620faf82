//! The BEP 51 crawl benchmark: info-hashes placed in the network, one crawler, and the share of
//! them it discovers against the queries it sent and the virtual time.
//!
//! **Placing the info-hashes** is a shortcut, not an announce: each info-hash goes straight into
//! the store of the `k` nodes truly closest to it (the oracle's answer), which is where
//! `announce_peer` puts it on a network whose lookups find the closest nodes (they do here:
//! `docs/simulation.md`). 10,000 announces would cost as many lookups and tell nothing about
//! the crawl. The simulated nodes answer `sample_infohashes` as libtorrent does: at most 20 of
//! their info-hashes (all of them here: a node holds about `k × hashes / nodes`), `num`,
//! `interval` 21,600 s (libtorrent's default) and the `k` closest nodes to the target from
//! their routing table.
//!
//! **The crawlers** run on one node of the network, at the same rate and concurrency:
//! - the engine's [`Endpoint::crawl`](krpc_core::Endpoint::crawl);
//! - a naive crawler written here with [`Endpoint::query`](krpc_core::Endpoint::query): each
//!   query goes to a node drawn at random among all it has heard of (its routing table, then
//!   the `nodes` of every answer), with a random target, and nothing stops it from asking a
//!   node it asked before.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::Dictionary;
use krpc_core::{CrawlConfig, Endpoint, Event, IncomingQuery, NodeId, NodeInfo, OpId, Peer, Query};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::Sim;
use super::link::below;

/// BEP 51 `interval` the simulated nodes give: libtorrent's default (and the BEP's maximum).
pub const SAMPLE_INTERVAL_S: i64 = 21_600;

/// At most this many samples in one answer (libtorrent's default).
pub const MAX_SAMPLES: usize = 20;

/// Which crawler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crawler {
    /// [`Endpoint::crawl`](krpc_core::Endpoint::crawl).
    Engine,
    /// Random targets at random known nodes, repeats allowed.
    Naive,
}

/// One crawl run.
#[derive(Clone, Copy, Debug)]
pub struct CrawlPlan {
    /// Which crawler.
    pub crawler: Crawler,
    /// Queries per second.
    pub rate: u32,
    /// Queries in flight.
    pub concurrency: usize,
    /// Virtual time the crawl runs.
    pub duration: Duration,
    /// How often a point of the curve is taken.
    pub sample_every: Duration,
}

/// One point of the discovery curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrawlPoint {
    /// Virtual seconds since the crawl started.
    pub seconds: f64,
    /// Queries sent so far.
    pub queries: u64,
    /// Distinct placed info-hashes discovered so far.
    pub found: usize,
}

/// What one crawl did.
#[derive(Clone, Debug, Default)]
pub struct CrawlRun {
    /// The discovery curve: the start, then one point per `sample_every`.
    pub points: Vec<CrawlPoint>,
    /// Info-hashes placed.
    pub placed: usize,
    /// Queries sent.
    pub queries: u64,
    /// Answers received.
    pub replies: u64,
    /// Distinct nodes that answered.
    pub nodes_visited: usize,
    /// Queries to a node asked before (measured for the naive crawler; the engine's crawl asks a
    /// node again only after its interval, 6 hours here, longer than any run).
    pub repeats: Option<u64>,
    /// Distinct info-hashes discovered.
    pub found: usize,
}

impl CrawlRun {
    /// The share of placed info-hashes found.
    pub fn share(&self) -> f64 {
        self.found as f64 / self.placed.max(1) as f64
    }

    /// The first point at which `share` of the placed info-hashes were found.
    pub fn reached(&self, share: f64) -> Option<CrawlPoint> {
        let want = (share * self.placed as f64).ceil() as usize;
        self.points.iter().copied().find(|p| p.found >= want)
    }
}

impl Sim {
    /// Places `count` random info-hashes (from their own seeded stream, so the network's other
    /// draws do not move) in the stores of the `k` truly closest nodes of each; from now on
    /// every node answers `sample_infohashes` from its store. Returns the info-hashes.
    pub fn place_info_hashes(&mut self, count: usize) -> Vec<NodeId> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.scenario.seed ^ 0xc4a7_0000_0000_0051);
        let k = self.scenario.engine.k;
        let mut store = vec![Vec::new(); self.nodes.len()];
        let mut hashes = Vec::with_capacity(count);
        for _ in 0..count {
            let mut b = [0u8; 20];
            rng.fill_bytes(&mut b);
            let hash = NodeId::from_array(b);
            for i in self.true_closest(&hash, k) {
                store[i as usize].push(hash);
            }
            hashes.push(hash);
        }
        self.samples = Some(store);
        hashes
    }
}

/// Answers a `sample_infohashes` to node `i` from the placed `store`; false if this is another
/// query or no info-hashes were placed.
pub(super) fn answer_samples(
    store: Option<&[Vec<NodeId>]>,
    i: u32,
    ep: &mut Endpoint,
    q: &IncomingQuery,
    count: usize,
) -> bool {
    let Some(store) = store else { return false };
    if q.method() != b"sample_infohashes" {
        return false;
    }
    let Some(target) = q.args().target() else {
        let _ = ep.error(q.reply_to(), 203, b"sample_infohashes requires a.target");
        return true;
    };
    let held = store.get(i as usize).map_or(&[][..], Vec::as_slice);
    let samples: Vec<u8> = held.iter().take(MAX_SAMPLES).flat_map(|h| h.as_bytes().to_vec()).collect();
    let values = Dictionary::new()
        .with_bytes("samples", samples)
        .with_int("num", held.len() as i64)
        .with_int("interval", SAMPLE_INTERVAL_S);
    let nodes = ep.routing_table().closest(&target, count);
    let _ = ep.respond(q.reply_to(), values, &nodes);
    true
}

/// The naive crawler's state.
struct Naive {
    rng: ChaCha8Rng,
    known: Vec<NodeInfo>,
    known_set: HashSet<SocketAddr>,
    in_flight: HashSet<OpId>,
}

impl Naive {
    fn learn(&mut self, node: NodeInfo) {
        if self.known_set.insert(node.addr) {
            self.known.push(node);
        }
    }
}

/// Runs one crawl from node `crawler` of a built network with placed info-hashes (`placed`).
pub fn run_crawl(sim: &mut Sim, crawler: u32, placed: &[NodeId], plan: CrawlPlan) -> CrawlRun {
    let truth: HashSet<NodeId> = placed.iter().copied().collect();
    let mut found: HashSet<NodeId> = HashSet::new();
    let mut asked: HashSet<SocketAddr> = HashSet::new();
    let mut answered: HashSet<SocketAddr> = HashSet::new();
    let mut run = CrawlRun { placed: truth.len(), ..CrawlRun::default() };
    sim.keep_events();
    let _ = sim.take_events();
    let start = sim.now();
    let end = start + plan.duration;
    let mut next_point = start + plan.sample_every;
    run.points.push(CrawlPoint { seconds: 0.0, queries: 0, found: 0 });
    let (mut op, mut naive) = (None, None);
    match plan.crawler {
        Crawler::Engine => {
            let config = CrawlConfig::default().with_rate(plan.rate).with_concurrency(plan.concurrency);
            op = sim.command(crawler, |ep, now| ep.crawl(now, config)).and_then(Result::ok);
            assert!(op.is_some(), "the crawler could not start");
        }
        Crawler::Naive => {
            let mut n = Naive {
                rng: ChaCha8Rng::seed_from_u64(sim.scenario.seed ^ 0x0a1e_0000_0000_0051),
                known: Vec::new(),
                known_set: HashSet::new(),
                in_flight: HashSet::new(),
            };
            let own = sim.id(crawler);
            if let Some(ep) = sim.endpoint(crawler) {
                for table in ep.routing_tables() {
                    for c in table.iter() {
                        if c.node.id != own {
                            n.learn(c.node);
                        }
                    }
                }
            }
            naive = Some(n);
        }
    }
    // The naive crawler sends on a fixed beat of 1/rate; the engine paces itself.
    let beat = Duration::from_nanos(1_000_000_000 / u64::from(plan.rate.max(1)));
    while sim.now() < end {
        let step = match plan.crawler {
            Crawler::Engine => plan.sample_every.min(end - sim.now()),
            Crawler::Naive => beat,
        };
        sim.run_for(step);
        for (i, e) in sim.take_events() {
            if i != crawler {
                continue;
            }
            match e {
                Event::CrawlFound { op: o, info_hashes, .. } if Some(o) == op => {
                    found.extend(info_hashes.into_iter().filter(|h| truth.contains(h)));
                }
                Event::QueryDone { op: o, result } => {
                    let Some(n) = naive.as_mut() else { continue };
                    if !n.in_flight.remove(&o) {
                        continue;
                    }
                    let Ok(reply) = result else { continue };
                    run.replies += 1;
                    answered.insert(reply.from());
                    let Some(values) = reply.values() else { continue };
                    if let Some(samples) = values.samples() {
                        found.extend(samples.filter(|h| truth.contains(h)));
                    }
                    for node in values.nodes().into_iter().flatten().chain(values.nodes6().into_iter().flatten()) {
                        if node.id != sim.id(crawler) {
                            n.learn(node);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(n) = naive.as_mut() {
            if n.in_flight.len() < plan.concurrency && !n.known.is_empty() {
                let node = n.known[below(&mut n.rng, n.known.len())];
                let mut t = [0u8; 20];
                n.rng.fill_bytes(&mut t);
                let target = NodeId::from_array(t);
                let sent =
                    sim.command(crawler, |ep, now| ep.query(now, Peer::node(node), Query::sample_infohashes(&target)));
                if let Some(Ok(o)) = sent {
                    n.in_flight.insert(o);
                    run.queries += 1;
                    if !asked.insert(node.addr) {
                        *run.repeats.get_or_insert(0) += 1;
                    }
                }
            }
        }
        if let Some(op) = op {
            let stats = sim.endpoint(crawler).and_then(|ep| ep.crawl_stats(op)).unwrap_or_default();
            run.queries = stats.queries;
            run.replies = stats.replies;
            run.nodes_visited = stats.nodes_visited as usize;
        }
        if sim.now() >= next_point || sim.now() >= end {
            let seconds = (sim.now() - start).as_secs_f64();
            run.points.push(CrawlPoint { seconds, queries: run.queries, found: found.len() });
            next_point += plan.sample_every;
        }
    }
    if let Some(op) = op {
        let _ = sim.command(crawler, |ep, _| ep.stop(op));
    }
    if plan.crawler == Crawler::Naive {
        run.nodes_visited = answered.len();
        run.repeats.get_or_insert(0);
    }
    run.found = found.len();
    run
}

//! The simulator checks its own inputs: a census of the simulated network, taken the way a
//! measurement study takes one of a real DHT, recovers the session-length curve the simulator
//! was given ([`Scenario::sessions`](super::Scenario::sessions)).
//!
//! The method is Steiner, En-Najjary and Biersack's ("A global view of KAD", IMC 2007): crawl the
//! whole network every round, record which nodes answered, and infer sessions from when a node
//! was seen and when it was not.
//!
//! **The crawl** goes through the real protocol. A few nodes of the network (`crawlers`, pinned
//! so that their own sessions never end) send `find_node` queries with
//! [`Endpoint::query`](krpc_core::Endpoint::query), as the naive crawler of [`super::crawl`]
//! does; the engine's BEP 51 crawl does not fit, since it asks a node again only after the
//! `interval` it gave (6 hours here). A round starts from the nodes seen in the previous round
//! and the crawlers' routing tables, and asks every node it hears of once, for the nodes
//! nearest to that node's own id: its neighbourhood, where a node that just joined shows up
//! first. A node is seen in a round when it answers. The round ends when nobody is left to ask;
//! the next one starts `round` after the previous one started (at once if it ran over).
//!
//! **Sessions** are runs of rounds in which a node was seen, a run allowed to miss `max_gap`
//! rounds (a node missed by one crawl is not two sessions). The usual censoring: a session seen
//! in the first `max_gap + 1` rounds may have started before the census and is dropped (its
//! start is unknown, and whether it is dropped depends only on when it started, not on how long
//! it lasted, so the rest stays an unbiased sample); a session seen in the last `max_gap + 1`
//! rounds may still be running and is kept as *right-censored* (it lasted at least that long).
//! Dropping those instead would bias the fit towards short sessions, since the long sessions
//! that started late are exactly the ones still running.
//!
//! **The fit** is maximum likelihood on what a census can observe, so that the round length is
//! part of the model rather than an error on top of it. A crawl sees a node at instants one
//! round `R` apart; a session of length `L` starting at a uniformly random phase covers `M` of
//! those instants, with `P(M ≥ m) = (1/R)·∫_{(m−1)R}^{mR} S(t) dt` for the survival function
//! `S` (the chance that `L − (m−1)R` exceeds a uniform share of `R`). Sessions that cover no
//! instant are never seen, so every observation is conditioned on `M ≥ 1`: an observed session
//! of `m` rounds contributes `(P(M ≥ m) − P(M ≥ m+1)) / P(M ≥ 1)`, a censored one
//! `P(M ≥ m) / P(M ≥ 1)`. The Weibull `(k, λ)` maximising this is found with Nelder–Mead on
//! `(ln k, ln λ)`, started from the data (k = 1, λ = the mean observed length), never from the
//! given values; standard errors come from the observed information (the numerical Hessian).
//! Least squares on the log-log CDF was the alternative: it needs the empirical CDF of lengths
//! known to ± one round, has no clean way to use censored sessions, and weights the many short
//! sessions like the few long ones; maximum likelihood has none of these problems.
//!
//! **Discovery delay**: for each node that joined during the census, the time from its join
//! (known to the simulator to within one step of the crawl loop, 100 ms) to the first answer it
//! gave the crawl.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use krpc_core::{Event, Instant, NodeId, NodeInfo, OpId, Peer, Query};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::profile::Sessions;
use super::{Sim, index_of};

/// How the crawl loop advances virtual time between two looks at its queries: also how well
/// join instants are known.
const STEP: Duration = Duration::from_millis(100);

/// One census.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CensusPlan {
    /// How long the census runs (virtual time).
    pub duration: Duration,
    /// One round every this long (Steiner et al. crawled KAD every 5 minutes).
    pub round: Duration,
    /// Nodes of the network that crawl together, each with its own `concurrency` slots.
    pub crawlers: usize,
    /// Rounds a session may be missed in without being split in two.
    pub max_gap: usize,
    /// `find_node` queries each node gets per round: one for its own neighbourhood, then, once
    /// it answered, the rest for random targets.
    pub queries_per_node: usize,
}

impl CensusPlan {
    /// A census of `hours` of a network of about `nodes`, a round every `round_s` seconds: one
    /// crawler per 100 nodes (at least 4), since each keeps at most its `concurrency` (16)
    /// queries in flight and a round should end well within its `round_s`; two queries per node
    /// (with one, the neighbourhood alone, a third of a 2,000-node network was never reached:
    /// a node need not be among any other's nearest); one missed round bridged.
    pub fn new(hours: f64, round_s: f64, nodes: usize) -> CensusPlan {
        CensusPlan {
            duration: Duration::from_secs_f64(hours * 3600.0),
            round: Duration::from_secs_f64(round_s),
            crawlers: (nodes / 100).max(4),
            max_gap: 1,
            queries_per_node: 2,
        }
    }
}

/// One round of the crawl.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Round {
    /// When it started, in seconds since the census started.
    pub start_s: f64,
    /// How long it took, in seconds.
    pub took_s: f64,
    /// Queries it sent.
    pub queries: u64,
    /// Nodes that answered.
    pub seen: usize,
    /// Nodes (crawlers aside) running both when the round started and when it ended: the
    /// truth the round is compared with.
    pub stable: usize,
    /// How many of those it saw.
    pub stable_seen: usize,
}

/// A session inferred from the rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The node.
    pub node: u32,
    /// The first round it was seen in.
    pub first: usize,
    /// The last round of the run.
    pub last: usize,
    /// Still possibly running at the end of the census.
    pub censored: bool,
}

impl Session {
    /// Crawl instants the session covers (missed rounds inside it counted).
    pub fn rounds(&self) -> usize {
        self.last - self.first + 1
    }
}

/// A Weibull fitted to the sessions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeibullFit {
    /// Shape k.
    pub shape: f64,
    /// Scale λ, in seconds.
    pub scale_s: f64,
    /// Standard error of k (observed information).
    pub shape_se: f64,
    /// Standard error of λ, in seconds.
    pub scale_se_s: f64,
}

impl WeibullFit {
    /// The fitted share of sessions longer than `t` seconds.
    pub fn survival(&self, t: f64) -> f64 {
        survival(self.shape, self.scale_s, t)
    }
}

/// What a census found.
#[derive(Clone, Debug)]
pub struct Census {
    /// The session lengths the simulator was given.
    pub given: Sessions,
    /// Round length, in seconds.
    pub round_s: f64,
    /// Rounds bridged in a session.
    pub max_gap: usize,
    /// The rounds.
    pub rounds: Vec<Round>,
    /// Sessions kept for the fit (censored ones included).
    pub sessions: Vec<Session>,
    /// Sessions dropped because they may have started before the census.
    pub left_censored: usize,
    /// Missed rounds bridged inside sessions.
    pub bridged: usize,
    /// Answers whose id was not the id of the node at that address (never, in the simulator).
    pub wrong_ids: u64,
    /// Queries sent, answers received.
    pub queries: u64,
    /// Answers received.
    pub replies: u64,
    /// Nodes that joined during the census.
    pub joined: usize,
    /// Seconds from join to first answer to the crawl, for those that joined during the census
    /// and were seen, ascending.
    pub discovery_s: Vec<f64>,
    /// The fit, if there were sessions to fit.
    pub fit: Option<WeibullFit>,
}

/// The instants the survival curve is compared at: 10 min, 30 min, 1 h, 2 h, 4 h.
pub const COMPARE_AT_S: [f64; 5] = [600.0, 1800.0, 3600.0, 7200.0, 14_400.0];

impl Census {
    /// Sessions kept that ended within the census.
    pub fn complete(&self) -> usize {
        self.sessions.iter().filter(|s| !s.censored).count()
    }

    /// Mean share of the stable nodes each round saw.
    pub fn coverage(&self) -> f64 {
        let shares: Vec<f64> =
            self.rounds.iter().filter(|r| r.stable > 0).map(|r| r.stable_seen as f64 / r.stable as f64).collect();
        shares.iter().sum::<f64>() / shares.len().max(1) as f64
    }

    /// The lowest share of the stable nodes a round saw.
    pub fn worst_coverage(&self) -> f64 {
        self.rounds.iter().filter(|r| r.stable > 0).map(|r| r.stable_seen as f64 / r.stable as f64).fold(1.0, f64::min)
    }

    /// Quantile `q` of the discovery delay, in seconds.
    pub fn discovery_quantile(&self, q: f64) -> Option<f64> {
        quantile(&self.discovery_s, q)
    }

    /// The given survival at `t` seconds.
    pub fn given_survival(&self, t: f64) -> f64 {
        survival(self.given.shape, self.given.scale.as_secs_f64(), t)
    }

    /// Model-free, at `t` seconds (taken as a whole number n of rounds): the Kaplan–Meier share
    /// of the observed sessions that covered more than n crawl instants, next to what the given
    /// curve predicts for that share once seen through the same rounds (`P(M ≥ n+1) / P(M ≥ 1)`).
    /// The observed share is `None` when no session lasted that long (beyond the census).
    pub fn observed_survival(&self, t: f64) -> (Option<f64>, f64) {
        let n = (t / self.round_s).round().max(1.0) as usize;
        let mut at_risk = self.sessions.len() as f64;
        let mut km = 1.0;
        let mut lengths: Vec<(usize, bool)> = self.sessions.iter().map(|s| (s.rounds(), s.censored)).collect();
        lengths.sort_unstable();
        let mut i = 0;
        // Walk the lengths 1..=n: at each, the sessions observed to end there leave the risk set
        // as deaths, the censored ones as losses.
        for m in 1..=n {
            let (mut deaths, mut gone) = (0.0, 0.0);
            while i < lengths.len() && lengths[i].0 == m {
                if !lengths[i].1 {
                    deaths += 1.0;
                }
                gone += 1.0;
                i += 1;
            }
            if at_risk > 0.0 {
                km *= 1.0 - deaths / at_risk;
            }
            at_risk -= gone;
        }
        let (k, l, r) = (self.given.shape, self.given.scale.as_secs_f64(), self.round_s);
        ((at_risk > 0.0).then_some(km), covers(k, l, r, n + 1) / covers(k, l, r, 1))
    }

    /// The census as a JSON object (the `census` of `simulate --census --json`).
    pub fn json(&self) -> serde_json::Value {
        let fit = self.fit.map(|f| {
            serde_json::json!({
                "k": f.shape, "k_se": f.shape_se,
                "lambda_min": f.scale_s / 60.0, "lambda_se_min": f.scale_se_s / 60.0,
            })
        });
        let survival: Vec<serde_json::Value> = COMPARE_AT_S
            .iter()
            .map(|&t| {
                let (observed, predicted) = self.observed_survival(t);
                serde_json::json!({
                    "t_min": t / 60.0,
                    "given": self.given_survival(t),
                    "recovered": self.fit.map(|f| f.survival(t)),
                    "observed_km": observed,
                    "given_through_rounds": predicted,
                })
            })
            .collect();
        serde_json::json!({
            "round_s": self.round_s,
            "rounds": self.rounds.len(),
            "max_gap": self.max_gap,
            "queries": self.queries,
            "replies": self.replies,
            "coverage_mean": self.coverage(),
            "coverage_min": self.worst_coverage(),
            "round_took_s_max": self.rounds.iter().map(|r| r.took_s).fold(0.0, f64::max),
            "given": { "k": self.given.shape, "lambda_min": self.given.scale.as_secs_f64() / 60.0 },
            "recovered": fit,
            "sessions": self.sessions.len(),
            "sessions_complete": self.complete(),
            "sessions_censored": self.sessions.len() - self.complete(),
            "sessions_left_censored": self.left_censored,
            "bridged_rounds": self.bridged,
            "wrong_ids": self.wrong_ids,
            "survival": survival,
            "per_round": self.rounds.iter().map(|r| serde_json::json!([r.start_s, r.took_s, r.queries, r.seen, r.stable, r.stable_seen])).collect::<Vec<_>>(),
            "joined": self.joined,
            "discovered": self.discovery_s.len(),
            "discovery_median_s": self.discovery_quantile(0.5),
            "discovery_p90_s": self.discovery_quantile(0.9),
        })
    }

    /// A few human-readable lines.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let g = self.given;
        let _ = writeln!(
            s,
            "census: {} rounds of {:.0} s, {} queries, mean coverage {:.2}% (worst round {:.2}%)",
            self.rounds.len(),
            self.round_s,
            self.queries,
            self.coverage() * 100.0,
            self.worst_coverage() * 100.0
        );
        let _ = writeln!(
            s,
            "sessions: {} kept ({} complete, {} still running), {} dropped as already running, {} missed rounds bridged",
            self.sessions.len(),
            self.complete(),
            self.sessions.len() - self.complete(),
            self.left_censored,
            self.bridged
        );
        match self.fit {
            Some(f) => {
                let _ = writeln!(
                    s,
                    "Weibull: given k {:.3} λ {:.1} min; recovered k {:.3} ± {:.3}, λ {:.1} ± {:.1} min",
                    g.shape,
                    g.scale.as_secs_f64() / 60.0,
                    f.shape,
                    f.shape_se,
                    f.scale_s / 60.0,
                    f.scale_se_s / 60.0
                );
            }
            None => {
                let _ = writeln!(s, "Weibull: no sessions to fit");
            }
        }
        let _ = writeln!(s, "survival      given  recovered  observed(KM)  given-through-rounds");
        for t in COMPARE_AT_S {
            let (observed, predicted) = self.observed_survival(t);
            let recovered = self.fit.map_or("-".to_string(), |f| format!("{:.3}", f.survival(t)));
            let observed = observed.map_or("-".to_string(), |o| format!("{o:.3}"));
            let _ = writeln!(
                s,
                "  {:>5.0} min  {:.3}  {recovered:>9}  {observed:>12}  {predicted:>20.3}",
                t / 60.0,
                self.given_survival(t)
            );
        }
        let show = |q: Option<f64>| q.map_or("-".to_string(), |v| format!("{v:.0} s"));
        let _ = writeln!(
            s,
            "discovery: {} of {} nodes that joined were seen; delay median {}, p90 {}",
            self.discovery_s.len(),
            self.joined,
            show(self.discovery_quantile(0.5)),
            show(self.discovery_quantile(0.9))
        );
        s
    }
}

/// Runs a census of a built network whose scenario has sessions: turns churn on, crawls every
/// round for `plan.duration`, turns churn off, and infers and fits the sessions.
pub fn run_census(sim: &mut Sim, plan: CensusPlan) -> Census {
    let given = sim.scenario().sessions.expect("a census needs Scenario::sessions");
    let mut crawlers: Vec<u32> = Vec::new();
    while crawlers.len() < plan.crawlers.max(1) {
        let Some(c) = sim.random_live_node() else { break };
        if !crawlers.contains(&c) {
            crawlers.push(c);
        }
    }
    assert!(!crawlers.is_empty(), "no live node to crawl from");
    sim.keep_events();
    let _ = sim.take_events();
    // Pinned: a crawler that left would take the census with it.
    for &c in &crawlers {
        let _ = sim.command(c, |_, _| ());
    }
    sim.set_churn(true);
    let start = sim.now();
    let end = start + plan.duration;
    let mut rng = ChaCha8Rng::seed_from_u64(sim.scenario().seed ^ 0xce05_0000_0000_0016);
    let mut census = Census {
        given,
        round_s: plan.round.as_secs_f64(),
        max_gap: plan.max_gap,
        rounds: Vec::new(),
        sessions: Vec::new(),
        left_censored: 0,
        bridged: 0,
        wrong_ids: 0,
        queries: 0,
        replies: 0,
        joined: 0,
        discovery_s: Vec::new(),
        fit: None,
    };
    let mut clock = Clock { population: sim.population(), joined_at: HashMap::new() };
    // Rounds each node was seen in, ascending; when it first answered.
    let mut seen: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut first_answer: HashMap<u32, Instant> = HashMap::new();
    let mut previous: Vec<u32> = Vec::new();
    loop {
        // Round r is due r rounds after the start; one that ran over starts the next at once.
        let round = census.rounds.len();
        let due = start + plan.round * round as u32;
        if due >= end {
            break;
        }
        clock.advance_to(sim, due);
        let round_start = sim.now();
        let alive_at_start: Vec<u32> =
            (0..sim.population() as u32).filter(|&j| sim.endpoint(j).is_some() && !crawlers.contains(&j)).collect();
        let mut frontier: VecDeque<(NodeInfo, usize)> = VecDeque::new();
        let mut learned: VecDeque<NodeInfo> = previous.iter().map(|&j| NodeInfo::new(sim.id(j), sim.addr(j))).collect();
        for &c in &crawlers {
            if let Some(ep) = sim.endpoint(c) {
                learned.extend(ep.routing_table().iter().map(|contact| contact.node));
            }
        }
        let mut asked: HashSet<u32> = HashSet::new();
        // Operation ids are per endpoint: keyed by crawler too.
        let mut pending: HashMap<(usize, OpId), (u32, NodeId, usize)> = HashMap::new();
        let mut in_flight = vec![0usize; crawlers.len()];
        let mut seen_now: Vec<u32> = Vec::new();
        let mut queries = 0u64;
        loop {
            // Fill every crawler's slots with nodes not asked yet in this round.
            for (c, &crawler) in crawlers.iter().enumerate() {
                let cap = sim.endpoint(crawler).map_or(0, |ep| ep.config().concurrency);
                while in_flight[c] < cap {
                    // Nodes learned become a node's queries.
                    while frontier.is_empty() {
                        let Some(node) = learned.pop_front() else { break };
                        let Some(j) = index_of(&node.addr).filter(|&j| (j as usize) < sim.population()) else {
                            continue;
                        };
                        if !crawlers.contains(&j) && asked.insert(j) {
                            frontier.push_back((node, 0));
                        }
                    }
                    let Some((node, q)) = frontier.pop_front() else { break };
                    let j = index_of(&node.addr).unwrap_or(u32::MAX);
                    // First its own id with the last bit flipped (the answer is the nodes
                    // nearest to it), then random targets.
                    let target = if q == 0 {
                        node.id.with_bit(159, !node.id.bit(159))
                    } else {
                        let mut b = [0u8; 20];
                        rng.fill_bytes(&mut b);
                        NodeId::from_array(b)
                    };
                    let sent =
                        sim.command(crawler, |ep, now| ep.query(now, Peer::node(node), Query::find_node(&target)));
                    if let Some(Ok(op)) = sent {
                        pending.insert((c, op), (j, node.id, q));
                        in_flight[c] += 1;
                        queries += 1;
                    }
                }
            }
            if pending.is_empty() && frontier.is_empty() && learned.is_empty() {
                break;
            }
            clock.step(sim);
            for (i, e) in sim.take_events() {
                let Some(c) = crawlers.iter().position(|&x| x == i) else { continue };
                let Event::QueryDone { op, result } = e else { continue };
                let Some((j, id, q)) = pending.remove(&(c, op)) else { continue };
                in_flight[c] -= 1;
                let Ok(reply) = result else { continue };
                census.replies += 1;
                if reply.id() != Some(id) || sim.id(j) != id {
                    census.wrong_ids += 1;
                    continue;
                }
                // The next query only to a node that answered: most nodes that do not are gone,
                // and each unanswered query holds a slot for the whole timeout.
                if q + 1 < plan.queries_per_node {
                    frontier.push_front((NodeInfo::new(id, sim.addr(j)), q + 1));
                }
                first_answer.entry(j).or_insert_with(|| sim.now());
                let rounds = seen.entry(j).or_default();
                if rounds.last() != Some(&round) {
                    rounds.push(round);
                    seen_now.push(j);
                }
                let Some(values) = reply.values() else { continue };
                for node in values.nodes().into_iter().flatten() {
                    if index_of(&node.addr).is_some_and(|x| !asked.contains(&x)) {
                        learned.push_back(node);
                    }
                }
            }
        }
        let seen_set: HashSet<u32> = seen_now.iter().copied().collect();
        let stable: Vec<u32> = alive_at_start.into_iter().filter(|&j| sim.endpoint(j).is_some()).collect();
        census.rounds.push(Round {
            start_s: (round_start - start).as_secs_f64(),
            took_s: (sim.now() - round_start).as_secs_f64(),
            queries,
            seen: seen_set.len(),
            stable: stable.len(),
            stable_seen: stable.iter().filter(|j| seen_set.contains(j)).count(),
        });
        census.queries += queries;
        previous = seen_now;
    }
    sim.set_churn(false);

    // Sessions: runs of rounds, bridging up to `max_gap` missed ones.
    let last_round = census.rounds.len().saturating_sub(1);
    let mut nodes: Vec<(&u32, &Vec<usize>)> = seen.iter().collect();
    nodes.sort_unstable();
    for (&node, rounds) in nodes {
        let mut first = rounds[0];
        let mut last = rounds[0];
        let close = |first: usize, last: usize, census: &mut Census| {
            if first <= plan.max_gap {
                census.left_censored += 1;
            } else {
                let censored = last + plan.max_gap >= last_round;
                census.sessions.push(Session { node, first, last, censored });
            }
        };
        for &r in &rounds[1..] {
            if r - last <= plan.max_gap + 1 {
                census.bridged += r - last - 1;
            } else {
                close(first, last, &mut census);
                first = r;
            }
            last = r;
        }
        close(first, last, &mut census);
    }
    census.sessions.sort_unstable_by_key(|s| (s.first, s.node));
    census.fit = fit_weibull(&census.sessions, census.round_s);

    census.joined = clock.joined_at.len();
    census.discovery_s = clock
        .joined_at
        .iter()
        .filter_map(|(j, &at)| first_answer.get(j).map(|&seen| (seen - at).as_secs_f64()))
        .collect();
    census.discovery_s.sort_unstable_by(f64::total_cmp);
    census
}

/// Advances the simulation and notes when nodes join (the simulator appends them).
struct Clock {
    population: usize,
    joined_at: HashMap<u32, Instant>,
}

impl Clock {
    fn step(&mut self, sim: &mut Sim) {
        sim.run_for(STEP);
        let now = sim.now();
        for j in self.population..sim.population() {
            self.joined_at.insert(j as u32, now);
        }
        self.population = sim.population();
    }

    fn advance_to(&mut self, sim: &mut Sim, at: Instant) {
        while sim.now() + STEP <= at {
            self.step(sim);
            // Nobody listens between rounds; the crawlers' events would only pile up.
            let _ = sim.take_events();
        }
    }
}

/// S(t) of a Weibull.
fn survival(shape: f64, scale: f64, t: f64) -> f64 {
    (-(t / scale).powf(shape)).exp()
}

/// `P(M ≥ m)`: the chance that a session covers at least `m` crawl instants `r` apart,
/// `(1/r)·∫_{(m−1)r}^{mr} S(t) dt` (see the module). Composite Simpson after `t = a + r·u²`,
/// which smooths the cusp of S at 0 when k < 1.
fn covers(shape: f64, scale: f64, r: f64, m: usize) -> f64 {
    const N: usize = 32;
    let a = (m as f64 - 1.0) * r;
    let f = |u: f64| survival(shape, scale, a + r * u * u) * 2.0 * u;
    let h = 1.0 / N as f64;
    let mut sum = f(0.0) + f(1.0);
    for i in 1..N {
        sum += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    sum * h / 3.0
}

/// The negative log-likelihood of the sessions (as counts of (rounds, censored)) under a
/// Weibull seen through rounds of `r` seconds.
fn neg_log_likelihood(counts: &[(usize, bool, f64)], total: f64, shape: f64, scale: f64, r: f64) -> f64 {
    if !(shape.is_finite() && scale.is_finite() && shape > 0.01 && scale > 1.0) {
        return f64::INFINITY;
    }
    let mut nll = total * covers(shape, scale, r, 1).ln();
    for &(m, censored, count) in counts {
        let p = if censored {
            covers(shape, scale, r, m)
        } else {
            covers(shape, scale, r, m) - covers(shape, scale, r, m + 1)
        };
        if p <= 0.0 {
            return f64::INFINITY;
        }
        nll -= count * p.ln();
    }
    nll
}

/// The maximum-likelihood Weibull of `sessions` seen through rounds of `r` seconds (see the
/// module), or `None` without a complete session.
pub fn fit_weibull(sessions: &[Session], r: f64) -> Option<WeibullFit> {
    let mut tally: HashMap<(usize, bool), f64> = HashMap::new();
    for s in sessions {
        *tally.entry((s.rounds(), s.censored)).or_insert(0.0) += 1.0;
    }
    let mut counts: Vec<(usize, bool, f64)> = tally.into_iter().map(|((m, c), n)| (m, c, n)).collect();
    counts.sort_unstable_by_key(|a| (a.0, a.1));
    if !counts.iter().any(|c| !c.1) {
        return None;
    }
    let total = sessions.len() as f64;
    let nll = |x: [f64; 2]| neg_log_likelihood(&counts, total, x[0].exp(), x[1].exp(), r);
    let mean = sessions.iter().map(|s| s.rounds() as f64 * r).sum::<f64>() / total;
    let best = nelder_mead(nll, [0.0, mean.ln()], [0.3, 0.5]);
    let (k, l) = (best[0].exp(), best[1].exp());
    // Observed information in (k, λ): the Hessian of the negative log-likelihood, by central
    // differences; its inverse is the covariance.
    let f = |k: f64, l: f64| neg_log_likelihood(&counts, total, k, l, r);
    let (hk, hl) = (k * 1e-3, l * 1e-3);
    let f0 = f(k, l);
    let fkk = (f(k + hk, l) - 2.0 * f0 + f(k - hk, l)) / (hk * hk);
    let fll = (f(k, l + hl) - 2.0 * f0 + f(k, l - hl)) / (hl * hl);
    let fkl = (f(k + hk, l + hl) - f(k + hk, l - hl) - f(k - hk, l + hl) + f(k - hk, l - hl)) / (4.0 * hk * hl);
    let det = fkk * fll - fkl * fkl;
    let (var_k, var_l) = if det > 0.0 { (fll / det, fkk / det) } else { (f64::NAN, f64::NAN) };
    Some(WeibullFit { shape: k, scale_s: l, shape_se: var_k.sqrt(), scale_se_s: var_l.sqrt() })
}

/// Minimises `f` over two variables (Nelder–Mead, standard coefficients), from `x0` with an
/// initial simplex of `step`.
fn nelder_mead(f: impl Fn([f64; 2]) -> f64, x0: [f64; 2], step: [f64; 2]) -> [f64; 2] {
    let mut p = [x0, [x0[0] + step[0], x0[1]], [x0[0], x0[1] + step[1]]];
    let mut v = p.map(&f);
    let lerp = |a: [f64; 2], b: [f64; 2], t: f64| [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
    for _ in 0..1_000 {
        let mut order = [0, 1, 2];
        order.sort_unstable_by(|&a, &b| v[a].total_cmp(&v[b]));
        p = order.map(|i| p[i]);
        v = order.map(|i| v[i]);
        let spread = (p[2][0] - p[0][0]).abs().max((p[2][1] - p[0][1]).abs());
        if spread < 1e-9 || (v[2] - v[0]).abs() < 1e-12 {
            break;
        }
        let centroid = lerp(p[0], p[1], 0.5);
        let reflected = lerp(centroid, p[2], -1.0);
        let fr = f(reflected);
        if fr < v[0] {
            let expanded = lerp(centroid, p[2], -2.0);
            let fe = f(expanded);
            (p[2], v[2]) = if fe < fr { (expanded, fe) } else { (reflected, fr) };
        } else if fr < v[1] {
            (p[2], v[2]) = (reflected, fr);
        } else {
            let contracted = if fr < v[2] { lerp(centroid, reflected, 0.5) } else { lerp(centroid, p[2], 0.5) };
            let fc = f(contracted);
            if fc < v[2].min(fr) {
                (p[2], v[2]) = (contracted, fc);
            } else {
                for i in 1..3 {
                    p[i] = lerp(p[0], p[i], 0.5);
                    v[i] = f(p[i]);
                }
            }
        }
    }
    if v[0] <= v[1] && v[0] <= v[2] {
        p[0]
    } else if v[1] <= v[2] {
        p[1]
    } else {
        p[2]
    }
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

#[cfg(test)]
mod tests {
    use super::super::link::unit;
    use super::*;

    /// Sessions drawn from `given`, starting uniformly over `window` seconds, seen through
    /// instants `r` apart with the census's censoring: the observation model alone, no network.
    fn observe(given: Sessions, n: usize, window: f64, r: f64, seed: u64) -> Vec<Session> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let last = (window / r) as usize;
        let mut out = Vec::new();
        for node in 0..n as u32 {
            let start = unit(&mut rng) * window;
            let end = start + given.sample(&mut rng).as_secs_f64();
            let first = (start / r).ceil() as usize;
            if first > last || (first as f64 * r) > end {
                continue; // never seen
            }
            let last_seen = ((end / r).floor() as usize).min(last);
            if first <= 1 {
                continue;
            }
            out.push(Session { node, first, last: last_seen, censored: last_seen + 1 >= last });
        }
        out
    }

    #[test]
    fn the_fit_recovers_weibulls_seen_through_rounds() {
        for (given, seed) in [(Sessions::KAD, 1), (Sessions::MAINLINE, 2)] {
            let sessions = observe(given, 20_000, 12.0 * 3600.0, 300.0, seed);
            let fit = fit_weibull(&sessions, 300.0).expect("sessions to fit");
            let complete = sessions.iter().filter(|s| !s.censored).count() as f64;
            // Four standard errors of a complete sample of this size (Cramér–Rao: 0.78·k/√n for
            // k, 1.05/(k·√n) relative for λ); censoring only adds information to what is counted.
            let tol_k = 4.0 * 0.78 * given.shape / complete.sqrt();
            let tol_l = 4.0 * 1.05 / (given.shape * complete.sqrt());
            assert!((fit.shape - given.shape).abs() < tol_k, "{fit:?} against {given:?} (±{tol_k})");
            let rel = fit.scale_s / given.scale.as_secs_f64() - 1.0;
            assert!(rel.abs() < tol_l, "{fit:?} against {given:?} (±{tol_l})");
            assert!(fit.shape_se > 0.0 && fit.shape_se < tol_k, "{fit:?}");
        }
    }

    #[test]
    fn seeing_a_session_through_rounds_is_the_integral_of_its_survival() {
        // An exponential (k = 1) has a closed form: (1/r)·∫ e^{−t/λ} = (λ/r)·e^{−(m−1)r/λ}(1 − e^{−r/λ}).
        let (l, r) = (1000.0, 300.0);
        for m in 1..6 {
            let want = l / r * (-((m - 1) as f64) * r / l).exp() * (1.0 - (-r / l).exp());
            assert!((covers(1.0, l, r, m) - want).abs() < 1e-6, "m {m}");
        }
        // A session covers at least one instant with certainty only if it lasts a round.
        assert!(covers(0.5, 10.0, 300.0, 1) < 0.2);
    }
}

//! The BEP 51 crawl on a simulated network (`krpc_tests::sim::crawl`): the engine's crawl finds
//! what was placed, asks no node twice within its interval, keeps its rate, and finds more per
//! query than a naive crawler (random targets, repeats allowed) at the same rate.

use std::time::Duration;

use krpc_core::Config;
use krpc_tests::sim::crawl::{CrawlPlan, CrawlRun, Crawler, run_crawl};
use krpc_tests::sim::{Scenario, SeedGuard, Sim, seeds_or_env};

const NODES: usize = 2_000;
const HASHES: usize = 300;

fn crawl(seed: u64, crawler: Crawler) -> CrawlRun {
    // No bucket refresh during the run: it would only add traffic the crawl does not measure.
    let engine = Config { k: 8, bucket_refresh: Duration::from_secs(86_400), ..Config::default() };
    let mut sim = Sim::new(Scenario { seed, nodes: NODES, engine, ..Scenario::default() });
    sim.build();
    let placed = sim.place_info_hashes(HASHES);
    let crawler_node = sim.random_live_node().expect("a live node");
    let plan = CrawlPlan {
        crawler,
        rate: 20,
        concurrency: 8,
        duration: Duration::from_secs(60),
        sample_every: Duration::from_secs(5),
    };
    run_crawl(&mut sim, crawler_node, &placed, plan)
}

#[test]
fn the_engine_crawl_finds_almost_everything_and_more_per_query_than_a_naive_crawler() {
    for seed in seeds_or_env(&[1]) {
        let _guard = SeedGuard(seed);
        let engine = crawl(seed, Crawler::Engine);
        let naive = crawl(seed, Crawler::Naive);
        let again = crawl(seed, Crawler::Engine);
        assert_eq!(again.points, engine.points, "a run is a function of its seed");
        // 60 s at 20 a second, both ends included: at most 1,201 queries (the rate cap), and
        // nearly that many.
        assert!(engine.queries <= 1_201 && engine.queries >= 1_100, "{engine:?}");
        assert!(engine.share() >= 0.95, "engine crawl found {:.3}", engine.share());
        // Every answer comes from a node not asked before (6 h interval).
        assert!(engine.nodes_visited as u64 >= engine.replies, "{engine:?}");
        assert!(naive.repeats.unwrap_or(0) > 0, "the naive crawler re-asks nodes");
        // At equal queries sent, the engine has found more.
        let q = naive.queries.min(engine.queries);
        let at = |r: &CrawlRun| r.points.iter().filter(|p| p.queries <= q).map(|p| p.found).max().unwrap_or(0);
        assert!(at(&engine) > at(&naive), "engine {} vs naive {} at {q} queries", at(&engine), at(&naive));
    }
}

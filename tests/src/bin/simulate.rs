//! `simulate`: builds a virtual DHT of krpc engines, runs measured lookups against it and
//! prints what they cost and found. See `docs/simulation.md`.
//!
//! ```text
//! cargo run --release -p krpc-tests --bin simulate -- --nodes 100000 --lookups 1000 --k 8 --json
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use krpc_core::{Config, Endpoint, Instant};
use krpc_tests::sim::attack::{self, Attack, AttackKind, ReflectedQuery};
use krpc_tests::sim::ips::SharedIps;
use krpc_tests::sim::link::{Latency, Link};
use krpc_tests::sim::profile::{PairDelays, Sessions};
use krpc_tests::sim::report::{Report, Summary};
use krpc_tests::sim::svg::{self, Series};
use krpc_tests::sim::{Build, OtherK, Partition, Scenario, Sim, libtorrent_lookup_config};

/// Counts the bytes the process holds on the heap, and the most it ever held, and hands every
/// request to jemalloc: with a million engines, glibc's malloc kept about a sixth of the
/// peak RSS as free chunks between live ones (docs/decisions/0030-simulator-allocator.md).
struct Counting;

/// The allocator underneath.
const INNER: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start-up (the `_RJEM_MALLOC_CONF` environment variable
/// still overrides them): back the heap with transparent huge pages. Every datagram lands on a
/// random engine among a million, so nearly every one costs TLB misses with 4 KiB pages; with
/// 2 MiB pages the same work took 7% less time at 300,000 joining nodes
/// (docs/decisions/0032-simulator-huge-pages.md).
#[allow(unsafe_code)] // jemalloc reads its compiled-in options from this C symbol
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 31] = b"thp:always,metadata_thp:always\0";

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)] // a global allocator is an unsafe trait; this one only forwards and counts
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to jemalloc.
        let p = unsafe { INNER.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { INNER.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to jemalloc.
        let p = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// The default join rate's ceiling. N/100 joins a network in 100 virtual seconds, but at a
/// million that is 10,000 joins a second: every engine then holds the bursts of the joins of
/// its last maintenance tick (60 s) at once, and the build's peak memory is the bursts'. At
/// 2,000 a second a node sees about as many joiners' queries per minute as at 100,000 nodes
/// and the default rate (docs/simulation.md, "A million joined nodes, run").
const MAX_DEFAULT_JOIN_RATE: f64 = 2_000.0;

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BuildMode {
    /// Nodes join one by one through seed nodes (`bootstrap()`).
    Join,
    /// Routing tables drawn from the population, as long-running ones look.
    Preseed,
}

/// Deterministic simulation of a krpc DHT: lookups measured against an oracle.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Nodes in the network.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Measured lookups.
    #[arg(long, default_value_t = 500)]
    lookups: usize,
    /// Bucket size and lookup breadth.
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// Queries in flight per node, all kinds together.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// α: queries one lookup keeps in flight (default: the engine's default).
    #[arg(long)]
    alpha: Option<usize>,
    /// Times a lookup re-asks a candidate that timed out (default: the engine's default).
    #[arg(long)]
    retries: Option<u8>,
    /// Disjoint paths per lookup (`lookup_disjoint_paths`, 1–4; default: the engine's default).
    #[arg(long)]
    disjoint_paths: Option<usize>,
    /// The target's neighbourhood, asked without α slots (`lookup_neighbourhood`, multiples
    /// of the k-th nearest's expected distance; 0 disables; default: the engine's default).
    #[arg(long)]
    neighbourhood: Option<u32>,
    /// How many of the farthest buckets hold more than k (`wide_buckets`, 0–4: bucket i of the
    /// first n holds k·2^(n−i); 0 disables; default: the engine's default).
    #[arg(long)]
    wide_buckets: Option<u8>,
    /// Soft timeout in ms after which a silent candidate frees its α slot; 0 disables
    /// (default: the engine's default).
    #[arg(long)]
    soft_timeout_ms: Option<u64>,
    /// Keep the soft timeout fixed instead of adapting it to measured round trips.
    #[arg(long)]
    fixed_soft_timeout: bool,
    /// Query timeout in ms.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Chance that a datagram is lost (each way).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Chance that a datagram is delivered twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Share of nodes that are silent (in routing tables, never answering).
    #[arg(long, default_value_t = 0.0)]
    dead: f64,
    /// Share of the live population replaced per minute of virtual time during the lookups.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Share of nodes in read-only mode (BEP 43).
    #[arg(long, default_value_t = 0.0)]
    read_only: f64,
    /// Nodes per `find_node`/`get_peers` answer (default: the responder's k).
    #[arg(long)]
    answer_k: Option<usize>,
    /// Share of nodes with another k, as `SHARE:K` (e.g. `0.2:20`).
    #[arg(long)]
    other_k: Option<String>,
    /// Partition `SHARE:AFTER_S:DURATION_S`: that share of nodes is cut off from the rest from
    /// AFTER_S seconds into the lookups, for DURATION_S seconds.
    #[arg(long)]
    partition: Option<String>,
    /// Latency: `internet` (log-normal, median 80 ms, 20–300 ms), `uniform:MIN-MAX` or
    /// `fixed:MS`.
    #[arg(long, default_value = "internet")]
    latency: String,
    /// Inputs drawn from measurements of the real DHT: `mainline` gives every pair of nodes
    /// its own round trip (RIPE Atlas country pairs, p50 177 ms, p90 310 ms) and every node
    /// an access delay, replacing `--latency` (see docs/simulation.md, "Realism").
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// The lookup settings of the nodes: `krpc` (this engine's defaults), or a stock client's
    /// for contrast: `libtorrent` (α 5, soft timeout 1 s fixed, timeout 15 s, no retries).
    #[arg(long, value_enum, default_value_t = Client::Krpc)]
    client: Client,
    /// Session lengths during the lookups (Weibull): `mainline` (k 0.43, λ 470 min), `kad`
    /// (Steiner et al.: k 0.615, λ 169.5 min) or `none`. Default: `mainline` with `--profile`,
    /// else none. Replaces `--churn`.
    #[arg(long, value_enum)]
    sessions: Option<SessionsArg>,
    /// The k nodes nearest each target hold a value (as after an announce) and the output
    /// gives the time to the first `values` (`values_time_*`). On with `--profile`.
    #[arg(long)]
    holders: bool,
    /// Lookups started per second of virtual time (Poisson arrivals).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seed of every random decision.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How the network is built.
    #[arg(long, value_enum, default_value_t = BuildMode::Preseed)]
    build: BuildMode,
    /// Seed nodes for `--build join`.
    #[arg(long, default_value_t = 4)]
    seeds: usize,
    /// Joins per second of virtual time for `--build join` (default: N/100, at least 20, at
    /// most 2,000).
    #[arg(long)]
    join_rate: Option<f64>,
    /// Seconds the joined network runs on its own before the lookups (`--build join`).
    #[arg(long, default_value_t = 5.0)]
    settle_s: f64,
    /// The engine's bucket refresh interval in seconds (BEP 5: 900). Shorter lets a joined
    /// network fill its tables during `--settle-s`.
    #[arg(long, default_value_t = 900.0)]
    bucket_refresh_s: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write an SVG plot of the CDF of queries per lookup to this file.
    #[arg(long)]
    svg: Option<String>,
    /// Write one JSON line per measured lookup to this file: who ran it, its queries and
    /// time, and each of the true 8 nearest it missed (whether the lookup knew of it, whether
    /// it was asked and answered, and at the end of the run: behind a NAT, read-only, answering,
    /// in how many routing tables).
    #[arg(long)]
    lookup_log: Option<String>,
    /// After the lookups, run until every operation of every node has resolved (checked).
    #[arg(long)]
    drain: bool,
    /// Before the lookups, redraw every full routing-table bucket (but each table's last)
    /// uniformly from the nodes of its range, as a pre-seeded table is drawn: an experiment
    /// that tells what the tables' shape costs the lookups of a joined network
    /// (`tests/src/sim/spread.rs`). The JSON's `bucket_gain_bits` measures that shape.
    #[arg(long)]
    respread: bool,
    /// Threads: with more than one, the join build and the settle time go by windows of the
    /// link's shortest delay, their nodes on several threads, with the same trace hash as one.
    /// Runs whose nodes read one another (value holders, attacks, NATs, per-pair delays,
    /// adaptive nodes, --lookup-log) stay on one. Default: the processors this machine has
    /// (any count gives the same run; only the time differs).
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Check every routing table in full at the end.
    #[arg(long)]
    check: bool,
    /// Sybil attack: this share of all node ids is run by attackers (on `--sybil-subnets`
    /// /24s) that answer lookups only with other attackers and never with values. `--nodes`
    /// stays the number of honest nodes.
    #[arg(long)]
    sybils: Option<f64>,
    /// /24s the Sybil attackers are on.
    #[arg(long, default_value_t = 1)]
    sybil_subnets: usize,
    /// Eclipse attack: for every lookup target, this many attacker ids from one /24 sit
    /// nearest to it.
    #[arg(long)]
    eclipse: Option<usize>,
    /// The engine's defences against Sybil and eclipse attacks (routing-table diversity, applied
    /// to the simulator's private addresses too) in attack runs.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    defences: Switch,
    /// Instead of lookups: measure reflection, with this many reflectors (our nodes, default
    /// configuration) receiving queries spoofed with a victim's address.
    #[arg(long)]
    reflection: Option<usize>,
    /// Instead of lookups: place `--info-hashes` in the network and crawl it with the engine's
    /// BEP 51 crawl (see `docs/performance.md`, "BEP 51 crawl").
    #[arg(long)]
    crawl: bool,
    /// Instead of lookups: crawl with a naive crawler (random targets, nodes asked again);
    /// with `--crawl`, both run, each on its own copy of the same network.
    #[arg(long)]
    crawl_naive: bool,
    /// Info-hashes placed for a crawl, each at its k closest nodes.
    #[arg(long, default_value_t = 10_000)]
    info_hashes: usize,
    /// Crawl queries per second.
    #[arg(long, default_value_t = 20)]
    crawl_rate: u32,
    /// Crawl queries in flight.
    #[arg(long, default_value_t = 8)]
    crawl_concurrency: usize,
    /// Virtual seconds a crawl runs.
    #[arg(long, default_value_t = 3600.0)]
    crawl_seconds: f64,
    /// Share of the nodes behind an address-restricted NAT (inbound only from IPs they sent to
    /// within 3 minutes; seeds are never NATed).
    #[arg(long, default_value_t = 0.0)]
    nat: f64,
    /// Nodes run the engine's node layer in adaptive read-only mode (`Config::adaptive()`):
    /// read-only until they see that they are reachable (seeds are full nodes).
    #[arg(long)]
    adaptive: bool,
    /// Nodes run the engine's node layer (`Config::dht()`'s) instead of the simulator's
    /// responder; implied by `--adaptive`.
    #[arg(long)]
    dht: bool,
    /// Instead of lookups: a census of this many hours (needs `--sessions` or `--profile`): the
    /// network is crawled every `--census-round-s`, sessions are inferred from the rounds and
    /// a Weibull fitted to them is compared with the one given (docs/simulation.md, "The
    /// simulator checks its inputs: a census").
    #[arg(long)]
    census: Option<f64>,
    /// Seconds between two census rounds.
    #[arg(long, default_value_t = 300.0)]
    census_round_s: f64,
    /// Several nodes behind one IP, `FRACTION[:MAX]`: that share of the nodes shares its IP
    /// with others, 2 to MAX (default 4) per IP, on different ports. Default: `0.1:4` with
    /// `--profile mainline` (an assumption, see docs/simulation.md), else none.
    #[arg(long)]
    shared_ip: Option<String>,
    /// Node addresses: `public` (11/8: the engine's per-IP and per-/24 rules apply, as on the
    /// Internet) or `private` (10/8: exempt, as on a LAN). Default: `public` with
    /// `--profile mainline`, else `private`.
    #[arg(long, value_enum)]
    addresses: Option<Addresses>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Addresses {
    /// Public-looking (11.0.0.0/8).
    Public,
    /// Private (10.0.0.0/8).
    Private,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// Per-pair round trips and per-node access delays as measured on the Internet.
    Mainline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SessionsArg {
    /// The Mainline DHT fit.
    Mainline,
    /// KAD (Steiner et al., IMC 2007).
    Kad,
    /// No sessions: nodes stay (or leave by `--churn`).
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Client {
    /// This engine's lookup defaults (or the flags given).
    Krpc,
    /// libtorrent's traversal: `dht_search_branching` 5, a short timeout of 1 s that frees
    /// the slot, a full timeout of 15 s, no resends.
    Libtorrent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

fn sessions_of(args: &Args) -> Option<Sessions> {
    match args.sessions {
        Some(SessionsArg::Mainline) => Some(Sessions::MAINLINE),
        Some(SessionsArg::Kad) => Some(Sessions::KAD),
        Some(SessionsArg::None) => None,
        None => args.profile.map(|Profile::Mainline| Sessions::MAINLINE),
    }
}

fn shared_ips_of(args: &Args) -> Option<SharedIps> {
    match args.shared_ip.as_deref() {
        Some(s) => Some(SharedIps::parse(s).unwrap_or_else(|e| fail(&e))),
        None => args.profile.map(|Profile::Mainline| SharedIps::MAINLINE),
    }
}

fn parse_latency(s: &str) -> Result<Latency, String> {
    let ms = |v: &str| v.trim().parse::<u64>().map(Duration::from_millis).map_err(|e| format!("{v}: {e}"));
    if s == "internet" {
        return Ok(Latency::INTERNET);
    }
    if let Some(rest) = s.strip_prefix("fixed:") {
        return Ok(Latency::Fixed(ms(rest)?));
    }
    if let Some(rest) = s.strip_prefix("uniform:") {
        let (a, b) = rest.split_once('-').ok_or("uniform:MIN-MAX")?;
        return Ok(Latency::Uniform { min: ms(a)?, max: ms(b)? });
    }
    Err(format!("unknown latency {s}"))
}

fn parse_pair(s: &str) -> Result<(f64, usize), String> {
    let (a, b) = s.split_once(':').ok_or("expected SHARE:K")?;
    Ok((a.parse().map_err(|e| format!("{a}: {e}"))?, b.parse().map_err(|e| format!("{b}: {e}"))?))
}

fn parse_partition(s: &str) -> Result<Partition, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [f, a, d] = parts[..] else { return Err("expected SHARE:AFTER_S:DURATION_S".into()) };
    let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{v}: {e}"));
    Ok(Partition {
        fraction: num(f)?,
        after: Duration::from_secs_f64(num(a)?),
        duration: Duration::from_secs_f64(num(d)?),
    })
}

/// `--threads` when not given: every processor the machine has.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time this process has run, in seconds, every thread counted (`--threads`), from
/// `/proc/self/stat` (Linux), if available: steadier than wall time on a shared machine.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are plain numbers. utime and stime
    // (fields 14 and 15) count the threads that have exited too, in clock ticks of 1/100 s
    // (USER_HZ on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// Peak resident set size in bytes, from `/proc/self/status` (Linux), if available.
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes one IPv4 contact takes in a BEP 5 routing table (packed; `contact_bytes` is the size
/// of the `Contact` copy the table hands out).
fn sim_entry_bytes(k: usize) -> usize {
    krpc_core::routing::RoutingTable::new(krpc_core::NodeId::from_array([0; 20]), k).entry_bytes()
}

/// Heap bytes one idle engine with this configuration holds (an average over 1000).
fn idle_engine_bytes(config: &Config) -> usize {
    let before = live_bytes();
    let engines: Vec<Box<Endpoint>> = (0..1000u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Box::new(Endpoint::new(config.clone(), seed, Instant::ZERO).unwrap_or_else(|e| panic!("{e}")))
        })
        .collect();
    let bytes = live_bytes() - before;
    drop(engines);
    bytes / 1000
}

fn mb(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    let args = Args::parse();
    if let Some(reflectors) = args.reflection {
        run_reflection(reflectors, args.seed, args.json);
        return;
    }
    if args.crawl || args.crawl_naive {
        run_crawls(&args);
        return;
    }
    #[allow(clippy::disallowed_methods)] // wall time of the run, reported; the simulation never reads a clock
    let wall = std::time::Instant::now();
    let latency = parse_latency(&args.latency).unwrap_or_else(|e| fail(&e));
    let mut engine = Config {
        k: args.k,
        concurrency: args.concurrency,
        timeout: Duration::from_millis(args.timeout_ms),
        bucket_refresh: Duration::from_secs_f64(args.bucket_refresh_s),
        ..Config::default()
    };
    if args.adaptive || args.dht {
        engine = Config { adaptive_read_only: args.adaptive, dht: Config::dht().dht, ..engine };
    }
    if let Some(a) = args.alpha {
        engine.lookup_parallelism = Some(a);
    }
    if let Some(r) = args.retries {
        engine.lookup_retries = r;
    }
    if let Some(d) = args.disjoint_paths {
        engine.lookup_disjoint_paths = d;
    }
    if let Some(n) = args.neighbourhood {
        engine.lookup_neighbourhood = n;
    }
    if let Some(n) = args.wide_buckets {
        engine.wide_buckets = n;
    }
    if let Some(ms) = args.soft_timeout_ms {
        engine.lookup_soft_timeout = (ms > 0).then(|| Duration::from_millis(ms));
    }
    if args.fixed_soft_timeout {
        engine.lookup_adaptive_soft_timeout = false;
    }
    if args.client == Client::Libtorrent {
        engine = libtorrent_lookup_config(engine);
    }
    if let Err(e) = engine.validate() {
        fail(&format!("invalid engine configuration: {e}"));
    }
    let build = match args.build {
        BuildMode::Preseed => Build::Preseed,
        BuildMode::Join => Build::Join {
            seeds: args.seeds,
            per_second: args.join_rate.unwrap_or((args.nodes as f64 / 100.0).clamp(20.0, MAX_DEFAULT_JOIN_RATE)),
            settle: Duration::from_secs_f64(args.settle_s),
        },
    };
    let other_k = args
        .other_k
        .as_deref()
        .map(parse_pair)
        .transpose()
        .unwrap_or_else(|e| fail(&e))
        .map(|(fraction, k)| OtherK { fraction, k });
    let kind = match (args.sybils, args.eclipse) {
        (Some(_), Some(_)) => fail("--sybils and --eclipse are separate scenarios"),
        (Some(fraction), None) => Some(AttackKind::Sybil { fraction, subnets: args.sybil_subnets }),
        (None, Some(per_target)) => Some(AttackKind::Eclipse { per_target }),
        (None, None) => None,
    };
    let attack = kind.map(|kind| Attack { kind, defences: args.defences == Switch::On });
    if attack.is_some() && args.build != BuildMode::Preseed {
        fail("attack runs need --build preseed");
    }
    let partition = args.partition.as_deref().map(parse_partition).transpose().unwrap_or_else(|e| fail(&e));
    let scenario = Scenario {
        seed: args.seed,
        nodes: args.nodes,
        engine: engine.clone(),
        build,
        link: Link {
            latency,
            loss: args.loss,
            duplicate: args.duplicate,
            pairs: args.profile.map(|Profile::Mainline| PairDelays::mainline(args.seed)),
        },
        dead: args.dead,
        read_only: args.read_only,
        other_k,
        answer_k: args.answer_k,
        churn_per_minute: args.churn,
        partition,
        invariant_every: 100_000,
        invariant_sample: 100,
        attack,
        holders: args.holders || args.profile.is_some(),
        sessions: sessions_of(&args),
        nat: args.nat,
        shared_ips: shared_ips_of(&args),
        public_ips: args.addresses.map_or(args.profile.is_some(), |a| a == Addresses::Public),
        count_missed_holders: args.lookup_log.is_some(),
        threads: args.threads.max(1),
    };

    let idle = idle_engine_bytes(&Config { id: None, ..engine.clone() });
    let before_build = live_bytes();
    let mut sim = Sim::new(scenario);
    sim.set_progress(|line| eprintln!("[simulate] {line}"));
    eprintln!("[simulate] building {} nodes ({:?})", args.nodes, args.build);
    let cpu_before_build = cpu_seconds();
    sim.build();
    // The build's own cost, before any lookup: issue 16 asks for the speed of building a joined
    // network, and the datagrams a join costs are what decides it.
    let build_cpu = cpu_seconds().zip(cpu_before_build).map(|(after, before)| after - before);
    let build_datagrams = sim.stats().sent;
    let (engines, footprint, entries) = sim.footprint();
    let built_bytes = live_bytes() - before_build;
    // Where the bytes went after the build, per engine and per node of the simulator's own.
    let parts: Vec<(String, String)> = (sim.memory_parts().into_iter().map(|(n, b)| (format!("engine_{n}"), b)))
        .chain(sim.sim_parts().into_iter().map(|(n, b)| (format!("sim_{n}"), b)))
        .map(|(n, b)| (n, format!("{b:.0}")))
        .collect();
    let build_wall = wall.elapsed();
    eprintln!("[simulate] built in {:.1} s: {}", build_wall.as_secs_f64(), sim.describe());
    // Heap per routing entry: what the build added beyond idle engines, per entry. Meaningful for
    // pre-seeded tables, whose buckets are full; a joined network's sparse buckets still reserve
    // k slots each, and its engines hold transaction and queue capacity from the join.
    let per_entry = match args.build {
        BuildMode::Preseed if entries > 0 => {
            format!("{:.1}", built_bytes.saturating_sub(engines * idle) as f64 / entries as f64)
        }
        _ => "null".to_string(),
    };
    let per_node_total = built_bytes as f64 / args.nodes.max(1) as f64;

    if let Some(hours) = args.census {
        run_census(&mut sim, &args, hours);
        return;
    }
    if args.respread {
        let before = sim.bucket_spread();
        sim.respread();
        let after = sim.bucket_spread();
        eprintln!(
            "[simulate] respread {} full buckets: {:.3} -> {:.3} bits gained per bucket",
            before.buckets, before.gain_bits, after.gain_bits
        );
    }
    eprintln!("[simulate] running {} lookups", args.lookups);
    let records = sim.run_lookups(args.lookups, args.rate);
    let mut drained = String::from("not checked");
    if args.drain {
        drained = match sim.drain_operations(Duration::from_secs(300)) {
            Ok(d) => format!("all operations resolved {:.1} s after the last lookup", d.as_secs_f64()),
            Err(e) => fail(&e),
        };
    }
    if args.check {
        if let Err(e) = sim.check_all_tables() {
            fail(&e);
        }
    }
    if let Some(path) = &args.lookup_log {
        write_lookup_log(&sim, &records, path);
    }
    let summary = Summary::of(&records);
    let stats = sim.stats();
    let spread = sim.bucket_spread();
    let by_depth: Vec<String> = spread.by_depth.iter().map(|g| format!("{g:.2}")).collect();
    eprintln!("[simulate] bits gained per full bucket, by depth from the farthest: {}", by_depth.join(" "));
    let held = sim.in_degree();
    eprintln!(
        "[simulate] tables holding a node: p10 {} p50 {} p90 {} p99 {} max {}; first tenth of the nodes {:.1}, last tenth {:.1}",
        held.p10, held.p50, held.p90, held.p99, held.max, held.first_tenth_mean, held.last_tenth_mean
    );
    let replayed = sim.replay_lookups(REPLAYED_LOOKUPS);
    eprintln!(
        "[simulate] {} lookups replayed on the tables: {:.3} rounds, one of the k nearest asked in round {:.3}, {:.2} distinct names per round",
        replayed.lookups, replayed.rounds, replayed.first_nearest_round, replayed.names_per_round
    );
    let build_name = match args.build {
        BuildMode::Join => "join",
        BuildMode::Preseed => "preseed",
    };
    let alpha = engine.lookup_alpha();
    let mut report = Report {
        header: vec![
            ("nodes".into(), args.nodes.to_string()),
            ("build".into(), build_name.into()),
            // Peak RSS depends on it (docs/decisions/0030-simulator-allocator.md).
            ("allocator".into(), "jemalloc".into()),
            ("seed".into(), args.seed.to_string()),
            ("k".into(), args.k.to_string()),
            ("answer_k".into(), args.answer_k.map_or("k".into(), |a| a.to_string())),
            ("concurrency".into(), args.concurrency.to_string()),
            ("alpha".into(), alpha.to_string()),
            ("retries".into(), engine.lookup_retries.to_string()),
            ("disjoint_paths".into(), engine.lookup_disjoint_paths.to_string()),
            ("neighbourhood".into(), engine.lookup_neighbourhood.to_string()),
            ("wide_buckets".into(), engine.wide_buckets.to_string()),
            ("soft_timeout_ms".into(), engine.lookup_soft_timeout.map_or("0".into(), |d| d.as_millis().to_string())),
            ("adaptive_soft_timeout".into(), engine.lookup_adaptive_soft_timeout.to_string()),
            ("loss".into(), args.loss.to_string()),
            ("dead".into(), args.dead.to_string()),
            ("churn_per_min".into(), args.churn.to_string()),
            ("latency".into(), args.latency.clone()),
            ("profile".into(), args.profile.map_or("none".into(), |_| "mainline".into())),
            ("client".into(), format!("{:?}", args.client).to_lowercase()),
            ("sessions".into(), format!("{:?}", sessions_of(&args).map(|s| (s.shape, s.scale.as_secs() / 60)))),
            ("attack".into(), attack_name(attack)),
            (
                "shared_ip".into(),
                shared_ips_of(&args)
                    .filter(|s| s.fraction > 0.0)
                    .map_or("none".into(), |s| format!("{}:{}", s.fraction, s.max)),
            ),
            ("addresses".into(), if sim.ips().public() { "public".into() } else { "private".into() }),
            ("defences".into(), attack.map_or("null".into(), |a| if a.defences { "on".into() } else { "off".into() })),
            ("respread".into(), args.respread.to_string()),
        ],
        summary,
        footer: vec![
            ("routing_entries_per_node".into(), format!("{:.1}", entries as f64 / engines.max(1) as f64)),
            ("bucket_gain_bits".into(), format!("{:.3}", spread.gain_bits)),
            ("in_degree_p50".into(), held.p50.to_string()),
            ("in_degree_p99".into(), held.p99.to_string()),
            ("in_degree_max".into(), held.max.to_string()),
            ("replayed_names_per_round".into(), format!("{:.2}", replayed.names_per_round)),
            ("replayed_rounds".into(), format!("{:.3}", replayed.rounds)),
            ("idle_engine_bytes".into(), idle.to_string()),
            ("bytes_per_routing_entry".into(), per_entry),
            ("contact_bytes".into(), std::mem::size_of::<krpc_core::routing::Contact>().to_string()),
            ("routing_entry_bytes".into(), sim_entry_bytes(args.k).to_string()),
            ("footprint_bytes_per_engine".into(), (footprint / engines.max(1)).to_string()),
            ("built_bytes_per_node".into(), format!("{per_node_total:.0}")),
            ("peak_heap_mb".into(), mb(PEAK.load(Ordering::Relaxed))),
            ("peak_rss_mb".into(), peak_rss().map_or("null".into(), mb)),
            ("nat_nodes".into(), sim.nats().count().to_string()),
            ("nat_dropped".into(), sim.nats().dropped.to_string()),
            ("shared_ip_nodes".into(), sim.ips().shared_nodes().to_string()),
            ("diversity_refused".into(), sim.diversity_refused().to_string()),
            ("read_only_at_end".into(), sim.read_only_nodes().to_string()),
            ("attackers".into(), sim.attackers().map_or(0, |a| a.len()).to_string()),
            ("attacker_answers".into(), sim.attackers().map_or(0, |a| a.answered).to_string()),
            ("datagrams".into(), stats.sent.to_string()),
            ("build_datagrams".into(), build_datagrams.to_string()),
            ("build_datagrams_per_node".into(), format!("{:.1}", build_datagrams as f64 / args.nodes.max(1) as f64)),
            ("build_cpu_s".into(), build_cpu.map_or("null".into(), |s| format!("{s:.2}"))),
            ("lost".into(), stats.lost.to_string()),
            ("nodes_left".into(), stats.left.to_string()),
            ("nodes_joined".into(), stats.joined.to_string()),
            ("virtual_s".into(), format!("{:.1}", sim.now().as_duration().as_secs_f64())),
            ("trace_hash".into(), format!("{:016x}", sim.trace_hash())),
            ("threads".into(), args.threads.max(1).to_string()),
            ("shared_windows".into(), sim.shared_windows().to_string()),
            ("late_replays".into(), sim.late_replays().to_string()),
            ("drain".into(), drained),
            ("build_wall_s".into(), format!("{:.2}", build_wall.as_secs_f64())),
            ("wall_s".into(), format!("{:.2}", wall.elapsed().as_secs_f64())),
        ],
    };
    report.footer.extend(parts);
    if let Some(path) = &args.svg {
        let values = records.iter().map(|r| f64::from(r.queries)).collect();
        let label = format!("k={} α={} ({} nodes)", args.k, alpha, args.nodes);
        let plot = svg::cdf("Queries per lookup", "queries", &[Series { label, values }]);
        if let Err(e) = std::fs::write(path, plot) {
            fail(&format!("cannot write {path}: {e}"));
        }
    }
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
}

/// Lookups replayed on the built tables at the end of a run (`Sim::replay_lookups`).
const REPLAYED_LOOKUPS: usize = 2_000;

/// `--lookup-log`: one JSON object per line and lookup.
fn write_lookup_log(sim: &Sim, records: &[krpc_tests::sim::LookupRecord], path: &str) {
    let mut out = String::new();
    for r in records {
        let missed: Vec<serde_json::Value> = r
            .missed
            .iter()
            .map(|m| {
                serde_json::json!({
                    "node": m.node,
                    "known": m.known,
                    "asked": m.asked,
                    "answered": m.answered,
                    "nat": sim.nats().is_behind(m.node),
                    "read_only": sim.endpoint(m.node).is_some_and(|ep| ep.is_read_only()),
                    "answers": sim.answers(m.node),
                    "tables": sim.tables_holding(m.node),
                    "tables_then": m.tables,
                    "held_by_responders": m.held_by_responders,
                })
            })
            .collect();
        // Where the returned nodes rank among the nodes answering at the end of the run, by
        // distance to the target (0: the nearest; null: not among the nearest 256).
        let truth = sim.true_closest(&r.target, 256);
        let ranks: Vec<Option<usize>> = r.returned.iter().map(|j| truth.iter().position(|t| t == j)).collect();
        let line = serde_json::json!({
            "initiator": r.initiator,
            "responders": r.responders,
            "returned_ranks": ranks,
            "queries": r.queries,
            "replies": r.replies,
            "values_ms": r.values_after.map(|d| d.as_millis() as u64),
            "rounds": r.rounds,
            "time_ms": r.duration.map(|d| d.as_millis() as u64),
            "outcome": r.outcome.map(|o| format!("{o:?}")),
            "found8": r.found8,
            "success": r.success(),
            "missed": missed,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    if let Err(e) = std::fs::write(path, out) {
        fail(&format!("cannot write {path}: {e}"));
    }
}

fn attack_name(attack: Option<Attack>) -> String {
    match attack.map(|a| a.kind) {
        None => "none".into(),
        Some(AttackKind::Sybil { fraction, subnets }) => format!("sybil {fraction} on {subnets} /24s"),
        Some(AttackKind::Eclipse { per_target }) => format!("eclipse {per_target} per target"),
    }
}

/// Reflection: every reflector gets spoofed queries for 60 s, at 10 per second (just within the
/// default per-source limit of 100 per 10 s) and at 100 per second (over it), for each method,
/// with two configurations: `Config::default()` with the simulator's application answering
/// from the routing table (k = 20 nodes per answer), and `Config::dht()` (the node layer).
fn run_reflection(reflectors: usize, seed: u64, json: bool) {
    for (config_name, config) in [("default", Config::default()), ("dht", Config::dht())] {
        for (name, method, rate) in [
            ("ping", ReflectedQuery::Ping, 10),
            ("find_node", ReflectedQuery::FindNode, 10),
            ("get_peers", ReflectedQuery::GetPeers, 10),
            ("ping", ReflectedQuery::Ping, 100),
            ("find_node", ReflectedQuery::FindNode, 100),
            ("get_peers", ReflectedQuery::GetPeers, 100),
        ] {
            let r = attack::reflection(&config, method, reflectors, rate, 60, seed);
            let report = Report {
                header: vec![
                    ("reflection".into(), name.into()),
                    ("config".into(), config_name.into()),
                    ("reflectors".into(), reflectors.to_string()),
                    ("queries_per_s_per_reflector".into(), rate.to_string()),
                ],
                summary: Summary::default(),
                footer: vec![
                    ("queries".into(), r.queries.to_string()),
                    ("attacker_bytes".into(), r.attacker_bytes.to_string()),
                    ("victim_datagrams".into(), r.victim_datagrams.to_string()),
                    ("victim_bytes".into(), r.victim_bytes.to_string()),
                    ("amplification".into(), format!("{:.2}", r.factor())),
                ],
            };
            if json {
                println!("{}", report.json());
            } else {
                println!(
                    "{config_name} {name} at {rate}/s: {} queries, {} B sent, victim got {} datagrams, {} B: factor {:.2}",
                    r.queries,
                    r.attacker_bytes,
                    r.victim_datagrams,
                    r.victim_bytes,
                    r.factor()
                );
            }
        }
    }
}

/// The crawl mode: for each crawler asked for, a fresh pre-seeded network of `--nodes` (the
/// same one: same seed), `--info-hashes` placed, one crawl from a random node; one JSON object
/// (or table row) per crawler, and with `--svg` the discovery curves of all.
fn run_crawls(args: &Args) {
    use krpc_tests::sim::crawl::{CrawlPlan, Crawler, run_crawl};
    let mut crawlers = Vec::new();
    if args.crawl {
        crawlers.push(Crawler::Engine);
    }
    if args.crawl_naive {
        crawlers.push(Crawler::Naive);
    }
    let mut curves = Vec::new();
    for crawler in crawlers {
        #[allow(clippy::disallowed_methods)] // wall time of the run, reported only
        let wall = std::time::Instant::now();
        // No bucket refresh during the crawl: 100,000 nodes refreshing would be most of the
        // traffic, and none of it is the crawl's.
        let engine = Config {
            k: args.k,
            concurrency: args.concurrency,
            timeout: Duration::from_millis(args.timeout_ms),
            bucket_refresh: Duration::from_secs(86_400),
            ..Config::default()
        };
        let link = Link {
            latency: parse_latency(&args.latency).unwrap_or_else(|e| fail(&e)),
            loss: args.loss,
            duplicate: args.duplicate,
            pairs: args.profile.map(|Profile::Mainline| PairDelays::mainline(args.seed)),
        };
        let scenario =
            Scenario { seed: args.seed, nodes: args.nodes, engine, link, dead: args.dead, ..Scenario::default() };
        let mut sim = Sim::new(scenario);
        eprintln!("[simulate] building {} nodes for the {crawler:?} crawl", args.nodes);
        sim.build();
        let placed = sim.place_info_hashes(args.info_hashes);
        let from = sim.random_live_node().unwrap_or_else(|| fail("no live node to crawl from"));
        let plan = CrawlPlan {
            crawler,
            rate: args.crawl_rate,
            concurrency: args.crawl_concurrency,
            duration: Duration::from_secs_f64(args.crawl_seconds),
            sample_every: Duration::from_secs(10),
        };
        eprintln!("[simulate] crawling for {} s at {} queries/s", args.crawl_seconds, args.crawl_rate);
        let run = run_crawl(&mut sim, from, &placed, plan);
        let name = match crawler {
            Crawler::Engine => "engine",
            Crawler::Naive => "naive",
        };
        let at = |share: f64| run.reached(share).map(|p| (p.seconds, p.queries));
        let (t50, t90, t99) = (at(0.5), at(0.9), at(0.99));
        let json = serde_json::json!({
            "crawler": name,
            "nodes": args.nodes,
            "info_hashes": run.placed,
            "seed": args.seed,
            "rate": args.crawl_rate,
            "concurrency": args.crawl_concurrency,
            "seconds": args.crawl_seconds,
            "queries": run.queries,
            "replies": run.replies,
            "nodes_visited": run.nodes_visited,
            "repeats": run.repeats,
            "found": run.found,
            "share": run.share(),
            "share50_s": t50.map(|p| p.0), "share50_queries": t50.map(|p| p.1),
            "share90_s": t90.map(|p| p.0), "share90_queries": t90.map(|p| p.1),
            "share99_s": t99.map(|p| p.0), "share99_queries": t99.map(|p| p.1),
            "points": run.points.iter().map(|p| [p.seconds, p.queries as f64, p.found as f64]).collect::<Vec<_>>(),
            "trace_hash": format!("{:016x}", sim.trace_hash()),
            "wall_s": wall.elapsed().as_secs_f64(),
        });
        if args.json {
            println!("{json}");
        } else {
            let show =
                |p: Option<(f64, u64)>| p.map_or("never".to_string(), |(s, q)| format!("{s:.0} s / {q} queries"));
            println!(
                "{name}: {} of {} info-hashes ({:.1}%) with {} queries ({} answers, {} nodes); 50%: {}; 90%: {}; 99%: {}",
                run.found,
                run.placed,
                run.share() * 100.0,
                run.queries,
                run.replies,
                run.nodes_visited,
                show(t50),
                show(t90),
                show(t99)
            );
        }
        let label = format!("{name} crawler, {} queries/s", args.crawl_rate);
        let points = run.points.iter().map(|p| (p.queries as f64, p.found as f64 / run.placed.max(1) as f64)).collect();
        curves.push(svg::Curve { label, points });
    }
    if let Some(path) = &args.svg {
        let title = format!("BEP 51 crawl: {} info-hashes on {} nodes", args.info_hashes, args.nodes);
        let plot = svg::lines(&title, "queries sent", "share of info-hashes found", &curves);
        if let Err(e) = std::fs::write(path, plot) {
            fail(&format!("cannot write {path}: {e}"));
        }
    }
}

/// The census mode: crawl the built network every round for `hours` while sessions run.
fn run_census(sim: &mut Sim, args: &Args, hours: f64) {
    use krpc_tests::sim::census::{CensusPlan, run_census};
    let Some(given) = sessions_of(args) else { fail("--census needs --sessions mainline|kad (or --profile)") };
    if !(args.census_round_s >= 1.0 && hours * 3600.0 >= 2.0 * args.census_round_s) {
        fail("--census needs --census-round-s of at least 1 s and at least two rounds");
    }
    #[allow(clippy::disallowed_methods)] // wall time of the run, reported only
    let wall = std::time::Instant::now();
    let cpu_before = cpu_seconds();
    eprintln!("[simulate] census: {hours} h, a round every {} s", args.census_round_s);
    let census = run_census(sim, CensusPlan::new(hours, args.census_round_s, args.nodes));
    let cpu = cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
    if args.json {
        let json = serde_json::json!({
            "nodes": args.nodes,
            "seed": args.seed,
            "sessions": { "k": given.shape, "lambda_min": given.scale.as_secs_f64() / 60.0 },
            "census": census.json(),
            "nodes_left": sim.stats().left,
            "nodes_joined": sim.stats().joined,
            "live_at_end": sim.live_nodes(),
            "datagrams": sim.stats().sent,
            "trace_hash": format!("{:016x}", sim.trace_hash()),
            "census_cpu_s": cpu,
            "census_wall_s": wall.elapsed().as_secs_f64(),
        });
        println!("{json}");
    } else {
        print!("{}", census.summary());
        println!(
            "{} nodes left, {} joined, {} live at the end; census took {:.1} s wall",
            sim.stats().left,
            sim.stats().joined,
            sim.live_nodes(),
            wall.elapsed().as_secs_f64()
        );
    }
}

fn fail(message: &str) -> ! {
    eprintln!("simulate: {message}");
    std::process::exit(1)
}

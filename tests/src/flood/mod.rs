//! Flood test: a `krpc serve` node under a flood of hostile datagrams from one address, while
//! legitimate clients on other addresses keep using it.
//!
//! One run ([`run`]):
//!
//! 1. starts `krpc --json serve --bind 127.0.0.1:0` (the krpc-tokio command-line tool, with
//!    its default configuration: whatever protection it has by default is what is tested) as
//!    a child process ([`server`]);
//! 2. starts a few other DHT nodes (127.0.1.x) and the legitimate clients (127.0.0.2, .3, ...),
//!    each joining through the server ([`legit`]);
//! 3. reads the server's resident memory (`VmRSS`), CPU time and socket drop count;
//! 4. floods the server from one socket on 127.0.0.1 ([`sender`], datagrams from
//!    [`garbage`]) while the clients keep pinging it and running `find_node`/`get_peers`
//!    lookups through it;
//! 5. lets things settle, reads memory and CPU again, checks that the process is alive and
//!    answers every client, stops it with SIGINT and keeps its final statistics line.
//!
//! The `flood` binary runs it with command-line options and prints a [`Report`] as a table or
//! JSON; `tests/tests/flood.rs` runs a short one and checks the targets. Memory, CPU and drop
//! counts come from Linux's `/proc`; elsewhere they are absent from the report. Nothing is
//! ever sent outside 127.0.0.0/8.

pub mod garbage;
pub mod legit;
pub mod sender;
pub mod server;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use krpc_core::NodeId;
use serde_json::{Map, Value, json};

use self::garbage::Kind;
use self::legit::{Behaviour, Legit, Network};
use self::sender::{FLOOD_SOURCE, Flood, Plan, Received, Sent};
use self::server::Server;

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct FloodConfig {
    /// The `krpc` binary (krpc-tokio's binary; see [`server::build_krpc`]).
    pub krpc: PathBuf,
    /// Flood datagrams to send.
    pub count: u64,
    /// Flood datagrams per second; 0 = as fast as the socket takes them.
    pub rate: u64,
    /// Flood datagrams per system call.
    pub batch: usize,
    /// Flood source sockets, all on 127.0.0.1 (see [`Plan::ports`]).
    pub ports: usize,
    /// Back-pressure on the flood, in bytes of the server's receive queue (see
    /// [`Plan::max_queue`]); `None`: none.
    pub max_queue: Option<u64>,
    /// Legitimate clients, each on its own loopback address.
    pub clients: usize,
    /// Other DHT nodes the lookups can reach besides the server.
    pub nodes: usize,
    /// How the clients behave.
    pub behaviour: Behaviour,
    /// Seed of the flood's content and of the clients' targets.
    pub seed: u64,
    /// Pause after the network has joined (before the first reading) and after the flood
    /// (before the second), for the server to finish what it was doing.
    pub settle: Duration,
    /// Pings from every client after the flood, each of which must be answered.
    pub check_pings: usize,
    /// Seconds between two statistics lines of the server.
    pub stats_interval: Duration,
}

impl FloodConfig {
    /// The defaults of the `flood` binary for a given server binary (but without
    /// back-pressure): a million datagrams at 100 000 a second; ten clients at 5 operations a second each, a lookup in five (each
    /// client stays at half the server's default per-source limit of 100 queries in 10 s:
    /// a legitimate node does not hammer one neighbour); three other nodes.
    pub fn new(krpc: PathBuf) -> FloodConfig {
        FloodConfig {
            krpc,
            count: 1_000_000,
            rate: 100_000,
            batch: 32,
            ports: 1,
            max_queue: None,
            clients: 10,
            nodes: 3,
            behaviour: Behaviour { rate: 5.0, lookup_every: 5 },
            seed: 1,
            settle: Duration::from_secs(2),
            check_pings: 5,
            stats_interval: Duration::from_secs(1),
        }
    }
}

/// Resident memory, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS` before the flood.
    pub before: u64,
    /// `VmRSS` after the flood (and the settling pause).
    pub after: u64,
    /// The highest `VmRSS` sampled during the flood (every 50 ms).
    pub peak_during: u64,
    /// `VmHWM` at the end: the peak over the process's whole life.
    pub high_water: u64,
}

impl Memory {
    /// `after - before`, negative when memory was given back.
    pub fn growth(&self) -> i64 {
        self.after as i64 - self.before as i64
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The run's settings.
    pub config: FloodConfig,
    /// The server's address.
    pub server: SocketAddr,
    /// The server's process id.
    pub pid: u32,
    /// The flood sockets' addresses.
    pub flood_sources: Vec<SocketAddr>,
    /// What the flood sent.
    pub sent: Sent,
    /// What came back to the flood socket.
    pub received: Received,
    /// What the clients saw during the flood.
    pub legit: Legit,
    /// Server memory (Linux only).
    pub memory: Option<Memory>,
    /// Server CPU time during the flood and the settling pause after it, in seconds (Linux
    /// only).
    pub cpu_seconds: Option<f64>,
    /// Datagrams the kernel dropped at the server's socket during the flood (its receive
    /// queue was full; Linux only).
    pub kernel_drops: Option<u64>,
    /// Whether the server process was still running after the flood.
    pub alive: bool,
    /// Pings answered after the flood, out of how many.
    pub check: (u64, u64),
    /// The server's own counters when it stopped (its `done` line, whole life), if it
    /// printed them.
    pub server_stats: Option<Map<String, Value>>,
}

/// Runs a flood; see the module documentation.
pub fn run(config: &FloodConfig) -> Result<Report, String> {
    let mut server = Server::start(&config.krpc, (FLOOD_SOURCE, 0).into(), config.stats_interval)?;
    let pid = server.pid();
    let network = Network::start(server.addr(), config.nodes, config.clients, config.seed)?;
    sleep(config.settle);
    let rss_before = server::rss(pid);
    let cpu_before = server::cpu_seconds(pid);
    let drops_before = server::udp_socket(server.addr()).map(|(drops, _)| drops);

    let stop = Arc::new(AtomicBool::new(false));
    let server_id = parse_id(server.id()).ok_or_else(|| format!("bad server id {:?}", server.id()))?;
    let clients = network.run(server_id, config.behaviour, config.seed, &stop)?;
    let plan = Plan {
        target: server.addr(),
        count: config.count,
        rate: config.rate,
        batch: config.batch,
        seed: config.seed,
        ports: config.ports,
        max_queue: config.max_queue,
    };
    let flood = match Flood::start(plan) {
        Ok(flood) => flood,
        Err(error) => {
            stop.store(true, Ordering::Relaxed);
            let _ = clients.join();
            return Err(format!("cannot start the flood: {error}"));
        }
    };
    let flood_sources = flood.local_addrs().to_vec();
    let mut peak_during = 0;
    while !flood.is_finished() {
        if let Some((rss, _)) = server::rss(pid) {
            peak_during = peak_during.max(rss);
        }
        sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let legit = clients.join()?;
    let (sent, received) = flood.finish(config.settle).map_err(|error| format!("flood: {error}"))?;

    let alive = server.is_running();
    let rss_after = server::rss(pid);
    let cpu_after = server::cpu_seconds(pid);
    let drops_after = server::udp_socket(server.addr()).map(|(drops, _)| drops);
    let check = network.check(config.check_pings);
    network.shutdown();
    let server_addr = server.addr();
    let latest = server.latest_stats();
    let server_stats = server.stop(Duration::from_secs(5)).or(latest);

    let memory = match (rss_before, rss_after) {
        (Some((before, _)), Some((after, high_water))) => {
            Some(Memory { before, after, peak_during: peak_during.max(after), high_water })
        }
        _ => None,
    };
    Ok(Report {
        config: config.clone(),
        server: server_addr,
        pid,
        flood_sources,
        sent,
        received,
        legit,
        memory,
        cpu_seconds: cpu_before.zip(cpu_after).map(|(before, after)| after - before),
        kernel_drops: drops_before.zip(drops_after).map(|(before, after)| after.saturating_sub(before)),
        alive,
        check,
        server_stats,
    })
}

/// A node id from 40 hex digits.
fn parse_id(hex: &str) -> Option<NodeId> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect();
    NodeId::from_bytes(&bytes?).ok().filter(|id| id.len() == 20)
}

#[allow(clippy::disallowed_methods)] // a load generator waits on the real clock
fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

/// `key value` for every number in a JSON object, nested objects as `outer.inner`.
fn flatten(prefix: &str, object: &Map<String, Value>, out: &mut Vec<String>) {
    for (key, value) in object {
        match value {
            Value::Number(n) if key != "elapsed_ms" => out.push(format!("{prefix}{key} {n}")),
            Value::Object(inner) => flatten(&format!("{prefix}{key}."), inner, out),
            _ => {}
        }
    }
}

fn tally_json(tally: &legit::Tally) -> Value {
    json!({ "ok": tally.ok, "total": tally.total(), "failed": tally.failed })
}

impl Report {
    /// The flood's achieved rate, datagrams per second.
    pub fn achieved_rate(&self) -> f64 {
        self.sent.total() as f64 / self.sent.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let by_kind: Map<String, Value> = Kind::ALL
            .iter()
            .map(|kind| {
                let i = kind.index();
                (kind.name().to_owned(), json!({ "datagrams": self.sent.datagrams[i], "bytes": self.sent.bytes[i] }))
            })
            .collect();
        let memory = self.memory.map(|m| {
            json!({
                "rss_before": m.before,
                "rss_after": m.after,
                "rss_growth": m.growth(),
                "rss_peak_during": m.peak_during,
                "vm_hwm": m.high_water,
            })
        });
        let legit = &self.legit;
        json!({
            "event": "flood",
            "server": self.server.to_string(),
            "pid": self.pid,
            "flood_sources": self.flood_sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "settings": {
                "count": self.config.count,
                "rate": self.config.rate,
                "batch": self.config.batch,
                "ports": self.config.ports,
                "max_queue": self.config.max_queue,
                "clients": self.config.clients,
                "nodes": self.config.nodes,
                "client_rate": self.config.behaviour.rate,
                "lookup_every": self.config.behaviour.lookup_every,
                "seed": self.config.seed,
            },
            "sent": {
                "datagrams": self.sent.total(),
                "bytes": self.sent.total_bytes(),
                "send_errors": self.sent.send_errors,
                "seconds": self.sent.elapsed.as_secs_f64(),
                "throttled_seconds": self.sent.throttled.as_secs_f64(),
                "rate": self.achieved_rate(),
                "by_kind": by_kind,
            },
            "flood_received": {
                "responses": self.received.responses,
                "errors": self.received.errors,
                "queries": self.received.queries,
                "other": self.received.other,
                "bytes": self.received.bytes,
            },
            "legit": {
                "success_rate": legit.success_rate(),
                "ok": legit.ok(),
                "total": legit.total(),
                "ping": tally_json(&legit.pings),
                "find_node": tally_json(&legit.find_nodes),
                "get_peers": tally_json(&legit.get_peers),
                "other_node_answers": legit.other_node_answers,
                "ping_rtt_us": {
                    "p50": legit.ping_rtt_quantile(0.5),
                    "p99": legit.ping_rtt_quantile(0.99),
                    "max": legit.ping_rtt_quantile(1.0),
                },
            },
            "after": { "alive": self.alive, "pings_answered": self.check.0, "pings": self.check.1 },
            "server_process": {
                "memory": memory,
                "cpu_seconds": self.cpu_seconds,
                "kernel_drops": self.kernel_drops,
            },
            "server_stats": self.server_stats,
        })
    }

    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let sent = &self.sent;
        let _ = writeln!(
            out,
            "flood: {} datagrams ({:.1} MiB) from {} to {} in {:.2} s = {:.0}/s (asked {}/s), {} refused by the kernel",
            sent.total(),
            mib(sent.total_bytes()),
            match &self.flood_sources[..] {
                [one] => one.to_string(),
                many => format!("{} ports of 127.0.0.1", many.len()),
            },
            self.server,
            sent.elapsed.as_secs_f64(),
            self.achieved_rate(),
            if self.config.rate == 0 { "unlimited".to_string() } else { self.config.rate.to_string() },
            sent.send_errors
        );
        if let Some(max_queue) = self.config.max_queue {
            let _ = writeln!(
                out,
                "  back-pressure: {:.2} s spent waiting for the server's receive queue to fall below {} KiB",
                sent.throttled.as_secs_f64(),
                max_queue / 1024
            );
        }
        let _ = writeln!(out, "\n  {:<22} {:>10} {:>12}", "kind", "datagrams", "bytes");
        for kind in Kind::ALL {
            let i = kind.index();
            let _ = writeln!(out, "  {:<22} {:>10} {:>12}", kind.name(), sent.datagrams[i], sent.bytes[i]);
        }
        let r = &self.received;
        let _ = writeln!(
            out,
            "\nback to the flooder: {} responses, {} errors, {} queries, {} other ({:.1} MiB)",
            r.responses,
            r.errors,
            r.queries,
            r.other,
            mib(r.bytes)
        );
        let legit = &self.legit;
        let _ = writeln!(
            out,
            "\nlegitimate clients ({} on 127.0.0.2.., {} other nodes on 127.0.1.x): {} of {} = {:.2} %",
            self.config.clients,
            self.config.nodes,
            legit.ok(),
            legit.total(),
            100.0 * legit.success_rate()
        );
        let _ = writeln!(out, "  {:<10} {:>8} {:>8} {:>9}  failures", "operation", "ok", "total", "success");
        for (name, tally) in [("ping", &legit.pings), ("find_node", &legit.find_nodes), ("get_peers", &legit.get_peers)]
        {
            let failures: Vec<String> = tally.failed.iter().map(|(reason, n)| format!("{n} × {reason}")).collect();
            let _ = writeln!(
                out,
                "  {:<10} {:>8} {:>8} {:>8.2}%  {}",
                name,
                tally.ok,
                tally.total(),
                percent(tally.ok, tally.total()),
                if failures.is_empty() { "-".to_string() } else { failures.join(", ") }
            );
        }
        let rtt = |q| legit.ping_rtt_quantile(q).map_or("-".to_string(), |us| format!("{:.2} ms", us as f64 / 1e3));
        let _ = writeln!(
            out,
            "  ping round trip: p50 {}, p99 {}, max {}; lookups got {} answers from the other nodes",
            rtt(0.5),
            rtt(0.99),
            rtt(1.0),
            legit.other_node_answers
        );
        let _ = writeln!(out, "\nserver (pid {}):", self.pid);
        match self.memory {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "  RSS before {:.1} MiB, after {:.1} MiB, growth {:+.2} MiB; peak during {:.1} MiB, VmHWM {:.1} MiB",
                    mib(m.before),
                    mib(m.after),
                    m.growth() as f64 / (1024.0 * 1024.0),
                    mib(m.peak_during),
                    mib(m.high_water)
                );
            }
            None => {
                let _ = writeln!(out, "  RSS: not measured (needs Linux /proc)");
            }
        }
        if let Some(cpu) = self.cpu_seconds {
            let _ = writeln!(
                out,
                "  CPU time {:.2} s (user + system) = {:.1} µs per flood datagram",
                cpu,
                cpu * 1e6 / sent.total().max(1) as f64
            );
        }
        if let Some(drops) = self.kernel_drops {
            let _ = writeln!(out, "  dropped by the kernel (receive queue full): {drops}");
        }
        let _ = writeln!(
            out,
            "  after the flood: {}, answered {} of {} pings",
            if self.alive { "running" } else { "NOT RUNNING" },
            self.check.0,
            self.check.1
        );
        if let Some(stats) = &self.server_stats {
            let mut counters = Vec::new();
            flatten("", stats, &mut counters);
            let _ = writeln!(out, "  its counters (whole life):");
            for line in counters.chunks(4) {
                let _ = writeln!(out, "    {}", line.join(", "));
            }
        }
        out
    }
}

//! The `krpc` command-line tool against C++ libtorrent (the `libtorrent` 2.1 Python bindings,
//! `tests/interop/lt_swarm.py`): six libtorrent DHT nodes, each on a loopback address of its
//! own (127.0.0.30 to .35: BEP 33 counts peers by IP address), and one `krpc serve` node on
//! 127.0.0.1, started once the announces are done, that joins through them.
//!
//! Every libtorrent node announces the same info hash S (nodes 0 to 2 as seeds, 3 to 5 not)
//! and an info hash of its own H_i. Once every node's BEP 51 sample (asked by libtorrent
//! itself) holds all seven:
//!
//! - `krpc sample` against a libtorrent node prints its `num` and exactly those info hashes;
//! - `krpc scrape S` estimates 3 seeds and 3 peers from libtorrent's `BFsd`/`BFpe` filters;
//! - `krpc crawl --max 7`, started from our `serve` node (which holds none of them: its
//!   sample is empty), finds all seven, each once: from libtorrent's `sample_infohashes`
//!   answers, reached through the nodes our node lists.
//!
//! Here rather than in `tests/tests/interop_libtorrent.rs` because it runs the binary
//! (`CARGO_BIN_EXE_krpc` is only given to the tests of the binary's own package); the helpers
//! are the same module, included by path. Skipped when Python's `libtorrent` is missing
//! (`tests/interop/setup.sh`), unless `KRPC_INTEROP_REQUIRED=1`.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // a test: it logs what the peers sent, and owns the clock

#[path = "../../tests/tests/interop_common/mod.rs"]
mod interop_common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use interop_common::{PeerProcess, json_addr, libtorrent_available, python_bin, should_run, until};
use serde_json::{Value, json};

/// libtorrent nodes, on 127.0.0.`FIRST_HOST` and up.
const NODES: usize = 6;
const FIRST_HOST: u8 = 30;
/// Of them, the first `SEEDS` announce S as seeds (BEP 33).
const SEEDS: usize = 3;
/// Generous bound on each phase (libtorrent pings new nodes and retries on its own schedule).
const PHASE: Duration = Duration::from_secs(90);

/// The info hash every node announces.
const S: &str = "5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c";

/// The info hash node `i` announces alone.
fn own(i: usize) -> String {
    format!("{:02x}", 0xa0 + i).repeat(20)
}

fn krpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_krpc")).args(args).stdin(Stdio::null()).output().expect("run krpc")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `krpc serve` on 127.0.0.1, killed when dropped; its address from the `listening` line.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    /// Starts it and waits until it has joined through `bootstrap` (its `bootstrapped` line).
    fn start(bootstrap: SocketAddr) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_krpc"))
            .args(["--json", "serve", "--bind", "127.0.0.1:0", "--for", "600", "--bootstrap"])
            .arg(bootstrap.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start krpc serve");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut next = || -> Value {
            let line = lines.next().expect("krpc serve ended").expect("a line");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
        };
        let listening = next();
        let addr = listening["addr"].as_str().expect("addr").parse().expect("an address");
        loop {
            let line = next();
            assert_ne!(line["event"], "bootstrap_failed", "{line}");
            if line["event"] == "bootstrapped" {
                break;
            }
        }
        Serve { child, addr }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Announces S and H_i from every libtorrent node.
fn announce_all(lt: &mut PeerProcess) {
    for i in 0..NODES {
        lt.send(json!({"cmd": "announce", "index": i, "info_hash": S, "port": 7000 + i, "seed": i < SEEDS}));
        lt.send(json!({"cmd": "announce", "index": i, "info_hash": own(i), "port": 7100 + i}));
    }
}

/// What every node holds once every announce has reached it: every info hash, its own too
/// (libtorrent stores its own announces in its own peer store: docs/interop.md, quirk 44).
fn expected() -> BTreeSet<String> {
    (0..NODES).map(own).chain([S.to_owned()]).collect()
}

#[test]
fn krpc_sample_scrape_and_crawl_against_libtorrent() {
    if !should_run("interop_libtorrent (krpc CLI)", libtorrent_available()) {
        return;
    }
    let mut lt = PeerProcess::spawn(
        "libtorrent swarm",
        &python_bin(),
        &["lt_swarm.py", &NODES.to_string(), "0", &FIRST_HOST.to_string()],
    );
    let ready = lt.wait_for(PHASE, "the libtorrent sessions to be ready", |v| v["event"] == "ready");
    let nodes: Vec<SocketAddr> = ready["nodes"].as_array().unwrap().iter().map(json_addr).collect();
    assert_eq!(nodes.len(), NODES);
    eprintln!("libtorrent {} nodes: {nodes:?}", ready["version"]);

    // Announce, then wait until each node's sample (libtorrent asking libtorrent; samples are
    // drawn afresh for every query, see lt_swarm.py) holds all seven info hashes.
    // Announcing again is harmless: a peer is stored once.
    announce_all(&mut lt);
    let mut last_announce = Instant::now();
    let mut last_ask: Option<Instant> = None;
    let mut held: BTreeMap<SocketAddr, BTreeSet<String>> = BTreeMap::new();
    until(PHASE, "every libtorrent node to hold every announce", || {
        std::thread::sleep(Duration::from_millis(50));
        if last_announce.elapsed() > Duration::from_secs(10) {
            announce_all(&mut lt);
            last_announce = Instant::now();
        }
        if last_ask.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
            for (j, node) in nodes.iter().enumerate() {
                let index = (j + 1) % NODES;
                lt.send(json!({"cmd": "sample", "index": index, "host": node.ip().to_string(), "port": node.port(), "target": S}));
            }
            last_ask = Some(Instant::now());
        }
        for sample in lt.take_all(|v| v["event"] == "samples") {
            let samples = sample["samples"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_owned());
            held.insert(json_addr(&sample), samples.collect());
        }
        nodes.iter().all(|node| held.get(node) == Some(&expected())).then_some(())
    });
    eprintln!("every libtorrent node holds every announce");

    // (a) `krpc sample` against libtorrent node 1.
    let output = krpc(&["sample", &nodes[1].to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("krpc sample {}:\n{text}", nodes[1]);
    assert!(lines[0].starts_with("interval "), "{text}");
    assert_eq!(lines[1], format!("num {}", NODES + 1), "S and the six nodes' own info hashes: {text}");
    let sampled: BTreeSet<String> = lines[2..].iter().map(|l| (*l).to_owned()).collect();
    assert_eq!(sampled, expected(), "{text}");

    // (b) `krpc scrape S` through libtorrent node 0: every node holds the six announces.
    let output = krpc(&["--json", "scrape", S, "--bootstrap", &nodes[0].to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let scrape: Value = serde_json::from_str(stdout(&output).lines().next().expect("a scrape line")).unwrap();
    eprintln!("krpc scrape: {scrape}");
    assert_eq!(scrape["event"], "scrape");
    assert_eq!(
        (scrape["seeds"].as_u64(), scrape["peers"].as_u64()),
        (Some(SEEDS as u64), Some((NODES - SEEDS) as u64)),
        "{scrape}"
    );
    assert!(scrape["responses"].as_u64().is_some_and(|n| n >= 1), "{scrape}");

    // (c) `krpc crawl` from our node, started now: it holds nothing (its sample is empty), so
    // what the crawl finds comes from libtorrent. --duration only bounds a failing run: --max
    // 7 ends it once all seven are found.
    // The last announces (lookups, then `announce_peer`) take milliseconds on loopback; 5 s
    // after them none is still looking for nodes to store on, so none can reach our node.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(last_announce.elapsed()));
    let ours = Serve::start(nodes[0]);
    eprintln!("krpc serve: {}", ours.addr);
    let output = krpc(&["sample", &ours.addr.to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().nth(1), Some("num 0"), "{}", stdout(&output));
    let output = krpc(&["--json", "crawl", "--bootstrap", &ours.addr.to_string(), "--max", "7", "--duration", "60"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let found: Vec<String> =
        lines.iter().filter(|l| l["event"] == "infohash").map(|l| l["infohash"].as_str().unwrap().to_owned()).collect();
    eprintln!("krpc crawl: {found:?}\n{}", stderr(&output));
    assert_eq!(found.len(), NODES + 1, "each info hash once: {found:?}");
    assert_eq!(found.into_iter().collect::<BTreeSet<_>>(), expected());
    let done = lines.last().expect("a done line");
    assert_eq!((done["event"].as_str(), done["infohashes"].as_u64()), (Some("done"), Some(NODES as u64 + 1)), "{done}");
    assert!(done["nodes_visited"].as_u64().is_some_and(|n| n >= 2), "ours and libtorrent: {done}");

    let errors: Vec<_> = lt.history.iter().filter(|v| v["event"] == "error").collect();
    assert!(errors.is_empty(), "libtorrent reported errors: {errors:?}");
}

//! The `krpc` command-line tool (src/bin/krpc), run as a process: exit codes, JSON lines,
//! and a few commands end to end on loopback.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// BEP 5's example ping: `{"t":"aa", "y":"q", "q":"ping", "a":{"id":"abcdefghij0123456789"}}`.
const PING: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `krpc` binary cargo built for this test run (the `cli` feature is on in test builds:
/// krpc-tokio's dev-dependencies name itself with it).
fn krpc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_krpc"))
}

fn run(args: &[&str]) -> Output {
    krpc().args(args).stdin(Stdio::null()).output().expect("run krpc")
}

/// Every stdout line, each a JSON object.
fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `serve --json` node on loopback, with its address and id from the `listening` line.
struct Server {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
    addr: String,
    id: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = krpc()
            .args(["--json", "serve"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start krpc serve");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        lines.read_line(&mut first).expect("read the listening line");
        let listening: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
        assert_eq!(listening["event"], "listening", "{listening}");
        let addr = listening["addr"].as_str().expect("addr").to_owned();
        let id = listening["id"].as_str().expect("id").to_owned();
        Server { child, lines, addr, id }
    }

    /// Reads the node's lines until one reports `event`.
    fn wait_for(&mut self, event: &str) {
        loop {
            let mut line = String::new();
            let n = self.lines.read_line(&mut line).expect("read a line");
            assert!(n > 0, "the node exited before reporting {event}");
            if line.contains(&format!("\"event\":\"{event}\"")) {
                return;
            }
        }
    }

    /// Waits for the node to stop on its own (`--for`): its exit status and remaining lines.
    fn wait(mut self) -> (std::process::ExitStatus, Vec<Value>) {
        let rest: Vec<Value> = (&mut self.lines)
            .lines()
            .map(|line| serde_json::from_str(&line.expect("read a line")).expect("a JSON line"))
            .collect();
        (self.child.wait().expect("wait for krpc serve"), rest)
    }
}

#[test]
fn decode_prints_a_bep5_ping_as_json() {
    let output = run(&["--json", "decode", &hex(PING)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let message = &lines[0];
    assert_eq!(message["event"], "message");
    assert_eq!(message["y"], "q");
    assert_eq!(message["q"], "ping");
    assert_eq!(message["t"], "aa");
    assert_eq!(message["a"]["id"], hex(b"abcdefghij0123456789"));
    assert_eq!(lines[1]["event"], "done");
}

#[test]
fn decode_reads_raw_bytes_from_stdin_and_prints_text() {
    let mut child =
        krpc().args(["decode", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("run krpc");
    child.stdin.take().expect("piped stdin").write_all(PING).expect("write the datagram");
    let output = child.wait_with_output().expect("wait for krpc");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(r#"q: "ping""#) && text.contains(r#""abcdefghij0123456789""#), "{text}");
}

#[test]
fn decode_of_garbage_fails_with_the_offset() {
    // `d1:a` then `z`, which cannot start a value: offset 4.
    let output = run(&["decode", "64313a617a"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("offset 4"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let output = run(&["--json", "decode", &hex(&PING[..PING.len() - 1])]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    assert_eq!(lines.last().expect("an error line")["event"], "error");
    assert_eq!(lines.last().expect("an error line")["offset"], PING.len() - 1);
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["frobnicate"][..],
        &["find-node", "not-hex", "--bootstrap", "127.0.0.1:6881"],
        &["get-peers", "0123456789abcdef0123456789abcdef01234567"], // --bootstrap is required
        &["announce", "0123", "--bootstrap", "127.0.0.1:6881"],     // too short for an info hash
        &["decode", "xyz"],
        &["swarm", "--nodes", "1"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    }
    assert_eq!(run(&["--help"]).status.code(), Some(0));
}

#[test]
fn ping_gets_the_id_of_a_serving_node() {
    let server = Server::start(&["--bind", "127.0.0.1:0", "--for", "5", "--interval", "1"]);
    let output = run(&["--json", "ping", &server.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["event"], "pong", "{lines:?}");
    assert_eq!(lines[0]["id"], server.id.as_str());
    assert_eq!(lines[0]["addr"], server.addr.as_str());
    assert!(lines[0]["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    let done = lines.last().expect("a done line");
    assert_eq!(
        (done["event"].as_str(), done["queries"].as_u64(), done["replies"].as_u64()),
        (Some("done"), Some(1), Some(1))
    );

    // Text mode: one readable line with the id.
    let output = run(&["ping", &server.addr]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(&server.id));

    let server_id = server.id.clone();
    let (status, lines) = server.wait();
    assert!(status.success());
    assert!(lines.iter().any(|line| line["event"] == "stats"), "{lines:?}");
    let done = lines.last().expect("a done line");
    assert_eq!(done["event"], "done");
    assert!(done["queries_in"].as_u64().is_some_and(|n| n >= 2), "{done}");
    // What an operator asks: the id, both tables, the external address, the DHT's size.
    assert_eq!(done["id"], server_id.as_str(), "{done}");
    assert!(done["nodes6"].as_u64().is_some() && done["good_nodes"].as_u64().is_some(), "{done}");
    assert!(done["external_address"].as_array().is_some(), "{done}");
    assert!(done.get("dht_size_estimate").is_some(), "{done}");
    // Reachable or firewalled (issue 14): on loopback the node is a full node from the start;
    // the ping `run` sent came from an address it never sent to, so it proved reachability.
    assert_eq!((done["reachable"].as_str(), done["read_only"].as_bool()), (Some("yes"), Some(false)), "{done}");
}

#[test]
#[allow(clippy::disallowed_methods)] // the test's own socket, on loopback
fn serve_read_only_answers_nothing_and_says_so() {
    let server = Server::start(&["--bind", "127.0.0.1:0", "--for", "2", "--read-only"]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
    socket.set_read_timeout(Some(std::time::Duration::from_millis(500))).expect("timeout");
    socket.send_to(PING, &server.addr).expect("send a ping");
    let mut buf = [0u8; 1500];
    assert!(socket.recv_from(&mut buf).is_err(), "a read-only node answered (BEP 43)");
    let (status, lines) = server.wait();
    assert!(status.success());
    let done = lines.last().expect("a done line");
    assert_eq!((done["read_only"].as_bool(), done["replies_out"].as_u64()), (Some(true), Some(0)), "{done}");
    // `--full` and `--read-only` contradict each other: a usage error.
    let output = run(&["serve", "--bind", "127.0.0.1:0", "--full", "--read-only"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
#[allow(clippy::disallowed_methods)] // the test's own socket, on loopback
fn ping_without_an_answer_fails() {
    // A socket of ours that never answers: the ping times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind on loopback");
    let output = run(&["ping", &silent.local_addr().unwrap().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no reply"), "{}", stderr(&output));
}

#[test]
fn announce_then_get_peers_and_find_node_through_served_nodes() {
    let seed = Server::start(&["--bind", "127.0.0.1:0", "--for", "5"]);
    let other = Server::start(&["--bind", "127.0.0.1:0", "--for", "5", "--bootstrap", &seed.addr]);
    let info_hash = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

    let output = run(&["--json", "announce", info_hash, "--port", "4242", "--bootstrap", &seed.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let done = json_lines(&output).pop().expect("a done line");
    assert!(done["stored"].as_u64().is_some_and(|n| n >= 1), "{done}");

    let output = run(&["--json", "get-peers", info_hash, "--bootstrap", &other.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    let peers: Vec<&str> = lines.iter().filter(|l| l["event"] == "peer").filter_map(|l| l["addr"].as_str()).collect();
    assert_eq!(peers, ["127.0.0.1:4242"]);
    assert_eq!(lines.last().expect("a done line")["peers"], 1);

    let output = run(&["--json", "find-node", &other.id, "--bootstrap", &seed.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["event"], "node");
    assert_eq!((lines[0]["id"].as_str(), lines[0]["addr"].as_str()), (Some(&*other.id), Some(&*other.addr)));
    assert_eq!(lines.last().expect("a done line")["found"], true);

    // Nothing announced under this one: an operational failure.
    let unknown = "0000000000000000000000000000000000000001";
    let output = run(&["get-peers", unknown, "--bootstrap", &seed.addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no peers"), "{}", stderr(&output));

    assert!(seed.wait().0.success() && other.wait().0.success());
}

#[test]
fn ipv6_loopback_bootstrap_is_accepted() {
    let server = Server::start(&["--bind", "[::1]:0", "--for", "5"]);
    assert!(server.addr.starts_with("[::1]:"), "{}", server.addr);
    let output = run(&["--json", "find-node", &server.id, "--bootstrap", &server.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["addr"], server.addr.as_str());
    assert!(server.wait().0.success());
}

#[test]
fn swarm_finds_every_announced_peer() {
    let output = run(&["--json", "swarm", "--nodes", "30", "--lookups", "5"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "one summary object: {lines:?}");
    let summary = &lines[0];
    assert_eq!(summary["event"], "done");
    assert_eq!(summary["nodes"], 30);
    assert_eq!(summary["lookups"], 5);
    assert_eq!(summary["success"], 1.0, "{summary}");
    assert!(summary["queries_per_lookup"]["median"].as_u64().is_some_and(|n| n > 0), "{summary}");
}

#[test]
#[allow(clippy::disallowed_methods)] // the test's own socket, on loopback
fn serve_rate_limit_answers_n_queries_per_source_and_zero_turns_it_off() {
    // Sends 20 pings from one socket and counts the answers within a short wait.
    fn answered(server: &str) -> usize {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
        socket.set_read_timeout(Some(std::time::Duration::from_millis(500))).expect("timeout");
        for _ in 0..20 {
            socket.send_to(PING, server).expect("send a ping");
        }
        // Count answers only: the node also pings an unknown querier to verify it.
        let mut buf = [0u8; 1500];
        std::iter::from_fn(|| socket.recv_from(&mut buf).ok().map(|(len, _)| buf[..len].to_vec()))
            .filter(|datagram| datagram.windows(6).any(|w| w == b"1:y1:r"))
            .count()
    }
    let limited = Server::start(&["--bind", "127.0.0.1:0", "--for", "3", "--rate-limit", "5"]);
    assert_eq!(answered(&limited.addr), 5);
    // Another source (port) on loopback has its own count.
    assert_eq!(answered(&limited.addr), 5);
    let (status, lines) = limited.wait();
    assert!(status.success());
    let done = lines.last().expect("a done line");
    assert_eq!((done["rate_limited"].as_u64(), done["sources_blocked"].as_u64()), (Some(30), Some(2)), "{done}");

    let open = Server::start(&["--bind", "127.0.0.1:0", "--for", "3", "--rate-limit", "0"]);
    assert_eq!(answered(&open.addr), 20);
    let (_, lines) = open.wait();
    assert_eq!(lines.last().expect("a done line")["rate_limited"].as_u64(), Some(0));
}

/// A host name that fails to resolve without asking any DNS server: a label longer than
/// DNS's 63 bytes is refused by the resolver before it sends anything.
fn unresolvable() -> String {
    format!("{}.invalid:6881", "x".repeat(64))
}

/// A loopback socket of the test's that never answers: a bootstrap node nobody hears from.
#[allow(clippy::disallowed_methods)] // the test's own socket, on loopback
fn silent() -> std::net::UdpSocket {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind on loopback")
}

/// Sends SIGTERM to a child process (with `kill`, so the test needs no libc).
fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(status.success());
}

#[test]
fn one_unresolvable_bootstrap_name_is_skipped_when_another_resolves() {
    let seed = Server::start(&["--bind", "127.0.0.1:0", "--for", "5"]);
    let both = format!("{},{}", unresolvable(), seed.addr);
    let output = run(&["--json", "find-node", &seed.id, "--bootstrap", &both]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot resolve"), "{}", stderr(&output));
    assert_eq!(json_lines(&output).last().expect("a done line")["found"], true);

    // `serve` starts too (Server::start asserts the `listening` line).
    let other = Server::start(&["--bind", "127.0.0.1:0", "--for", "1", "--bootstrap", &both]);
    assert!(other.wait().0.success());

    // None resolves: a failure at run time.
    let output = run(&["find-node", &seed.id, "--bootstrap", &unresolvable()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot resolve"), "{}", stderr(&output));
    assert!(seed.wait().0.success());
}

#[test]
fn malformed_addresses_are_usage_errors_that_say_host_port() {
    let id = "0123456789abcdef0123456789abcdef01234567";
    for args in [
        &["find-node", id, "--bootstrap", "127.0.0.1"][..],
        &["find-node", id, "--bootstrap", "127.0.0.1:70000"],
        &["find-node", id, "--bootstrap", "127.0.0.1:0"],
        &["find-node", id, "--bootstrap", "::1:6881"],
        &["find-node", id, "--bootstrap", "127.0.0.1:6881", "--bind", "127.0.0.1"],
        &["serve", "--bind", "127.0.0.1"],
        &["serve", "--bind", "127.0.0.1:6881", "--bootstrap", "127.0.0.1:0"],
        &["ping", "127.0.0.1:0"],
        &["ping", "localhost"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("expected host:port"), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn announce_port_0_is_a_usage_error() {
    let output =
        run(&["announce", "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a", "--port", "0", "--bootstrap", "127.0.0.1:6881"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--port"), "{}", stderr(&output));
}

#[test]
fn json_get_peers_that_finds_nothing_ends_with_one_error_line() {
    let seed = Server::start(&["--bind", "127.0.0.1:0", "--for", "3"]);
    let output = run(&["--json", "get-peers", "0000000000000000000000000000000000000001", "--bootstrap", &seed.addr]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    let events: Vec<&str> = lines.iter().filter_map(|line| line["event"].as_str()).collect();
    assert_eq!(events, ["error"], "{lines:?}");
    assert!(seed.wait().0.success());
}

#[test]
fn bind_of_the_other_address_family_is_a_usage_error_that_says_so() {
    let id = "0123456789abcdef0123456789abcdef01234567";
    for args in [
        &["ping", "[::1]:6881", "--bind", "127.0.0.1:0"][..],
        &["find-node", id, "--bootstrap", "[::1]:6881", "--bind", "127.0.0.1:0"],
        &["find-node", id, "--bootstrap", "127.0.0.1:6881", "--bind", "[::1]:0"],
        &["serve", "--bind", "[::1]:0", "--bootstrap", "127.0.0.1:6881", "--for", "1"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("address family"), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn decode_of_bencode_text_says_to_use_stdin() {
    let output = run(&["decode", std::str::from_utf8(PING).expect("ASCII")]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("bencode") && err.contains("krpc decode -"), "{err}");
}

#[test]
fn help_shows_the_public_dht_the_exit_codes_and_the_swarm_range() {
    let output = run(&["--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--bootstrap dht.libtorrent.org:25401"), "{help}");
    assert!(help.contains("Exit codes: 0 success; 1 failure at run time") && help.contains("2 usage error"), "{help}");
    assert!(help.contains("except by\ncrawl and scrape"), "the two commands with a default bootstrap: {help}");
    let output = run(&["swarm", "--help"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("3 to 10000"));
}

#[test]
fn serve_stops_on_sigterm_with_a_last_stats_line_and_exit_0() {
    let server = Server::start(&["--bind", "127.0.0.1:0", "--for", "60"]);
    sigterm(&server.child);
    let (status, lines) = server.wait();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    assert_eq!(lines.last().expect("a done line")["event"], "done", "{lines:?}");
}

#[test]
fn a_bootstrap_nobody_answers_is_reported_as_a_failure() {
    let silent = silent();
    let addr = silent.local_addr().expect("local address").to_string();
    let mut server = Server::start(&["--bind", "127.0.0.1:0", "--for", "60", "--interval", "1", "--bootstrap", &addr]);
    let outcome = loop {
        let mut line = String::new();
        assert!(server.lines.read_line(&mut line).expect("read a line") > 0, "serve ended first");
        let line: Value = serde_json::from_str(&line).expect("a JSON line");
        if line["event"] != "stats" {
            break line;
        }
    };
    assert_eq!(outcome["event"], "bootstrap_failed", "{outcome}");
    assert!(
        outcome["message"]
            .as_str()
            .is_some_and(|m| m.contains("the bootstrap node did not answer") && m.contains(&addr))
    );
    sigterm(&server.child);
    assert!(server.wait().0.success());

    // A one-shot command says so and fails.
    let output = run(&["find-node", "0123456789abcdef0123456789abcdef01234567", "--bootstrap", &addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no reply from the bootstrap nodes"), "{}", stderr(&output));
}

/// `serve --json --state FILE` with stderr kept: stopped with SIGTERM once it listens, it
/// must exit 0; returns its stdout lines (after `listening`) and stderr.
fn serve_with_state_until_sigterm(file: &std::path::Path, extra: &[&str]) -> (Vec<Value>, String) {
    let mut child = krpc()
        .args(["--json", "serve", "--bind", "127.0.0.1:0", "--for", "60", "--state"])
        .arg(file)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start krpc serve");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    lines.read_line(&mut first).expect("read the listening line");
    assert!(first.contains("\"listening\""), "{first}");
    sigterm(&child);
    let rest: Vec<Value> =
        lines.lines().map(|line| serde_json::from_str(&line.expect("read a line")).expect("a JSON line")).collect();
    let output = child.wait_with_output().expect("wait for krpc serve");
    assert_eq!(output.status.code(), Some(0), "{rest:?} {}", stderr(&output));
    (rest, stderr(&output))
}

/// A fresh directory of this test's own in the system's temporary directory.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("krpc-cli-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

#[test]
fn serve_state_that_is_missing_or_unusable_is_a_warning_and_a_fresh_start() {
    use krpc_tokio::{NodeId, NodeInfo, SavedState};
    let dir = scratch("unusable");
    let node = NodeInfo::new(NodeId::from_array([9; 20]), "127.0.0.1:9".parse().unwrap());
    let good = SavedState { id: NodeId::from_array([7; 20]), nodes: vec![node] }.encode();
    let foreign = String::from_utf8_lossy(&good).replace("7:versioni1e", "7:versioni2e").into_bytes();
    assert_ne!(foreign, good, "the version field was found");
    let cases: [(&str, Option<Vec<u8>>, &str); 4] = [
        ("missing", None, "no such file"),
        ("garbage", Some(b"\x00\x01 this is not bencode".to_vec()), "not a saved DHT state"),
        ("foreign", Some(foreign), "version 2"),
        ("truncated", Some(good[..good.len() - 5].to_vec()), "not a saved DHT state"),
    ];
    for (name, contents, why) in cases {
        let file = dir.join(name);
        if let Some(contents) = &contents {
            std::fs::write(&file, contents).unwrap();
        }
        let (lines, stderr) = serve_with_state_until_sigterm(&file, &[]);
        let warning = stderr.lines().find(|l| l.starts_with("krpc: warning: ")).unwrap_or_default();
        assert!(warning.contains(why) && warning.contains("starting fresh"), "{name}: {stderr}");
        assert!(lines.iter().any(|l| l["event"] == "warning"), "{name}: {lines:?}");
        assert!(!lines.iter().any(|l| l["event"] == "restored"), "{name}: {lines:?}");
        // At shutdown a complete state replaced it: a fresh id, not the one in the file.
        let saved = SavedState::decode(&std::fs::read(&file).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(saved.id, NodeId::from_array([7; 20]), "{name}");
        assert!(!krpc_tokio::temp_path(&file).exists(), "{name}");
    }
}

#[test]
fn serve_restarted_from_its_state_with_no_bootstrap_is_back_in_the_swarm() {
    let dir = scratch("restart");
    let file = dir.join("node.state");
    let seed = Server::start(&["--bind", "127.0.0.1:0", "--for", "60"]);
    let mut other = Server::start(&["--bind", "127.0.0.1:0", "--for", "60", "--bootstrap", &seed.addr]);
    // The seed must know the other node before the first one asks it, or the first one may
    // hear of no node but the seed (the seed verifies a new querier with a ping first).
    other.wait_for("bootstrapped");
    let file_arg = file.to_str().expect("a UTF-8 path");
    let mut first =
        Server::start(&["--bind", "127.0.0.1:0", "--for", "60", "--state", file_arg, "--bootstrap", &seed.addr]);
    // No file yet (a warning), joined (the node's own report), then stopped: the state
    // file is written at shutdown.
    for expected in ["warning", "bootstrapped"] {
        let mut line = String::new();
        first.lines.read_line(&mut line).expect("read a line");
        assert!(line.contains(&format!("\"event\":\"{expected}\"")), "{line}");
    }
    let info_hash = "0123456789abcdef0123456789abcdef01234567";
    let output = run(&["announce", info_hash, "--port", "4321", "--bootstrap", &seed.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    sigterm(&first.child);
    assert!(first.wait().0.success());
    let saved = krpc_tokio::load_state_file(&file).expect("a state file");
    assert!(saved.nodes.len() >= 2, "{saved:?}");

    // Another port, no --bootstrap: only the saved nodes.
    let mut restarted = Server::start(&["--bind", "127.0.0.1:0", "--for", "60", "--state", file_arg]);
    assert_eq!(restarted.id, saved.id.to_string(), "the id survives the restart");
    let mut line = String::new();
    restarted.lines.read_line(&mut line).expect("read a line");
    let restored: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(restored["event"], "restored", "{restored}");
    assert!(restored["nodes"].as_u64().is_some_and(|n| n >= 2), "{restored}");

    // A client that knows only the restarted node finds the announced peer through it.
    let output = run(&["--json", "get-peers", info_hash, "--bootstrap", &restarted.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert!(lines.iter().any(|l| l["event"] == "peer" && l["addr"] == "127.0.0.1:4321"), "{lines:?}");

    // It rejoined by itself: it sent queries, and nodes answered them.
    sigterm(&restarted.child);
    let (status, lines) = restarted.wait();
    assert!(status.success());
    let done = lines.last().expect("a done line");
    assert!(done["replies"].as_u64().is_some_and(|n| n >= 1), "{done}");
    for server in [seed, other] {
        sigterm(&server.child);
        assert!(server.wait().0.success());
    }
}

#[test]
fn sample_prints_interval_num_and_the_announced_info_hashes() {
    // BEP 51 against one served node that holds three announced info-hashes.
    let server = Server::start(&["--bind", "127.0.0.1:0", "--for", "5"]);
    let hashes = [
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
        "3333333333333333333333333333333333333333",
    ];
    for hash in hashes {
        let output = run(&["announce", hash, "--port", "4242", "--bootstrap", &server.addr]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let output = run(&["sample", &server.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..2], ["interval 21600", "num 3"], "{text}");
    let mut sampled: Vec<&str> = lines[2..].to_vec();
    sampled.sort();
    assert_eq!(sampled, hashes, "{text}");

    let output = run(&["--json", "sample", &server.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(
        (lines[0]["event"].as_str(), lines[0]["num"].as_u64(), lines[0]["samples"].as_u64()),
        (Some("sample"), Some(3), Some(3))
    );
    assert_eq!(lines.iter().filter(|l| l["event"] == "infohash").count(), 3);
    assert!(server.wait().0.success());

    let output = run(&["sample", "127.0.0.1"]);
    assert_eq!(output.status.code(), Some(2), "expected host:port");
}

#[test]
fn scrape_estimates_the_seeds_and_peers_announced_from_distinct_addresses() {
    let seed = Server::start(&["--bind", "127.0.0.1:0", "--for", "60"]);
    let other = Server::start(&["--bind", "127.0.0.1:0", "--for", "60", "--bootstrap", &seed.addr]);
    let info_hash = "3333333333333333333333333333333333333333";
    // BEP 33 counts peers by IP address: each announce comes from a loopback address of its own.
    for (bind, seeding) in [("127.0.0.11:0", true), ("127.0.0.12:0", true), ("127.0.0.21:0", false)] {
        let mut args = vec!["announce", info_hash, "--port", "4242", "--bind", bind, "--bootstrap", &seed.addr];
        if seeding {
            args.push("--seed");
        }
        let output = run(&args);
        assert!(output.status.success(), "{}", stderr(&output));
    }

    let output = run(&["scrape", info_hash, "--bootstrap", &other.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..2], ["seeds 2", "peers 1"], "{text}");

    let output = run(&["--json", "scrape", info_hash, "--bootstrap", &other.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(
        (lines[0]["event"].as_str(), lines[0]["seeds"].as_u64(), lines[0]["peers"].as_u64()),
        (Some("scrape"), Some(2), Some(1))
    );
    assert!(lines[0]["responses"].as_u64().is_some_and(|n| n >= 1), "{}", lines[0]);
    assert_eq!(lines.last().expect("a done line")["event"], "done");

    // An info hash nobody announced: no filters, zero estimates, still a success.
    let output = run(&["--json", "scrape", "0000000000000000000000000000000000000002", "--bootstrap", &seed.addr]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!((lines[0]["seeds"].as_u64(), lines[0]["peers"].as_u64()), (Some(0), Some(0)), "{}", lines[0]);
    sigterm(&seed.child);
    sigterm(&other.child);
    assert!(seed.wait().0.success() && other.wait().0.success());

    // A bootstrap node that never answers: exit 1, saying so.
    let silent = silent();
    let addr = silent.local_addr().expect("local address").to_string();
    let output = run(&["scrape", info_hash, "--bootstrap", &addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no reply from the bootstrap nodes"), "{}", stderr(&output));
    // Not an info hash: a usage error.
    assert_eq!(run(&["scrape", "33", "--bootstrap", "127.0.0.1:6881"]).status.code(), Some(2));
}

#[test]
fn crawl_prints_every_announced_info_hash_once() {
    let seed = Server::start(&["--bind", "127.0.0.1:0", "--for", "60"]);
    let other = Server::start(&["--bind", "127.0.0.1:0", "--for", "60", "--bootstrap", &seed.addr]);
    let mut hashes = vec![
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
        "3333333333333333333333333333333333333333",
    ];
    for hash in &hashes {
        let output = run(&["announce", hash, "--port", "4242", "--bootstrap", &seed.addr]);
        assert!(output.status.success(), "{}", stderr(&output));
    }

    // --max: the crawl ends by itself once it has found that many.
    let output = run(&["crawl", "--bootstrap", &seed.addr, "--max", "3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let mut found: Vec<&str> = text.lines().collect();
    found.sort();
    assert_eq!(found, hashes, "{text}");
    let err = stderr(&output);
    assert!(err.contains("crawl done") && err.contains("unique info-hashes 3"), "{err}");

    // Until SIGTERM: progress lines on stderr, every info-hash once on stdout, then the
    // summary and exit 0.
    let mut child = krpc()
        .args(["--json", "crawl", "--bootstrap", &other.addr, "--rate", "50"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start krpc crawl");
    let mut errors = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    while !line.contains("nodes visited") {
        line.clear();
        assert!(errors.read_line(&mut line).expect("read stderr") > 0, "crawl ended before a progress line");
    }
    assert!(line.starts_with("krpc: crawl ") && line.contains("unique info-hashes") && line.contains("queries/s"));
    sigterm(&child);
    let output = child.wait_with_output().expect("wait for krpc crawl");
    assert_eq!(output.status.code(), Some(0));
    let lines = json_lines(&output);
    let mut found: Vec<&str> =
        lines.iter().filter(|l| l["event"] == "infohash").filter_map(|l| l["infohash"].as_str()).collect();
    found.sort();
    hashes.sort();
    assert_eq!(found, hashes, "{lines:?}");
    let done = lines.last().expect("a done line");
    assert_eq!((done["event"].as_str(), done["infohashes"].as_u64()), (Some("done"), Some(3)), "{done}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut errors, &mut rest).expect("read stderr");
    assert!(rest.contains("crawl done"), "{rest}");

    sigterm(&seed.child);
    sigterm(&other.child);
    assert!(seed.wait().0.success() && other.wait().0.success());

    // Nobody answers: exit 1, saying so.
    let silent = silent();
    let addr = silent.local_addr().expect("local address").to_string();
    let output = run(&["crawl", "--bootstrap", &addr, "--duration", "30"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no reply from the bootstrap nodes"), "{}", stderr(&output));

    for args in [&["crawl", "--max", "0"][..], &["crawl", "--rate", "0"], &["crawl", "--duration", "-1"]] {
        assert_eq!(run(args).status.code(), Some(2), "{args:?}");
    }
}

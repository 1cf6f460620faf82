//! Shared by the interop tests (`interop_*.rs`): finding and spawning the foreign peers, our
//! node on a real UDP socket (driven on the test thread, every datagram it receives kept for
//! inspection), and a decoder-based summary of what each peer sends.
//!
//! Everything binds to 127.0.0.1 and no bootstrap router is configured anywhere: no datagram
//! leaves the machine.
#![allow(dead_code, clippy::print_stderr, clippy::disallowed_methods)] // not every test uses every helper; the tests are the driver: they own sockets, threads and the clock

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use krpc_core::dht::Item;
use krpc_core::wire::{Body, Dict, Message, Value};
use krpc_core::{Config, Endpoint, Event, Instant, NodeId, OpId, PutOutcome, QueryError};
use serde_json::{Value as Json, json};

/// Set to `1` (CI does) to turn a missing peer into a failure instead of a skip.
pub(crate) const REQUIRED_VAR: &str = "KRPC_INTEROP_REQUIRED";

/// Whether a missing peer must fail the test.
pub(crate) fn required() -> bool {
    std::env::var(REQUIRED_VAR).is_ok_and(|v| v == "1")
}

/// `tests/interop`: the helper scripts and, once `setup.sh` ran, `node_modules`. Found through
/// the workspace root, so that krpc-tokio's CLI interop test (`krpc-tokio/tests/interop_libtorrent.rs`),
/// which includes this module by path, finds it too.
pub(crate) fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

/// The Node.js binary (`KRPC_INTEROP_NODE` overrides `node`).
pub(crate) fn node_bin() -> String {
    std::env::var("KRPC_INTEROP_NODE").unwrap_or_else(|_| "node".into())
}

/// The Python binary (`KRPC_INTEROP_PYTHON` overrides `python3`).
pub(crate) fn python_bin() -> String {
    std::env::var("KRPC_INTEROP_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether `program args` runs and exits 0; the error says why not.
fn runs(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("cannot run `{program}`: {e}")),
    }
}

/// Node.js and the npm packages `names` installed in `tests/interop/node_modules`.
pub(crate) fn js_available(names: &[&str]) -> Result<(), String> {
    runs(&node_bin(), &["--version"])?;
    for name in names {
        let manifest = interop_dir().join("node_modules").join(name).join("package.json");
        if !manifest.exists() {
            return Err(format!("{} is missing (run tests/interop/setup.sh)", manifest.display()));
        }
    }
    Ok(())
}

/// Python 3 with the `libtorrent` bindings.
pub(crate) fn libtorrent_available() -> Result<(), String> {
    runs(&python_bin(), &["-c", "import libtorrent"])
        .map_err(|e| format!("{e} (run tests/interop/setup.sh: pip install libtorrent)"))
}

/// `Ok` → run the test. `Err` → skip with a message, or panic under `KRPC_INTEROP_REQUIRED=1`.
/// Returns whether to run.
pub(crate) fn should_run(test: &str, availability: Result<(), String>) -> bool {
    match availability {
        Ok(()) => true,
        Err(why) if required() => panic!("{test}: peer not installed and {REQUIRED_VAR}=1: {why}"),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}; set {REQUIRED_VAR}=1 to make this a failure");
            false
        }
    }
}

/// Runs `f` until it returns `Some`, failing the test with `what` after `limit`. `f` is
/// expected to wait a little itself (by stepping our node).
pub(crate) fn until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = StdInstant::now() + limit;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(StdInstant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
    }
}

// ---------------------------------------------------------------------------------------------
// The foreign peer: a child process speaking JSON lines.

/// A helper script run as a child process: commands as JSON lines on its stdin, events and
/// replies as JSON lines on its stdout. Killed when dropped.
pub(crate) struct PeerProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    seq: u64,
    /// The process closed its stdout.
    exited: bool,
    /// Lines read and not yet taken, oldest first.
    backlog: VecDeque<Json>,
    /// Every line read, for diagnostics.
    pub(crate) history: Vec<Json>,
}

impl PeerProcess {
    /// Starts `program args` in `tests/interop`.
    pub(crate) fn spawn(name: &str, program: &str, args: &[&str]) -> PeerProcess {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({program} {args:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < 64 * 1024 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let stdin = child.stdin.take();
        PeerProcess {
            name: name.into(),
            child,
            stdin,
            lines,
            stderr,
            seq: 0,
            exited: false,
            backlog: VecDeque::new(),
            history: Vec::new(),
        }
    }

    /// What the process wrote on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads every line waiting, without blocking.
    pub(crate) fn poll(&mut self) {
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    let value = serde_json::from_str(&line).unwrap_or_else(|_| json!({ "raw": line }));
                    self.history.push(value.clone());
                    self.backlog.push_back(value);
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.exited = true;
                    return;
                }
            }
        }
    }

    /// Takes the oldest line matching `pred`. Panics when there is none and the process has
    /// closed its output (it exited or crashed): nothing will come any more.
    pub(crate) fn take(&mut self, pred: impl Fn(&Json) -> bool) -> Option<Json> {
        self.poll();
        match self.backlog.iter().position(pred) {
            Some(i) => self.backlog.remove(i),
            None if self.exited => {
                let status = self.child.wait().ok();
                panic!("{} exited ({status:?}); output:\n{:#?}\nstderr:\n{}", self.name, self.history, self.stderr());
            }
            None => None,
        }
    }

    /// Takes every line matching `pred`.
    pub(crate) fn take_all(&mut self, pred: impl Fn(&Json) -> bool) -> Vec<Json> {
        self.poll();
        let (taken, kept) = self.backlog.drain(..).partition(|v| pred(v));
        self.backlog = kept;
        taken.into()
    }

    /// Sends a command (a JSON object) with a fresh `seq`, returned.
    pub(crate) fn send(&mut self, mut command: Json) -> u64 {
        self.seq += 1;
        command["seq"] = json!(self.seq);
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot send {command}: {e}; stderr:\n{}", self.name, self.stderr()));
        self.seq
    }

    /// Takes the reply to command `seq`, if it arrived.
    pub(crate) fn reply(&mut self, seq: u64) -> Option<Json> {
        self.take(|v| v.get("reply").is_some() && v["seq"] == json!(seq))
    }

    /// Waits (without stepping anything else) for the first line matching `pred`.
    pub(crate) fn wait_for(&mut self, limit: Duration, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
        let deadline = StdInstant::now() + limit;
        loop {
            if let Some(v) = self.take(&pred) {
                return v;
            }
            assert!(
                StdInstant::now() < deadline,
                "{}: timed out after {limit:?} waiting for {what}; stderr:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // Closing stdin asks the script to exit; the kill makes sure it does.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A peer's address from its JSON (`host`, `port`).
pub(crate) fn json_addr(v: &Json) -> SocketAddr {
    let host = v["host"].as_str().expect("host");
    let port = v["port"].as_u64().expect("port");
    format!("{host}:{port}").parse().expect("socket address")
}

/// A 20-byte id from hex.
pub(crate) fn json_id(v: &Json) -> NodeId {
    let hex = v.as_str().expect("hex id");
    NodeId::from_bytes(&from_hex(hex)).expect("20-byte id")
}

pub(crate) fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Our node.

/// Our node: the engine on a UDP socket bound to 127.0.0.1, stepped from the test thread so
/// that commands and events are at hand. Every datagram received is kept in `received`.
pub(crate) struct Ours {
    pub(crate) ep: Endpoint,
    socket: UdpSocket,
    start: StdInstant,
    buf: Vec<u8>,
    /// Events not yet taken, oldest first.
    pub(crate) events: VecDeque<Event>,
    /// Every datagram received: source and bytes.
    pub(crate) received: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams the socket refused to send.
    pub(crate) send_errors: u64,
}

impl Ours {
    /// A node with `config`, on a fresh 127.0.0.1 port.
    pub(crate) fn new(config: Config, seed: u8) -> Ours {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let start = StdInstant::now();
        let ep = Endpoint::new(config, [seed; 32], Instant::ZERO).expect("valid config");
        Ours { ep, socket, start, buf: vec![0; 65536], events: VecDeque::new(), received: Vec::new(), send_errors: 0 }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    pub(crate) fn id(&self) -> NodeId {
        *self.ep.id()
    }

    /// The engine's clock: time since the node was made.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_duration(self.start.elapsed())
    }

    fn flush(&mut self) {
        loop {
            let now = self.now();
            let Some(t) = self.ep.poll_transmit(now, &mut self.buf) else { return };
            assert!(t.destination.ip().is_loopback(), "our node tried to send to {}", t.destination);
            if self.socket.send_to(&self.buf[..t.len], t.destination).is_err() {
                self.send_errors += 1;
                self.ep.fail_transmit(now, &t);
            }
        }
    }

    /// One turn of the run loop: send, wait up to `wait` for one datagram, feed it, fire
    /// timers, send again, collect events.
    pub(crate) fn step(&mut self, wait: Duration) {
        self.flush();
        let now = self.now();
        let until = self.ep.poll_timeout().map_or(wait, |d| d.saturating_duration_since(now));
        let wait = wait.min(until).max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(wait)).expect("read timeout");
        match self.socket.recv_from(&mut self.buf) {
            Ok((len, from)) => {
                self.received.push((from, self.buf[..len].to_vec()));
                let now = self.now();
                self.ep.handle_datagram(now, from, &self.buf[..len]);
            }
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted | ErrorKind::ConnectionRefused => {
                }
                _ => panic!("recv: {e}"),
            },
        }
        let now = self.now();
        if self.ep.poll_timeout().is_some_and(|d| d <= now) {
            self.ep.handle_timeout(now);
        }
        self.flush();
        while let Some(e) = self.ep.poll_event() {
            self.events.push_back(e);
        }
    }

    /// Steps for `d`.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = StdInstant::now() + d;
        while StdInstant::now() < end {
            self.step(end.saturating_duration_since(StdInstant::now()).min(Duration::from_millis(20)));
        }
    }

    /// Takes the oldest event matching `pred`.
    pub(crate) fn take_event(&mut self, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let i = self.events.iter().position(pred)?;
        self.events.remove(i)
    }
}

// ---------------------------------------------------------------------------------------------
// What a peer sends, as our decoder sees it.

/// One received datagram, summarised.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Observed {
    /// `q:METHOD`, `r` or `e:CODE`; `malformed: KIND` when our decoder refused it.
    pub(crate) kind: String,
    pub(crate) t_len: usize,
    pub(crate) v: Option<String>,
    pub(crate) ip: bool,
    pub(crate) ro: bool,
    /// Top-level keys.
    pub(crate) keys: Vec<String>,
    /// Keys of `a` or `r`.
    pub(crate) body_keys: Vec<String>,
    pub(crate) token_len: Option<usize>,
}

fn printable(b: &[u8]) -> String {
    b.iter().map(|&c| if (0x20..0x7f).contains(&c) { (c as char).to_string() } else { format!("\\x{c:02x}") }).collect()
}

fn keys(d: Dict<'_>) -> Vec<String> {
    d.iter().map(|(k, _)| printable(k)).collect()
}

/// Summarises one datagram with our decoder.
pub(crate) fn observe(bytes: &[u8]) -> Observed {
    let top = Dict::parse(bytes).map(keys).unwrap_or_default();
    match Message::decode(bytes) {
        Ok(m) => {
            let (kind, body) = match &m.body {
                Body::Query(q) => (format!("q:{}", printable(q.method)), Some(q.args)),
                Body::Response(r) => ("r".to_string(), Some(*r)),
                Body::Error(e) => (format!("e:{} {}", e.code, printable(e.message)), None),
            };
            // A `y=e` that also carries `r` (seen in the wild) still shows its `r` keys.
            let body_keys = match body {
                Some(f) => keys(f.dict()),
                None => Dict::parse(bytes)
                    .ok()
                    .and_then(|d| d.get(b"r"))
                    .and_then(|v: Value<'_>| v.as_dict())
                    .map(keys)
                    .unwrap_or_default(),
            };
            Observed {
                kind,
                t_len: m.transaction_id.len(),
                v: m.version.map(printable),
                ip: m.ip.is_some(),
                ro: m.read_only,
                keys: top,
                body_keys,
                token_len: body.and_then(|f| f.token()).map(<[u8]>::len),
            }
        }
        Err(e) => Observed {
            kind: format!("malformed: {e}"),
            t_len: 0,
            v: None,
            ip: false,
            ro: false,
            keys: top,
            body_keys: Vec::new(),
            token_len: None,
        },
    }
}

/// The distinct shapes of the datagrams received from `from` (any of these addresses), with
/// counts, and a few raw examples.
pub(crate) fn observations(ours: &Ours, from: &[SocketAddr]) -> BTreeMap<Observed, (usize, Vec<u8>)> {
    let mut out: BTreeMap<Observed, (usize, Vec<u8>)> = BTreeMap::new();
    for (src, bytes) in &ours.received {
        if from.contains(src) {
            let entry = out.entry(observe(bytes)).or_insert((0, bytes.clone()));
            entry.0 += 1;
        }
    }
    out
}

/// Prints what a peer sent, one line per shape, for the test log (and docs/interop.md).
pub(crate) fn report(peer: &str, obs: &BTreeMap<Observed, (usize, Vec<u8>)>) {
    eprintln!("--- what {peer} sent us ({} shapes) ---", obs.len());
    for (o, (n, example)) in obs {
        eprintln!(
            "{n:4} x {} t={}B v={:?} ip={} ro={} keys={:?} body={:?} token={:?}\n       e.g. {}",
            o.kind,
            o.t_len,
            o.v,
            o.ip,
            o.ro,
            o.keys,
            o.body_keys,
            o.token_len,
            printable(&example[..example.len().min(160)])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// BEP 44 from our side: a network of our nodes, puts and gets run to their end.

/// One turn of every node, each waiting at most 1 ms for a datagram.
pub(crate) fn step_all(nodes: &mut [Ours]) {
    for n in nodes {
        n.step(Duration::from_millis(1));
    }
}

/// `count` of our nodes (`Config::dht()`, seeds from `first_seed`) that know each other and
/// nobody else: each pings the others (`add_node`) and we wait until every routing table holds
/// the other `count - 1`.
pub(crate) fn our_network(count: usize, first_seed: u8, limit: Duration) -> Vec<Ours> {
    let mut net: Vec<Ours> = (0..count).map(|i| Ours::new(Config::dht(), first_seed.wrapping_add(i as u8))).collect();
    let addrs: Vec<SocketAddr> = net.iter().map(Ours::addr).collect();
    for n in &mut net {
        let now = n.now();
        let me = n.addr();
        for a in addrs.iter().filter(|a| **a != me) {
            n.ep.add_node(now, *a, None).expect("add_node");
        }
    }
    until(limit, "our nodes to know each other", || {
        step_all(&mut net);
        net.iter().all(|n| n.ep.routing_table().len() + 1 >= count).then_some(())
    });
    net
}

/// Items our nodes store for others, summed.
pub(crate) fn stored_items(nodes: &[Ours]) -> usize {
    nodes.iter().map(|n| n.ep.stored_items().map_or(0, |(items, _)| items)).sum()
}

/// Starts a put on `nodes[who]` and steps every node (and `also`, say a foreign process's
/// output) until its [`Event::PutItemDone`].
pub(crate) fn run_put(
    nodes: &mut [Ours],
    who: usize,
    limit: Duration,
    start: impl FnOnce(&mut Ours) -> OpId,
    mut also: impl FnMut(),
) -> Result<PutOutcome, QueryError> {
    let op = start(&mut nodes[who]);
    until(limit, "our put", || {
        step_all(nodes);
        also();
        match nodes[who].take_event(|e| matches!(e, Event::PutItemDone { op: o, .. } if *o == op)) {
            Some(Event::PutItemDone { result, .. }) => Some(result),
            _ => None,
        }
    })
}

/// Starts a get on `nodes[who]` and steps every node until its [`Event::GetItemDone`]: the
/// item found (checked by the engine: hash or signature), and the nodes that sent one.
pub(crate) fn run_get(
    nodes: &mut [Ours],
    who: usize,
    limit: Duration,
    start: impl FnOnce(&mut Ours) -> OpId,
    mut also: impl FnMut(),
) -> (Option<Item>, Vec<SocketAddr>) {
    let op = start(&mut nodes[who]);
    let mut sources = Vec::new();
    let item = until(limit, "our get", || {
        step_all(nodes);
        also();
        while let Some(Event::ItemFound { from, .. }) =
            nodes[who].take_event(|e| matches!(e, Event::ItemFound { op: o, .. } if *o == op))
        {
            sources.push(from);
        }
        match nodes[who].take_event(|e| matches!(e, Event::GetItemDone { op: o, .. } if *o == op)) {
            Some(Event::GetItemDone { item, .. }) => Some(item),
            _ => None,
        }
    });
    (item, sources)
}

/// The ed25519 key pair for `seed` in libtorrent's form: the 64-byte *expanded* secret key
/// (SHA-512 of the seed, its first half clamped: the scalar, then the nonce prefix), which
/// libtorrent's `dht_put_mutable_item` signs with, and the 32-byte public key.
pub(crate) fn libtorrent_keypair(seed: &[u8; 32]) -> ([u8; 64], [u8; 32]) {
    use krpc_core::dht::bep44::ed25519_dalek::{Digest, Sha512, SigningKey};
    let mut expanded = [0u8; 64];
    expanded.copy_from_slice(&Sha512::digest(seed));
    // RFC 8032 5.1.5 (orlp/ed25519's `ed25519_create_keypair` does the same).
    expanded[0] &= 248;
    expanded[31] &= 127;
    expanded[31] |= 64;
    (expanded, SigningKey::from_bytes(seed).verifying_key().to_bytes())
}

/// A byte string, bencoded.
pub(crate) fn bstr(raw: &[u8]) -> Vec<u8> {
    let mut v = format!("{}:", raw.len()).into_bytes();
    v.extend_from_slice(raw);
    v
}

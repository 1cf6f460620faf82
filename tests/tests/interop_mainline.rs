//! Interop with the Rust `mainline` crate (8.x, the DHT under pkarr/Pubky): four `mainline::Dht`
//! nodes in this process, on 127.0.0.1, each bootstrapping from our node (`Config::dht()`) and
//! the `mainline` nodes made before it — never from mainline's default routers.
//!
//! - `mainline` answers only queries whose `t` is exactly 4 bytes (issue 17): a 2-byte ping
//!   gets no answer, a 4-byte one does, and our ping and `find_node` queries are answered;
//! - every `mainline` node takes us into its routing table: it accepted our `find_node` reply;
//! - a `mainline` node announces; our `get_peers` lookup finds that peer;
//! - we announce; `mainline`'s `get_peers` finds our peer: it accepted our `announce_peer`
//!   with the 4-byte token it gave us;
//! - our decoder accepted every datagram `mainline` sent (quirks printed to the log).
//!
//! A second test runs the `krpc` tool's `ping` and `find-node` (the commands of issue 17)
//! against two `mainline` nodes.
//!
//! BEP 44 (`get`/`put`) is not in krpc yet: `mainline`'s `get` reaches us (it looks for the
//! nodes to announce to with `get`) and is answered as `find_node`, without a token.
//!
//! Always runs: `mainline` is a dev-dependency, there is nothing to install.
// A test: it logs what the peer sent, and owns the clock and its threads.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]
// mainline 8 marks its blocking `Dht` methods deprecated in favour of the async ones, which
// would need an executor here; the blocking ones run on helper threads (`in_background`).
#![allow(deprecated)]

mod interop_common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Duration;

use interop_common::{Ours, observations, report, until};
use krpc_core::{Config, Event, NodeId, Query};
use mainline::{Dht, Id};

const SWARM: usize = 4;
/// Generous bound on each phase (a `mainline` lookup ends when its last query has been
/// answered or has timed out, 2 s).
const PHASE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The `mainline` side: everything the test needs from the crate, in one place.

/// One `mainline` node: its actor thread runs until the last `Dht` handle is dropped.
struct Mainline {
    dht: Dht,
    addr: SocketAddr,
    id: NodeId,
}

impl Mainline {
    /// A node in server mode on 127.0.0.1 that bootstraps from `bootstrap` only.
    fn start(bootstrap: &[SocketAddr]) -> Mainline {
        let mut last_error = None;
        // Without an explicit port mainline first tries 6881; a free port is taken from the
        // OS instead, and another one tried if someone took it meanwhile.
        for _ in 0..5 {
            match Mainline::start_at(free_port(), bootstrap) {
                Ok(m) => return m,
                Err(e) => last_error = Some(e),
            }
        }
        panic!("cannot start a mainline node: {last_error:?}");
    }

    /// A node in server mode on 127.0.0.1:`port` that bootstraps from `bootstrap` only.
    fn start_at(port: u16, bootstrap: &[SocketAddr]) -> std::io::Result<Mainline> {
        assert!(bootstrap.iter().all(|a| a.ip().is_loopback()), "loopback bootstrap only");
        let bootstrap = bootstrap.to_vec();
        // `build` and `info` wait for the node's actor thread: bounded here like every wait.
        in_background(move || Mainline::build(port, &bootstrap))
            .recv_timeout(PHASE)
            .unwrap_or_else(|e| panic!("starting a mainline node: {e}"))
    }

    fn build(port: u16, bootstrap: &[SocketAddr]) -> std::io::Result<Mainline> {
        let dht = Dht::builder()
            // Otherwise "adaptive": read-only (`ro=1`, no answers) until it has seen itself
            // reachable for 15 minutes.
            .server_mode()
            .bind_address(Ipv4Addr::LOCALHOST)
            .port(port)
            // Replaces DEFAULT_BOOTSTRAP_NODES (router.bittorrent.com and others); the list
            // is never empty, which would make mainline insert every `find_node` querier
            // under the id it is looking for (`Rpc::handle_request`).
            .bootstrap(bootstrap)
            .build()?;
        let info = dht.info();
        let addr = SocketAddr::from(info.local_addr());
        assert!(addr.ip().is_loopback());
        let id = NodeId::from_bytes(info.id().as_bytes()).unwrap();
        Ok(Mainline { dht, addr, id })
    }

    /// The addresses in its routing table.
    fn table(&self) -> Receiver<Vec<String>> {
        let dht = self.dht.clone();
        in_background(move || dht.to_bootstrap())
    }

    /// `announce_peer` through its own lookup; `Ok` when at least one node stored it.
    fn announce(&self, info_hash: NodeId, port: u16) -> Receiver<Result<(), String>> {
        let dht = self.dht.clone();
        in_background(move || dht.announce_peer(id(info_hash), Some(port)).map(|_| ()).map_err(|e| e.to_string()))
    }

    /// A `get_peers` lookup: each reply's peers as they come; the channel closes at its end.
    fn get_peers(&self, info_hash: NodeId) -> Receiver<Vec<SocketAddr>> {
        let dht = self.dht.clone();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for peers in dht.get_peers(id(info_hash)) {
                if tx.send(peers.into_iter().map(SocketAddr::from).collect()).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port()
}

fn id(n: NodeId) -> Id {
    Id::from_bytes(n.as_bytes()).unwrap()
}

/// Runs one blocking `mainline` call on a thread of its own, so that the test thread can keep
/// stepping our node (which the call may be waiting for). The thread holds a `Dht` handle
/// until the call returns: mainline's own timeouts end it.
fn in_background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Steps our node until `rx` delivers.
fn wait<T>(ours: &mut Ours, rx: &Receiver<T>, what: &str) -> T {
    until(PHASE, what, || {
        ours.step(Duration::from_millis(10));
        match rx.try_recv() {
            Ok(v) => Some(v),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => panic!("{what}: the mainline call ended without an answer"),
        }
    })
}

/// A `ping` with transaction id `t`, sent by hand.
fn raw_ping(t: &[u8]) -> Vec<u8> {
    let mut out = b"d1:ad2:id20:".to_vec();
    out.extend_from_slice(&[0x5a; 20]);
    out.extend_from_slice(format!("e1:q4:ping1:t{}:", t.len()).as_bytes());
    out.extend_from_slice(t);
    out.extend_from_slice(b"1:y1:qe");
    out
}

#[test]
fn mainline_swarm() {
    let mut ours = Ours::new(Config::dht(), 17);
    let our_addr = ours.addr();
    let our_id = ours.id();
    eprintln!("our node: {our_addr} id {our_id}");

    // Each node bootstraps from us and the nodes before it: its first `find_node` (for its own
    // id) goes to us, and our reply is what puts us in its table.
    let mut swarm: Vec<Mainline> = Vec::new();
    for _ in 0..SWARM {
        let bootstrap: Vec<SocketAddr> = std::iter::once(our_addr).chain(swarm.iter().map(|m| m.addr)).collect();
        swarm.push(Mainline::start(&bootstrap));
    }
    let ml_addrs: Vec<SocketAddr> = swarm.iter().map(|m| m.addr).collect();
    for m in &swarm {
        eprintln!("mainline node: {} id {}", m.addr, m.id);
    }

    // (0) The issue: a 2-byte `t` is dropped, a 4-byte one answered. mainline reads one
    // datagram at a time and answers at once, so an answer to the first ping would come
    // before the answer to the second.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    raw.send_to(&raw_ping(b"aa"), ml_addrs[0]).unwrap();
    raw.send_to(&raw_ping(b"bbbb"), ml_addrs[0]).unwrap();
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut buf = [0u8; 2048];
    until(PHASE, "mainline to answer the 4-byte ping", || {
        ours.step(Duration::from_millis(1));
        if let Ok((len, from)) = raw.recv_from(&mut buf) {
            assert_eq!(from, ml_addrs[0]);
            answers.push(buf[..len].to_vec());
        }
        answers.iter().any(|a| interop_common::observe(a).kind == "r").then_some(())
    });
    let tids: Vec<Vec<u8>> =
        answers.iter().map(|a| krpc_core::wire::Message::decode(a).unwrap().transaction_id.to_vec()).collect();
    eprintln!("raw pings: answers with t = {tids:?}");
    assert_eq!(tids, vec![b"bbbb".to_vec()], "mainline answers the 4-byte ping only");

    // Our node meets the swarm: it pings each node (`add_node`), then bootstraps.
    let now = ours.now();
    for addr in &ml_addrs {
        ours.ep.add_node(now, *addr, None).expect("add_node");
    }
    until(PHASE, "the mainline nodes in our routing table", || {
        ours.step(Duration::from_millis(10));
        ml_addrs.iter().all(|a| ours.ep.routing_table().iter().any(|c| c.addr() == *a)).then_some(())
    });
    let now = ours.now();
    let join = ours.ep.bootstrap(now).expect("bootstrap");
    until(PHASE, "our bootstrap lookup", || {
        ours.step(Duration::from_millis(10));
        ours.take_event(|e| matches!(e, Event::LookupDone { op, .. } if *op == join))
    });
    for m in &swarm {
        let c = ours.ep.routing_table().iter().find(|c| c.addr() == m.addr).map(|c| *c.id());
        assert_eq!(c, Some(m.id), "our table has {} under its own id", m.addr);
    }

    // (a) Our ping and find_node, answered by mainline.
    let ask = |ours: &mut Ours, to: SocketAddr, query: Query| {
        let now = ours.now();
        let op = ours.ep.query(now, to, query).expect("query");
        until(PHASE, "a query to mainline", || {
            ours.step(Duration::from_millis(10));
            match ours.take_event(|e| matches!(e, Event::QueryDone { op: o, .. } if *o == op)) {
                Some(Event::QueryDone { result, .. }) => Some(result),
                _ => None,
            }
        })
    };
    for m in &swarm {
        let pong = ask(&mut ours, m.addr, Query::ping()).expect("mainline answers our ping");
        assert_eq!(pong.id(), Some(m.id));
        let target = NodeId::from_array([0x77; 20]);
        let reply = ask(&mut ours, m.addr, Query::find_node(&target)).expect("mainline answers our find_node");
        assert_eq!(reply.id(), Some(m.id));
        let nodes: Vec<_> = reply.values().unwrap().nodes().expect("nodes").collect();
        eprintln!("find_node at {}: {} nodes", m.addr, nodes.len());
        assert!(!nodes.is_empty());
        assert!(nodes.iter().all(|n| n.addr.ip().is_loopback()), "{nodes:?}");
    }

    // (b) Every mainline node has us in its routing table (it keeps only nodes that answered
    // one of its queries: its bootstrap `find_node` went to us).
    for m in &swarm {
        let table = wait(&mut ours, &m.table(), "a mainline routing table");
        eprintln!("mainline {} table: {table:?}", m.addr);
        assert!(table.contains(&our_addr.to_string()), "mainline {} does not have us: {table:?}", m.addr);
    }

    // (c) mainline node 0 announces info-hash A on port 7201; our get_peers finds it.
    let ih_a = NodeId::from_array([0x1a; 20]);
    let peer_a: SocketAddr = "127.0.0.1:7201".parse().unwrap();
    let announced = wait(&mut ours, &swarm[0].announce(ih_a, 7201), "mainline's announce");
    eprintln!("mainline's announce of A: {announced:?}");
    announced.expect("mainline's announce stored nowhere");
    let mut sources = Vec::new();
    let mut op = None;
    until(PHASE, "our get_peers to find mainline's peer", || {
        ours.step(Duration::from_millis(10));
        let current = match op {
            Some(op) => op,
            None => {
                let now = ours.now();
                *op.insert(ours.ep.get_peers(now, ih_a).expect("get_peers"))
            }
        };
        while let Some(Event::Peers { from, peers, .. }) =
            ours.take_event(|e| matches!(e, Event::Peers { op: o, .. } if *o == current))
        {
            if peers.contains(&peer_a) && !sources.contains(&from) {
                sources.push(from);
            }
        }
        if ours.take_event(|e| matches!(e, Event::LookupDone { op: o, .. } if *o == current)).is_some() {
            op = None;
            if sources.is_empty() {
                ours.run_for(Duration::from_millis(500));
            }
        }
        (!sources.is_empty()).then_some(())
    });
    eprintln!("our get_peers found {peer_a} at {sources:?}");
    assert!(sources.iter().all(|s| ml_addrs.contains(s)));

    // (d) We announce info-hash B on port 7202; mainline's get_peers finds it.
    let ih_b = NodeId::from_array([0xb2; 20]);
    let peer_b: SocketAddr = "127.0.0.1:7202".parse().unwrap();
    let now = ours.now();
    let op = ours.ep.announce(now, ih_b, Some(7202), false).expect("announce");
    let stored = until(PHASE, "our announce", || {
        ours.step(Duration::from_millis(10));
        match ours.take_event(|e| matches!(e, Event::AnnounceDone { op: o, .. } if *o == op)) {
            Some(Event::AnnounceDone { result, .. }) => Some(result),
            _ => None,
        }
    });
    eprintln!("our announce of B: {stored:?}");
    assert!(stored.expect("our announce failed") >= 1, "no mainline node stored our announce");
    for m in &swarm {
        let mut lookup: Option<Receiver<Vec<SocketAddr>>> = None;
        until(PHASE, "mainline's get_peers to find our peer", || {
            ours.step(Duration::from_millis(10));
            let rx = lookup.get_or_insert_with(|| m.get_peers(ih_b));
            loop {
                match rx.try_recv() {
                    Ok(peers) if peers.contains(&peer_b) => return Some(()),
                    Ok(_) => {}
                    Err(TryRecvError::Empty) => return None,
                    // That lookup ended without it: another one.
                    Err(TryRecvError::Disconnected) => {
                        lookup = None;
                        return None;
                    }
                }
            }
        });
        eprintln!("mainline {} found our announced peer", m.addr);
    }

    // What mainline sent, as our decoder saw it.
    let obs = observations(&ours, &ml_addrs);
    report("mainline", &obs);
    let stats = *ours.ep.stats();
    eprintln!("our stats: {stats:?}");
    assert_eq!(stats.malformed, 0, "our decoder refused datagrams from mainline");
    assert!(obs.keys().all(|o| !o.kind.starts_with("malformed")));
    assert_eq!(stats.mismatched_replies, 0);
    // Quirks the docs list (docs/interop.md): 4-byte tids, `v` = "RS" + version, `ro` = 0 in
    // every message, `ip` in every reply, 4-byte tokens, BEP 44 `get` for announces.
    assert!(obs.keys().all(|o| o.t_len == 4), "mainline tids are 4 bytes");
    assert!(obs.keys().all(|o| o.v.as_deref().is_some_and(|v| v.starts_with("RS"))), "mainline sends v=RS..");
    assert!(obs.keys().all(|o| o.keys.contains(&"ro".to_string()) && !o.ro), "mainline sends ro=0 everywhere");
    assert!(obs.keys().filter(|o| o.kind == "r").all(|o| o.ip), "mainline replies carry `ip`");
    let reply_tokens: BTreeSet<usize> = obs.keys().filter(|o| o.kind == "r").filter_map(|o| o.token_len).collect();
    assert_eq!(reply_tokens, BTreeSet::from([4]), "mainline tokens are 4 bytes");
    let kinds: BTreeSet<&str> = obs.keys().map(|o| o.kind.as_str()).collect();
    assert!(kinds.contains("q:get"), "mainline looks for announce targets with BEP 44 `get`: {kinds:?}");
    // mainline's lookups ping with a fresh random id beside each query: those ids fail our
    // verification (the pong carries the real one) and never enter our table.
    let pings = obs.keys().filter(|o| o.kind == "q:ping").map(|o| obs[o].0).sum::<usize>();
    assert!(pings > 0, "mainline's lookups ping");
    for c in ours.ep.routing_table().iter() {
        if let Some(m) = swarm.iter().find(|m| m.addr == c.addr()) {
            assert_eq!(*c.id(), m.id, "our table holds {} under a wrong id", m.addr);
        }
    }
    // Loopback is exempt from BEP 42: the `ip` votes leave our id alone.
    assert_eq!(ours.id(), our_id);
    // Dropping the last handle of a node ends its actor thread at its next turn (within one
    // 50 ms socket read), which closes its socket; helper threads still inside a call hold a
    // handle until mainline's own request timeout (2 s) ends that call.
    drop(swarm);
}

/// Runs `krpc --json ARGS` (the krpc-tokio command-line tool) and returns its stdout lines,
/// killing it after `PHASE`.
fn krpc_cli(krpc: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
    use std::io::Read;
    let mut child = std::process::Command::new(krpc)
        .arg("--json")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start krpc");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    // Killed if the wait below fails the test.
    let mut guard = KillOnDrop(Some(child));
    let status = until(PHASE, "the krpc command to end", || {
        let status = guard.0.as_mut().unwrap().try_wait().expect("wait for krpc");
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        status
    });
    let out = reader.join().unwrap();
    eprintln!("krpc {}: {status}\n{out}", args.join(" "));
    (status, out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect())
}

/// Kills the child if the test fails while it runs (it has exited otherwise).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn krpc_cli_ping_and_find_node_are_answered_by_mainline() {
    // The commands of issue 17, end to end: the `krpc` tool (built like the flood test builds
    // it) against two mainline nodes that bootstrap from each other.
    let (target_dir, release) = krpc_tests::flood::server::own_target_dir().expect("the target directory");
    let krpc = krpc_tests::flood::server::build_krpc(&target_dir, release).expect("build the krpc binary");
    let mut last_error = None;
    let mut pair = None;
    for _ in 0..5 {
        let ports = [free_port(), free_port()];
        let at = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        match Mainline::start_at(ports[0], &[at(ports[1])])
            .and_then(|a| Mainline::start_at(ports[1], &[at(ports[0])]).map(|b| [a, b]))
        {
            Ok(p) => {
                pair = Some(p);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let pair = pair.unwrap_or_else(|| panic!("cannot start two mainline nodes: {last_error:?}"));
    let [a, b] = &pair;

    let (status, lines) = krpc_cli(&krpc, &["ping", &a.addr.to_string(), "--bind", "127.0.0.1:0"]);
    assert!(status.success(), "krpc ping failed: {lines:?}");
    let pong = lines.iter().find(|l| l["event"] == "pong").expect("a pong line");
    assert_eq!(pong["id"], serde_json::json!(a.id.to_string()), "{pong}");

    let target = b.id.to_string();
    let bootstrap = format!("{},{}", a.addr, b.addr);
    let (status, lines) = krpc_cli(&krpc, &["find-node", &target, "--bootstrap", &bootstrap, "--bind", "127.0.0.1:0"]);
    assert!(status.success(), "krpc find-node failed: {lines:?}");
    let nodes: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["event"] == "node")
        .map(|l| (l["id"].as_str().unwrap().to_string(), l["addr"].as_str().unwrap().to_string()))
        .collect();
    // The lookup's closest responders are the two mainline nodes, the target first.
    assert_eq!(nodes.first(), Some(&(b.id.to_string(), b.addr.to_string())), "{nodes:?}");
    assert!(nodes.contains(&(a.id.to_string(), a.addr.to_string())), "{nodes:?}");
}

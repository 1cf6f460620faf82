//! Test harness for the endpoint: a scripted single endpoint (`Script`) and a tiny in-memory
//! network of endpoints (`Net`), both driven by a fake clock.
//!
//! `Script` puts one `Endpoint` at a fixed address. The test plays every peer by hand:
//! it drains the transmits (decoded on demand from owned copies), crafts replies, queries and
//! errors with the codec's own encoders, and moves the clock.
//!
//! `Net` runs N endpoints on distinct 127.x addresses. Datagrams are delivered after a fixed
//! latency, and some can be lost (a seeded `ChaCha8Rng` decides which). Virtual time jumps to the
//! next delivery or the earliest `poll_timeout` of any live endpoint. Each endpoint answers
//! `find_node`/`get_peers` with the k closest contacts of its routing table and `echo` with its
//! arguments. The number of steps is bounded, so a livelock fails the test instead of hanging it.
#![allow(dead_code)] // each test file uses a different subset

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::{Dictionary, Entry, ErrorOut, Fields, Insert, Message, QueryOut, ResponseOut};
use krpc_core::{
    Config, Endpoint, Event, IncomingQuery, Instant, LookupNode, LookupOutcome, NodeId, NodeInfo, OpId, Peer, Query,
    QueryError, Reply, Transmit,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The buffer size handed to `poll_transmit` unless a test says otherwise.
pub(crate) const BUF_LEN: usize = 1500;

// ---------------------------------------------------------------------------------------------
// Small constructors

/// An instant `ms` milliseconds after the origin.
pub(crate) fn ms(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Parses a socket address literal.
pub(crate) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| panic!("bad address literal {s}"))
}

/// A 20-byte id starting with `prefix`, the rest zero.
pub(crate) fn id_with(prefix: &[u8]) -> NodeId {
    let mut bytes = [0u8; 20];
    bytes[..prefix.len()].copy_from_slice(prefix);
    NodeId::from_array(bytes)
}

/// A 20-byte id whose first byte is `first`, the rest zero.
pub(crate) fn id(first: u8) -> NodeId {
    id_with(&[first])
}

/// A random 20-byte id.
pub(crate) fn random_id(rng: &mut impl Rng) -> NodeId {
    let mut bytes = [0u8; 20];
    rng.fill_bytes(&mut bytes);
    NodeId::from_array(bytes)
}

/// A node on 10.0.0.`host`, port `6000 + host`.
pub(crate) fn node(first: u8, host: u8) -> NodeInfo {
    NodeInfo::new(id(first), SocketAddr::from(([10, 0, 0, host], 6000 + u16::from(host))))
}

/// Whether `needle` occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A seed made of one repeated byte.
pub(crate) fn seed(b: u8) -> [u8; 32] {
    [b; 32]
}

/// The default configuration with our id fixed to `our_id` (so tests can reason about buckets)
/// and bucket refresh pushed out of the way.
pub(crate) fn config_with_id(our_id: NodeId) -> Config {
    Config { id: Some(our_id), bucket_refresh: Duration::from_secs(1_000_000), ..Config::default() }
}

// ---------------------------------------------------------------------------------------------
// Crafting datagrams with the codec's encoders

fn encode(f: impl FnOnce(&mut [u8]) -> Result<usize, krpc_core::wire::BufferTooSmall>) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let len = f(&mut buf).unwrap_or_else(|e| panic!("test datagram does not fit: {e}"));
    buf.truncate(len);
    buf
}

/// A response `{t, y: r, r: values + id + nodes + nodes6}`.
pub(crate) fn response_bytes(tid: &[u8], id: Option<&NodeId>, values: &Dictionary, nodes: &[NodeInfo]) -> Vec<u8> {
    let mut extra = Vec::new();
    if let Some(id) = id {
        extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: true });
    }
    if nodes.iter().any(|n| n.addr.is_ipv4()) {
        extra.push(Entry { key: b"nodes", value: Insert::NodesV4(nodes), replace: true });
    }
    if nodes.iter().any(|n| n.addr.is_ipv6()) {
        extra.push(Entry { key: b"nodes6", value: Insert::NodesV6(nodes), replace: true });
    }
    encode(|buf| ResponseOut { transaction_id: tid, values, extra: &extra, ip: None, version: None }.encode(buf))
}

/// An error `{t, y: e, e: [code, message]}`.
pub(crate) fn error_bytes(tid: &[u8], code: i64, message: &[u8]) -> Vec<u8> {
    encode(|buf| ErrorOut { transaction_id: tid, code, message, ip: None, version: None }.encode(buf))
}

/// A query `{t, y: q, q: method, a: args (+ id)}`, with `ro=1` when `read_only`.
pub(crate) fn query_bytes(
    tid: &[u8],
    method: &str,
    args: &Dictionary,
    id: Option<&NodeId>,
    read_only: bool,
) -> Vec<u8> {
    let mut extra = Vec::new();
    if let Some(id) = id {
        extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: true });
    }
    encode(|buf| {
        QueryOut { transaction_id: tid, method: method.as_bytes(), args, extra: &extra, read_only, version: None }
            .encode(buf)
    })
}

/// An `echo` query with `a.hello = 42`, as in k-rpc's tests.
pub(crate) fn echo_query() -> Query {
    Query::new("echo", Dictionary::new().with_int("hello", 42)).unwrap_or_else(|| unreachable!())
}

// ---------------------------------------------------------------------------------------------
// What the endpoint sent

/// One datagram the endpoint sent, kept as an owned copy and decoded on access.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    /// Where it went.
    pub(crate) to: SocketAddr,
    /// Its bytes.
    pub(crate) bytes: Vec<u8>,
    /// The handle `poll_transmit` returned (for `fail_transmit`).
    pub(crate) transmit: Transmit,
}

impl Sent {
    /// The decoded message (the endpoint only sends valid KRPC).
    pub(crate) fn message(&self) -> Message<'_> {
        Message::decode(&self.bytes)
            .unwrap_or_else(|e| panic!("endpoint sent an undecodable datagram {:?}: {e}", self.bytes))
    }

    /// `t`.
    pub(crate) fn tid(&self) -> Vec<u8> {
        self.message().transaction_id.to_vec()
    }

    /// True for `y=q`.
    pub(crate) fn is_query(&self) -> bool {
        self.message().as_query().is_some()
    }

    /// `q` (panics unless a query).
    pub(crate) fn method(&self) -> Vec<u8> {
        self.message().as_query().map(|q| q.method.to_vec()).unwrap_or_else(|| panic!("not a query: {self:?}"))
    }

    /// `a` (panics unless a query).
    pub(crate) fn args(&self) -> Fields<'_> {
        let msg = self.message();
        match msg.as_query() {
            Some(q) => q.args,
            None => panic!("not a query: {msg:?}"),
        }
    }

    /// `r` (panics unless a response).
    pub(crate) fn values(&self) -> Fields<'_> {
        let msg = self.message();
        match msg.as_response() {
            Some(r) => *r,
            None => panic!("not a response: {msg:?}"),
        }
    }

    /// `e` as `(code, message)` (panics unless an error).
    pub(crate) fn error(&self) -> (i64, Vec<u8>) {
        let msg = self.message();
        match msg.as_error() {
            Some(e) => (e.code, e.message.to_vec()),
            None => panic!("not an error: {msg:?}"),
        }
    }

    /// `a.target` or `a.info_hash` of a query.
    pub(crate) fn target(&self) -> Option<NodeId> {
        let args = self.args();
        args.target().or_else(|| args.info_hash())
    }
}

// ---------------------------------------------------------------------------------------------
// Events

/// The result of the `QueryDone` for `op`, if present.
pub(crate) fn query_result(events: &[Event], op: OpId) -> Option<Result<Reply, QueryError>> {
    events.iter().find_map(|e| match e {
        Event::QueryDone { op: o, result } if *o == op => Some(result.clone()),
        _ => None,
    })
}

/// The result of the `QueryAllDone` for `op`, if present.
pub(crate) fn query_all_result(events: &[Event], op: OpId) -> Option<Result<usize, QueryError>> {
    events.iter().find_map(|e| match e {
        Event::QueryAllDone { op: o, result } if *o == op => Some(result.clone()),
        _ => None,
    })
}

/// A finished lookup: `(replies, closest, outcome)`.
pub(crate) type LookupResult = (usize, Vec<LookupNode>, LookupOutcome);

/// The `LookupDone` for `op`, if present.
pub(crate) fn lookup_result(events: &[Event], op: OpId) -> Option<LookupResult> {
    events.iter().find_map(|e| match e {
        Event::LookupDone { op: o, replies, closest, outcome } if *o == op => {
            Some((*replies, closest.clone(), *outcome))
        }
        _ => None,
    })
}

/// The `Reply` events of `op`.
pub(crate) fn replies_of(events: &[Event], op: OpId) -> Vec<Reply> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reply { op: o, reply } if *o == op => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

/// How many events end an operation (`QueryDone`, `QueryAllDone`, `LookupDone`) for `op`.
pub(crate) fn completions_of(events: &[Event], op: OpId) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(e, Event::QueryDone { op: o, .. } | Event::QueryAllDone { op: o, .. } | Event::LookupDone { op: o, .. } if *o == op)
        })
        .count()
}

/// The incoming queries among `events`.
pub(crate) fn incoming(events: &[Event]) -> Vec<IncomingQuery> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Query(q) => Some(q.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Scripted single endpoint

/// One endpoint under test at a fixed address, with a fake clock.
pub(crate) struct Script {
    /// The endpoint.
    pub(crate) ep: Endpoint,
    /// Its address (what peers send to).
    pub(crate) addr: SocketAddr,
    /// The fake clock: the `now` passed to every call.
    pub(crate) now: Instant,
}

impl Script {
    /// An endpoint with `config`, seed `[1; 32]`, at 127.0.0.1:6881, clock at zero.
    pub(crate) fn new(config: Config) -> Script {
        Script::with_seed(config, seed(1))
    }

    /// An endpoint with `config` and `seed`.
    pub(crate) fn with_seed(config: Config, seed: [u8; 32]) -> Script {
        let ep = Endpoint::new(config, seed, Instant::ZERO).unwrap_or_else(|e| panic!("bad test config: {e}"));
        Script { ep, addr: sa("127.0.0.1:6881"), now: Instant::ZERO }
    }

    /// Our id.
    pub(crate) fn id(&self) -> NodeId {
        *self.ep.id()
    }

    /// Moves the clock forward by `d` and calls `handle_timeout`.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.ep.handle_timeout(self.now);
    }

    /// Moves the clock forward by `d` without telling the endpoint.
    pub(crate) fn wait(&mut self, d: Duration) {
        self.now += d;
    }

    /// Drains every transmit, with a buffer of [`BUF_LEN`] bytes.
    pub(crate) fn sent(&mut self) -> Vec<Sent> {
        self.sent_with_buffer(BUF_LEN)
    }

    /// Drains every transmit, with a buffer of `len` bytes.
    pub(crate) fn sent_with_buffer(&mut self, len: usize) -> Vec<Sent> {
        let mut buf = vec![0u8; len];
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_transmit(self.now, &mut buf) {
            out.push(Sent { to: t.destination, bytes: buf[..t.len].to_vec(), transmit: t });
        }
        out
    }

    /// Drains the transmits and asserts there is exactly one.
    pub(crate) fn one_sent(&mut self) -> Sent {
        let mut sent = self.sent();
        assert_eq!(sent.len(), 1, "expected exactly one datagram, got {sent:#?}");
        sent.remove(0)
    }

    /// Drains every event.
    pub(crate) fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.ep.poll_event()).collect()
    }

    /// Feeds a datagram from `from`.
    pub(crate) fn deliver(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.ep.handle_datagram(self.now, from, bytes);
    }

    /// Answers `query` from its destination with `r = {id}`.
    pub(crate) fn reply(&mut self, query: &Sent, id: &NodeId) {
        self.reply_with(query, Some(id), &Dictionary::new(), &[]);
    }

    /// Answers `query` from its destination.
    pub(crate) fn reply_with(&mut self, query: &Sent, id: Option<&NodeId>, values: &Dictionary, nodes: &[NodeInfo]) {
        let bytes = response_bytes(&query.tid(), id, values, nodes);
        self.deliver(query.to, &bytes);
    }

    /// Answers `query` from its destination with a KRPC error.
    pub(crate) fn reply_error(&mut self, query: &Sent, code: i64, message: &[u8]) {
        let bytes = error_bytes(&query.tid(), code, message);
        self.deliver(query.to, &bytes);
    }

    /// Sends the endpoint a query from `from`.
    pub(crate) fn incoming_query(&mut self, from: SocketAddr, tid: &[u8], method: &str, id: Option<&NodeId>) {
        let bytes = query_bytes(tid, method, &Dictionary::new(), id, false);
        self.deliver(from, &bytes);
    }

    /// `query`, which must be accepted.
    pub(crate) fn query(&mut self, peer: impl Into<Peer>, query: Query) -> OpId {
        self.ep.query(self.now, peer, query).unwrap_or_else(|e| panic!("query refused: {e}"))
    }

    /// `insert_node` for each node, which must all enter the table.
    pub(crate) fn insert(&mut self, nodes: &[NodeInfo]) {
        for n in nodes {
            assert!(self.ep.insert_node(self.now, *n), "{n:?} did not enter the table");
        }
    }

    /// The ids of one bucket, least recently seen first.
    pub(crate) fn bucket_ids(&self, bucket: usize) -> Vec<NodeId> {
        self.ep.routing_table().bucket_contacts(bucket).map(|c| *c.id()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// In-memory network

/// One datagram that crossed the network (delivered or lost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// When it was sent.
    pub(crate) at: Instant,
    /// Sender index.
    pub(crate) from: usize,
    /// Destination address.
    pub(crate) to: SocketAddr,
    /// Bytes.
    pub(crate) bytes: Vec<u8>,
    /// Whether the network dropped it.
    pub(crate) lost: bool,
}

/// One endpoint of the network.
pub(crate) struct NetNode {
    /// The endpoint.
    pub(crate) ep: Endpoint,
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// A dead node receives nothing, sends nothing and is never polled.
    pub(crate) alive: bool,
}

/// A datagram waiting for its delivery time: `(time, sequence, destination, source, bytes)`.
type InFlight = Reverse<(Instant, u64, usize, SocketAddr, Vec<u8>)>;

/// N endpoints, a virtual clock, a lossy link with fixed latency.
pub(crate) struct Net {
    /// The endpoints, by index.
    pub(crate) nodes: Vec<NetNode>,
    /// Virtual time.
    pub(crate) now: Instant,
    /// One-way delay of every datagram.
    pub(crate) latency: Duration,
    /// Chance of losing a datagram, in parts per million.
    pub(crate) loss_ppm: u32,
    /// How many contacts a `find_node`/`get_peers` answer carries.
    pub(crate) answer_k: usize,
    /// Every event, with the time and the index of the endpoint that emitted it.
    pub(crate) events: Vec<(Instant, usize, Event)>,
    /// Every datagram sent.
    pub(crate) trace: Vec<Delivery>,
    /// Work items (datagrams and events) handled so far.
    pub(crate) steps: u64,
    /// Livelock guard: more work items than this panics.
    pub(crate) max_steps: u64,
    index: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    rng: ChaCha8Rng,
    buf: Vec<u8>,
}

/// The address of network node `i`: 127.0.x.y, a distinct IP per node.
pub(crate) fn net_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, (i / 200) as u8, (i % 200 + 2) as u8], 6881))
}

impl Net {
    /// `n` endpoints; `config(i)` configures endpoint `i`, whose RNG seed derives from `seed`
    /// and `i`. The network's loss decisions come from `seed` too.
    pub(crate) fn new(n: usize, seed: u64, mut config: impl FnMut(usize) -> Config) -> Net {
        let mut nodes = Vec::with_capacity(n);
        let mut index = HashMap::new();
        for i in 0..n {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            let ep = Endpoint::new(config(i), s, Instant::ZERO).unwrap_or_else(|e| panic!("bad config: {e}"));
            let addr = net_addr(i);
            index.insert(addr, i);
            nodes.push(NetNode { ep, addr, alive: true });
        }
        Net {
            nodes,
            now: Instant::ZERO,
            latency: Duration::from_millis(10),
            loss_ppm: 0,
            answer_k: 8,
            events: Vec::new(),
            trace: Vec::new(),
            steps: 0,
            max_steps: 5_000_000,
            index,
            queue: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
            buf: vec![0u8; BUF_LEN],
        }
    }

    /// The id of node `i`.
    pub(crate) fn id(&self, i: usize) -> NodeId {
        *self.nodes[i].ep.id()
    }

    /// Node `i` as a `NodeInfo`.
    pub(crate) fn info(&self, i: usize) -> NodeInfo {
        NodeInfo::new(self.id(i), self.nodes[i].addr)
    }

    /// The endpoint of node `i`.
    pub(crate) fn ep(&mut self, i: usize) -> &mut Endpoint {
        &mut self.nodes[i].ep
    }

    fn tick(&mut self) {
        self.steps += 1;
        assert!(
            self.steps <= self.max_steps,
            "livelock: {} work items by t={:?} ({} datagrams, {} events)",
            self.steps,
            self.now.as_duration(),
            self.trace.len(),
            self.events.len()
        );
    }

    fn send(&mut self, from: usize, to: SocketAddr, bytes: Vec<u8>) {
        let lost = self.loss_ppm > 0 && self.rng.next_u32() % 1_000_000 < self.loss_ppm;
        self.trace.push(Delivery { at: self.now, from, to, bytes: bytes.clone(), lost });
        if lost {
            return;
        }
        if let Some(&dest) = self.index.get(&to) {
            self.seq += 1;
            let source = self.nodes[from].addr;
            self.queue.push(Reverse((self.now + self.latency, self.seq, dest, source, bytes)));
        }
    }

    /// What every endpoint of the network does with an incoming query.
    fn answer(ep: &mut Endpoint, q: &IncomingQuery, k: usize) {
        let args = q.args();
        // A full transmit queue refuses the answer; like a lost datagram, the querier times out.
        let _ = match q.method() {
            b"find_node" | b"get_peers" => match args.target().or_else(|| args.info_hash()) {
                Some(target) => {
                    let nodes = ep.routing_table().closest(&target, k);
                    ep.respond(q.reply_to(), Dictionary::new(), &nodes)
                }
                None => ep.error(q.reply_to(), 203, b"missing target"),
            },
            b"ping" => ep.respond(q.reply_to(), Dictionary::new(), &[]),
            b"echo" => {
                let mut values = Dictionary::from_dict(args.dict());
                values.remove(b"id");
                ep.respond(q.reply_to(), values, &[])
            }
            _ => ep.error(q.reply_to(), 204, b"Method Unknown"),
        };
    }

    /// Drains the outputs of every live endpoint and delivers every datagram due by `now`,
    /// until nothing moves.
    pub(crate) fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].alive {
                    continue;
                }
                loop {
                    let now = self.now;
                    let node = &mut self.nodes[i];
                    let Some(t) = node.ep.poll_transmit(now, &mut self.buf) else { break };
                    let bytes = self.buf[..t.len].to_vec();
                    self.tick();
                    self.send(i, t.destination, bytes);
                    moved = true;
                }
                while let Some(e) = self.nodes[i].ep.poll_event() {
                    self.tick();
                    if let Event::Query(q) = &e {
                        Net::answer(&mut self.nodes[i].ep, q, self.answer_k);
                    }
                    self.events.push((self.now, i, e));
                    moved = true;
                }
            }
            while self.queue.peek().is_some_and(|Reverse(d)| d.0 <= self.now) {
                let Some(Reverse((_, _, dest, source, bytes))) = self.queue.pop() else { break };
                self.tick();
                if self.nodes[dest].alive {
                    self.nodes[dest].ep.handle_datagram(self.now, source, &bytes);
                }
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Hands node `to` a datagram from `from` at the current time (a crafted or hostile one).
    pub(crate) fn inject(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.nodes[to].ep.handle_datagram(now, from, bytes);
        self.pump();
    }

    /// Pumps, then jumps to the next delivery or deadline and fires the due timers. Returns
    /// false when nothing is left to happen.
    pub(crate) fn step(&mut self) -> bool {
        self.pump();
        let next_delivery = self.queue.peek().map(|Reverse(d)| d.0);
        let next_timer = self.nodes.iter_mut().filter(|n| n.alive).filter_map(|n| n.ep.poll_timeout()).min();
        let Some(next) = next_delivery.into_iter().chain(next_timer).min() else { return false };
        self.now = self.now.max(next);
        for i in 0..self.nodes.len() {
            let now = self.now;
            let node = &mut self.nodes[i];
            if node.alive && node.ep.poll_timeout().is_some_and(|t| t <= now) {
                node.ep.handle_timeout(now);
            }
        }
        self.pump();
        true
    }

    /// Steps until `done` holds; panics if virtual time passes `limit` first.
    pub(crate) fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) {
        let deadline = self.now + limit;
        self.pump();
        while !done(self) {
            assert!(self.now <= deadline, "condition not reached within {limit:?} of virtual time");
            if !self.step() {
                assert!(done(self), "network went quiet before the condition held");
                return;
            }
        }
    }

    /// Steps until virtual time reaches `now + d`.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        loop {
            let next_delivery = self.queue.peek().map(|Reverse(x)| x.0);
            let next_timer = self.nodes.iter_mut().filter(|n| n.alive).filter_map(|n| n.ep.poll_timeout()).min();
            match next_delivery.into_iter().chain(next_timer).min() {
                Some(next) if next <= end => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
        self.pump();
    }

    /// The `LookupDone` of `op` on node `i`, if it happened.
    pub(crate) fn lookup_result(&self, i: usize, op: OpId) -> Option<LookupResult> {
        self.events.iter().find_map(|(_, n, e)| match e {
            Event::LookupDone { op: o, replies, closest, outcome } if *n == i && *o == op => {
                Some((*replies, closest.clone(), *outcome))
            }
            _ => None,
        })
    }

    /// Starts `closest(target, find_node)` on node `i` and runs until it ends (or `limit`).
    pub(crate) fn lookup(&mut self, i: usize, target: NodeId, limit: Duration) -> (OpId, LookupResult) {
        let now = self.now;
        let op = self.nodes[i].ep.closest(now, target, Query::find_node(&target)).unwrap_or_else(|e| panic!("{e}"));
        self.run_until(limit, |net| net.lookup_result(i, op).is_some());
        let result = self.lookup_result(i, op).unwrap_or_else(|| unreachable!());
        (op, result)
    }

    /// Queries sent by node `i` since trace index `from`.
    pub(crate) fn queries_sent_since(&self, i: usize, from: usize) -> usize {
        self.trace[from..]
            .iter()
            .filter(|d| d.from == i && Message::decode(&d.bytes).is_ok_and(|m| m.as_query().is_some()))
            .count()
    }

    /// The `k` ids nearest to `target` among live nodes other than `except`, nearest first.
    pub(crate) fn true_closest(&self, target: &NodeId, k: usize, except: usize) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> =
            (0..self.nodes.len()).filter(|&i| i != except && self.nodes[i].alive).map(|i| self.id(i)).collect();
        ids.sort_by(|a, b| target.cmp_distance(a, b));
        ids.truncate(k);
        ids
    }
}

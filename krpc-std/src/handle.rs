//! [`Krpc`]: the blocking handle to a driver running on its own thread.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, ThreadId};

use krpc_core::dht::bep44::ed25519_dalek::SigningKey;
use krpc_core::dht::{Item, MutableItem};
use krpc_core::routing::RoutingTable;
use krpc_core::wire::Dictionary;
use krpc_core::{
    CrawlConfig, Endpoint, Event, IncomingQuery, LookupNode, LookupOutcome, NodeId, NodeInfo, Peer, PutOutcome, Query,
    QueryError, Reply, ReplyTo, SavedState,
};

use crate::error::SHUT_DOWN;
use crate::worker::{self, Answer, Command, Op, Reply as WorkerReply, Responder, Sink};
use crate::{Crawl, Driver, Error};

/// How many incoming queries or routing events wait for a slow receiver before new ones are
/// dropped.
const CHANNEL_CAP: usize = 1024;

/// How a lookup (`closest`, `populate`, `bootstrap`, `find_node`, `get_peers`) ended (k-rpc's
/// `cb(null, n)`, with the nodes found). Both drivers return this type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupSummary {
    /// Successful replies with a valid id.
    pub replies: usize,
    /// The closest nodes that answered, nearest first, at most `k`, with their write tokens.
    pub closest: Vec<LookupNode>,
    /// `Completed`; `Stopped` when the caller stopped it; `ShutDown` when the driver stopped.
    pub outcome: LookupOutcome,
}

impl LookupSummary {
    /// The summary a lookup's last event ([`Event::LookupDone`]) carries; with any other
    /// event, or none (the driver stopped first), an empty one with outcome `ShutDown`.
    pub fn from_event(event: Option<Event>) -> LookupSummary {
        match event {
            Some(Event::LookupDone { replies, closest, outcome, .. }) => LookupSummary { replies, closest, outcome },
            _ => LookupSummary { replies: 0, closest: Vec::new(), outcome: LookupOutcome::ShutDown },
        }
    }
}

/// How a BEP 44 `get` ended: the item found (for a mutable item, the one with the highest
/// `seq`) and why the lookup ended. Both drivers return this type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemSummary {
    /// The item, if a node had one that checked out (hash or signature, and `min_seq`).
    pub item: Option<Item>,
    /// `Completed` (also when an immutable item ended the lookup early); `Stopped` when the
    /// caller stopped it; `ShutDown` when the driver stopped.
    pub outcome: LookupOutcome,
}

impl ItemSummary {
    /// The summary a `get`'s last event ([`Event::GetItemDone`]) carries. A plain
    /// [`Event::LookupDone`] (not sent for a `get` today; accepted as the drivers' `announce`
    /// accepts it) is a lookup that found nothing; with any other event, or none (the driver
    /// stopped first), an empty one with outcome `ShutDown`.
    pub fn from_event(event: Option<Event>) -> ItemSummary {
        match event {
            Some(Event::GetItemDone { item, outcome, .. }) => ItemSummary { item, outcome },
            Some(Event::LookupDone { outcome, .. }) => ItemSummary { item: None, outcome },
            _ => ItemSummary { item: None, outcome: LookupOutcome::ShutDown },
        }
    }

    /// The mutable item found, if any.
    pub fn mutable(self) -> Option<MutableItem> {
        match self.item {
            Some(Item::Mutable(item)) => Some(item),
            _ => None,
        }
    }
}

/// A BEP 33 scrape's result: the swarm's size estimated from the bloom filters of the nodes
/// closest to the info hash. Both drivers return this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scrape {
    /// Estimated seeds (`BFsd`), rounded. Peers are counted by IP address (BEP 33 hashes the
    /// address only), so peers behind one address count once.
    pub seeds: u64,
    /// Estimated peers that are not seeds (`BFpe`), rounded.
    pub peers: u64,
    /// How many nodes answered with filters; 0 means no estimate (both counts are then 0).
    pub responses: usize,
}

impl Scrape {
    /// The result a scrape's last event ([`Event::ScrapeDone`]) carries; a scrape the caller
    /// stopped keeps what it had. With any other event, or none (the driver stopped first),
    /// [`QueryError::ShutDown`].
    pub fn from_event(event: Option<Event>) -> Result<Scrape, QueryError> {
        match event {
            Some(Event::ScrapeDone { seeds, peers, responses, outcome, .. }) if outcome != LookupOutcome::ShutDown => {
                Ok(Scrape { seeds, peers, responses })
            }
            _ => Err(QueryError::ShutDown),
        }
    }
}

/// A put's result from its last event ([`Event::PutItemDone`]): the nodes' answers or the
/// engine's error. A plain [`Event::LookupDone`] (not sent for a put today; accepted as the
/// drivers' `announce` accepts it) means nothing was asked: `NoNodes`. Any other event, or
/// none (the driver stopped first), is `ShutDown`.
pub fn put_outcome(event: Option<Event>) -> Result<PutOutcome, QueryError> {
    match event {
        Some(Event::PutItemDone { result, .. }) => result,
        Some(Event::LookupDone { outcome: LookupOutcome::ShutDown, .. }) | None => Err(QueryError::ShutDown),
        Some(Event::LookupDone { .. }) => Err(QueryError::NoNodes),
        Some(_) => Err(QueryError::ShutDown),
    }
}

/// A blocking handle to a KRPC endpoint whose engine and socket live on a background thread.
///
/// Cloneable, `Send + Sync`: any thread may call it, and several calls may wait at once.
/// Calls block their caller until the engine has an answer. [`shutdown`](Self::shutdown), or
/// dropping the last handle, stops the thread and closes the socket; every call still waiting
/// then returns a shut-down error ([`Error::is_shut_down`]).
///
/// ```
/// use krpc_std::{Config, Dictionary, Krpc, Query};
///
/// let server = Krpc::bind("127.0.0.1:0", Config::default())?;
/// server.on_query(|query, responder| {
///     if query.method() == b"echo" {
///         let hello = query.args().get(b"hello").and_then(|v| v.as_int()).unwrap_or(0);
///         let _ = responder.respond(Dictionary::new().with_int("hello", hello), &[]);
///     }
/// })?;
/// let client = Krpc::bind("127.0.0.1:0", Config::default())?;
/// let echo = Query::new("echo", Dictionary::new().with_int("hello", 42)).unwrap();
/// let reply = client.query(server.local_addr(), echo)?;
/// assert_eq!(reply.values().and_then(|r| r.get(b"hello")).and_then(|v| v.as_int()), Some(42));
/// # Ok::<(), krpc_std::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Krpc {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    commands: Sender<Command>,
    /// A clone of the driver's socket, to send wake-up datagrams; `None` after shutdown.
    waker: Mutex<Option<UdpSocket>>,
    wake_addr: SocketAddr,
    local_addr: SocketAddr,
    /// Our node id; the driver's thread updates it on [`Event::IdChanged`] (BEP 42).
    id: Arc<Mutex<NodeId>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl Krpc {
    pub(crate) fn start(driver: Driver) -> Result<Krpc, Error> {
        let waker = driver.socket().try_clone()?;
        let (wake_addr, local_addr) = (driver.wake_addr(), driver.local_addr());
        let id = Arc::new(Mutex::new(*driver.endpoint.id()));
        let (commands, receiver) = mpsc::channel();
        let worker_id = Arc::clone(&id);
        let thread =
            thread::Builder::new().name("krpc-std".into()).spawn(move || worker::run(driver, receiver, worker_id))?;
        let thread_id = thread.thread().id();
        let thread = Mutex::new(Some(thread));
        Ok(Krpc {
            shared: Arc::new(Shared {
                commands,
                waker: Mutex::new(Some(waker)),
                wake_addr,
                local_addr,
                id,
                thread,
                thread_id,
            }),
        })
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Our node id. With the node layer ([`Config::dht`](krpc_core::Config::dht)) it may
    /// change once, to an id bound to our public address (BEP 42); [`events`](Self::events)
    /// then carries [`Event::IdChanged`].
    pub fn id(&self) -> NodeId {
        *lock(&self.shared.id)
    }

    /// Sends one query and waits for its reply (k-rpc `query`). A KRPC error reply is
    /// `Error::Query(QueryError::Remote { .. })`.
    pub fn query(&self, peer: impl Into<Peer>, query: Query) -> Result<Reply, Error> {
        let peer = peer.into();
        match self.run_op(Op::Query { peer, query }, |_| ControlFlow::Continue(()))? {
            Event::QueryDone { result, .. } => Ok(result?),
            _ => Err(SHUT_DOWN),
        }
    }

    /// Sends the same query to every peer (k-rpc `queryAll`), calling `on_reply` for each
    /// success until it returns `Break`; returns the number of successes.
    pub fn query_all<P: Into<Peer>>(
        &self,
        peers: impl IntoIterator<Item = P>,
        query: Query,
        mut on_reply: impl FnMut(&Reply) -> ControlFlow<()>,
    ) -> Result<usize, Error> {
        let peers: Vec<Peer> = peers.into_iter().map(Into::into).collect();
        let on_event = |event: &Event| match event {
            Event::Reply { reply, .. } => on_reply(reply),
            _ => ControlFlow::Continue(()),
        };
        match self.run_op(Op::QueryAll { peers, query }, on_event)? {
            Event::QueryAllDone { result, .. } => Ok(result?),
            _ => Err(SHUT_DOWN),
        }
    }

    /// Looks up the nodes closest to `target`, sending them `query` (k-rpc `closest`).
    /// `on_reply` runs on the calling thread for every reply; `Break` stops the lookup, and no
    /// call follows it.
    pub fn closest(
        &self,
        target: NodeId,
        query: Query,
        on_reply: impl FnMut(&Reply) -> ControlFlow<()>,
    ) -> Result<LookupSummary, Error> {
        self.lookup(Op::Closest { target, query }, on_reply)
    }

    /// A background lookup that fills the routing table (k-rpc `populate`); blocks until it
    /// is done.
    pub fn populate(&self, target: NodeId, query: Query) -> Result<LookupSummary, Error> {
        self.lookup(Op::Populate { target, query }, |_| ControlFlow::Continue(()))
    }

    /// Joins the network: `populate` toward our own id with `find_node`.
    pub fn bootstrap(&self) -> Result<LookupSummary, Error> {
        self.lookup(Op::Bootstrap, |_| ControlFlow::Continue(()))
    }

    /// Looks for the nodes closest to `target` with `find_node` (BEP 5), calling `on_reply`
    /// on this thread for every reply; `Break` stops the lookup. The summary's `closest` are
    /// the nodes found, nearest first.
    pub fn find_node(
        &self,
        target: NodeId,
        on_reply: impl FnMut(&Reply) -> ControlFlow<()>,
    ) -> Result<LookupSummary, Error> {
        self.lookup(Op::FindNode(target), on_reply)
    }

    /// Looks up peers for `info_hash` (BEP 5 `get_peers`), calling `on_peer` on this thread
    /// for every peer address the nodes on the way hold, each once, as they arrive; `Break`
    /// stops the lookup. The summary holds the closest nodes and their write tokens. Any node
    /// may ask; answering other nodes' `get_peers` takes the node layer ([`Config::dht`](krpc_core::Config::dht)).
    pub fn get_peers(
        &self,
        info_hash: NodeId,
        mut on_peer: impl FnMut(SocketAddr) -> ControlFlow<()>,
    ) -> Result<LookupSummary, Error> {
        let mut seen = HashSet::new();
        let on_event = |event: &Event| match event {
            Event::Peers { peers, .. } => {
                for &peer in peers {
                    if seen.insert(peer) {
                        on_peer(peer)?;
                    }
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        };
        summary(self.run_op(Op::GetPeers(info_hash), on_event)?)
    }

    /// Announces that we have `info_hash` on `port` (`None`: the port our datagrams leave
    /// from, BEP 5's `implied_port`); `seed` marks us a seed (BEP 33). The engine looks the
    /// info hash up, then sends `announce_peer` to the closest nodes that gave a token.
    /// Returns the number of nodes that stored us; [`QueryError::NoNodes`](krpc_core::QueryError::NoNodes)
    /// when no node gave a token, [`QueryError::AllFailed`](krpc_core::QueryError::AllFailed)
    /// when none accepted.
    pub fn announce(&self, info_hash: NodeId, port: Option<u16>, seed: bool) -> Result<usize, Error> {
        match self.run_op(Op::Announce { info_hash, port, seed }, |_| ControlFlow::Continue(()))? {
            Event::AnnounceDone { result, .. } => Ok(result?),
            // The engine registers the announce after its lookup has started; a lookup with
            // no node to ask ends at once, before that, and is reported as a plain lookup.
            // Nothing was asked, so nothing could store us.
            Event::LookupDone { outcome: LookupOutcome::ShutDown, .. } => Err(SHUT_DOWN),
            Event::LookupDone { .. } => Err(Error::Query(QueryError::NoNodes)),
            _ => Err(SHUT_DOWN),
        }
    }

    /// Estimates the swarm of `info_hash` (BEP 33 scrape): a `get_peers` lookup with
    /// `scrape=1` that unites the seed and peer bloom filters of every node that answers with
    /// them. Blocks until the lookup ends.
    pub fn scrape(&self, info_hash: NodeId) -> Result<Scrape, Error> {
        let end = self.run_op(Op::Scrape(info_hash), |_| ControlFlow::Continue(()))?;
        Ok(Scrape::from_event(Some(end))?)
    }

    /// Crawls the DHT for the info-hashes its nodes store (BEP 51): `sample_infohashes` to
    /// nodes spread over the id space, each asked again only after the `interval` it gave,
    /// at most `config.rate` queries a second. The [`Crawl`] iterator yields each info-hash
    /// once, as nodes answer; [`Crawl::stats`] counts nodes visited and queries. It ends when
    /// `config.max_info_hashes` have been found or no node is left to ask, which on a live DHT
    /// is never: [`Crawl::stop`] it, or drop it. Refused ([`Error::Refused`]) for a zero cap,
    /// rate or concurrency; [`QueryError::NoNodes`] when the node knows no node to start from.
    pub fn crawl(&self, config: CrawlConfig) -> Result<Crawl, Error> {
        if thread::current().id() == self.shared.thread_id {
            return Err(Error::OnDriverThread);
        }
        let (events, receiver) = mpsc::channel();
        let (started, id) = mpsc::sync_channel(1);
        self.send(Command::Start { op: Op::Crawl(config), events, started: Some(started) })?;
        match id.recv() {
            Ok(id) => Ok(Crawl::new(self.clone(), id, receiver)),
            // Refused: the refusal is on the events channel.
            Err(_) => match receiver.recv() {
                Ok(Err(refusal)) => Err(refusal.into()),
                _ => Err(SHUT_DOWN),
            },
        }
    }

    /// Stores an immutable item (BEP 44): `value` is bencoded (the string `hello` is
    /// `b"5:hello"`), at most 1000 bytes. The engine looks up SHA-1(`value`), then sends `put`
    /// to the closest nodes that gave a write token. Returns what they said:
    /// [`PutOutcome::stored`] counts the nodes that stored it, [`PutOutcome::errors`] lists
    /// each refusal. [`QueryError::NoNodes`] when no node gave a token; an invalid value is
    /// [`Error::Refused`] before anything is sent.
    pub fn put_immutable(&self, value: &[u8]) -> Result<PutOutcome, Error> {
        self.put(Op::PutImmutable(value.to_vec()))
    }

    /// Stores a signed mutable item (BEP 44; sign it with [`MutableItem::sign`]). With `cas`,
    /// nodes holding another `seq` refuse it with 301. The result is `Ok` whenever some node
    /// answered: a node holding a higher `seq` refuses with 302, listed in
    /// [`PutOutcome::errors`] with its address; check [`PutOutcome::stored`]. Putting the same
    /// item again republishes it (no private key needed).
    pub fn put_mutable(&self, item: MutableItem, cas: Option<i64>) -> Result<PutOutcome, Error> {
        self.put(Op::PutMutable { item, cas })
    }

    /// Read-modify-write of a mutable item (BEP 44): reads the highest `seq` on the nodes,
    /// signs `value` with `seq + 1` (1 if none was found) and puts it with `cas` = the `seq`
    /// read, so that a concurrent writer makes it fail with 301 instead of being overwritten.
    /// [`PutOutcome::seq`] is the `seq` stored.
    pub fn put_mutable_next(&self, key: &SigningKey, salt: &[u8], value: &[u8]) -> Result<PutOutcome, Error> {
        self.put(Op::PutMutableNext { key: Box::new(key.clone()), salt: salt.to_vec(), value: value.to_vec() })
    }

    /// Looks up an immutable item (BEP 44) by its target, SHA-1 of the bencoded value; a
    /// value is returned only if it hashes to `target`. `None` when no node had it.
    pub fn get_immutable(&self, target: NodeId) -> Result<Option<Vec<u8>>, Error> {
        let summary = self.get_item(Op::GetImmutable(target), |_| ControlFlow::Continue(()))?;
        Ok(summary.item.map(|item| item.value().to_vec()))
    }

    /// Looks up the mutable item of `key` and `salt` (BEP 44), calling `on_item` on this
    /// thread for each item a node sends whose signature verifies and whose `seq` is at least
    /// `min_seq`, in no order of `seq`; `Break` stops the lookup. Returns the one with the
    /// highest `seq` seen.
    pub fn get_mutable(
        &self,
        key: [u8; 32],
        salt: &[u8],
        min_seq: Option<i64>,
        mut on_item: impl FnMut(&MutableItem) -> ControlFlow<()>,
    ) -> Result<Option<MutableItem>, Error> {
        let on_event = |event: &Event| match event {
            Event::ItemFound { item: Item::Mutable(item), .. } => on_item(item),
            _ => ControlFlow::Continue(()),
        };
        let op = Op::GetMutable { key, salt: salt.to_vec(), min_seq };
        Ok(self.get_item(op, on_event)?.mutable())
    }

    /// The mutable item of `key` and `salt` with the highest `seq` the nodes hold (mainline's
    /// `get_mutable_most_recent`).
    pub fn get_mutable_most_recent(&self, key: [u8; 32], salt: &[u8]) -> Result<Option<MutableItem>, Error> {
        self.get_mutable(key, salt, None, |_| ControlFlow::Continue(()))
    }

    fn put(&self, op: Op) -> Result<PutOutcome, Error> {
        Ok(put_outcome(Some(self.run_op(op, |_| ControlFlow::Continue(()))?))?)
    }

    fn get_item(&self, op: Op, on_event: impl FnMut(&Event) -> ControlFlow<()>) -> Result<ItemSummary, Error> {
        match ItemSummary::from_event(Some(self.run_op(op, on_event)?)) {
            summary if summary.outcome == LookupOutcome::ShutDown => Err(SHUT_DOWN),
            summary => Ok(summary),
        }
    }

    /// Our public address per family, `[IPv4, IPv6]`, as voted by the `ip` fields of
    /// replies (BEP 42); `None` until enough nodes agree (and always without the node layer).
    pub fn external_address(&self) -> Result<[Option<IpAddr>; 2], Error> {
        self.inspect(|endpoint| endpoint.external_address())
    }

    /// Answers incoming queries with `handler`, on the driver's thread (k-rpc's `query`
    /// event). It must not block, nor call this handle's blocking methods (they return
    /// [`Error::OnDriverThread`]). Replaces any earlier handler or [`incoming`](Self::incoming)
    /// receiver. Pings are answered by the engine unless `Config::answer_pings` is off.
    pub fn on_query<F>(&self, handler: F) -> Result<(), Error>
    where
        F: FnMut(IncomingQuery, Responder<'_>) + Send + 'static,
    {
        self.call(|reply| Command::Sink(Sink::Handler(Box::new(handler)), reply))
    }

    /// Incoming queries as a channel, to answer from any thread with
    /// [`respond`](Self::respond) or [`error`](Self::error). Replaces any earlier handler or
    /// receiver. Queries are dropped (and go unanswered) while 1024 wait.
    pub fn incoming(&self) -> Result<Receiver<IncomingQuery>, Error> {
        let (sender, receiver) = mpsc::sync_channel(CHANNEL_CAP);
        self.call(|reply| Command::Sink(Sink::Channel(sender), reply))?;
        Ok(receiver)
    }

    /// Answers a query received through [`incoming`](Self::incoming) (k-rpc `response`).
    pub fn respond(&self, to: &ReplyTo, values: Dictionary, nodes: &[NodeInfo]) -> Result<(), Error> {
        let answer = Answer::Values { values, nodes: nodes.to_vec() };
        Ok(self.call(|reply| Command::Answer { to: to.clone(), answer, reply })??)
    }

    /// Answers a query received through [`incoming`](Self::incoming) with a KRPC error.
    pub fn error(&self, to: &ReplyTo, code: i64, message: impl AsRef<[u8]>) -> Result<(), Error> {
        let answer = Answer::Error { code, message: message.as_ref().to_vec() };
        Ok(self.call(|reply| Command::Answer { to: to.clone(), answer, reply })??)
    }

    /// Routing-table events from now on: `NodeAdded`, `NodeRemoved`, `NodeUpdated` and, when
    /// `Config::auto_ping_swap` is off, `PingSwap` (answer it with [`swap`](Self::swap)).
    /// Every receiver gets every event; a receiver 1024 events behind misses new ones.
    pub fn events(&self) -> Result<Receiver<Event>, Error> {
        let (sender, receiver) = mpsc::sync_channel(CHANNEL_CAP);
        self.call(|reply| Command::Subscribe(sender, reply))?;
        Ok(receiver)
    }

    /// A snapshot of the routing table.
    pub fn routing_table(&self) -> Result<RoutingTable, Error> {
        self.inspect(|endpoint| endpoint.routing_table().clone())
    }

    /// The `n` nodes of the routing table nearest to `target`, for a `find_node` or
    /// `get_peers` answer.
    pub fn closest_nodes(&self, target: NodeId, n: usize) -> Result<Vec<NodeInfo>, Error> {
        self.inspect(move |endpoint| endpoint.routing_table().closest(&target, n).to_vec())
    }

    /// Asks a node to join the routing table: it is pinged and enters if it answers.
    pub fn add_node(&self, addr: SocketAddr, id: Option<NodeId>) -> Result<(), Error> {
        Ok(self.call(|reply| Command::AddNode { addr, id, reply })??)
    }

    /// Inserts a node you vouch for (say, from a saved table); returns whether it is in.
    pub fn insert_node(&self, node: NodeInfo) -> Result<bool, Error> {
        self.call(|reply| Command::InsertNode { node, reply })
    }

    /// Removes a node from the routing table; returns whether it was there.
    pub fn remove_node(&self, id: NodeId) -> Result<bool, Error> {
        self.call(|reply| Command::RemoveNode { id, reply })
    }

    /// Answers a `PingSwap`: `dead` leaves the table and `candidate` takes its place (k-rpc
    /// `swap`). Returns whether the swap happened.
    pub fn swap(&self, dead: NodeId, candidate: NodeInfo) -> Result<bool, Error> {
        self.call(|reply| Command::Swap { dead, candidate, reply })
    }

    /// Runs `f` on the engine, on the driver's thread, and returns its result: for getters
    /// such as the routing table, stats or configuration.
    pub fn inspect<R: Send + 'static>(&self, f: impl FnOnce(&Endpoint) -> R + Send + 'static) -> Result<R, Error> {
        self.call(|reply| Command::Inspect(Box::new(move |endpoint| drop(reply.send(f(endpoint))))))
    }

    /// Our id and the nodes of our routing tables, best first, to restart from
    /// ([`Builder::state`](crate::Builder::state)).
    pub fn save_state(&self) -> Result<SavedState, Error> {
        self.inspect(Endpoint::save_state)
    }

    /// Writes [`save_state`](Self::save_state) to `path` with
    /// [`save_state_file`](crate::save_state_file): to a temporary file, synced, then
    /// renamed over `path`, which is never left half-written. The file is written on the
    /// calling thread.
    pub fn save_state_file(&self, path: impl AsRef<std::path::Path>) -> Result<(), Error> {
        let state = self.save_state()?;
        Ok(crate::save_state_file(path, &state)?)
    }

    /// Stops the driver: the engine is closed, every call still waiting (on any thread)
    /// returns a shut-down error ([`Error::is_shut_down`]), the thread ends and the socket is
    /// closed. Later calls return it too. Returns once the thread has ended (at once when called
    /// on the driver's own thread, which ends right after). Calling it again does nothing.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    pub(crate) fn send(&self, command: Command) -> Result<(), Error> {
        self.shared.commands.send(command).map_err(|_| SHUT_DOWN)?;
        self.shared.wake();
        Ok(())
    }

    /// Sends the command `make` builds around a reply channel, and waits for the reply.
    fn call<R>(&self, make: impl FnOnce(WorkerReply<R>) -> Command) -> Result<R, Error> {
        if thread::current().id() == self.shared.thread_id {
            return Err(Error::OnDriverThread);
        }
        let (sender, receiver) = mpsc::sync_channel(1);
        self.send(make(sender))?;
        receiver.recv().map_err(|_| SHUT_DOWN)
    }

    /// Starts a command and waits for its final event, passing the events before it
    /// (`Reply`, `Peers`, `ItemFound`) to `on_event`; `Break` stops the command, and no call follows it.
    fn run_op(&self, op: Op, mut on_event: impl FnMut(&Event) -> ControlFlow<()>) -> Result<Event, Error> {
        if thread::current().id() == self.shared.thread_id {
            return Err(Error::OnDriverThread);
        }
        let (sender, receiver) = mpsc::channel();
        self.send(Command::Start { op, events: sender, started: None })?;
        let mut stopped = false;
        loop {
            match receiver.recv() {
                Ok(Ok(event @ (Event::Reply { op, .. } | Event::Peers { op, .. } | Event::ItemFound { op, .. }))) => {
                    if !stopped && on_event(&event).is_break() {
                        stopped = true;
                        // If the driver is already gone, the shut-down result follows anyway.
                        let _ = self.send(Command::Stop(op));
                    }
                }
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(refusal)) => return Err(refusal.into()),
                Err(_) => return Err(SHUT_DOWN),
            }
        }
    }

    /// Runs a lookup, passing its replies to `on_reply`.
    fn lookup(&self, op: Op, mut on_reply: impl FnMut(&Reply) -> ControlFlow<()>) -> Result<LookupSummary, Error> {
        let on_event = |event: &Event| match event {
            Event::Reply { reply, .. } => on_reply(reply),
            _ => ControlFlow::Continue(()),
        };
        summary(self.run_op(op, on_event)?)
    }
}

/// A lookup's result from its last event.
fn summary(event: Event) -> Result<LookupSummary, Error> {
    match LookupSummary::from_event(Some(event)) {
        summary if summary.outcome == LookupOutcome::ShutDown => Err(SHUT_DOWN),
        summary => Ok(summary),
    }
}

impl Shared {
    fn wake(&self) {
        if let Some(socket) = lock(&self.waker).as_ref() {
            if let Err(error) = socket.send_to(&[], self.wake_addr) {
                tracing::debug!(%error, "wake-up datagram not sent");
            }
        }
    }

    fn shutdown(&self) {
        if self.commands.send(Command::Close).is_ok() {
            self.wake();
        }
        if thread::current().id() != self.thread_id {
            // Held while joining, so that a concurrent `shutdown` returns only after the end too.
            let mut thread = lock(&self.thread);
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
        lock(&self.waker).take();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

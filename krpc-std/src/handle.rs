//! [`Krpc`]: the blocking handle to a driver running on its own thread.

use std::net::{SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, ThreadId};

use krpc_core::wire::Dictionary;
use krpc_core::{
    CommandError, Endpoint, Event, IncomingQuery, Instant, LookupNode, LookupOutcome, NodeId, NodeInfo, OpId, Peer,
    Query, Reply, ReplyTo,
};

use crate::error::SHUT_DOWN;
use crate::worker::{self, Command, Responder, Sink, Worker};
use crate::{Builder, Driver, Error};

/// How many incoming queries or routing events wait for a slow receiver before new ones are
/// dropped.
const CHANNEL_CAP: usize = 1024;

/// How a `closest` or `populate` ended (k-rpc's `cb(null, n)`, with the nodes found).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupSummary {
    /// Successful replies with a valid id.
    pub replies: usize,
    /// The closest nodes that answered, nearest first, at most `k`, with their tokens.
    pub closest: Vec<LookupNode>,
    /// `Completed`, or `Stopped` when the callback returned `Break`.
    pub outcome: LookupOutcome,
}

/// A blocking handle to a KRPC endpoint whose engine and socket live on a background thread.
///
/// Cloneable, `Send + Sync`: any thread may call it, and several calls may wait at once.
/// Calls block their caller until the engine has an answer. [`shutdown`](Self::shutdown), or
/// dropping the last handle, stops the thread and closes the socket; every call still waiting
/// then returns a shut-down error ([`Error::is_shut_down`]).
///
/// ```
/// use krpc_std::{Builder, Dictionary, Krpc, Query};
///
/// let server = Builder::new().bind(([127, 0, 0, 1], 0)).bootstrap(&[]).spawn()?;
/// server.on_query(|query, responder| {
///     if query.method() == b"echo" {
///         let hello = query.args().get(b"hello").and_then(|v| v.as_int()).unwrap_or(0);
///         let _ = responder.respond(Dictionary::new().with_int("hello", hello), &[]);
///     }
/// })?;
/// let client = Krpc::builder().bind(([127, 0, 0, 1], 0)).bootstrap(&[]).spawn()?;
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
    id: NodeId,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl Krpc {
    /// A [`Builder`], to configure and [`spawn`](Builder::spawn) a driver.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start(driver: Driver) -> Result<Krpc, Error> {
        let waker = driver.socket().try_clone()?;
        let (wake_addr, local_addr, id) = (driver.wake_addr(), driver.local_addr(), *driver.endpoint.id());
        let (commands, receiver) = mpsc::channel();
        let thread = thread::Builder::new().name("krpc-std".into()).spawn(move || worker::run(driver, receiver))?;
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

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// Sends one query and waits for its reply (k-rpc `query`). A KRPC error reply is
    /// `Error::Query(QueryError::Remote { .. })`.
    pub fn query(&self, peer: impl Into<Peer>, query: Query) -> Result<Reply, Error> {
        let peer = peer.into();
        match self.run_op(move |e, now| e.query(now, peer, query), |_| ControlFlow::Continue(()))? {
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
        on_reply: impl FnMut(&Reply) -> ControlFlow<()>,
    ) -> Result<usize, Error> {
        let peers: Vec<Peer> = peers.into_iter().map(Into::into).collect();
        match self.run_op(move |e, now| e.query_all(now, peers, query), on_reply)? {
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
        self.lookup(move |e, now| e.closest(now, target, query), on_reply)
    }

    /// A background lookup that fills the routing table (k-rpc `populate`); blocks until it
    /// is done.
    pub fn populate(&self, target: NodeId, query: Query) -> Result<LookupSummary, Error> {
        self.lookup(move |e, now| e.populate(now, target, query), |_| ControlFlow::Continue(()))
    }

    /// Joins the network: `populate` toward our own id with `find_node`.
    pub fn bootstrap(&self) -> Result<LookupSummary, Error> {
        self.lookup(|e, now| e.bootstrap(now), |_| ControlFlow::Continue(()))
    }

    /// Answers incoming queries with `handler`, on the driver's thread (k-rpc's `query`
    /// event). It must not block, nor call this handle's blocking methods (they return
    /// [`Error::OnDriverThread`]). Replaces any earlier handler or [`incoming`](Self::incoming)
    /// receiver. Pings are answered by the engine unless `Config::answer_pings` is off.
    pub fn on_query<F>(&self, handler: F) -> Result<(), Error>
    where
        F: FnMut(IncomingQuery, Responder<'_>) + Send + 'static,
    {
        self.call(move |w| w.sink = Sink::Handler(Box::new(handler)))
    }

    /// Incoming queries as a channel, to answer from any thread with
    /// [`respond`](Self::respond) or [`error`](Self::error). Replaces any earlier handler or
    /// receiver. Queries are dropped (and go unanswered) while 1024 wait.
    pub fn incoming(&self) -> Result<Receiver<IncomingQuery>, Error> {
        let (sender, receiver) = mpsc::sync_channel(CHANNEL_CAP);
        self.call(move |w| w.sink = Sink::Channel(sender))?;
        Ok(receiver)
    }

    /// Answers a query received through [`incoming`](Self::incoming) (k-rpc `response`).
    pub fn respond(&self, to: &ReplyTo, values: Dictionary, nodes: &[NodeInfo]) -> Result<(), Error> {
        let (to, nodes) = (to.clone(), nodes.to_vec());
        Ok(self.call(move |w| w.driver.endpoint.respond(&to, values, &nodes))??)
    }

    /// Answers a query received through [`incoming`](Self::incoming) with a KRPC error.
    pub fn error(&self, to: &ReplyTo, code: i64, message: impl AsRef<[u8]>) -> Result<(), Error> {
        let (to, message) = (to.clone(), message.as_ref().to_vec());
        Ok(self.call(move |w| w.driver.endpoint.error(&to, code, &message))??)
    }

    /// Routing-table events from now on: `NodeAdded`, `NodeRemoved`, `NodeUpdated` and, when
    /// `Config::auto_ping_swap` is off, `PingSwap` (answer it with [`swap`](Self::swap)).
    /// Every receiver gets every event; a receiver 1024 events behind misses new ones.
    pub fn events(&self) -> Result<Receiver<Event>, Error> {
        let (sender, receiver) = mpsc::sync_channel(CHANNEL_CAP);
        self.call(move |w| w.subscribers.push(sender))?;
        Ok(receiver)
    }

    /// A snapshot of the routing table.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, Error> {
        self.with_endpoint(|e| e.routing_table().iter().map(|c| NodeInfo::new(*c.id(), c.addr())).collect())
    }

    /// Asks a node to join the routing table: it is pinged and enters if it answers.
    pub fn add_node(&self, addr: SocketAddr, id: Option<NodeId>) -> Result<(), Error> {
        Ok(self.call(move |w| w.driver.endpoint.add_node(w.driver.now(), addr, id))??)
    }

    /// Removes a node from the routing table; returns whether it was there.
    pub fn remove_node(&self, id: NodeId) -> Result<bool, Error> {
        self.call(move |w| w.driver.endpoint.remove_node(&id))
    }

    /// Answers a `PingSwap`: `dead` leaves the table and `candidate` takes its place (k-rpc
    /// `swap`). Returns whether the swap happened.
    pub fn swap(&self, dead: NodeId, candidate: NodeInfo) -> Result<bool, Error> {
        self.call(move |w| w.driver.endpoint.swap(w.driver.now(), &dead, candidate))
    }

    /// Runs `f` on the engine, on the driver's thread, and returns its result: for getters
    /// such as the routing table, stats or configuration.
    pub fn with_endpoint<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Endpoint) -> R + Send + 'static,
    ) -> Result<R, Error> {
        self.call(move |w| f(&w.driver.endpoint))
    }

    /// Stops the driver: the engine is closed, every call still waiting (on any thread)
    /// returns a shut-down error ([`Error::is_shut_down`]), the thread ends and the socket is
    /// closed. Later calls return it too. Returns once the thread has ended (at once when called
    /// on the driver's own thread, which ends right after). Calling it again does nothing.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    fn send(&self, command: impl FnOnce(&mut Worker) + Send + 'static) -> Result<(), Error> {
        self.shared.commands.send(Box::new(command)).map_err(|_| SHUT_DOWN)?;
        self.shared.wake();
        Ok(())
    }

    /// Runs `f` on the driver's thread and waits for its result.
    fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Worker) -> R + Send + 'static) -> Result<R, Error> {
        if thread::current().id() == self.shared.thread_id {
            return Err(Error::OnDriverThread);
        }
        let (sender, receiver) = mpsc::sync_channel(1);
        self.send(move |w| drop(sender.send(f(w))))?;
        receiver.recv().map_err(|_| SHUT_DOWN)
    }

    /// Starts a command and waits for its final event, passing its replies to `on_reply`.
    fn run_op(
        &self,
        command: impl FnOnce(&mut Endpoint, Instant) -> Result<OpId, CommandError> + Send + 'static,
        mut on_reply: impl FnMut(&Reply) -> ControlFlow<()>,
    ) -> Result<Event, Error> {
        if thread::current().id() == self.shared.thread_id {
            return Err(Error::OnDriverThread);
        }
        let (sender, receiver) = mpsc::channel();
        self.send(move |w| w.start(command, sender))?;
        let mut stopped = false;
        loop {
            match receiver.recv() {
                Ok(Ok(Event::Reply { op, reply })) => {
                    if !stopped && on_reply(&reply).is_break() {
                        stopped = true;
                        // If the driver is already gone, the shut-down result follows anyway.
                        let _ = self.send(move |w| {
                            let _ = w.driver.endpoint.stop(op);
                        });
                    }
                }
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(refusal)) => return Err(refusal.into()),
                Err(_) => return Err(SHUT_DOWN),
            }
        }
    }

    fn lookup(
        &self,
        command: impl FnOnce(&mut Endpoint, Instant) -> Result<OpId, CommandError> + Send + 'static,
        on_reply: impl FnMut(&Reply) -> ControlFlow<()>,
    ) -> Result<LookupSummary, Error> {
        match self.run_op(command, on_reply)? {
            Event::LookupDone { outcome: LookupOutcome::ShutDown, .. } => Err(SHUT_DOWN),
            Event::LookupDone { replies, closest, outcome, .. } => Ok(LookupSummary { replies, closest, outcome }),
            _ => Err(SHUT_DOWN),
        }
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
        if self.commands.send(Box::new(Worker::close)).is_ok() {
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

//! The driver's thread: runs the engine's loop and routes each event to whoever waits for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use krpc_core::wire::Dictionary;
use krpc_core::{CommandError, Endpoint, Event, IncomingQuery, NodeId, NodeInfo, OpId, ReplyTo};

use crate::Driver;
pub(crate) use crate::engine_op::{Answer, Op};

/// How long the thread waits at most without news. Handles wake it at once with an empty
/// datagram to its own socket; this bounds the delay should such a datagram ever be lost.
const WAKE_CAP: Duration = Duration::from_millis(100);

/// One order from a handle, matched on the driver's thread. Each carries its own reply
/// channel, if it has a result; the worker owns everything else.
pub(crate) enum Command {
    /// Starts an engine operation; its events (or the refusal) go to `events`, and its id to
    /// `started` if given.
    Start { op: Op, events: OpSender, started: Option<Reply<OpId>> },
    /// Stops an operation if it still runs.
    Stop(OpId),
    /// Incoming queries go there from now on.
    Sink(Sink, Reply<()>),
    /// Routing-table events go to this channel too.
    Subscribe(SyncSender<Event>, Reply<()>),
    /// Answers an incoming query.
    Answer { to: ReplyTo, answer: Answer, reply: Reply<Result<(), CommandError>> },
    /// Runs a read-only function of the engine; it sends its own result.
    Inspect(Box<dyn FnOnce(&Endpoint) + Send>),
    /// [`Endpoint::swap`].
    Swap { dead: NodeId, candidate: NodeInfo, reply: Reply<bool> },
    /// [`Endpoint::add_node`].
    AddNode { addr: SocketAddr, id: Option<NodeId>, reply: Reply<Result<(), CommandError>> },
    /// [`Endpoint::insert_node`].
    InsertNode { node: NodeInfo, reply: Reply<bool> },
    /// [`Endpoint::remove_node`].
    RemoveNode { id: NodeId, reply: Reply<bool> },
    /// Closes the engine: every operation ends with a shut-down result, then the thread ends.
    Close,
}

/// Where a command's result goes.
pub(crate) type Reply<T> = SyncSender<T>;

/// Where the events of one command go: its `Reply`s, then its final event (or the refusal).
pub(crate) type OpSender = Sender<Result<Event, CommandError>>;

/// A query handler, as given to [`Krpc::on_query`](crate::Krpc::on_query).
pub(crate) type Handler = Box<dyn FnMut(IncomingQuery, Responder<'_>) + Send>;

/// Who gets incoming queries.
pub(crate) enum Sink {
    /// Nobody: they go unanswered.
    Drop,
    Handler(Handler),
    Channel(SyncSender<IncomingQuery>),
}

/// Everything the driver's thread owns.
struct Worker {
    driver: Driver,
    sink: Sink,
    /// Without the node layer the engine hands queries to the sink: while it drops them the
    /// node answers pings only and must say so with `ro=1` (BEP 43). Set when the configuration
    /// left that to the driver (no node layer, not read-only).
    auto_read_only: bool,
    subscribers: Vec<SyncSender<Event>>,
    waiters: HashMap<OpId, OpSender>,
    /// Our node id as the handles see it; it changes on [`Event::IdChanged`] (BEP 42).
    id: Arc<Mutex<NodeId>>,
}

impl Worker {
    /// Carries out one command from a handle. A handle that stopped waiting gets no result:
    /// sends may fail.
    fn command(&mut self, command: Command) {
        let now = self.driver.now();
        let endpoint = &mut self.driver.endpoint;
        match command {
            Command::Start { op, events, started } => match op.start(endpoint, now) {
                Ok(op) => {
                    self.waiters.insert(op, events);
                    if let Some(started) = started {
                        let _ = started.send(op);
                    }
                }
                Err(refusal) => drop(events.send(Err(refusal))),
            },
            Command::Stop(op) => drop(endpoint.stop(op)),
            Command::Sink(sink, reply) => {
                self.sink = sink;
                self.sync_read_only();
                let _ = reply.send(());
            }
            Command::Subscribe(sender, reply) => {
                self.subscribers.push(sender);
                let _ = reply.send(());
            }
            Command::Answer { to, answer, reply } => {
                let _ = reply.send(answer.send(endpoint, &to));
            }
            Command::Inspect(f) => f(endpoint),
            Command::Swap { dead, candidate, reply } => drop(reply.send(endpoint.swap(now, &dead, candidate))),
            Command::AddNode { addr, id, reply } => drop(reply.send(endpoint.add_node(now, addr, id))),
            Command::InsertNode { node, reply } => drop(reply.send(endpoint.insert_node(now, node))),
            Command::RemoveNode { id, reply } => drop(reply.send(endpoint.remove_node(&id))),
            Command::Close => self.close(),
        }
    }

    /// Closes the engine: every running command ends with a shut-down result.
    fn close(&mut self) {
        let now = self.driver.now();
        self.driver.endpoint.close(now);
        self.route();
    }

    /// Drains the engine's events, then sends what answering them queued.
    fn route(&mut self) {
        self.route_events();
        self.driver.flush();
    }

    /// Drains the engine's events; returns whether there were any.
    fn route_events(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.driver.endpoint.poll_event() {
            any = true;
            match event {
                // A command's progress: to whoever waits for it (lookups the engine starts
                // itself, such as bucket refreshes, are nobody's).
                Event::Reply { op, .. }
                | Event::Peers { op, .. }
                | Event::ItemFound { op, .. }
                | Event::CrawlFound { op, .. } => {
                    if let Some(waiter) = self.waiters.get(&op) {
                        let _ = waiter.send(Ok(event));
                    }
                }
                Event::QueryDone { op, .. }
                | Event::QueryAllDone { op, .. }
                | Event::LookupDone { op, .. }
                | Event::AnnounceDone { op, .. }
                | Event::ScrapeDone { op, .. }
                | Event::CrawlDone { op, .. }
                | Event::GetItemDone { op, .. }
                | Event::PutItemDone { op, .. } => {
                    if let Some(waiter) = self.waiters.remove(&op) {
                        let _ = waiter.send(Ok(event));
                    }
                }
                Event::Query(query) => match &mut self.sink {
                    Sink::Handler(handler) => {
                        let to = query.reply_to().clone();
                        handler(query, Responder { endpoint: &mut self.driver.endpoint, to });
                    }
                    Sink::Channel(channel) => match channel.try_send(query) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => tracing::debug!("incoming query dropped: receiver full"),
                        Err(TrySendError::Disconnected(_)) => {
                            self.sink = Sink::Drop;
                            self.sync_read_only();
                        }
                    },
                    Sink::Drop => {}
                },
                Event::IdChanged { id, .. } => {
                    *self.id.lock().unwrap_or_else(PoisonError::into_inner) = id;
                    self.broadcast(event);
                }
                event => self.broadcast(event),
            }
        }
        any
    }

    /// Routing-table changes go to every subscriber with room; gone ones are forgotten.
    /// `ro=1` while the sink drops queries (see `auto_read_only`).
    fn sync_read_only(&mut self) {
        if self.auto_read_only {
            self.driver.endpoint.set_serving(!matches!(self.sink, Sink::Drop));
        }
    }

    fn broadcast(&mut self, event: Event) {
        self.subscribers.retain(|s| !matches!(s.try_send(event.clone()), Err(TrySendError::Disconnected(_))));
    }
}

/// The thread's body: the engine's run loop, with handles' commands as a second input.
pub(crate) fn run(driver: Driver, commands: Receiver<Command>, id: Arc<Mutex<NodeId>>) {
    let config = driver.endpoint.config();
    let auto_read_only = config.dht.is_none() && !config.read_only;
    let mut w =
        Worker { driver, sink: Sink::Drop, auto_read_only, subscribers: Vec::new(), waiters: HashMap::new(), id };
    w.sync_read_only();
    while !w.driver.endpoint.is_closed() {
        if let Err(error) = w.driver.step(Some(WAKE_CAP)) {
            tracing::error!(%error, "socket failed; shutting down");
            break;
        }
        // `step` has sent what the datagram and the timers queued; only answers given by a
        // handler are left to send.
        if w.route_events() {
            w.driver.flush();
        }
        loop {
            match commands.try_recv() {
                Ok(command) => {
                    w.command(command);
                    w.route();
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    w.close();
                    break;
                }
            }
        }
    }
    w.close();
    // Commands that raced with the shutdown are refused by the closed engine.
    while let Ok(command) = commands.try_recv() {
        w.command(command);
    }
}

/// Answers one incoming query, from inside a handler given to
/// [`Krpc::on_query`](crate::Krpc::on_query). Dropping it without answering leaves the
/// query unanswered.
#[derive(Debug)]
pub struct Responder<'a> {
    endpoint: &'a mut Endpoint,
    to: ReplyTo,
}

impl Responder<'_> {
    /// Answers with `values` (`r`) and, when given, `nodes` as compact node info; the engine
    /// adds our id (k-rpc `response`).
    pub fn respond(self, values: Dictionary, nodes: &[NodeInfo]) -> Result<(), CommandError> {
        self.endpoint.respond(&self.to, values, nodes)
    }

    /// Answers with a KRPC error `[code, message]` (k-rpc `error`).
    pub fn error(self, code: i64, message: impl AsRef<[u8]>) -> Result<(), CommandError> {
        self.endpoint.error(&self.to, code, message.as_ref())
    }

    /// The engine, read-only: the routing table (to answer `find_node`), our id, stats.
    pub fn endpoint(&self) -> &Endpoint {
        self.endpoint
    }
}

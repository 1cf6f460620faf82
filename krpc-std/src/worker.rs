//! The driver's thread: runs the engine's loop and routes each event to whoever waits for it.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use krpc_core::wire::Dictionary;
use krpc_core::{CommandError, Endpoint, Event, IncomingQuery, Instant, NodeInfo, OpId, ReplyTo};

use crate::Driver;

/// How long the thread waits at most without news. Handles wake it at once with an empty
/// datagram to its own socket; this bounds the delay should such a datagram ever be lost.
const WAKE_CAP: Duration = Duration::from_millis(100);

/// Work sent by a handle, run on the driver's thread.
pub(crate) type Command = Box<dyn FnOnce(&mut Worker) + Send>;

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
pub(crate) struct Worker {
    pub(crate) driver: Driver,
    pub(crate) sink: Sink,
    pub(crate) subscribers: Vec<SyncSender<Event>>,
    waiters: HashMap<OpId, OpSender>,
}

impl Worker {
    /// Issues a command that reports through events; they go to `events`.
    pub(crate) fn start(
        &mut self,
        command: impl FnOnce(&mut Endpoint, Instant) -> Result<OpId, CommandError>,
        events: OpSender,
    ) {
        let now = self.driver.now();
        match command(&mut self.driver.endpoint, now) {
            Ok(op) => drop(self.waiters.insert(op, events)),
            Err(refusal) => drop(events.send(Err(refusal))),
        }
    }

    /// Closes the engine: every running command ends with a shut-down result.
    pub(crate) fn close(&mut self) {
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
                Event::Reply { op, .. } | Event::Peers { op, .. } => {
                    if let Some(waiter) = self.waiters.get(&op) {
                        let _ = waiter.send(Ok(event));
                    }
                }
                Event::QueryDone { op, .. }
                | Event::QueryAllDone { op, .. }
                | Event::LookupDone { op, .. }
                | Event::AnnounceDone { op, .. } => {
                    if let Some(waiter) = self.waiters.remove(&op) {
                        let _ = waiter.send(Ok(event));
                    }
                }
                Event::Query(query) => match &mut self.sink {
                    Sink::Handler(handler) => {
                        let to = query.reply_to().clone();
                        handler(query, Responder { endpoint: &mut self.driver.endpoint, to });
                    }
                    Sink::Channel(channel) => {
                        if channel.try_send(query).is_err() {
                            tracing::debug!("incoming query dropped: receiver full or gone");
                        }
                    }
                    Sink::Drop => {}
                },
                // Routing-table changes, to every subscriber with room; gone ones are forgotten.
                event => self
                    .subscribers
                    .retain(|s| !matches!(s.try_send(event.clone()), Err(TrySendError::Disconnected(_)))),
            }
        }
        any
    }
}

/// The thread's body: the engine's run loop, with handles' commands as a second input.
pub(crate) fn run(driver: Driver, commands: Receiver<Command>) {
    let mut w = Worker { driver, sink: Sink::Drop, subscribers: Vec::new(), waiters: HashMap::new() };
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
                    command(&mut w);
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
        command(&mut w);
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

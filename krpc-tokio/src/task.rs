//! The driver task: the one owner of the socket, the clock and the engine.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::{CommandError, Endpoint, Event, IncomingQuery, Instant, NodeId, OpId};
use krpc_std::udp::{self, Inbox, MAX_BATCH, Outbox};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant as TokioInstant;
use tracing::{Span, debug, trace, warn};

use crate::command::{Command, Key, Op, Request};

/// Datagrams read per wakeup (in batches of up to [`MAX_BATCH`] per system call) before
/// commands and timers get their turn.
const RECEIVE_BUDGET: usize = 64;

/// A running command: where its events go.
struct Running {
    key: Key,
    events: mpsc::UnboundedSender<Event>,
    span: Span,
}

/// Fields drop in order: the socket closes before the subscriptions end.
struct Task {
    socket: Socket,
    endpoint: Endpoint,
    origin: TokioInstant,
    local_addr: SocketAddr,
    /// Datagrams received, up to [`MAX_BATCH`] per system call on a busy socket.
    inbox: Inbox,
    /// Datagrams to send, up to [`MAX_BATCH`] per system call.
    outbox: Outbox,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Given to responders; unlike handles, it does not keep the task alive.
    weak: mpsc::WeakUnboundedSender<Command>,
    ops: HashMap<OpId, Running>,
    keys: HashMap<Key, OpId>,
    incoming: Option<mpsc::Sender<Request>>,
    /// Without the node layer, the engine hands queries to [`incoming`](Self::incoming): while
    /// nobody takes them the node answers pings only and must say so with `ro=1` (BEP 43).
    /// Set when the configuration left that to the driver (no node layer, not read-only).
    auto_read_only: bool,
    events: Vec<mpsc::Sender<Event>>,
    /// Our node id as the handles see it; it changes on [`Event::IdChanged`] (BEP 42).
    id: watch::Sender<NodeId>,
}

/// What a handle needs of a started task.
pub(crate) struct Started {
    /// Where commands go; the task stops when every sender is gone.
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// Changes (closes) once the task has ended and the socket is closed.
    pub(crate) closed: watch::Receiver<()>,
    /// Our node id, updated on [`Event::IdChanged`].
    pub(crate) id: watch::Receiver<NodeId>,
}

/// Starts the task on the current runtime.
pub(crate) fn spawn(
    mut endpoint: Endpoint,
    socket: UdpSocket,
    local_addr: SocketAddr,
    origin: TokioInstant,
) -> Started {
    let auto_read_only = endpoint.config().dht.is_none() && !endpoint.config().read_only;
    if auto_read_only {
        endpoint.set_serving(false);
    }
    let (commands, receiver) = mpsc::unbounded_channel();
    let (done, closed) = watch::channel(());
    let config = endpoint.config();
    let (id, id_receiver) = watch::channel(*endpoint.id());
    // One byte longer than the engine accepts: a longer datagram is cut short, and the engine
    // drops it as too long.
    let max = config.max_datagram_len;
    let task = Task {
        inbox: Inbox::new(max.min(65_535) + 1),
        outbox: Outbox::new(max),
        local_addr,
        socket: Socket(socket),
        endpoint,
        origin,
        commands: receiver,
        weak: commands.downgrade(),
        ops: HashMap::new(),
        keys: HashMap::new(),
        incoming: None,
        auto_read_only,
        events: Vec::new(),
        id,
    };
    tokio::spawn(async move {
        let _done = done; // dropped after the task: `shutdown()` returns once the socket is closed
        task.run().await;
    });
    Started { commands, closed, id: id_receiver }
}

impl Task {
    /// The engine's time: elapsed since the driver started (tokio's clock).
    fn now(&self) -> Instant {
        Instant::from_duration(self.origin.elapsed())
    }

    async fn run(mut self) {
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(self.origin));
        loop {
            let now = self.now();
            self.flush(now).await;
            let Some(deadline) = self.endpoint.poll_timeout() else { break };
            // Checked here, not only in the select: a busy socket must not starve the timers.
            if deadline <= now {
                self.endpoint.handle_timeout(now);
                continue;
            }
            let far = || TokioInstant::now() + Duration::from_secs(86_400 * 365);
            let deadline = self.origin.checked_add(deadline.as_duration()).unwrap_or_else(far);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            // Commands first: the application's orders are applied in the order given, before
            // any datagram that follows them.
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => self.close("every handle was dropped"),
                },
                ready = self.socket.0.readable() => match ready {
                    Ok(()) => self.receive().await,
                    Err(error) => {
                        warn!(%error, "socket failed");
                        self.close("socket failed");
                    }
                },
                () = sleep.as_mut() => {} // the deadline is handled at the top of the loop
            }
        }
        debug!(addr = %self.local_addr, "driver stopped");
    }

    /// Carries out one command from a handle.
    fn command(&mut self, command: Command) {
        let now = self.now();
        // A handle that stopped waiting (its future dropped) gets no result: sends may fail.
        match command {
            Command::Start { key, op, span, events, started } => {
                let _ = started.send(self.start(now, key, op, span, events));
            }
            Command::Stop(key) => self.stop(key),
            Command::Answer { to, answer } => {
                if let Err(error) = answer.send(&mut self.endpoint, &to) {
                    debug!(to = %to.addr, %error, "answer dropped");
                }
            }
            Command::Incoming(sender) => {
                self.incoming = Some(sender);
                self.sync_read_only();
            }
            Command::Subscribe(sender) => self.events.push(sender),
            Command::Inspect(f) => f(&self.endpoint),
            Command::Swap { dead, candidate, reply } => {
                let _ = reply.send(self.endpoint.swap(now, &dead, candidate));
            }
            Command::AddNode { addr, id, reply } => {
                let _ = reply.send(self.endpoint.add_node(now, addr, id));
            }
            Command::InsertNode { node, reply } => {
                let _ = reply.send(self.endpoint.insert_node(now, node));
            }
            Command::RemoveNode { id, reply } => {
                let _ = reply.send(self.endpoint.remove_node(&id));
            }
            Command::Close => self.close("shutdown requested"),
        }
    }

    /// Closes the engine: every running command ends with a shut-down event, then the loop
    /// stops.
    fn close(&mut self, reason: &'static str) {
        debug!(reason, "closing");
        let now = self.now();
        self.endpoint.close(now);
    }

    /// Reads the datagrams waiting, a batch per system call, feeding each batch to the engine
    /// and sending its answers before the next.
    async fn receive(&mut self) {
        let mut budget = RECEIVE_BUDGET;
        while budget > 0 {
            match self.inbox.receive(&self.socket) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors reported by some platforms; that datagram is simply gone.
                Err(error) => {
                    debug!(%error, "receive failed");
                    budget -= 1;
                    continue;
                }
            }
            // One clock read per batch: it stamps the datagrams (all waiting when it was read)
            // and their answers.
            let now = self.now();
            for i in 0..self.inbox.len() {
                // IPv4-mapped senders come back as IPv4 (see `krpc_std::udp`).
                let (from, datagram) = self.inbox.get(i);
                trace!(%from, len = datagram.len(), "datagram");
                self.endpoint.handle_datagram(now, from, datagram);
            }
            budget = budget.saturating_sub(self.inbox.len().max(1));
            self.flush(now).await;
        }
    }

    /// Sends every datagram the engine has, up to [`MAX_BATCH`] per system call, then hands
    /// out every event. `now` was read by the caller just before; it is read again only after
    /// waiting for room in the socket's buffer.
    async fn flush(&mut self, mut now: Instant) {
        loop {
            let taken = self.outbox.fill(&mut self.endpoint, now, self.local_addr);
            let mut sent = 0;
            while sent < taken {
                // Straight to the system call while the socket is writable (nearly always); the
                // future, and the clock read after it, only when it is not.
                let error = match self.outbox.send(&self.socket, sent) {
                    Ok(n) => {
                        sent += n;
                        continue;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        let ready = self.socket.0.writable().await;
                        now = self.now();
                        match ready {
                            Ok(()) => continue,
                            Err(error) => error,
                        }
                    }
                    Err(error) => error,
                };
                let (transmit, to) = self.outbox.transmit(sent);
                debug!(%to, %error, "send failed");
                self.endpoint.fail_transmit(now, transmit);
                sent += 1;
            }
            if taken < MAX_BATCH {
                break;
            }
        }
        while let Some(event) = self.endpoint.poll_event() {
            self.deliver(event);
        }
    }

    /// Starts an engine operation; its events will go to `events`.
    fn start(
        &mut self,
        now: Instant,
        key: Key,
        op: Op,
        span: Span,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<OpId, CommandError> {
        let op = op.start(&mut self.endpoint, now).inspect_err(|error| debug!(parent: &span, %error, "refused"))?;
        debug!(parent: &span, op = op.get(), "started");
        self.keys.insert(key, op);
        self.ops.insert(op, Running { key, events, span });
        Ok(op)
    }

    /// Stops (or cancels) a command if it still runs.
    fn stop(&mut self, key: Key) {
        if let Some(&op) = self.keys.get(&key) {
            let _ = self.endpoint.stop(op);
        }
    }

    /// Routes one event to whoever waits for it.
    fn deliver(&mut self, event: Event) {
        let (op, last) = match event {
            Event::Query(query) => return self.offer(query),
            Event::Reply { op, .. }
            | Event::Peers { op, .. }
            | Event::ItemFound { op, .. }
            | Event::CrawlFound { op, .. } => (op, false),
            Event::QueryDone { op, .. }
            | Event::QueryAllDone { op, .. }
            | Event::LookupDone { op, .. }
            | Event::AnnounceDone { op, .. }
            | Event::ScrapeDone { op, .. }
            | Event::CrawlDone { op, .. }
            | Event::GetItemDone { op, .. }
            | Event::PutItemDone { op, .. } => (op, true),
            Event::IdChanged { id, .. } => {
                self.id.send_replace(id);
                return self.broadcast(event);
            }
            event => return self.broadcast(event),
        };
        // Lookups the engine starts itself (bucket refresh) are nobody's.
        let Some(running) = self.ops.get(&op) else { return };
        if last {
            debug!(parent: &running.span, ?event, "done");
        }
        let _ = running.events.send(event);
        if let Some(running) = last.then(|| self.ops.remove(&op)).flatten() {
            self.keys.remove(&running.key);
        }
    }

    /// Routing-table events go to every subscriber with room for them.
    fn broadcast(&mut self, event: Event) {
        self.events.retain(|sender| match sender.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                debug!("event subscriber is full; event dropped");
                true
            }
            Err(TrySendError::Closed(_)) => false,
        });
    }

    fn offer(&mut self, query: IncomingQuery) {
        trace!(from = %query.from(), method = %String::from_utf8_lossy(query.method()), "incoming query");
        let Some(sender) = &self.incoming else { return };
        match sender.try_send(Request::new(query, self.weak.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(request)) => debug!(from = %request.from(), "incoming queue full; query dropped"),
            Err(TrySendError::Closed(_)) => {
                self.incoming = None;
                self.sync_read_only();
            }
        }
    }

    /// `ro=1` while nobody takes incoming queries (see `auto_read_only`).
    fn sync_read_only(&mut self) {
        if self.auto_read_only {
            self.endpoint.set_serving(self.incoming.is_some());
        }
    }
}

/// The tokio socket as [`krpc_std::udp`] drives it: no call waits (the task awaits readiness
/// instead), and batched calls go through `try_io`, which clears the socket's readiness on
/// `WouldBlock` so that the next `readable()`/`writable()` really waits.
struct Socket(UdpSocket);

impl udp::Socket for Socket {
    const WAITS: bool = false;

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.try_recv_from(buf)
    }

    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.try_send_to(buf, to)
    }

    fn io<R>(&self, direction: udp::Direction, call: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        let interest = match direction {
            udp::Direction::Receive => tokio::io::Interest::READABLE,
            udp::Direction::Send => tokio::io::Interest::WRITABLE,
        };
        self.0.try_io(interest, call)
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for Socket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

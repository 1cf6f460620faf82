//! What the task hands back: reply streams, subscriptions and responders.

use std::future::poll_fn;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use krpc_core::wire::Dictionary;
use krpc_core::{
    CommandError, Endpoint, Event, IncomingQuery, LookupNode, LookupOutcome, NodeInfo, QueryError, Reply, ReplyTo,
};
use tokio::sync::mpsc;
use tracing::debug;

use crate::task::{Command, Key, Task};
use crate::{Error, SHUT_DOWN};

/// Stops a command when dropped, unless disarmed (the command ended).
#[derive(Debug)]
pub(crate) struct StopOnDrop {
    key: Key,
    commands: Option<mpsc::WeakUnboundedSender<Command>>,
}

impl StopOnDrop {
    pub(crate) fn new(key: Key, commands: mpsc::WeakUnboundedSender<Command>) -> Self {
        StopOnDrop { key, commands: Some(commands) }
    }

    pub(crate) fn disarm(&mut self) {
        self.commands = None;
    }

    fn stop(&mut self) {
        let key = self.key;
        if let Some(commands) = self.commands.take().and_then(|weak| weak.upgrade()) {
            let _ = commands.send(Box::new(move |task: &mut Task| task.stop(key)));
        }
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a lookup ([`Rpc::closest`](crate::Rpc::closest), [`Rpc::populate`](crate::Rpc::populate))
/// ended (k-rpc's `cb(null, n)`, plus the nodes found).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupSummary {
    /// Successful replies with a valid id.
    pub replies: usize,
    /// The closest responders, nearest first, at most `k`, with their write tokens.
    pub closest: Vec<LookupNode>,
    /// Why it ended.
    pub outcome: LookupOutcome,
}

impl LookupSummary {
    /// From the lookup's last event; `None` when the driver stopped without one.
    pub(crate) fn from_event(event: Option<Event>) -> Self {
        match event {
            Some(Event::LookupDone { replies, closest, outcome, .. }) => LookupSummary { replies, closest, outcome },
            _ => LookupSummary { replies: 0, closest: Vec::new(), outcome: LookupOutcome::ShutDown },
        }
    }
}

/// A `query_all`'s result from its last event.
pub(crate) fn query_all_end(event: Option<Event>) -> Result<usize, QueryError> {
    match event {
        Some(Event::QueryAllDone { result, .. }) => result,
        _ => Err(QueryError::ShutDown),
    }
}

/// The replies of a running [`closest`](crate::Rpc::closest) or
/// [`query_all`](crate::Rpc::query_all), as they arrive: a [`Stream`] (also usable through
/// [`next`](Self::next)) that ends with the command. Its result is then in [`end`](Self::end).
///
/// Dropping it before the end stops the command: no further queries are sent.
///
/// # Example
/// ```
/// use krpc_tokio::{Config, NodeId, Query, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let b = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// a.ping(b.local_addr()).await?; // now a knows b
///
/// let target = NodeId::from_array([7; 20]);
/// // b does not answer find_node (no one serves its incoming queries), so the lookup
/// // would wait for a timeout: stop it instead.
/// let mut lookup = a.closest(target, Query::find_node(&target)).await?;
/// lookup.stop();
/// while let Some(reply) = lookup.next().await {
///     println!("{} answered", reply.from());
/// }
/// assert_eq!(lookup.end().unwrap().outcome, krpc_tokio::LookupOutcome::Stopped);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Replies<T> {
    events: mpsc::UnboundedReceiver<Event>,
    end: Option<T>,
    guard: StopOnDrop,
    to_end: fn(Option<Event>) -> T,
}

/// A running lookup: [`Rpc::closest`](crate::Rpc::closest).
pub type Lookup = Replies<LookupSummary>;

/// A running [`Rpc::query_all`](crate::Rpc::query_all): ends with the number of successful
/// replies, or the first 3xx remote error when none succeeded (BEP 44), else `AllFailed`.
pub type QueryAll = Replies<Result<usize, QueryError>>;

impl<T> Replies<T> {
    pub(crate) fn new(
        events: mpsc::UnboundedReceiver<Event>,
        guard: StopOnDrop,
        to_end: fn(Option<Event>) -> T,
    ) -> Self {
        Replies { events, end: None, guard, to_end }
    }

    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        if self.end.is_some() {
            return Poll::Ready(None);
        }
        match ready!(self.events.poll_recv(cx)) {
            Some(Event::Reply { reply, .. }) => Poll::Ready(Some(reply)),
            last => {
                self.end = Some((self.to_end)(last));
                self.guard.disarm();
                Poll::Ready(None)
            }
        }
    }

    /// The next reply; `None` once the command has ended.
    pub async fn next(&mut self) -> Option<Reply> {
        poll_fn(|cx| self.poll_reply(cx)).await
    }

    /// The result, once the stream has ended.
    pub fn end(&self) -> Option<&T> {
        self.end.as_ref()
    }

    /// Stops the command now (k-rpc's `visit` returning `false`): no further queries, no
    /// further replies; the stream ends.
    pub fn stop(&mut self) {
        self.guard.stop();
    }

    /// Skips the remaining replies and returns the result.
    pub async fn finish(mut self) -> T {
        while self.next().await.is_some() {}
        let to_end = self.to_end;
        self.end.take().unwrap_or_else(|| to_end(None))
    }
}

impl<T: Unpin> Stream for Replies<T> {
    type Item = Reply;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        self.get_mut().poll_reply(cx)
    }
}

/// A stream of [`Request`]s ([`Rpc::incoming`](crate::Rpc::incoming)) or routing
/// [`Event`](krpc_core::Event)s ([`Rpc::events`](crate::Rpc::events)). It ends when the
/// driver stops.
///
/// # Example
/// ```
/// use krpc_tokio::{Config, Event, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let b = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let mut events = a.events();
/// a.ping(b.local_addr()).await?;
/// assert!(matches!(events.next().await, Some(Event::NodeAdded(node)) if node.id == b.id()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Subscription<T> {
    receiver: mpsc::Receiver<T>,
}

impl<T> Subscription<T> {
    pub(crate) fn new(receiver: mpsc::Receiver<T>) -> Self {
        Subscription { receiver }
    }

    /// The next item; `None` once the driver has stopped (or a newer `incoming()` took over).
    pub async fn next(&mut self) -> Option<T> {
        self.receiver.recv().await
    }
}

impl<T> Stream for Subscription<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

/// A query another node sent us, with what it takes to answer it (k-rpc's `query` event).
/// It dereferences to the [`IncomingQuery`]: `method()`, `args()`, `from()`, `sender_id()`.
///
/// Answer with [`respond`](Self::respond) or [`error`](Self::error); dropping it leaves the
/// query unanswered. Answering never waits: it fails only when the driver has stopped.
///
/// # Example
/// ```
/// use krpc_tokio::wire::Dictionary;
/// use krpc_tokio::{Config, Query, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let mut incoming = server.incoming();
/// tokio::spawn(async move {
///     while let Some(request) = incoming.next().await {
///         let text = request.args().get(b"text").and_then(|v| v.as_bytes()).unwrap_or_default().to_vec();
///         let _ = request.respond(Dictionary::new().with_bytes("text", text), &[]);
///     }
/// });
///
/// let client = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let echo = Query::new("echo", Dictionary::new().with_bytes("text", "hi")).unwrap();
/// let reply = client.query(server.local_addr(), echo).await?;
/// assert_eq!(reply.values().unwrap().get(b"text").and_then(|v| v.as_bytes()), Some(&b"hi"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Request {
    query: IncomingQuery,
    commands: mpsc::WeakUnboundedSender<Command>,
}

impl Request {
    pub(crate) fn new(query: IncomingQuery, commands: mpsc::WeakUnboundedSender<Command>) -> Self {
        Request { query, commands }
    }

    fn answer(
        self,
        f: impl FnOnce(&mut Endpoint, &ReplyTo) -> Result<(), CommandError> + Send + 'static,
    ) -> Result<(), Error> {
        let to = self.query.reply_to().clone();
        let command: Command = Box::new(move |task| {
            if let Err(error) = f(&mut task.endpoint, &to) {
                debug!(to = %to.addr, %error, "answer dropped");
            }
        });
        match self.commands.upgrade() {
            Some(commands) if commands.send(command).is_ok() => Ok(()),
            _ => Err(SHUT_DOWN),
        }
    }

    /// Answers with `values` as `r` (k-rpc `response`); `r.id` is filled in, and `nodes`
    /// are written as compact node info (`nodes`, `nodes6`).
    pub fn respond(self, values: Dictionary, nodes: &[NodeInfo]) -> Result<(), Error> {
        let nodes = nodes.to_vec();
        self.answer(move |endpoint, to| endpoint.respond(to, values, &nodes))
    }

    /// Answers with a KRPC error `[code, message]` (k-rpc `error`; BEP 5 codes 201–204).
    pub fn error(self, code: i64, message: impl AsRef<[u8]>) -> Result<(), Error> {
        let message = message.as_ref().to_vec();
        self.answer(move |endpoint, to| endpoint.error(to, code, &message))
    }
}

impl Deref for Request {
    type Target = IncomingQuery;

    fn deref(&self) -> &IncomingQuery {
        &self.query
    }
}

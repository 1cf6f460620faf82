//! What handles ask of the driver task: [`Command`], an enum the task matches, and
//! [`Request`], an incoming query with the command that answers it.
//!
//! This module depends on no other module of the crate (only on the root's `Error`): the
//! handle, the streams and the task all depend on it, and not on each other in a cycle
//! (handle → stream, task; task → nothing but this and `krpc_std::udp`).

use std::fmt;
use std::ops::Deref;

use krpc_core::wire::Dictionary;
use krpc_core::{CommandError, Endpoint, Event, IncomingQuery, NodeId, NodeInfo, OpId, ReplyTo};
use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use crate::{Error, SHUT_DOWN};

/// Names a running operation across the channel (chosen by the handle, before the engine's
/// `OpId` exists), so that it can be stopped.
pub(crate) type Key = u64;

/// One order to the task. Each carries its own reply channel, if it has a result; the task
/// owns everything else.
pub(crate) enum Command {
    /// Starts an engine operation: its events go to `events`, its id (or the refusal) to
    /// `started`.
    Start {
        key: Key,
        op: Op,
        span: Span,
        events: mpsc::UnboundedSender<Event>,
        started: Reply<Result<OpId, CommandError>>,
    },
    /// Stops (or cancels) an operation if it still runs.
    Stop(Key),
    /// Answers an incoming query.
    Answer { to: ReplyTo, answer: Answer },
    /// Incoming queries go to this channel from now on (and no longer to the one before).
    Incoming(mpsc::Sender<Request>),
    /// Routing-table events go to this channel too.
    Subscribe(mpsc::Sender<Event>),
    /// Runs a read-only function of the engine ([`Rpc::inspect`](crate::Rpc::inspect)); it
    /// sends its own result.
    Inspect(Box<dyn FnOnce(&Endpoint) + Send>),
    /// [`Endpoint::swap`].
    Swap { dead: NodeId, candidate: NodeInfo, reply: Reply<bool> },
    /// [`Endpoint::add_node`].
    AddNode { addr: std::net::SocketAddr, id: Option<NodeId>, reply: Reply<Result<(), CommandError>> },
    /// [`Endpoint::insert_node`].
    InsertNode { node: NodeInfo, reply: Reply<bool> },
    /// [`Endpoint::remove_node`].
    RemoveNode { id: NodeId, reply: Reply<bool> },
    /// Closes the engine: every operation ends with a shut-down event, then the task stops.
    Close,
}

/// Where a command's result goes.
pub(crate) type Reply<T> = oneshot::Sender<T>;

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Command::Start { .. } => "Start",
            Command::Stop(_) => "Stop",
            Command::Answer { .. } => "Answer",
            Command::Incoming(_) => "Incoming",
            Command::Subscribe(_) => "Subscribe",
            Command::Inspect(_) => "Inspect",
            Command::Swap { .. } => "Swap",
            Command::AddNode { .. } => "AddNode",
            Command::InsertNode { .. } => "InsertNode",
            Command::RemoveNode { .. } => "RemoveNode",
            Command::Close => "Close",
        };
        f.write_str(name)
    }
}

pub(crate) use krpc_std::engine_op::{Answer, Op};

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
    /// Weak: a request kept somewhere does not keep the task alive.
    commands: mpsc::WeakUnboundedSender<Command>,
}

impl Request {
    pub(crate) fn new(query: IncomingQuery, commands: mpsc::WeakUnboundedSender<Command>) -> Self {
        Request { query, commands }
    }

    fn answer(self, answer: Answer) -> Result<(), Error> {
        let command = Command::Answer { to: self.query.reply_to().clone(), answer };
        match self.commands.upgrade() {
            Some(commands) if commands.send(command).is_ok() => Ok(()),
            _ => Err(SHUT_DOWN),
        }
    }

    /// Answers with `values` as `r` (k-rpc `response`); `r.id` is filled in, and `nodes`
    /// are written as compact node info (`nodes`, `nodes6`).
    pub fn respond(self, values: Dictionary, nodes: &[NodeInfo]) -> Result<(), Error> {
        self.answer(Answer::Values { values, nodes: nodes.to_vec() })
    }

    /// Answers with a KRPC error `[code, message]` (k-rpc `error`; BEP 5 codes 201–204).
    pub fn error(self, code: i64, message: impl AsRef<[u8]>) -> Result<(), Error> {
        self.answer(Answer::Error { code, message: message.as_ref().to_vec() })
    }
}

impl Deref for Request {
    type Target = IncomingQuery;

    fn deref(&self) -> &IncomingQuery {
        &self.query
    }
}

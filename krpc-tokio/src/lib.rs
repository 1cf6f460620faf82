//! krpc-tokio: the asynchronous driver for [`krpc_core`]: a UDP socket and a clock on tokio.
//!
//! One task owns the socket and the [`Endpoint`](krpc_core::Endpoint); [`Rpc`] is a cheap,
//! cloneable handle that sends it commands over a channel. Results come back as futures
//! ([`Rpc::query`], [`Rpc::populate`], [`Rpc::announce`], [`Rpc::scrape`]) or streams
//! ([`Rpc::closest`], [`Rpc::query_all`], [`Rpc::find_node`], [`Rpc::get_peers`],
//! [`Rpc::crawl`], [`Rpc::incoming`], [`Rpc::events`]). No task is spawned per query. All protocol rules live in the engine; this
//! crate only moves datagrams and time.
//!
//! With [`Config::dht`] the engine is a BEP 5 node: it answers `find_node`, `get_peers` and
//! `announce_peer` itself, and [`Rpc::bootstrap`], [`Rpc::find_node`], [`Rpc::get_peers`] and
//! [`Rpc::announce`] drive its node-layer operations. Without it (k-rpc parity) every query but
//! `ping` goes to [`Rpc::incoming`].
//!
//! - **Restarts**: [`Builder::state_file`] restarts a node from the state
//!   [`Rpc::save_state_file`] wrote (atomically: temporary file, sync, rename); with saved
//!   nodes and no bootstrap host it rejoins through them at once.
//! - **Cancellation**: dropping a query future cancels the query; dropping a [`Replies`]
//!   stream stops its lookup or `query_all`.
//! - **Shutdown**: [`Rpc::shutdown`], or dropping the last `Rpc`, closes the engine: every
//!   outstanding future resolves with [`QueryError::ShutDown`] and every stream ends.
//! - **Errors**: [`Error::Query`] when a query ran and failed (timeout, remote KRPC error,
//!   send failure, shutdown), [`Error::Refused`] when the engine refused it at once; a send
//!   error fails its query at once with [`QueryError::SendFailed`].
//!
//! # Example
//! The k-rpc README, on a few local nodes: join the network with `populate` toward our own
//! id, then look for peers of an info hash with `closest`.
//! ```
//! use krpc_tokio::wire::Dictionary;
//! use krpc_tokio::{Config, NodeId, Query, Request, Rpc, Subscription};
//!
//! /// Answers `find_node` and `get_peers` with the nodes nearest to the target (what
//! /// bittorrent-dht does on top of k-rpc), anything else with BEP 5's 204.
//! async fn serve(rpc: Rpc, mut incoming: Subscription<Request>) {
//!     while let Some(request) = incoming.next().await {
//!         match request.args().target().or(request.args().info_hash()) {
//!             Some(target) => {
//!                 let nodes = rpc.closest_nodes(target, 8).await.unwrap_or_default();
//!                 let _ = request.respond(Dictionary::new(), &nodes);
//!             }
//!             None => drop(request.error(204, "Method Unknown")),
//!         }
//!     }
//! }
//!
//! async fn start(config: Config) -> std::io::Result<Rpc> {
//!     let rpc = Rpc::bind("127.0.0.1:0", config).await?;
//!     tokio::spawn(serve(rpc.clone(), rpc.incoming()));
//!     Ok(rpc)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let router = start(Config::default()).await?;
//! let config = Config { bootstrap: vec![router.local_addr()], ..Config::default() };
//! for _ in 0..4 {
//!     let node = start(config.clone()).await?;
//!     node.populate(node.id(), Query::find_node(&node.id())).await?;
//! }
//!
//! let rpc = start(config).await?;
//! // k-rpc: rpc.populate(rpc.id, {q: 'find_node', a: {id: rpc.id, target: rpc.id}}, cb)
//! let joined = rpc.populate(rpc.id(), Query::find_node(&rpc.id())).await?;
//! assert!(joined.replies > 0);
//!
//! // k-rpc: rpc.closest(infoHash, {q: 'get_peers', a: {info_hash: infoHash}}, visit, cb)
//! let info_hash = NodeId::from_array([0x42; 20]);
//! let mut lookup = rpc.closest(info_hash, Query::get_peers(&info_hash)).await?;
//! while let Some(reply) = lookup.next().await {
//!     println!("visited {}", reply.from()); // peers would be in reply.values()
//! }
//! let summary = lookup.end().unwrap(); // k-rpc's `cb(null, n)`, plus the nodes found
//! assert_eq!(summary.outcome, krpc_tokio::LookupOutcome::Completed);
//! assert!(summary.replies > 0 && !summary.closest.is_empty());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod command;
mod handle;
mod stream;
mod task;

use std::fmt;

pub use builder::Builder;
pub use command::Request;
pub use handle::Rpc;
pub use krpc_core as core;
pub use krpc_core::{
    AddressPolicy, CommandError, Config, CrawlConfig, CrawlStats, DEFAULT_BOOTSTRAP, Event, IncomingQuery, LookupNode,
    LookupOutcome, NodeId, NodeInfo, NodeStatus, Peer, PutOutcome, PutRejection, Query, QueryError, RateLimit,
    Reachability, Reply, SavedState, StateError, Token, wire,
};
// BEP 44 items: `MutableItem` (sign with `MutableItem::sign`), the `Item` a get finds, and the
// `ed25519_dalek` crate whose `SigningKey` signs them.
pub use krpc_core::dht::bep44::{ed25519_dalek, immutable_target};
pub use krpc_core::dht::{Item, MutableItem};
/// How a BEP 44 get ended: the same type in both drivers.
pub use krpc_std::ItemSummary;
/// How a lookup ended: the same type in both drivers.
pub use krpc_std::LookupSummary;
/// A BEP 33 scrape's estimate: the same type in both drivers.
pub use krpc_std::Scrape;
/// State files, the same functions in both drivers.
pub use krpc_std::{StateFileError, load_state_file, save_state_file, temp_path};
pub use stream::{Crawl, GetMutable, GetPeers, Lookup, QueryAll, Replies, Subscription};

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The command ran and failed: timeout, remote KRPC error, send failure, cancelled,
    /// shut down (every outstanding command after [`Rpc::shutdown`]).
    Query(QueryError),
    /// The engine refused the command before sending anything: queue full, too many
    /// lookups, target of the wrong length.
    Refused(CommandError),
}

/// What every outstanding command resolves with once the driver stopped.
pub(crate) const SHUT_DOWN: Error = Error::Query(QueryError::ShutDown);

impl Error {
    /// True when the driver has stopped.
    pub fn is_shut_down(&self) -> bool {
        matches!(self, Error::Query(QueryError::ShutDown))
    }
}

impl From<CommandError> for Error {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Closed => Error::Query(QueryError::ShutDown),
            CommandError::NoNodes => Error::Query(QueryError::NoNodes),
            CommandError::InvalidAddress => Error::Query(QueryError::InvalidAddress),
            other => Error::Refused(other),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Query(error) => error.fmt(f),
            Error::Refused(error) => write!(f, "refused: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Query(error) => Some(error),
            Error::Refused(error) => Some(error),
        }
    }
}

/// The code blocks of the repository's README, compiled (and, unless marked `no_run`, run) as
/// doc tests of this crate: `cargo test -p krpc-tokio --doc`. Only under `cfg(doctest)`, so
/// that a build from the published package, which has no `../../README.md`, never reads it.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

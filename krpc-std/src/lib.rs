//! krpc-std: the blocking driver for [`krpc_core`], on `std::net::UdpSocket` and one thread.
//!
//! The engine in `krpc-core` is sans-IO: it never touches a socket or a clock. This crate owns
//! both and moves bytes and time between them and the engine, adding no protocol behaviour.
//! Two ways to use it:
//!
//! - [`Krpc`], a cloneable blocking handle. The engine and the socket live on a background
//!   thread; `query`, `query_all`, `closest`, `populate` block the calling thread until the
//!   engine has the answer. Incoming queries go to a handler ([`Krpc::on_query`]) or a
//!   channel ([`Krpc::incoming`]); routing-table changes to [`Krpc::events`].
//! - [`Driver`], for applications that run their own loop: [`Driver::step`] turns the run
//!   loop once, and the [`Endpoint`] is at hand for commands and events.
//!
//! Both are set up by a [`Builder`]: configuration, socket (bound, or an existing one),
//! bootstrap host names (resolved with `ToSocketAddrs`), seed, and a saved state to restart
//! from ([`Builder::state_file`]; [`Krpc::save_state_file`] and [`save_state_file`] write one
//! atomically).
//!
//! # Threading model
//! One thread per [`Krpc`] owns the socket and the engine. Handles send it commands over a
//! channel and wake it with an empty datagram to its own address, so a command is picked up at
//! once; the thread otherwise sleeps in a receive call until a datagram arrives or the engine's
//! next deadline (and at most 100 ms, a safety net should a wake-up datagram be lost). Blocking
//! calls wait on a channel of their own; `closest` and `query_all` callbacks run on the
//! calling thread. Query handlers run on the driver's thread.
//!
//! # Shutdown
//! [`Krpc::shutdown`], or dropping the last handle, closes the engine: every call still
//! waiting, on any thread, returns `Error::Query(QueryError::ShutDown)`
//! ([`Error::is_shut_down`]), and so does every later call; the thread ends and the socket is
//! closed. A fatal socket error does the same.
//!
//! # Example
//! k-rpc's README, on a small network started here on 127.0.0.1: fill the routing table with
//! `populate(id, find_node(id))`, then look up the nodes closest to a target with `get_peers`.
//! ```
//! use std::ops::ControlFlow;
//! use krpc_std::{Config, Dictionary, Error, IncomingQuery, Krpc, NodeId, Query, Responder};
//!
//! // What every node of this little network answers: the nodes it knows closest to the
//! // target (a real DHT node would also hand out tokens and peers for `get_peers`).
//! fn serve(query: IncomingQuery, responder: Responder<'_>) {
//!     let args = query.args();
//!     match args.target().or(args.info_hash()) {
//!         Some(target) => {
//!             let nodes = responder.endpoint().routing_table().closest(&target, 8);
//!             let _ = responder.respond(Dictionary::new(), &nodes);
//!         }
//!         None => drop(responder.error(203, "missing target")),
//!     }
//! }
//!
//! let node = |bootstrap: &[&str]| -> Result<Krpc, Error> {
//!     let node = Krpc::builder(Config::default()).bootstrap_hosts(bootstrap.iter().copied()).bind("127.0.0.1:0")?;
//!     node.on_query(serve)?;
//!     Ok(node)
//! };
//! let first = node(&[])?;
//! let first_addr = first.local_addr().to_string();
//! let mut network = vec![first];
//! for _ in 0..4 {
//!     let other = node(&[&first_addr])?;
//!     other.bootstrap()?;
//!     network.push(other);
//! }
//!
//! let rpc = Krpc::builder(Config::default()).bootstrap_host(&first_addr).bind("127.0.0.1:0")?;
//! let id = rpc.id();
//! rpc.populate(id, Query::find_node(&id))?;
//! assert!(!rpc.routing_table()?.is_empty());
//!
//! let target = NodeId::from_array([0xaa; 20]);
//! let mut replies = 0;
//! let done = rpc.closest(target, Query::get_peers(&target), |reply| {
//!     replies += 1;
//!     assert!(reply.values().is_some());
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!(done.replies, replies);
//! assert!(!done.closest.is_empty() && done.closest.len() <= network.len());
//! # Ok::<(), Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod clock;
mod crawl;
mod driver;
#[doc(hidden)]
pub mod engine_op;
mod error;
mod handle;
mod state;
pub mod udp;
mod worker;

pub use builder::Builder;
pub use crawl::Crawl;
pub use driver::Driver;
pub use error::Error;
pub use handle::{ItemSummary, Krpc, LookupSummary, Scrape, put_outcome};
pub use state::{StateFileError, load_state_file, save_state_file, temp_path};
pub use worker::Responder;

/// The engine, for everything this crate does not re-export.
pub use krpc_core as core;
pub use krpc_core::wire::Dictionary;
pub use krpc_core::{
    CommandError, Config, CrawlConfig, CrawlStats, DEFAULT_BOOTSTRAP, Endpoint, Event, IncomingQuery, Instant,
    LookupNode, LookupOutcome, NodeId, NodeInfo, NodeStatus, OpId, Peer, PutOutcome, PutRejection, Query, QueryError,
    RateLimit, Reachability, Reply, ReplyTo, SavedState, StateError,
};
// BEP 44 items: `MutableItem` (sign with `MutableItem::sign`), the `Item` a `get`
// returns, and the `ed25519_dalek` crate whose `SigningKey` signs them.
pub use krpc_core::dht::bep44::{ed25519_dalek, immutable_target};
pub use krpc_core::dht::{Item, MutableItem};

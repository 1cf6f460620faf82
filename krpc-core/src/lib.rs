//! krpc-core: the KRPC protocol of the BitTorrent DHT (BEP 5) as a sans-IO state machine.
//!
//! [`Endpoint`] holds all protocol state of one UDP socket — routing table, queries in flight,
//! lookups, and (with [`Config::dht`]) the BEP 5 node layer — and performs no I/O: it never
//! reads a clock, opens a socket, spawns a thread or touches a global RNG. A driver (the
//! `krpc-tokio` and `krpc-std` crates, a simulator, a fuzzer) moves bytes and time in and out.
//!
//! # The run-loop contract
//! **After every input (`handle_datagram`, `handle_timeout`) and every command (`query`,
//! `closest`, ...), drain the outputs: [`poll_transmit`](Endpoint::poll_transmit) until `None`,
//! [`poll_event`](Endpoint::poll_event) until `None`, then sleep until
//! [`poll_timeout`](Endpoint::poll_timeout) and call `handle_timeout` with the current time.**
//! `now` is always an argument; the same configuration, seed and inputs give byte-identical
//! outputs.
//!
//! # Example
//! Two engines wired together in memory: `b` serves the node layer, `a` asks it for the
//! closest nodes to a target and announces.
//! ```
//! use std::collections::VecDeque;
//! use std::net::SocketAddr;
//! use krpc_core::{Config, Endpoint, Event, Instant, NodeId};
//!
//! let addr: [SocketAddr; 2] = ["10.0.0.1:6881".parse().unwrap(), "10.0.0.2:6881".parse().unwrap()];
//! let mut now = Instant::ZERO;
//! let config = |boot: Vec<SocketAddr>| Config { bootstrap: boot, ..Config::dht() };
//! let mut nodes = [
//!     Endpoint::new(config(vec![addr[1]]), [1; 32], now).unwrap(),
//!     Endpoint::new(config(vec![]), [2; 32], now).unwrap(),
//! ];
//! let info_hash = NodeId::from_array([0x42; 20]);
//! let op = nodes[0].announce(now, info_hash, Some(6881), false).unwrap();
//!
//! let mut wire: VecDeque<(usize, SocketAddr, Vec<u8>)> = VecDeque::new();
//! let mut buf = [0u8; 1500];
//! let mut stored = None;
//! for _ in 0..100 {
//!     for i in 0..2 {
//!         while let Some(t) = nodes[i].poll_transmit(now, &mut buf) {
//!             let to = addr.iter().position(|a| *a == t.destination).unwrap();
//!             wire.push_back((to, addr[i], buf[..t.len].to_vec()));
//!         }
//!         while let Some(event) = nodes[i].poll_event() {
//!             if let Event::AnnounceDone { op: done, result } = event {
//!                 assert_eq!(done, op);
//!                 stored = Some(result);
//!             }
//!         }
//!     }
//!     match wire.pop_front() {
//!         Some((to, from, bytes)) => nodes[to].handle_datagram(now, from, &bytes),
//!         None if stored.is_some() => break,
//!         None => {
//!             // Nothing on the wire: jump to the earliest deadline.
//!             now = nodes.iter_mut().filter_map(|n| n.poll_timeout()).min().unwrap();
//!             nodes.iter_mut().for_each(|n| n.handle_timeout(now));
//!         }
//!     }
//! }
//! assert_eq!(stored, Some(Ok(1)), "b stored the announce");
//! ```
//!
//! # Layers
//! - [`wire`]: zero-copy decoder and allocation-free encoder of KRPC messages.
//! - [`routing`]: the k-bucket routing table with BEP 5 node states.
//! - [`Endpoint`]: transactions, lookups, the ping/swap protocol, the node layer.
//! - [`dht`]: write tokens, peer store, BEP 33 scrape filters, BEP 42 secure ids.
//!
//! Every queue and table is capped; see "Limits" on [`Endpoint`] and [`Config`].
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
// The fuzz harness runs only where std exists (cargo-fuzz, the tests); it keeps its signing
// keys in a process-wide cache, which needs std's `OnceLock`.
#[cfg(any(test, feature = "fuzzing"))]
extern crate std;

mod address;
mod config;
mod endpoint;
mod event;
mod id;
mod lean;
mod lookup;
mod node;
mod query;
mod rate_limit;
mod rng;
mod stats;
mod time;
mod transaction;

pub mod dht;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod routing;
pub mod wire;

pub use address::AddressPolicy;
pub use config::{Config, ConfigError, DEFAULT_BOOTSTRAP};
pub use endpoint::{
    CommandError, CrawlConfig, CrawlStats, Endpoint, MAX_CRAWL_INTERVAL, MAX_SAMPLES_PER_REPLY, MAX_SAVED_NODES,
    MIN_CRAWL_INTERVAL, NodeStatus, Reachability, STATE_VERSION, SavedState, StateError, Transmit, estimate_dht_size,
    reachability,
};
pub use event::{
    Event, IncomingQuery, LookupNode, LookupOutcome, MAX_TRANSACTION_ID_LEN, OpId, PutOutcome, PutRejection,
    QueryError, Reply, ReplyTo,
};
pub use id::{DEFAULT_ID_LEN, Distance, InvalidIdLength, MAX_ID_LEN, NodeId};
pub use node::NodeInfo;
pub use query::{MAX_METHOD_LEN, MAX_TOKEN_LEN, Peer, Query, Token};
pub use rate_limit::{LocalSources, RateLimit};
pub use stats::Stats;
pub use time::Instant;

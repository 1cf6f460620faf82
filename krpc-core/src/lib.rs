//! krpc-core: the KRPC protocol of the BitTorrent DHT (BEP 5) as a sans-IO state machine.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod address;
mod config;
mod endpoint;
mod event;
mod id;
mod lookup;
mod node;
mod query;
mod stats;
mod time;
mod transaction;

pub mod dht;
pub mod routing;
pub mod wire;

pub use config::{AddressPolicy, Config, ConfigError, DEFAULT_BOOTSTRAP};
pub use endpoint::{CommandError, Endpoint, Transmit};
pub use event::{
    Event, IncomingQuery, LookupNode, LookupOutcome, MAX_TRANSACTION_ID_LEN, OpId, QueryError, Reply, ReplyTo,
};
pub use id::{DEFAULT_ID_LEN, Distance, InvalidIdLength, MAX_ID_LEN, NodeId};
pub use node::NodeInfo;
pub use query::{MAX_METHOD_LEN, MAX_TOKEN_LEN, Peer, Query, Token};
pub use stats::Stats;
pub use time::Instant;

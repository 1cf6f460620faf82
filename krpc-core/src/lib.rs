//! krpc-core: the KRPC protocol of the BitTorrent DHT (BEP 5) as a sans-IO state machine.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[allow(unused_extern_crates)] // used by the routing table and owned dictionaries
extern crate alloc;
#[cfg(test)]
extern crate std;

mod id;
mod node;
pub mod routing;
mod time;
pub mod wire;

pub use id::{DEFAULT_ID_LEN, Distance, InvalidIdLength, MAX_ID_LEN, NodeId};
pub use node::NodeInfo;
pub use time::Instant;

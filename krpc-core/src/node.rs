//! A node's contact information: its id and UDP address.

use core::net::SocketAddr;

use crate::NodeId;

/// A DHT node as BEP 5's "compact node info" describes it: an id and a UDP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// The node's UDP address (IPv4 or IPv6).
    pub addr: SocketAddr,
}

impl NodeInfo {
    /// Bundles an id and an address.
    pub const fn new(id: NodeId, addr: SocketAddr) -> Self {
        NodeInfo { id, addr }
    }
}

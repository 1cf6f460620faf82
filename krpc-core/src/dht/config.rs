//! Configuration of the built-in BEP 5 node layer.

use alloc::vec::Vec;

use super::item_store::ItemStoreLimits;
use super::peer_store::PeerStoreLimits;
use super::security::SecureIdPolicy;

/// What the node does with a query whose method it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownMethods {
    /// Answer 204 "Method Unknown" — except queries carrying a `target` or `info_hash`, which
    /// are answered as `find_node` so that new methods can route through old nodes
    /// (libtorrent's forward-compatibility rule).
    Reply204,
    /// Hand them to the application as [`Event::Query`](crate::Event::Query) (k-rpc's way).
    Deliver,
}

/// The built-in BEP 5 node layer: answers `find_node`, `get_peers` and `announce_peer`, keeps
/// write tokens and a peer store; answers BEP 44 `get` and `put` from an item store. Set [`Config::dht`](crate::Config::dht) to enable it.
///
/// # Limits
/// Replies are capped so that a node cannot be used as an amplifier (the JS node answers a
/// 92-byte query with 2.5 KB, W17): at most `reply_nodes` nodes per family, at most
/// `max_values_v4`/`max_values_v6` peers, and the whole reply within `max_reply_len` bytes.
/// When the budget is short, the farthest nodes of the family the requester is not on go
/// first, then the BEP 33 bloom filters, then the farthest nodes of its own family; the peers
/// take the room that is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtConfig {
    /// Methods always handed to the application, even those the node layer knows (to
    /// override `get_peers`, say). Application-defined methods need to be listed only when
    /// `unknown_methods` is `Reply204`.
    pub application_methods: Vec<Vec<u8>>,
    /// What to do with other methods.
    pub unknown_methods: UnknownMethods,
    /// Nodes per family in `find_node`/`get_peers` replies (BEP 5: "the K (8) closest good
    /// nodes"); at most 32.
    pub reply_nodes: usize,
    /// Most IPv4 peers in one `get_peers` reply.
    pub max_values_v4: usize,
    /// Most IPv6 peers in one `get_peers` reply.
    pub max_values_v6: usize,
    /// Byte budget of one reply (BEP 32: a node "must not send UDP datagrams with a payload
    /// larger than 1024 octets").
    pub max_reply_len: usize,
    /// Caps and lifetime of stored peers.
    pub peer_store: PeerStoreLimits,
    /// Caps and lifetime of stored BEP 44 items.
    pub item_store: ItemStoreLimits,
    /// BEP 42: how node ids bound to IP addresses are treated.
    pub secure_id: SecureIdPolicy,
    /// BEP 51: how long one sample of stored info-hashes is served before a new one is
    /// drawn, announced to samplers as `interval`. Capped at 6 hours (the BEP: "Maximum value
    /// is 21600 seconds"); libtorrent's default is the cap.
    pub sample_interval: core::time::Duration,
}

/// BEP 51's cap on `interval`.
pub const MAX_SAMPLE_INTERVAL: core::time::Duration = core::time::Duration::from_secs(21_600);

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            application_methods: Vec::new(),
            unknown_methods: UnknownMethods::Reply204,
            reply_nodes: 8,
            max_values_v4: 100,
            max_values_v6: 25,
            max_reply_len: 1024,
            peer_store: PeerStoreLimits::default(),
            item_store: ItemStoreLimits::default(),
            sample_interval: MAX_SAMPLE_INTERVAL,
            secure_id: SecureIdPolicy::default(),
        }
    }
}

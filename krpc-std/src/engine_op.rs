//! The engine operations and answers both drivers send to their engine's thread or task,
//! written once: krpc-tokio uses this module too. Internal to the drivers, not a stable API.

use krpc_core::dht::MutableItem;
use krpc_core::dht::bep44::ed25519_dalek::SigningKey;
use krpc_core::wire::Dictionary;
use krpc_core::{CommandError, CrawlConfig, Endpoint, Instant, NodeId, NodeInfo, OpId, Peer, Query, ReplyTo};

/// An engine operation that reports through events.
#[derive(Debug)]
pub enum Op {
    /// [`Endpoint::query`].
    Query { peer: Peer, query: Query },
    /// [`Endpoint::query_all`].
    QueryAll { peers: Vec<Peer>, query: Query },
    /// [`Endpoint::closest`].
    Closest { target: NodeId, query: Query },
    /// [`Endpoint::populate`].
    Populate { target: NodeId, query: Query },
    /// [`Endpoint::bootstrap`].
    Bootstrap,
    /// [`Endpoint::find_node`].
    FindNode(NodeId),
    /// [`Endpoint::get_peers`].
    GetPeers(NodeId),
    /// [`Endpoint::announce`].
    Announce { info_hash: NodeId, port: Option<u16>, seed: bool },
    /// [`Endpoint::scrape`].
    Scrape(NodeId),
    /// [`Endpoint::crawl`].
    Crawl(CrawlConfig),
    /// [`Endpoint::put_immutable`].
    PutImmutable(Vec<u8>),
    /// [`Endpoint::put_mutable`].
    PutMutable { item: MutableItem, cas: Option<i64> },
    /// [`Endpoint::put_mutable_next`].
    PutMutableNext { key: Box<SigningKey>, salt: Vec<u8>, value: Vec<u8> },
    /// [`Endpoint::get_immutable`].
    GetImmutable(NodeId),
    /// [`Endpoint::get_mutable`].
    GetMutable { key: [u8; 32], salt: Vec<u8>, min_seq: Option<i64> },
}

impl Op {
    /// Starts it on the engine.
    pub fn start(self, endpoint: &mut Endpoint, now: Instant) -> Result<OpId, CommandError> {
        match self {
            Op::Query { peer, query } => endpoint.query(now, peer, query),
            Op::QueryAll { peers, query } => endpoint.query_all(now, peers, query),
            Op::Closest { target, query } => endpoint.closest(now, target, query),
            Op::Populate { target, query } => endpoint.populate(now, target, query),
            Op::Bootstrap => endpoint.bootstrap(now),
            Op::FindNode(target) => endpoint.find_node(now, target),
            Op::GetPeers(info_hash) => endpoint.get_peers(now, info_hash),
            Op::Announce { info_hash, port, seed } => endpoint.announce(now, info_hash, port, seed),
            Op::Scrape(info_hash) => endpoint.scrape(now, info_hash),
            Op::Crawl(config) => endpoint.crawl(now, config),
            Op::PutImmutable(value) => endpoint.put_immutable(now, &value),
            Op::PutMutable { item, cas } => endpoint.put_mutable(now, item, cas),
            Op::PutMutableNext { key, salt, value } => endpoint.put_mutable_next(now, &key, &salt, &value),
            Op::GetImmutable(target) => endpoint.get_immutable(now, target),
            Op::GetMutable { key, salt, min_seq } => endpoint.get_mutable(now, key, &salt, min_seq),
        }
    }
}

/// An answer to an incoming query.
#[derive(Debug)]
pub enum Answer {
    /// `r` with these values and nodes (k-rpc `response`).
    Values { values: Dictionary, nodes: Vec<NodeInfo> },
    /// A KRPC error `[code, message]`.
    Error { code: i64, message: Vec<u8> },
}

impl Answer {
    /// Queues it on the engine.
    pub fn send(self, endpoint: &mut Endpoint, to: &ReplyTo) -> Result<(), CommandError> {
        match self {
            Answer::Values { values, nodes } => endpoint.respond(to, values, &nodes),
            Answer::Error { code, message } => endpoint.error(to, code, &message),
        }
    }
}

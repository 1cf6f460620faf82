//! Everything the application observes: results of commands, incoming queries and routing
//! table changes.

use alloc::boxed::Box;
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::fmt;
use core::net::SocketAddr;

use crate::query::Token;
use crate::wire::{Decoder, Fields, Message, QueryView};
use crate::{NodeId, NodeInfo};

/// Identifies one command (`query`, `query_all`, `closest`, `populate`): its events carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub(crate) u64);

impl OpId {
    /// The raw number (unique per endpoint, increasing).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The longest `t` an incoming query may carry (the decoder's default cap).
pub const MAX_TRANSACTION_ID_LEN: usize = 32;

/// Where and how to answer an incoming query: its source and its transaction id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplyTo {
    /// The querier's address.
    pub addr: SocketAddr,
    pub(crate) t: ArrayVec<u8, MAX_TRANSACTION_ID_LEN>,
}

impl ReplyTo {
    /// The query's transaction id, echoed in the answer.
    pub fn transaction_id(&self) -> &[u8] {
        &self.t
    }
}

/// A datagram kept whole for the application, decoded again on access (it was validated on
/// receipt, so this cannot fail; the copy is the one allocation an event needs).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Datagram {
    bytes: Box<[u8]>,
    decoder: Decoder,
}

impl Datagram {
    pub(crate) fn new(bytes: &[u8], decoder: Decoder) -> Datagram {
        Datagram { bytes: bytes.into(), decoder }
    }

    fn message(&self) -> Message<'_> {
        #[allow(clippy::expect_used)]
        self.decoder.decode(&self.bytes).expect("datagram was decoded with this decoder when it arrived")
    }
}

/// A query someone sent us. Answer with [`Endpoint::respond`](crate::Endpoint::respond) or
/// [`Endpoint::error`](crate::Endpoint::error), using [`IncomingQuery::reply_to`].
#[derive(Clone, PartialEq, Eq)]
pub struct IncomingQuery {
    reply_to: ReplyTo,
    datagram: Datagram,
}

impl IncomingQuery {
    pub(crate) fn new(reply_to: ReplyTo, datagram: Datagram) -> Self {
        IncomingQuery { reply_to, datagram }
    }

    /// The sender's address.
    pub fn from(&self) -> SocketAddr {
        self.reply_to.addr
    }

    /// What an answer needs: address and transaction id.
    pub fn reply_to(&self) -> &ReplyTo {
        &self.reply_to
    }

    /// The whole decoded message.
    pub fn message(&self) -> Message<'_> {
        self.datagram.message()
    }

    /// The method and arguments.
    pub fn query(&self) -> QueryView<'_> {
        match self.message().body {
            crate::wire::Body::Query(q) => q,
            // The endpoint builds an IncomingQuery only from a datagram that decoded as y=q.
            _ => unreachable!("IncomingQuery holds a query"),
        }
    }

    /// `q`: the method name.
    pub fn method(&self) -> &[u8] {
        self.query().method
    }

    /// `a`: the arguments.
    pub fn args(&self) -> Fields<'_> {
        self.query().args
    }

    /// The sender's id (`a.id`), if present and of the configured length.
    pub fn sender_id(&self) -> Option<NodeId> {
        self.args().node_id()
    }
}

impl fmt::Debug for IncomingQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingQuery").field("from", &self.from()).field("message", &self.message()).finish()
    }
}

/// A reply to one of our queries.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    from: SocketAddr,
    datagram: Datagram,
}

impl Reply {
    pub(crate) fn new(from: SocketAddr, datagram: Datagram) -> Self {
        Reply { from, datagram }
    }

    /// The responder's address.
    pub fn from(&self) -> SocketAddr {
        self.from
    }

    /// The whole decoded message.
    pub fn message(&self) -> Message<'_> {
        self.datagram.message()
    }

    /// The response values (`r`); empty fields for an error reply.
    pub fn values(&self) -> Option<Fields<'_>> {
        self.message().as_response().copied()
    }

    /// The responder's id (`r.id`), if present.
    pub fn id(&self) -> Option<NodeId> {
        self.values().and_then(|r| r.node_id())
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply").field("from", &self.from).field("message", &self.message()).finish()
    }
}

/// Why a query failed. k-rpc's error messages are kept in the `Display` form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// No answer within the configured timeout ("Query timed out", `ETIMEDOUT`).
    Timeout,
    /// The peer answered with a KRPC error.
    Remote {
        /// Its code (0 when it sent none).
        code: i64,
        /// Its message.
        message: Vec<u8>,
    },
    /// The answer came from another node id than the one we asked ("Unexpected node id",
    /// `EUNEXPECTEDNODE`).
    UnexpectedNodeId {
        /// The id we expected.
        expected: NodeId,
        /// The id that answered, if it sent a valid one.
        got: Option<NodeId>,
    },
    /// Cancelled by the application ("Query was cancelled").
    Cancelled,
    /// The endpoint was closed before an answer arrived.
    ShutDown,
    /// The driver could not send the datagram (unreachable, message too long, ...): reported
    /// at once rather than after a timeout (weakness W8).
    SendFailed,
    /// The query does not fit the driver's buffer.
    TooLarge,
    /// The address can never be a DHT node (port 0, unspecified, broadcast, multicast).
    InvalidAddress,
    /// `query_all` was given no nodes ("No nodes to query").
    NoNodes,
    /// `query_all` got no successful reply and no 3xx error ("All queries failed").
    AllFailed,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Timeout => f.write_str("Query timed out"),
            QueryError::Remote { code, message } => {
                write!(f, "{code} ")?;
                for &b in message {
                    write!(f, "{}", if (0x20..0x7f).contains(&b) { b as char } else { '?' })?;
                }
                Ok(())
            }
            QueryError::UnexpectedNodeId { .. } => f.write_str("Unexpected node id"),
            QueryError::Cancelled => f.write_str("Query was cancelled"),
            QueryError::ShutDown => f.write_str("Endpoint was shut down"),
            QueryError::SendFailed => f.write_str("Datagram could not be sent"),
            QueryError::TooLarge => f.write_str("Query too large to send"),
            QueryError::InvalidAddress => f.write_str("Address can never be a DHT node"),
            QueryError::NoNodes => f.write_str("No nodes to query"),
            QueryError::AllFailed => f.write_str("All queries failed"),
        }
    }
}

impl core::error::Error for QueryError {}

/// How a lookup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The closest candidates have all answered, or none are left to ask.
    Completed,
    /// The application stopped it.
    Stopped,
    /// The endpoint was closed.
    ShutDown,
}

/// A node that answered a lookup, with the write token it gave (for `announce_peer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupNode {
    /// The responder.
    pub node: NodeInfo,
    /// Its `token`, if it sent one.
    pub token: Option<Token>,
}

/// What the nodes said to a BEP 44 put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// Where the item is stored.
    pub target: NodeId,
    /// The `seq` stored (mutable items).
    pub seq: Option<i64>,
    /// Nodes that stored it.
    pub stored: usize,
    /// Nodes that did not answer (timeouts, send failures).
    pub failed: usize,
    /// Each node's error: 301 (`cas` mismatch) and 302 (`seq` too low) mean another writer
    /// was first; read the item again and retry.
    pub errors: Vec<PutRejection>,
}

/// One node's refusal of a put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRejection {
    /// The node.
    pub from: SocketAddr,
    /// The KRPC error code (BEP 44: 205, 206, 207, 301, 302; 203 for anything else).
    pub code: i64,
    /// The error message.
    pub message: Vec<u8>,
}

/// Everything the engine tells the application, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Someone queried us (k-rpc's `query` event). Pings are answered inside the engine
    /// unless [`Config::answer_pings`](crate::Config::answer_pings) is off.
    Query(IncomingQuery),
    /// One reply to a `query_all` or `closest` (k-rpc's `visit`/`onreply`). Never emitted
    /// for a lookup after it was stopped (weakness W13).
    Reply {
        /// The command.
        op: OpId,
        /// The reply.
        reply: Reply,
    },
    /// A `query` finished.
    QueryDone {
        /// The command.
        op: OpId,
        /// The reply or the error.
        result: Result<Reply, QueryError>,
    },
    /// A `query_all` finished: the number of successful replies, or the error (a 3xx remote
    /// error when nothing succeeded, BEP 44; else `AllFailed`).
    QueryAllDone {
        /// The command.
        op: OpId,
        /// Successful replies, or why none.
        result: Result<usize, QueryError>,
    },
    /// A `closest` or `populate` finished.
    LookupDone {
        /// The command.
        op: OpId,
        /// Successful replies with a valid id (k-rpc's `cb(null, n)`).
        replies: usize,
        /// The closest responders found, nearest first, at most `k`.
        closest: Vec<LookupNode>,
        /// Why it ended.
        outcome: LookupOutcome,
    },
    /// A node entered the routing table (k-rpc's `node` event, but only on real insertion:
    /// weakness W11).
    NodeAdded(NodeInfo),
    /// A node left the routing table.
    NodeRemoved(NodeInfo),
    /// A node in the routing table answered from a new address.
    NodeUpdated {
        /// The node with its new address.
        node: NodeInfo,
        /// Its previous address.
        previous: SocketAddr,
    },
    /// Peers for a `get_peers` or `announce` lookup, from one reply's `values`.
    Peers {
        /// The command.
        op: OpId,
        /// The node that sent them.
        from: SocketAddr,
        /// The peers (IPv4 and IPv6).
        peers: Vec<SocketAddr>,
    },
    /// A BEP 33 `scrape` finished: the swarm's size estimated from the union of the bloom
    /// filters (`BFsd`, `BFpe`) of every node that answered with them.
    ScrapeDone {
        /// The command.
        op: OpId,
        /// Estimated seeds (rounded).
        seeds: u64,
        /// Estimated peers that are not seeds (rounded).
        peers: u64,
        /// Answers that carried filters.
        responses: usize,
        /// How the lookup ended.
        outcome: LookupOutcome,
    },
    /// An `announce` finished: how many nodes stored us, or why none did.
    AnnounceDone {
        /// The command.
        op: OpId,
        /// Nodes that acknowledged the announce.
        result: Result<usize, QueryError>,
    },
    /// A BEP 44 item found by a `get_immutable` or `get_mutable`, already checked: an
    /// immutable value hashes to the target, a mutable one is signed by the key asked for and
    /// is at least the minimum `seq`. Mutable items arrive as nodes answer, in no order of
    /// `seq`; the most recent is in [`Event::GetItemDone`].
    ItemFound {
        /// The command.
        op: OpId,
        /// The node that sent it.
        from: SocketAddr,
        /// The item.
        item: crate::dht::Item,
    },
    /// A `get_immutable` or `get_mutable` finished.
    GetItemDone {
        /// The command.
        op: OpId,
        /// The item found (the one with the highest `seq` for a mutable item), if any.
        item: Option<crate::dht::Item>,
        /// Why the lookup ended (`Completed` also when an immutable item ended it early).
        outcome: LookupOutcome,
    },
    /// A BEP 44 put finished: what the nodes said, or why nothing was sent
    /// (`NoNodes`: no node gave a token; `Cancelled`, `ShutDown`).
    PutItemDone {
        /// The command.
        op: OpId,
        /// The outcome.
        result: Result<PutOutcome, QueryError>,
    },
    /// Info-hashes a crawl ([`Endpoint::crawl`](crate::Endpoint::crawl)) had not seen before,
    /// from one node's BEP 51 `samples` (never empty). A notice: when the application does not
    /// drain the queue it may be dropped (counted in `events_dropped`), while
    /// [`Endpoint::crawl_stats`](crate::Endpoint::crawl_stats) keeps counting.
    CrawlFound {
        /// The crawl.
        op: OpId,
        /// The node that sent the samples.
        from: NodeInfo,
        /// The new info-hashes, in the order of the answer.
        info_hashes: Vec<NodeId>,
    },
    /// A crawl ended: its cap of unique info-hashes was reached, it was stopped or cancelled,
    /// the endpoint closed, or no node was left to ask now or later.
    CrawlDone {
        /// The crawl.
        op: OpId,
        /// What it did.
        stats: crate::CrawlStats,
    },
    /// Our node id changed to one bound to our public address (BEP 42), as learned by vote
    /// from the `ip` field of replies. The routing table was rebuilt around it.
    IdChanged {
        /// The old id.
        previous: NodeId,
        /// The new id.
        id: NodeId,
    },
    /// Adaptive read-only mode ([`Config::adaptive_read_only`](crate::Config::adaptive_read_only))
    /// switched: `read_only: false` once the node saw that it is reachable and its external
    /// address is confirmed (it now answers queries and omits `ro=1`); `read_only: true` when a
    /// full node turned [`Firewalled`](crate::Reachability::Firewalled).
    ModeChanged {
        /// The new mode: BEP 43 read-only, or a full node.
        read_only: bool,
    },
    /// A full bucket refused `candidate` (k-rpc's `ping(older, swap)`). Emitted only when
    /// [`Config::auto_ping_swap`](crate::Config::auto_ping_swap) is off: ping `oldest` and
    /// call [`Endpoint::swap`](crate::Endpoint::swap) for one that fails.
    PingSwap {
        /// The least recently seen contacts of the bucket, questionable ones first.
        oldest: Vec<NodeInfo>,
        /// The node that wants in.
        candidate: NodeInfo,
    },
}

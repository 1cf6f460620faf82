//! What the application asks the engine to send, and to whom.

use arrayvec::ArrayVec;
use core::fmt;
use core::net::SocketAddr;

use crate::wire::Dictionary;
use crate::{NodeId, NodeInfo};

/// The longest write token kept (longer ones are ignored). Deployed tokens are 4 (libtorrent),
/// 8 (jech) or 20 bytes (JS, anacrolix).
pub const MAX_TOKEN_LEN: usize = 32;

/// A write token received in a `get_peers` (or BEP 44 `get`) reply.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Token(ArrayVec<u8, MAX_TOKEN_LEN>);

impl Token {
    /// Copies a token; `None` when it is longer than [`MAX_TOKEN_LEN`].
    pub fn new(bytes: &[u8]) -> Option<Token> {
        ArrayVec::try_from(bytes).ok().map(Token)
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(")?;
        for b in self.0.iter() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Where to send a query: k-rpc's `{host, port, id?, token?}`.
///
/// When `id` is set, a reply carrying another id fails the query with
/// [`QueryError::UnexpectedNodeId`](crate::QueryError::UnexpectedNodeId). When `token` is set
/// it goes into the query as `a.token` (for this peer only: weakness W6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// UDP address.
    pub addr: SocketAddr,
    /// The id we expect to answer, if known.
    pub id: Option<NodeId>,
    /// The write token this peer gave us, if any.
    pub token: Option<Token>,
}

impl Peer {
    /// A peer known only by address.
    pub fn addr(addr: SocketAddr) -> Peer {
        Peer { addr, id: None, token: None }
    }

    /// A peer with a known id.
    pub fn node(node: NodeInfo) -> Peer {
        Peer { addr: node.addr, id: Some(node.id), token: None }
    }

    /// The same peer with a token attached.
    pub fn with_token(mut self, token: Token) -> Peer {
        self.token = Some(token);
        self
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::addr(addr)
    }
}

impl From<NodeInfo> for Peer {
    fn from(node: NodeInfo) -> Peer {
        Peer::node(node)
    }
}

/// The longest method name accepted.
pub const MAX_METHOD_LEN: usize = 64;

/// A query to send: the method (`q`) and its arguments (`a`), k-rpc's `{q, a}`.
///
/// The engine fills in `a.id` when absent and `a.token` from the [`Peer`].
///
/// ```
/// use krpc_core::Query;
/// use krpc_core::wire::Dictionary;
///
/// let q = Query::new("get_peers", Dictionary::new().with_bytes("info_hash", [1u8; 20])).unwrap();
/// assert_eq!(q.method(), b"get_peers");
/// assert!(Query::new("", Dictionary::new()).is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    method: ArrayVec<u8, MAX_METHOD_LEN>,
    args: Dictionary,
}

impl Query {
    /// A query; `None` when the method is empty or longer than [`MAX_METHOD_LEN`].
    pub fn new(method: impl AsRef<[u8]>, args: Dictionary) -> Option<Query> {
        let method = method.as_ref();
        if method.is_empty() {
            return None;
        }
        Some(Query { method: ArrayVec::try_from(method).ok()?, args })
    }

    /// `ping` with no arguments.
    pub fn ping() -> Query {
        Query::known(b"ping", Dictionary::new())
    }

    /// `find_node` for `target`.
    pub fn find_node(target: &NodeId) -> Query {
        Query::known(b"find_node", Dictionary::new().with_bytes("target", target.as_bytes()))
    }

    /// `get_peers` for `info_hash`.
    pub fn get_peers(info_hash: &NodeId) -> Query {
        Query::known(b"get_peers", Dictionary::new().with_bytes("info_hash", info_hash.as_bytes()))
    }

    /// BEP 51 `sample_infohashes` toward `target` (the answer's `nodes` are the nodes closest
    /// to it; its `samples` are the node's own).
    pub fn sample_infohashes(target: &NodeId) -> Query {
        Query::known(b"sample_infohashes", Dictionary::new().with_bytes("target", target.as_bytes()))
    }

    fn known(method: &[u8], args: Dictionary) -> Query {
        let mut m = ArrayVec::new();
        // Only called with the short literal method names above.
        let _ = m.try_extend_from_slice(method);
        Query { method: m, args }
    }

    /// The method name.
    pub fn method(&self) -> &[u8] {
        &self.method
    }

    /// The arguments.
    pub fn args(&self) -> &Dictionary {
        &self.args
    }

    /// The arguments, for changes.
    pub fn args_mut(&mut self) -> &mut Dictionary {
        &mut self.args
    }
}

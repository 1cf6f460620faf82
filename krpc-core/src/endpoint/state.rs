//! Saved state: what a node keeps across a restart — its id and the nodes of both routing
//! tables, best first — and restoring it, with every restored node questionable until it
//! answers.

use alloc::vec::Vec;

use super::Endpoint;
use crate::address::is_never_valid;
use crate::config::{Config, ConfigError};
use crate::routing::{InsertOutcome, NodeState};
use crate::wire::{CompactNodes, Dict, Dictionary, write_compact_addr};
use crate::{Instant, NodeId, NodeInfo};

/// The format version written by [`SavedState::encode`].
pub const STATE_VERSION: i64 = 1;

/// Most nodes a saved state holds (both families); more are not read.
pub const MAX_SAVED_NODES: usize = 4096;

/// A node's state across restarts: its id and the nodes of its routing tables, ranked best
/// first (good before questionable, then the most recently heard from).
///
/// [`encode`](Self::encode) writes it as a bencoded dictionary (`id`, `nodes` and `nodes6` in
/// compact node info, `version`), the shape libtorrent uses for its DHT state;
/// [`decode`](Self::decode) reads it back and refuses anything else with a [`StateError`].
///
/// # Example
/// ```
/// use krpc_core::{Config, Endpoint, Instant, NodeId, NodeInfo, SavedState};
///
/// let now = Instant::ZERO;
/// let mut node = Endpoint::new(Config::dht(), [1; 32], now).unwrap();
/// node.insert_node(now, NodeInfo::new(NodeId::from_array([0x80; 20]), "198.51.100.7:6881".parse().unwrap()));
/// let bytes = node.save_state().encode();
///
/// // After a restart: the same id, the same nodes, questionable until they answer.
/// let state = SavedState::decode(&bytes).unwrap();
/// let restarted = Endpoint::restore(Config::dht(), [2; 32], now, &state).unwrap();
/// assert_eq!(restarted.id(), node.id());
/// assert_eq!(restarted.routing_table().len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedState {
    /// Our node id.
    pub id: NodeId,
    /// The nodes of both routing tables, best first.
    pub nodes: Vec<NodeInfo>,
}

/// Why a saved state could not be read. A driver that gets one should warn and start fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// Not a bencoded dictionary (garbage, or a truncated file).
    Malformed,
    /// Written by another format version.
    Version(i64),
    /// A field is missing or of the wrong shape (named).
    Field(&'static str),
}

impl core::fmt::Display for StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StateError::Malformed => f.write_str("not a saved DHT state (bad or truncated bencode)"),
            StateError::Version(v) => write!(f, "saved state version {v}, this build reads {STATE_VERSION}"),
            StateError::Field(name) => write!(f, "saved state field `{name}` is missing or malformed"),
        }
    }
}

impl core::error::Error for StateError {}

impl SavedState {
    /// The bencoded form.
    pub fn encode(&self) -> Vec<u8> {
        let id_len = self.id.len();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for node in self.nodes.iter().take(MAX_SAVED_NODES) {
            let mut addr = [0u8; 18];
            let n = write_compact_addr(&node.addr, &mut addr);
            let out = if n == 6 { &mut v4 } else { &mut v6 };
            if node.id.len() == id_len {
                out.extend_from_slice(node.id.as_bytes());
                out.extend_from_slice(&addr[..n]);
            }
        }
        Dictionary::new()
            .with_bytes("id", self.id.as_bytes())
            .with_bytes("nodes", &v4)
            .with_bytes("nodes6", &v6)
            .with_int("version", STATE_VERSION)
            .as_bencode()
            .to_vec()
    }

    /// Reads a state written by [`encode`](Self::encode). Nodes come back IPv4 first, each
    /// family in its saved order.
    pub fn decode(bytes: &[u8]) -> Result<SavedState, StateError> {
        let dict = Dict::parse(bytes).map_err(|_| StateError::Malformed)?;
        match dict.get(b"version").and_then(|v| v.as_int()) {
            Some(STATE_VERSION) => {}
            Some(other) => return Err(StateError::Version(other)),
            None => return Err(StateError::Field("version")),
        }
        let id = dict
            .get(b"id")
            .and_then(|v| v.as_bytes())
            .and_then(|b| NodeId::from_bytes(b).ok())
            .ok_or(StateError::Field("id"))?;
        let mut nodes = Vec::new();
        for (key, v6) in [(&b"nodes"[..], false), (b"nodes6", true)] {
            let Some(value) = dict.get(key) else { continue };
            let raw = value.as_bytes().ok_or(StateError::Field(if v6 { "nodes6" } else { "nodes" }))?;
            let each = id.len() + if v6 { 18 } else { 6 };
            if raw.len() % each != 0 {
                return Err(StateError::Field(if v6 { "nodes6" } else { "nodes" }));
            }
            let compact = if v6 { CompactNodes::v6(raw, id.len()) } else { CompactNodes::v4(raw, id.len()) };
            nodes.extend(compact.into_iter().take(MAX_SAVED_NODES - nodes.len()));
        }
        Ok(SavedState { id, nodes })
    }
}

impl Endpoint {
    /// Our id and the nodes of both routing tables, best first: good nodes before
    /// questionable ones, then the most recently heard from. Bad nodes are left out.
    pub fn save_state(&self) -> SavedState {
        let now = self.now;
        let mut ranked: Vec<(u8, core::cmp::Reverse<Instant>, NodeInfo)> = Vec::new();
        for table in [self.tables.v4(), self.tables.v6()] {
            let policy = *table.policy();
            for c in table.iter() {
                let rank = match c.state(now, &policy) {
                    NodeState::Good => 0,
                    NodeState::Questionable => 1,
                    NodeState::Bad => continue,
                };
                ranked.push((rank, core::cmp::Reverse(c.last_reply.unwrap_or(Instant::ZERO)), c.node));
            }
        }
        ranked.sort_by_key(|&(rank, recency, _)| (rank, recency));
        SavedState { id: self.id, nodes: ranked.into_iter().map(|(_, _, n)| n).collect() }
    }

    /// An endpoint restarted from a saved state: its id (unless `config.id` sets one; a
    /// restored id is not "chosen by the application", so BEP 42 may still replace it) and
    /// its nodes, each **questionable** until it answers — restored nodes are never taken as
    /// good. Nodes go in best first; those that no longer fit, never-valid addresses, ids of
    /// another length and nodes the diversity rules refuse are skipped.
    ///
    /// No events are reported for restored nodes. Call [`bootstrap`](Self::bootstrap) next:
    /// it looks up our id through the restored nodes, with no bootstrap host needed.
    pub fn restore(config: Config, seed: [u8; 32], now: Instant, state: &SavedState) -> Result<Endpoint, ConfigError> {
        let config_id = config.id;
        let mut ep = Endpoint::new(Config { id: Some(config_id.unwrap_or(state.id)), ..config }, seed, now)?;
        // The id came from the state, not from the application.
        ep.config.id = config_id;
        for node in &state.nodes {
            ep.restore_node(*node, now);
        }
        Ok(ep)
    }

    fn restore_node(&mut self, node: NodeInfo, now: Instant) -> bool {
        if is_never_valid(&node.addr) || self.node.as_deref().is_some_and(|n| !n.admits(&node)) {
            return false;
        }
        if !self.diversity_admits(&node) {
            return false;
        }
        matches!(self.tables.of_mut(&node.addr).insert_restored(node, now), InsertOutcome::Added)
    }
}

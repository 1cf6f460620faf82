//! The built-in BEP 5 node layer: answering `find_node`, `get_peers`, `announce_peer`, and
//! the high-level `find_node`/`get_peers`/`announce` operations built on lookups.
//!
//! Off unless [`Config::dht`](crate::Config::dht) is set; the generic engine (k-rpc parity)
//! hands every query but `ping` to the application.

use alloc::boxed::Box;
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::net::{IpAddr, SocketAddr};

use super::{CommandError, Endpoint, MAX_TRANSACTION_ID_LEN, Outbound};
use crate::dht::{
    BLOOM_BYTES, DhtConfig, ExternalAddressVote, Family, PeerRequest, PeerStore, SecureIdPolicy, Tokens,
    UnknownMethods, generate_secure_id, is_verified,
};
use crate::event::{Event, LookupNode, OpId};
use crate::query::{Peer, Query};
use crate::routing::{NodeState, RoutingTable};
use crate::wire::{BufferTooSmall, Dictionary, Entry, Insert, QueryView, ResponseOut, Want, canonical_ip};
use crate::{Instant, NodeId, NodeInfo, QueryError};

/// Most peers one `get_peers` reply can carry, whatever the configuration.
pub(crate) const MAX_VALUES: usize = 128;

/// State of the node layer.
#[derive(Debug)]
pub(crate) struct DhtState {
    pub(crate) config: DhtConfig,
    pub(crate) tokens: Tokens,
    pub(crate) peers: PeerStore,
    /// Our public address per family, learned from the `ip` field of replies (BEP 42).
    pub(crate) votes: [ExternalAddressVote; 2],
}

impl DhtState {
    pub(crate) fn new(config: DhtConfig, rng: &mut rand_chacha::ChaCha12Rng, now: Instant) -> Box<Self> {
        let tokens = Tokens::new(rng, now);
        let peers = PeerStore::new(config.peer_store, rng);
        Box::new(DhtState { config, tokens, peers, votes: [ExternalAddressVote::new(), ExternalAddressVote::new()] })
    }
}

/// What a lookup started by the node layer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DhtOp {
    /// `get_peers`: each reply's `values` become [`Event::Peers`].
    GetPeers,
    /// `announce`, first phase: a `get_peers` lookup collecting tokens.
    AnnounceLookup { port: Option<u16>, seed: bool },
    /// `announce`, second phase: `announce_peer` to the closest token holders; reported under
    /// the user's operation id.
    AnnounceQueries { user_op: OpId },
}

fn tid(t: &[u8]) -> ArrayVec<u8, MAX_TRANSACTION_ID_LEN> {
    let mut out = ArrayVec::new();
    let _ = out.try_extend_from_slice(t);
    out
}

impl Endpoint {
    /// Answers a query with the node layer, if it is on and the method is its own. Returns
    /// whether the query was handled (answered, refused, or dropped for lack of room).
    pub(crate) fn serve_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        t: &[u8],
        q: &QueryView<'_>,
        want: Option<Want>,
    ) -> bool {
        let Some(dht) = self.dht.as_deref_mut() else { return false };
        if dht.config.application_methods.iter().any(|m| m.as_slice() == q.method) {
            return false;
        }
        let want = Want::for_request(want, &from);
        let out = match q.method {
            b"find_node" => match q.args.target() {
                Some(target) => Outbound::FindNode { to: from, t: tid(t), target, want },
                None => error(from, t, 203, b"find_node requires a.target"),
            },
            b"get_peers" => match q.args.info_hash() {
                Some(info_hash) => Outbound::GetPeers {
                    to: from,
                    t: tid(t),
                    info_hash,
                    want,
                    noseed: q.args.noseed(),
                    scrape: q.args.scrape(),
                },
                None => error(from, t, 203, b"get_peers requires a.info_hash"),
            },
            b"announce_peer" => announce_peer(dht, now, from, t, q),
            _ if dht.config.unknown_methods == UnknownMethods::Deliver => return false,
            // libtorrent: unknown methods with a target are answered as find_node, so that
            // new methods can be routed through nodes that do not know them.
            _ => match q.args.target().or(q.args.info_hash()) {
                Some(target) => Outbound::FindNode { to: from, t: tid(t), target, want },
                None => error(from, t, 204, b"Method Unknown"),
            },
        };
        if self.transmits.len() >= self.config.max_queued_transmits {
            self.stats.transmits_dropped += 1;
        } else {
            self.transmits.push_back(out);
        }
        true
    }

    /// The `reply_nodes` closest good or questionable nodes of each wanted family.
    fn reply_nodes(&self, target: &NodeId, want: Want) -> ArrayVec<NodeInfo, { crate::routing::MAX_K }> {
        let n = self.dht.as_ref().map_or(8, |d| d.config.reply_nodes);
        let now = self.now;
        // BEP 32: `nodes` from the IPv4 table, `nodes6` from the IPv6 one.
        let of_family = |v4: bool| {
            let table = if v4 { &self.table } else { &self.table6 };
            let policy = *table.policy();
            table.closest_filtered(target, n, |c| c.state(now, &policy) != NodeState::Bad)
        };
        let mut out = ArrayVec::new();
        for (wanted, v4) in [(want.n4, true), (want.n6, false)] {
            if wanted {
                for node in of_family(v4) {
                    let _ = out.try_push(node);
                }
            }
        }
        out
    }

    pub(crate) fn encode_find_node(
        &self,
        buf: &mut [u8],
        to: SocketAddr,
        t: &[u8],
        target: &NodeId,
        want: Want,
    ) -> Result<usize, BufferTooSmall> {
        let mut nodes = self.reply_nodes(target, want);
        let budget = self.dht.as_ref().map_or(usize::MAX, |d| d.config.max_reply_len);
        let requester_v4 = canonical_ip(to.ip()).is_ipv4();
        // The whole answer stays within `max_reply_len`: while the nodes do not fit, the
        // farthest go, those of the family the requester is not on first.
        while self.measure_reply(to, t, &find_node_entries(&self.id, &nodes, want)) > budget
            && (drop_farthest(&mut nodes, !requester_v4) || drop_farthest(&mut nodes, requester_v4))
        {}
        self.encode_reply(buf, to, t, &find_node_entries(&self.id, &nodes, want))
    }

    /// The length of a node-layer answer with these entries.
    fn measure_reply(&self, to: SocketAddr, t: &[u8], extra: &[Entry<'_>]) -> usize {
        self.encode_reply(&mut [], to, t, extra).err().map_or(0, |e| e.required)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_get_peers(
        &mut self,
        buf: &mut [u8],
        to: SocketAddr,
        t: &[u8],
        info_hash: &NodeId,
        want: Want,
        noseed: bool,
        scrape: bool,
    ) -> Result<usize, BufferTooSmall> {
        let mut nodes = self.reply_nodes(info_hash, want);
        let Some(dht) = self.dht.as_deref() else { return Ok(0) };
        let ip = canonical_ip(to.ip());
        let token = dht.tokens.issue(ip, info_hash.as_bytes());
        // BEP 32: `values` carry the family of the request.
        let family = Family::of(ip);
        let max = match family {
            Family::V4 => dht.config.max_values_v4,
            Family::V6 => dht.config.max_values_v6,
        };
        let mut values: ArrayVec<SocketAddr, MAX_VALUES> = ArrayVec::new();
        let request = PeerRequest { family, max, prefer_non_seeds: noseed };
        dht.peers.get(info_hash, self.now, request, &mut self.rng, &mut values);
        let mut bloom = if scrape { dht.peers.bloom(info_hash, self.now) } else { None };
        let budget = dht.config.max_reply_len;
        let per_value = if family == Family::V4 { 8 } else { 21 };
        let requester_v4 = family == Family::V4;
        // The whole answer stays within `max_reply_len`. Everything but the peers is measured
        // first; while that alone is too large, the farthest nodes of the family the
        // requester is not on go, then the BEP 33 bloom filters (2 × 256 bytes), then the
        // farthest nodes of its own family. The peers take the room left.
        let base = loop {
            let base = self.measure_reply(to, t, &get_peers_entries(&self.id, &nodes, want, &token, bloom.as_ref()));
            if base <= budget
                || !(drop_farthest(&mut nodes, !requester_v4)
                    || bloom.take().is_some()
                    || drop_farthest(&mut nodes, requester_v4))
            {
                break base;
            }
        };
        let mut extra = get_peers_entries(&self.id, &nodes, want, &token, bloom.as_ref());
        let room = budget.saturating_sub(base + b"6:valueslel".len()) / per_value;
        let values = &values[..values.len().min(room)];
        if !values.is_empty() {
            extra.push(Entry { key: b"values", value: Insert::Peers(values), replace: true });
        }
        self.encode_reply(buf, to, t, &extra)
    }

    fn encode_reply(
        &self,
        buf: &mut [u8],
        to: SocketAddr,
        t: &[u8],
        extra: &[Entry<'_>],
    ) -> Result<usize, BufferTooSmall> {
        let version = self.config.version;
        let out = ResponseOut {
            transaction_id: t,
            values: &self.empty_dict,
            extra,
            ip: self.config.send_ip.then_some(to),
            version: version.as_ref().map(|v| &v[..]),
        };
        out.encode(buf)
    }

    /// Runs `find_node` toward `target`: a lookup whose result is the closest nodes.
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> Result<OpId, CommandError> {
        self.closest(now, target, Query::find_node(&target))
    }

    /// Looks up peers for `info_hash`: each reply carrying `values` is reported as
    /// [`Event::Peers`]; the end is [`Event::LookupDone`], whose `closest` carry the write
    /// tokens an announce needs.
    pub fn get_peers(&mut self, now: Instant, info_hash: NodeId) -> Result<OpId, CommandError> {
        self.start_dht_lookup(now, info_hash, DhtOp::GetPeers)
    }

    /// Starts a `get_peers` lookup that belongs to the node layer. The operation is
    /// registered before the lookup starts, because a lookup with nobody to ask ends at once.
    fn start_dht_lookup(&mut self, now: Instant, info_hash: NodeId, kind: DhtOp) -> Result<OpId, CommandError> {
        let op = OpId(self.next_op);
        self.dht_ops.insert(op, kind);
        let started = self.start_lookup(now, info_hash, Query::get_peers(&info_hash), false, false);
        if started.is_err() {
            self.dht_ops.remove(&op);
        }
        started
    }

    /// Announces that we have `info_hash` on `port` (`None`: the port the datagrams leave
    /// from, BEP 5's `implied_port`): a `get_peers` lookup, then `announce_peer` to the `k`
    /// closest nodes that gave a token (BEP 33: "Announce only to the K closest nodes that
    /// returned a token"). Peers found on the way are reported as [`Event::Peers`]; the end
    /// is [`Event::AnnounceDone`] with the number of nodes that stored us.
    pub fn announce(
        &mut self,
        now: Instant,
        info_hash: NodeId,
        port: Option<u16>,
        seed: bool,
    ) -> Result<OpId, CommandError> {
        self.start_dht_lookup(now, info_hash, DhtOp::AnnounceLookup { port, seed })
    }

    /// Our public address as voted by the `ip` fields of replies (BEP 42), per family.
    pub fn external_address(&self) -> [Option<IpAddr>; 2] {
        match self.dht.as_deref() {
            Some(d) => [d.votes[0].current(), d.votes[1].current()],
            None => [None, None],
        }
    }

    /// Values of a reply to a `get_peers`/`announce` lookup become an [`Event::Peers`].
    pub(crate) fn dht_lookup_reply(&mut self, op: OpId, from: SocketAddr, fields: &crate::wire::Fields<'_>) {
        if matches!(self.dht_ops.get(&op), Some(DhtOp::GetPeers | DhtOp::AnnounceLookup { .. })) {
            let peers: Vec<SocketAddr> = fields.values().collect();
            if !peers.is_empty() {
                self.push_event(Event::Peers { op, from, peers });
            }
        }
    }

    /// A lookup ended. Returns `true` when the node layer took over its report.
    pub(crate) fn dht_lookup_done(&mut self, op: OpId, info_hash: NodeId, closest: &[LookupNode]) -> bool {
        match self.dht_ops.remove(&op) {
            Some(DhtOp::AnnounceLookup { port, seed }) => {
                let mut args = Dictionary::new().with_bytes("info_hash", info_hash.as_bytes());
                args.insert_int("implied_port", i64::from(port.is_none()));
                args.insert_int("port", i64::from(port.unwrap_or(0)));
                if seed {
                    args.insert_int("seed", 1);
                }
                let query = Query::new("announce_peer", args).unwrap_or_else(Query::ping);
                let peers: Vec<Peer> = closest
                    .iter()
                    .filter_map(|n| Some(Peer::node(n.node).with_token(n.token.clone()?)))
                    .take(self.config.k)
                    .collect();
                match self.query_all(self.now, peers, query) {
                    Ok(inner) => {
                        self.dht_ops.insert(inner, DhtOp::AnnounceQueries { user_op: op });
                    }
                    Err(_) => self.push_event(Event::AnnounceDone { op, result: Err(QueryError::NoNodes) }),
                }
                true
            }
            Some(other) => {
                if other == DhtOp::GetPeers {
                    return false;
                }
                true
            }
            None => false,
        }
    }

    /// The operation to stop for the user's `op`: an announce past its lookup runs as an
    /// internal `query_all`.
    pub(crate) fn dht_running_op(&self, op: OpId) -> OpId {
        self.dht_ops
            .iter()
            .find_map(|(inner, d)| match d {
                DhtOp::AnnounceQueries { user_op } if *user_op == op => Some(*inner),
                _ => None,
            })
            .unwrap_or(op)
    }

    /// A `query_all` ended. Returns `true` when it was an announce's second phase.
    pub(crate) fn dht_query_all_done(&mut self, op: OpId, result: &Result<usize, QueryError>) -> bool {
        if let Some(DhtOp::AnnounceQueries { user_op }) = self.dht_ops.get(&op).copied() {
            self.dht_ops.remove(&op);
            self.push_event(Event::AnnounceDone { op: user_op, result: result.clone() });
            return true;
        }
        false
    }

    /// Token rotation and peer expiry.
    pub(crate) fn dht_tick(&mut self, now: Instant) {
        if let Some(dht) = self.dht.as_deref_mut() {
            dht.tokens.rotate_if_due(now, &mut self.rng);
            dht.peers.expire(now);
        }
    }

    pub(crate) fn dht_next_deadline(&self) -> Option<Instant> {
        self.dht.as_deref().map(|d| d.tokens.next_rotation())
    }

    /// BEP 42 `ip` field of a reply: one vote for our public address. When the vote settles
    /// on an address our id is not bound to, and the id was not chosen by the application,
    /// a secure id is generated and the routing table rebuilt around it.
    pub(crate) fn dht_ip_vote(&mut self, reported: SocketAddr, voter: SocketAddr, now: Instant) {
        let Some(dht) = self.dht.as_deref_mut() else { return };
        let reported = canonical_ip(reported.ip());
        let family = usize::from(reported.is_ipv6());
        let Some(ip) = dht.votes[family].record(reported, canonical_ip(voter.ip()), now) else { return };
        if dht.config.secure_id == SecureIdPolicy::Off || self.config.id.is_some() || is_verified(&self.id, ip) {
            return;
        }
        let Ok(new_id) = generate_secure_id(ip, &mut self.rng, self.config.id_len) else { return };
        let previous = self.id;
        let rebuild = |old: &RoutingTable| {
            let mut table = RoutingTable::new(new_id, self.config.k);
            for contact in old.iter() {
                let _ = table.insert_verified(contact.node, now);
            }
            table
        };
        let (table, table6) = (rebuild(&self.table), rebuild(&self.table6));
        self.id = new_id;
        self.table = table;
        self.table6 = table6;
        self.push_event(Event::IdChanged { previous, id: new_id });
    }

    /// BEP 42 under `Enforce`: ids not bound to their address never enter the table.
    pub(crate) fn dht_admits(&self, node: &NodeInfo) -> bool {
        match self.dht.as_deref() {
            Some(d) => d.config.secure_id.admits(&node.id, canonical_ip(node.addr.ip())),
            None => true,
        }
    }
}

/// The entries of a `find_node` answer: our id, `nodes`, and `nodes6` when wanted (BEP 32).
fn find_node_entries<'a>(id: &'a NodeId, nodes: &'a [NodeInfo], want: Want) -> ArrayVec<Entry<'a>, 3> {
    let mut extra = ArrayVec::new();
    extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false });
    extra.push(Entry { key: b"nodes", value: Insert::NodesV4(nodes), replace: true });
    if want.n6 {
        extra.push(Entry { key: b"nodes6", value: Insert::NodesV6(nodes), replace: true });
    }
    extra
}

/// The entries of a `get_peers` answer but its `values`: the BEP 33 bloom filters when
/// there are some, our id, the nodes, the write token. Room is left for `values`.
fn get_peers_entries<'a>(
    id: &'a NodeId,
    nodes: &'a [NodeInfo],
    want: Want,
    token: &'a [u8],
    bloom: Option<&'a ([u8; BLOOM_BYTES], [u8; BLOOM_BYTES])>,
) -> ArrayVec<Entry<'a>, 7> {
    let mut extra = ArrayVec::new();
    if let Some((seeds, peers)) = bloom {
        extra.push(Entry { key: b"BFpe", value: Insert::Bytes(peers), replace: true });
        extra.push(Entry { key: b"BFsd", value: Insert::Bytes(seeds), replace: true });
    }
    extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false });
    extra.push(Entry { key: b"nodes", value: Insert::NodesV4(nodes), replace: true });
    if want.n6 {
        extra.push(Entry { key: b"nodes6", value: Insert::NodesV6(nodes), replace: true });
    }
    extra.push(Entry { key: b"token", value: Insert::Bytes(token), replace: true });
    extra
}

/// Removes the farthest node of one family from a reply's nodes (nearest first within each
/// family); returns whether there was one.
fn drop_farthest(nodes: &mut ArrayVec<NodeInfo, { crate::routing::MAX_K }>, v4: bool) -> bool {
    match nodes.iter().rposition(|n| canonical_ip(n.addr.ip()).is_ipv4() == v4) {
        Some(i) => {
            nodes.remove(i);
            true
        }
        None => false,
    }
}

fn error(to: SocketAddr, t: &[u8], code: i64, message: &[u8]) -> Outbound {
    let mut m = ArrayVec::new();
    let _ = m.try_extend_from_slice(&message[..message.len().min(128)]);
    Outbound::Error { to, t: tid(t), code, message: m }
}

/// BEP 5: "The queried node must verify that the token was previously sent to the same IP
/// address as the querying node. Then the queried node should store the IP address of the
/// querying node and the supplied port number under the infohash in its store of peer
/// contact information."
fn announce_peer(dht: &mut DhtState, now: Instant, from: SocketAddr, t: &[u8], q: &QueryView<'_>) -> Outbound {
    let Some(info_hash) = q.args.info_hash() else {
        return error(from, t, 203, b"announce_peer requires a.info_hash");
    };
    let Some(token) = q.args.token() else {
        return error(from, t, 203, b"announce_peer requires a.token");
    };
    let ip = canonical_ip(from.ip());
    if !dht.tokens.verify(ip, info_hash.as_bytes(), token, now) {
        return error(from, t, 203, b"bad token");
    }
    // "If it is present and non-zero, the port argument should be ignored and the source
    // port of the UDP packet should be used as the peer's port instead."
    let port = if q.args.implied_port() { Some(from.port()) } else { q.args.port() };
    let Some(port) = port.filter(|p| *p != 0) else {
        return error(from, t, 203, b"announce_peer requires a.port");
    };
    match dht.peers.announce(&info_hash, SocketAddr::new(ip, port), q.args.seed(), now) {
        Ok(_) => Outbound::Pong { to: from, t: tid(t) },
        Err(_) => error(from, t, 203, b"announce refused: too many peers from this address"),
    }
}

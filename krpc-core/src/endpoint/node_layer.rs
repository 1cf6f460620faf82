//! The built-in BEP 5 node layer: answering `find_node`, `get_peers` and `announce_peer` from
//! the routing tables and the peer store, issuing and checking write tokens, and voting on our
//! external address (BEP 42).
//!
//! Absent (`None` in the endpoint) unless [`Config::dht`](crate::Config::dht) is set: the
//! generic engine (k-rpc parity) hands every query but `ping` to the application. The layer
//! reads the routing tables it is given and never changes them; what it decides to send goes
//! back to the orchestrator as an [`Outbound`].

use alloc::boxed::Box;
use arrayvec::ArrayVec;
use core::net::{IpAddr, SocketAddr};

use rand_chacha::ChaCha12Rng;

use super::rpc::{Outbound, tid};
use super::tables::Tables;
use crate::dht::{
    BLOOM_BYTES, DhtConfig, ExternalAddressVote, Family, PeerRequest, PeerStore, SecureIdPolicy, Tokens,
    UnknownMethods, is_verified,
};
use crate::routing::NodeState;
use crate::wire::{BufferTooSmall, Dictionary, Entry, Insert, QueryView, ResponseOut, Want, canonical_ip};
use crate::{Instant, NodeId, NodeInfo};

/// Most peers one `get_peers` reply can carry, whatever the configuration.
pub(crate) const MAX_VALUES: usize = 128;

/// How every answer is framed: our id, `v`, and whether to echo the requester's address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Framing<'a> {
    pub(crate) id: &'a NodeId,
    pub(crate) version: Option<&'a [u8]>,
    pub(crate) send_ip: bool,
    pub(crate) empty: &'a Dictionary,
}

impl Framing<'_> {
    fn encode(&self, buf: &mut [u8], to: SocketAddr, t: &[u8], extra: &[Entry<'_>]) -> Result<usize, BufferTooSmall> {
        self.response(to, t, extra).encode(buf)
    }

    fn len(&self, to: SocketAddr, t: &[u8], extra: &[Entry<'_>]) -> usize {
        self.response(to, t, extra).encoded_len()
    }

    fn response<'b>(&'b self, to: SocketAddr, t: &'b [u8], extra: &'b [Entry<'b>]) -> ResponseOut<'b> {
        ResponseOut {
            transaction_id: t,
            values: self.empty,
            extra,
            ip: self.send_ip.then_some(to),
            version: self.version,
        }
    }
}

/// State of the node layer.
#[derive(Debug)]
pub(crate) struct NodeLayer {
    config: DhtConfig,
    tokens: Tokens,
    peers: PeerStore,
    /// Our public address per family, learned from the `ip` field of replies (BEP 42).
    votes: [ExternalAddressVote; 2],
}

impl NodeLayer {
    pub(crate) fn new(config: DhtConfig, rng: &mut ChaCha12Rng, now: Instant) -> Box<Self> {
        let tokens = Tokens::new(rng, now);
        let peers = PeerStore::new(config.peer_store, rng);
        Box::new(NodeLayer { config, tokens, peers, votes: [ExternalAddressVote::new(), ExternalAddressVote::new()] })
    }

    /// Decides the answer to a query: the node layer's own methods, and unknown methods per
    /// [`UnknownMethods`]. `None`: not the node layer's method, the application gets it.
    pub(crate) fn answer(&mut self, now: Instant, from: SocketAddr, t: &[u8], q: &QueryView<'_>) -> Option<Outbound> {
        if self.config.application_methods.iter().any(|m| m.as_slice() == q.method) {
            return None;
        }
        let want = Want::for_request(q.args.want(), &from);
        Some(match q.method {
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
            b"announce_peer" => self.announce_peer(now, from, t, q),
            _ if self.config.unknown_methods == UnknownMethods::Deliver => return None,
            // libtorrent: unknown methods with a target are answered as find_node, so that
            // new methods can be routed through nodes that do not know them.
            _ => match q.args.target().or(q.args.info_hash()) {
                Some(target) => Outbound::FindNode { to: from, t: tid(t), target, want },
                None => error(from, t, 204, b"Method Unknown"),
            },
        })
    }

    /// BEP 5: "The queried node must verify that the token was previously sent to the same IP
    /// address as the querying node. Then the queried node should store the IP address of the
    /// querying node and the supplied port number under the infohash in its store of peer
    /// contact information."
    fn announce_peer(&mut self, now: Instant, from: SocketAddr, t: &[u8], q: &QueryView<'_>) -> Outbound {
        let Some(info_hash) = q.args.info_hash() else {
            return error(from, t, 203, b"announce_peer requires a.info_hash");
        };
        let Some(token) = q.args.token() else {
            return error(from, t, 203, b"announce_peer requires a.token");
        };
        let ip = canonical_ip(from.ip());
        if !self.tokens.verify(ip, info_hash.as_bytes(), token, now) {
            return error(from, t, 203, b"bad token");
        }
        // "If it is present and non-zero, the port argument should be ignored and the source
        // port of the UDP packet should be used as the peer's port instead." Ignored means
        // ignored: with `implied_port` an out-of-range `port` is no error.
        let port = if q.args.implied_port() { Some(from.port()) } else { q.args.port() };
        let Some(port) = port.filter(|p| *p != 0) else {
            return match q.args.has_port() {
                true => error(from, t, 203, b"announce_peer a.port must be 1-65535"),
                false => error(from, t, 203, b"announce_peer requires a.port"),
            };
        };
        match self.peers.announce(&info_hash, SocketAddr::new(ip, port), q.args.seed(), now) {
            Ok(_) => Outbound::Pong { to: from, t: tid(t) },
            Err(_) => error(from, t, 203, b"announce refused: too many peers from this address"),
        }
    }

    /// The `reply_nodes` closest good or questionable nodes of each wanted family.
    fn reply_nodes(
        &self,
        tables: &Tables,
        now: Instant,
        target: &NodeId,
        want: Want,
    ) -> ArrayVec<NodeInfo, { crate::routing::MAX_K }> {
        let n = self.config.reply_nodes;
        // BEP 32: `nodes` from the IPv4 table, `nodes6` from the IPv6 one.
        let of_family = |v6: bool| {
            let table = tables.family(v6);
            let policy = *table.policy();
            table.closest_filtered(target, n, |c| c.state(now, &policy) != NodeState::Bad)
        };
        let mut out = ArrayVec::new();
        for (wanted, v6) in [(want.n4, false), (want.n6, true)] {
            if wanted {
                for node in of_family(v6) {
                    let _ = out.try_push(node);
                }
            }
        }
        out
    }

    /// Encodes a `find_node` answer, within `max_reply_len`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_find_node(
        &self,
        tables: &Tables,
        now: Instant,
        framing: &Framing<'_>,
        buf: &mut [u8],
        to: SocketAddr,
        t: &[u8],
        target: &NodeId,
        want: Want,
    ) -> Result<usize, BufferTooSmall> {
        let mut nodes = self.reply_nodes(tables, now, target, want);
        let budget = self.config.max_reply_len;
        let requester_v4 = canonical_ip(to.ip()).is_ipv4();
        // The whole answer stays within `max_reply_len`: while the nodes do not fit, the
        // farthest go, those of the family the requester is not on first.
        while framing.len(to, t, &find_node_entries(framing.id, &nodes, want)) > budget
            && (drop_farthest(&mut nodes, !requester_v4) || drop_farthest(&mut nodes, requester_v4))
        {}
        framing.encode(buf, to, t, &find_node_entries(framing.id, &nodes, want))
    }

    /// Encodes a `get_peers` answer, within `max_reply_len`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_get_peers(
        &mut self,
        tables: &Tables,
        now: Instant,
        rng: &mut ChaCha12Rng,
        framing: &Framing<'_>,
        buf: &mut [u8],
        to: SocketAddr,
        t: &[u8],
        info_hash: &NodeId,
        want: Want,
        noseed: bool,
        scrape: bool,
    ) -> Result<usize, BufferTooSmall> {
        let mut nodes = self.reply_nodes(tables, now, info_hash, want);
        let ip = canonical_ip(to.ip());
        let token = self.tokens.issue(ip, info_hash.as_bytes());
        // BEP 32: `values` carry the family of the request.
        let family = Family::of(ip);
        let max = match family {
            Family::V4 => self.config.max_values_v4,
            Family::V6 => self.config.max_values_v6,
        };
        let mut values: ArrayVec<SocketAddr, MAX_VALUES> = ArrayVec::new();
        let request = PeerRequest { family, max, prefer_non_seeds: noseed };
        self.peers.get(info_hash, now, request, rng, &mut values);
        let mut bloom = if scrape { self.peers.bloom(info_hash, now) } else { None };
        let budget = self.config.max_reply_len;
        let per_value = if family == Family::V4 { 8 } else { 21 };
        let requester_v4 = family == Family::V4;
        // The whole answer stays within `max_reply_len`. Everything but the peers is measured
        // first; while that alone is too large, the farthest nodes of the family the
        // requester is not on go, then the BEP 33 bloom filters (2 × 256 bytes), then the
        // farthest nodes of its own family. The peers take the room left.
        let base = loop {
            let base = framing.len(to, t, &get_peers_entries(framing.id, &nodes, want, &token, bloom.as_ref()));
            if base <= budget
                || !(drop_farthest(&mut nodes, !requester_v4)
                    || bloom.take().is_some()
                    || drop_farthest(&mut nodes, requester_v4))
            {
                break base;
            }
        };
        let mut extra = get_peers_entries(framing.id, &nodes, want, &token, bloom.as_ref());
        let room = budget.saturating_sub(base + b"6:valueslel".len()) / per_value;
        let values = &values[..values.len().min(room)];
        if !values.is_empty() {
            extra.push(Entry { key: b"values", value: Insert::Peers(values), replace: true });
        }
        framing.encode(buf, to, t, &extra)
    }

    /// Our public address as voted by the `ip` fields of replies (BEP 42), per family.
    pub(crate) fn external_address(&self) -> [Option<IpAddr>; 2] {
        [self.votes[0].current(), self.votes[1].current()]
    }

    /// BEP 42 `ip` field of a reply: one vote for our public address. Returns the address
    /// when the vote settles on one that `id` is not bound to and the secure-id policy asks
    /// for a new id then.
    pub(crate) fn vote(
        &mut self,
        reported: SocketAddr,
        voter: SocketAddr,
        now: Instant,
        id: &NodeId,
    ) -> Option<IpAddr> {
        let reported = canonical_ip(reported.ip());
        let family = usize::from(reported.is_ipv6());
        let ip = self.votes[family].record(reported, canonical_ip(voter.ip()), now)?;
        (self.config.secure_id != SecureIdPolicy::Off && !is_verified(id, ip)).then_some(ip)
    }

    /// BEP 42 under `Enforce`: ids not bound to their address never enter the table.
    pub(crate) fn admits(&self, node: &NodeInfo) -> bool {
        self.config.secure_id.admits(&node.id, canonical_ip(node.addr.ip()))
    }

    /// Token rotation and peer expiry, when due.
    pub(crate) fn tick(&mut self, now: Instant, rng: &mut ChaCha12Rng) {
        self.tokens.rotate_if_due(now, rng);
        self.peers.expire(now);
    }

    /// When [`tick`](Self::tick) is due next.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.tokens.next_rotation()
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
    let _ = m.try_extend_from_slice(&message[..message.len().min(super::rpc::MAX_ERROR_MESSAGE)]);
    Outbound::Error { to, t: tid(t), code, message: m }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Body, Message};
    use alloc::format;
    use rand_core::SeedableRng;

    fn layer(config: DhtConfig) -> (Box<NodeLayer>, ChaCha12Rng) {
        let mut rng = ChaCha12Rng::from_seed([9; 32]);
        (NodeLayer::new(config, &mut rng, Instant::ZERO), rng)
    }

    /// The node layer's decision on a bencoded query.
    fn decide(layer: &mut NodeLayer, bytes: &[u8]) -> Option<Outbound> {
        let msg = Message::decode(bytes).unwrap();
        let Body::Query(q) = msg.body else { panic!("not a query") };
        layer.answer(Instant::ZERO, "10.0.0.7:6881".parse().unwrap(), msg.transaction_id, &q)
    }

    fn error_code(answer: &Option<Outbound>) -> Option<i64> {
        match answer {
            Some(Outbound::Error { code, .. }) => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn missing_arguments_get_203_and_unknown_methods_204_or_find_node() {
        let (mut l, _) = layer(DhtConfig::default());
        let id = "2:id20:aaaaaaaaaaaaaaaaaaaa";
        let q = |method: &str, args: &str| format!("d1:ad{id}{args}e1:q{}:{method}1:t2:aa1:y1:qe", method.len());
        assert_eq!(error_code(&decide(&mut l, q("find_node", "").as_bytes())), Some(203));
        assert_eq!(error_code(&decide(&mut l, q("get_peers", "").as_bytes())), Some(203));
        assert_eq!(error_code(&decide(&mut l, q("frobnicate", "").as_bytes())), Some(204));
        let with_target = q("frobnicate", "6:target20:bbbbbbbbbbbbbbbbbbbb");
        assert!(matches!(decide(&mut l, with_target.as_bytes()), Some(Outbound::FindNode { .. })));
        let get_peers = q("get_peers", "9:info_hash20:cccccccccccccccccccc");
        assert!(matches!(decide(&mut l, get_peers.as_bytes()), Some(Outbound::GetPeers { .. })));
    }

    #[test]
    fn an_announce_needs_a_token_issued_to_its_ip() {
        let (mut l, mut rng) = layer(DhtConfig::default());
        let framing_id = NodeId::from_array([1; 20]);
        let empty = Dictionary::new();
        let framing = Framing { id: &framing_id, version: None, send_ip: false, empty: &empty };
        let tables = Tables::new(framing_id, 8, Instant::ZERO);
        let info_hash = NodeId::from_array(*b"cccccccccccccccccccc");
        let from: SocketAddr = "10.0.0.7:6881".parse().unwrap();
        let mut buf = [0u8; 1500];
        let want = Want { n4: true, n6: false };
        let len = l
            .encode_get_peers(
                &tables,
                Instant::ZERO,
                &mut rng,
                &framing,
                &mut buf,
                from,
                b"aa",
                &info_hash,
                want,
                false,
                false,
            )
            .unwrap();
        let reply = Message::decode(&buf[..len]).unwrap();
        let token = reply.as_response().unwrap().token().unwrap().to_vec();
        let announce = |token: &[u8]| {
            let mut q =
                b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa9:info_hash20:cccccccccccccccccccc4:port i6881e5:token".to_vec();
            q.retain(|b| *b != b' ');
            q.extend_from_slice(format!("{}:", token.len()).as_bytes());
            q.extend_from_slice(token);
            q.extend_from_slice(b"e1:q13:announce_peer1:t2:aa1:y1:qe");
            q
        };
        assert_eq!(error_code(&decide(&mut l, &announce(b"nope"))), Some(203), "a token never issued");
        assert!(matches!(decide(&mut l, &announce(&token)), Some(Outbound::Pong { .. })), "stored");
    }

    #[test]
    fn application_methods_are_not_the_node_layers() {
        let config = DhtConfig { application_methods: alloc::vec![b"find_node".to_vec()], ..DhtConfig::default() };
        let (mut l, _) = layer(config);
        let q = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa6:target20:bbbbbbbbbbbbbbbbbbbbe1:q9:find_node1:t2:aa1:y1:qe";
        assert!(decide(&mut l, q).is_none());
    }
}

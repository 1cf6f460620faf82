//! The built-in BEP 5 node layer: answering `find_node`, `get_peers` and `announce_peer` from
//! the routing tables and the peer store, BEP 44 `get` and `put` from the item store, issuing
//! and checking write tokens, and voting on our external address (BEP 42).
//!
//! Absent (`None` in the endpoint) unless [`Config::dht`](crate::Config::dht) is set: the
//! generic engine (k-rpc parity) hands every query but `ping` to the application. The layer
//! reads the routing tables it is given and never changes them; what it decides to send goes
//! back to the orchestrator as an [`Outbound`].

use alloc::boxed::Box;
use arrayvec::ArrayVec;
use core::net::{IpAddr, SocketAddr};

use crate::rng::EngineRng;

use super::rpc::{Outbound, tid};
use super::tables::Tables;
use crate::dht::bep44::{check_value, immutable_target, mutable_target, verify};
use crate::dht::item_store::Signed;
use crate::dht::{
    BLOOM_BYTES, DhtConfig, ExternalAddressVote, Family, ItemStore, PeerRequest, PeerStore, SecureIdPolicy, Tokens,
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
    /// BEP 44 items stored for others.
    items: ItemStore,
    /// Our public address per family, learned from the `ip` field of replies (BEP 42).
    votes: [ExternalAddressVote; 2],
    /// BEP 51: the sample served until `sample_until`, and how many info-hashes it was drawn
    /// from.
    samples: ArrayVec<NodeId, MAX_SAMPLES>,
    sample_num: usize,
    sample_until: Option<Instant>,
}

/// BEP 51: most info-hashes in one `sample_infohashes` answer (as libtorrent); fewer when the
/// reply budget is short.
pub(crate) const MAX_SAMPLES: usize = 20;

impl NodeLayer {
    /// Heap bytes held (the boxed layer itself, its peer and item stores), for memory
    /// accounting.
    pub(crate) fn memory_footprint(&self) -> usize {
        core::mem::size_of::<Self>() + self.peers.memory_bytes() + self.items.memory_footprint()
    }

    pub(crate) fn new(config: DhtConfig, rng: &mut EngineRng, now: Instant) -> Box<Self> {
        let tokens = Tokens::new(rng, now);
        let peers = PeerStore::new(config.peer_store, rng);
        let items = ItemStore::new(config.item_store);
        Box::new(NodeLayer {
            config,
            tokens,
            peers,
            items,
            votes: [ExternalAddressVote::new(), ExternalAddressVote::new()],
            samples: ArrayVec::new(),
            sample_num: 0,
            sample_until: None,
        })
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
            // BEP 44: "get" carries a target; its answer has a write token, the closest nodes
            // and the item when we hold it.
            // BEP 51: "sample_infohashes" with a `target`, answered with a sample of stored
            // info-hashes and the closest nodes.
            b"sample_infohashes" => match q.args.target() {
                Some(target) => Outbound::Samples { to: from, t: tid(t), target, want },
                None => error(from, t, 203, b"sample_infohashes requires a.target"),
            },
            b"get" => match q.args.target() {
                Some(target) => Outbound::GetItem { to: from, t: tid(t), target, want, seq: q.args.seq() },
                None => error(from, t, 203, b"get requires a.target"),
            },
            b"put" => self.put(now, from, t, q),
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

    /// BEP 44 `put`. The checks, in order: token and `v` present (203); `v` within 1000 bytes
    /// (205) and canonical bencode (203); for a mutable item a salt within 64 bytes (207), a
    /// 32-byte `k`, a 64-byte `sig` and a non-negative `seq` (203). The target is then
    /// computed: SHA-1(`v`) for an immutable item, SHA-1(`k` ‖ salt) for a mutable one; a
    /// `target` argument (not in BEP 44; the `mainline` crate sends one) must equal it, and the
    /// token must have been issued to this IP for that target (203). Last the signature
    /// (206: "the signature MUST be verified before storing"), and the store's `cas` (301) and
    /// `seq` (302) rules.
    fn put(&mut self, now: Instant, from: SocketAddr, t: &[u8], q: &QueryView<'_>) -> Outbound {
        let Some(token) = q.args.token() else {
            return error(from, t, 203, b"put requires a.token");
        };
        let Some(v) = q.args.value_raw() else {
            return error(from, t, 203, b"put requires a.v");
        };
        if let Err(e) = check_value(v) {
            return error(from, t, e.code(), e.message());
        }
        let ip = canonical_ip(from.ip());
        let stored = match q.args.public_key() {
            None => {
                let target = immutable_target(v);
                if q.args.target().is_some_and(|t| t != target) {
                    return error(from, t, 203, b"put a.target is not SHA-1(v)");
                }
                if !self.tokens.verify(ip, target.as_bytes(), token, now) {
                    return error(from, t, 203, b"bad token");
                }
                self.items.put_immutable(target, v, ip, now)
            }
            Some(k) => {
                let salt = q.args.salt().unwrap_or(b"");
                if salt.len() > crate::dht::MAX_SALT_LEN {
                    return error(from, t, 207, b"salt (salt field) too big");
                }
                let (Ok(key), Some(signature)) =
                    (<[u8; 32]>::try_from(k), q.args.signature().and_then(|s| <[u8; 64]>::try_from(s).ok()))
                else {
                    return error(from, t, 203, b"put requires a 32-byte a.k and a 64-byte a.sig");
                };
                // BEP 44: seq "MAY be rejected" when negative; libtorrent answers 203.
                let Some(seq) = q.args.seq().filter(|s| *s >= 0) else {
                    return error(from, t, 203, b"put requires a non-negative a.seq");
                };
                let target = mutable_target(&key, salt);
                if q.args.target().is_some_and(|t| t != target) {
                    return error(from, t, 203, b"put a.target is not SHA-1(k || salt)");
                }
                if !self.tokens.verify(ip, target.as_bytes(), token, now) {
                    return error(from, t, 203, b"bad token");
                }
                if !verify(&key, &signature, salt, seq, v) {
                    return error(from, t, 206, b"invalid signature");
                }
                self.items.put_mutable(target, Signed { key, signature, seq }, v, q.args.cas(), ip, now)
            }
        };
        match stored {
            Ok(()) => Outbound::Pong { to: from, t: tid(t) },
            Err(refused) => error(from, t, refused.code(), refused.message()),
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

    /// Encodes a BEP 51 `sample_infohashes` answer, within `max_reply_len`: `interval`, `num`,
    /// `samples` and the closest nodes. The sample is drawn again at most once per
    /// `sample_interval` ("the subset refresh interval"), so repeated queries learn nothing
    /// new before it passes. When the budget is short the farthest nodes go first, then
    /// samples.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_samples(
        &mut self,
        tables: &Tables,
        now: Instant,
        rng: &mut EngineRng,
        framing: &Framing<'_>,
        buf: &mut [u8],
        to: SocketAddr,
        t: &[u8],
        target: &NodeId,
        want: Want,
    ) -> Result<usize, BufferTooSmall> {
        let interval = self.config.sample_interval.min(crate::dht::MAX_SAMPLE_INTERVAL);
        if self.sample_until.is_none_or(|until| now >= until) {
            self.samples.clear();
            self.sample_num = self.peers.sample_hashes(now, rng, &mut self.samples);
            self.sample_until = Some(now + interval);
        }
        let remaining = self.sample_until.map_or(interval, |until| until.saturating_duration_since(now));
        let interval_secs = remaining.as_secs().max(1) as i64;
        let mut nodes = self.reply_nodes(tables, now, target, want);
        let mut flat: ArrayVec<u8, { MAX_SAMPLES * 20 }> = ArrayVec::new();
        for hash in &self.samples {
            let _ = flat.try_extend_from_slice(hash.as_bytes());
        }
        let id_len = framing.id.len().max(1);
        let num = self.sample_num as i64;
        let budget = self.config.max_reply_len;
        let requester_v4 = canonical_ip(to.ip()).is_ipv4();
        let mut len = flat.len();
        while framing.len(to, t, &sample_entries(framing.id, interval_secs, &nodes, want, num, &flat[..len])) > budget {
            if !(drop_farthest(&mut nodes, !requester_v4) || drop_farthest(&mut nodes, requester_v4)) {
                if len == 0 {
                    break;
                }
                len -= id_len.min(len);
            }
        }
        framing.encode(buf, to, t, &sample_entries(framing.id, interval_secs, &nodes, want, num, &flat[..len]))
    }

    /// Encodes a `get_peers` answer, within `max_reply_len`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_get_peers(
        &mut self,
        tables: &Tables,
        now: Instant,
        rng: &mut EngineRng,
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

    /// Encodes a BEP 44 `get` answer, within `max_reply_len`: our id, the closest nodes, a
    /// write token bound to (IP, target), and the item when we hold one (`v`, and for a
    /// mutable item `k`, `seq`, `sig`). BEP 44: when the request's `seq` is at least the
    /// stored one, only `seq` is sent ("the k, v and sig fields may be omitted"). While the
    /// answer is too large the farthest nodes go (the other family's first); an item that
    /// does not fit even alone is left out, so the nodes and the token still go back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_get_item(
        &self,
        tables: &Tables,
        now: Instant,
        framing: &Framing<'_>,
        buf: &mut [u8],
        to: SocketAddr,
        t: &[u8],
        target: &NodeId,
        want: Want,
        seq: Option<i64>,
    ) -> Result<usize, BufferTooSmall> {
        let all_nodes = self.reply_nodes(tables, now, target, want);
        let mut nodes = all_nodes.clone();
        let ip = canonical_ip(to.ip());
        let token = self.tokens.issue(ip, target.as_bytes());
        let mut values = Dictionary::new();
        if let Some(item) = self.items.get(target, now) {
            match item.signed {
                None => {
                    let _ = values.insert_bencode("v", &item.value);
                }
                Some(s) => {
                    values.insert_int("seq", s.seq);
                    if seq.is_none_or(|min| s.seq > min) {
                        values.insert_bytes("k", s.key);
                        values.insert_bytes("sig", s.signature);
                        let _ = values.insert_bencode("v", &item.value);
                    }
                }
            }
        }
        let budget = self.config.max_reply_len;
        let requester_v4 = ip.is_ipv4();
        loop {
            let framed = Framing { empty: &values, ..*framing };
            if framed.len(to, t, &get_item_entries(framing.id, &nodes, want, &token)) <= budget {
                break;
            }
            if drop_farthest(&mut nodes, !requester_v4) || drop_farthest(&mut nodes, requester_v4) {
                continue;
            }
            if values.is_empty() {
                break;
            }
            values = Dictionary::new();
            nodes = all_nodes.clone();
        }
        let framed = Framing { empty: &values, ..*framing };
        framed.encode(buf, to, t, &get_item_entries(framing.id, &nodes, want, &token))
    }

    /// Items stored and their counted bytes.
    pub(crate) fn stored_items(&self) -> (usize, usize) {
        (self.items.len(), self.items.bytes())
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

    /// Token rotation, peer and item expiry, when due.
    pub(crate) fn tick(&mut self, now: Instant, rng: &mut EngineRng) {
        self.tokens.rotate_if_due(now, rng);
        self.peers.expire(now);
        self.items.expire(now);
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

/// The entries of a BEP 44 `get` answer besides the item: our id, the nodes, the token.
fn get_item_entries<'a>(id: &'a NodeId, nodes: &'a [NodeInfo], want: Want, token: &'a [u8]) -> ArrayVec<Entry<'a>, 4> {
    let mut extra = ArrayVec::new();
    extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false });
    extra.push(Entry { key: b"nodes", value: Insert::NodesV4(nodes), replace: true });
    if want.n6 {
        extra.push(Entry { key: b"nodes6", value: Insert::NodesV6(nodes), replace: true });
    }
    extra.push(Entry { key: b"token", value: Insert::Bytes(token), replace: true });
    extra
}

/// The entries of a BEP 51 answer, in key order: our id, `interval`, `nodes` (and `nodes6`
/// when wanted), `num`, `samples`.
fn sample_entries<'a>(
    id: &'a NodeId,
    interval: i64,
    nodes: &'a [NodeInfo],
    want: Want,
    num: i64,
    samples: &'a [u8],
) -> ArrayVec<Entry<'a>, 6> {
    let mut extra = ArrayVec::new();
    extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false });
    extra.push(Entry { key: b"interval", value: Insert::Int(interval), replace: true });
    extra.push(Entry { key: b"nodes", value: Insert::NodesV4(nodes), replace: true });
    if want.n6 {
        extra.push(Entry { key: b"nodes6", value: Insert::NodesV6(nodes), replace: true });
    }
    extra.push(Entry { key: b"num", value: Insert::Int(num), replace: true });
    extra.push(Entry { key: b"samples", value: Insert::Bytes(samples), replace: true });
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

fn error(to: SocketAddr, t: &[u8], code: i64, message: &'static [u8]) -> Outbound {
    Outbound::Error { to, t: tid(t), code, message: super::rpc::ErrorText::Static(message) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Body, Message};
    use alloc::format;

    fn layer(config: DhtConfig) -> (Box<NodeLayer>, EngineRng) {
        let mut rng = EngineRng::from_seed([9; 32]);
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
        let tables = Tables::new(framing_id, 8, 0, Instant::ZERO);
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

    mod bep44 {
        use super::*;
        use crate::dht::MutableItem;
        use crate::dht::bep44::ed25519_dalek::SigningKey;
        use crate::wire::QueryOut;
        use alloc::vec::Vec;

        const FROM: &str = "10.0.0.7:6881";

        fn query(method: &str, args: &Dictionary) -> Vec<u8> {
            let mut args = args.clone();
            args.insert_bytes("id", [b'a'; 20]);
            let out = QueryOut {
                transaction_id: b"aa",
                method: method.as_bytes(),
                args: &args,
                extra: &[],
                read_only: false,
                version: None,
            };
            let mut buf = [0u8; 1500];
            let len = out.encode(&mut buf).unwrap();
            buf[..len].to_vec()
        }

        fn token(l: &NodeLayer, target: &NodeId) -> [u8; crate::dht::TOKEN_LEN] {
            l.tokens.issue(canonical_ip(FROM.parse::<SocketAddr>().unwrap().ip()), target.as_bytes())
        }

        fn immutable_put(l: &NodeLayer, v: &[u8]) -> Dictionary {
            let mut args = Dictionary::new().with_bytes("token", token(l, &immutable_target(v)));
            args.insert_bencode("v", v).unwrap();
            args
        }

        fn mutable_put(l: &NodeLayer, item: &MutableItem) -> Dictionary {
            let mut args = Dictionary::new()
                .with_bytes("k", item.key)
                .with_bytes("sig", item.signature)
                .with_int("seq", item.seq)
                .with_bytes("token", token(l, &item.target()));
            if !item.salt.is_empty() {
                args.insert_bytes("salt", &item.salt);
            }
            args.insert_bencode("v", &item.value).unwrap();
            args
        }

        fn put_i(l: &mut NodeLayer, v: &[u8]) -> Option<i64> {
            let args = immutable_put(l, v);
            put(l, &args)
        }

        fn put_m(l: &mut NodeLayer, item: &MutableItem) -> Option<i64> {
            let args = mutable_put(l, item);
            put(l, &args)
        }

        fn put(l: &mut NodeLayer, args: &Dictionary) -> Option<i64> {
            match decide(l, &query("put", args)) {
                Some(Outbound::Pong { .. }) => None,
                Some(Outbound::Error { code, .. }) => Some(code),
                other => panic!("unexpected {other:?}"),
            }
        }

        /// The `get` answer's `r` dictionary, bencoded.
        fn get(l: &NodeLayer, target: &NodeId, seq: Option<i64>, budget_bytes: usize) -> (Vec<u8>, usize) {
            let id = NodeId::from_array([1; 20]);
            let empty = Dictionary::new();
            let framing = Framing { id: &id, version: None, send_ip: false, empty: &empty };
            let tables = Tables::new(id, 8, 0, Instant::ZERO);
            let mut buf = [0u8; 1500];
            let want = Want { n4: true, n6: false };
            let to = FROM.parse().unwrap();
            let len =
                l.encode_get_item(&tables, Instant::ZERO, &framing, &mut buf, to, b"aa", target, want, seq).unwrap();
            assert!(len <= budget_bytes, "{len} bytes over the budget");
            let msg = Message::decode(&buf[..len]).unwrap();
            let r = msg.as_response().unwrap();
            assert_eq!(r.token(), Some(&token(l, target)[..]), "every get answer carries a token");
            (r.dict().as_bencode().to_vec(), len)
        }

        fn key() -> SigningKey {
            SigningKey::from_bytes(&[5; 32])
        }

        #[test]
        fn get_is_answered_with_a_token_and_needs_a_target() {
            let (mut l, _) = layer(DhtConfig::default());
            let target = NodeId::from_array([7; 20]);
            let q = query("get", &Dictionary::new().with_bytes("target", target.as_bytes()));
            assert!(matches!(decide(&mut l, &q), Some(Outbound::GetItem { target: t, seq: None, .. }) if t == target));
            assert_eq!(error_code(&decide(&mut l, &query("get", &Dictionary::new()))), Some(203));
            let (r, _) = get(&l, &target, None, 1024);
            assert!(!r.windows(3).any(|w| w == b"1:v"), "nothing stored, no v");
        }

        #[test]
        fn immutable_put_checks() {
            let (mut l, _) = layer(DhtConfig::default());
            let good = immutable_put(&l, b"12:Hello World!");
            let mut no_token = good.clone();
            no_token.remove(b"token");
            assert_eq!(put(&mut l, &no_token), Some(203));
            let mut no_v = good.clone();
            no_v.remove(b"v");
            assert_eq!(put(&mut l, &no_v), Some(203));
            let mut big = b"997:".to_vec();
            big.resize(1001, b'x');
            assert_eq!(put_i(&mut l, &big), Some(205), "v over 1000 bytes");
            let mut wrong_token = good.clone();
            wrong_token.insert_bytes("token", token(&l, &NodeId::from_array([9; 20])));
            assert_eq!(put(&mut l, &wrong_token), Some(203), "a token for another target");
            let mut wrong_target = good.clone();
            wrong_target.insert_bytes("target", [9u8; 20]);
            assert_eq!(put(&mut l, &wrong_target), Some(203), "a target that is not SHA-1(v)");
            let mut right_target = good.clone();
            right_target.insert_bytes("target", immutable_target(b"12:Hello World!").as_bytes());
            assert_eq!(put(&mut l, &right_target), None, "mainline's extra target argument");
            assert_eq!(put(&mut l, &good), None);
            let target = immutable_target(b"12:Hello World!");
            let (r, _) = get(&l, &target, None, 1024);
            assert!(r.windows(17).any(|w| w == b"1:v12:Hello World!"[..17].as_ref()));
        }

        #[test]
        fn a_non_canonical_v_is_refused_with_203() {
            let (mut l, _) = layer(DhtConfig::default());
            // Built by hand: a Dictionary would sort the keys of `v`.
            let v = b"d1:bi1e1:ai2ee";
            let tok = token(&l, &immutable_target(v));
            let mut q = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa5:token".to_vec();
            q.extend_from_slice(format!("{}:", tok.len()).as_bytes());
            q.extend_from_slice(&tok);
            q.extend_from_slice(b"1:v");
            q.extend_from_slice(v);
            q.extend_from_slice(b"e1:q3:put1:t2:aa1:y1:qe");
            if let Ok(msg) = Message::decode(&q) {
                let Body::Query(qv) = msg.body else { panic!() };
                let answer = l.answer(Instant::ZERO, FROM.parse().unwrap(), msg.transaction_id, &qv);
                assert_eq!(error_code(&answer), Some(203));
            }
        }

        #[test]
        fn mutable_put_checks_and_ordering() {
            let (mut l, _) = layer(DhtConfig::default());
            let item = MutableItem::sign(&key(), b"salt", 5, b"3:one").unwrap();
            let mut long_salt = mutable_put(&l, &item);
            long_salt.insert_bytes("salt", [0u8; 65]);
            assert_eq!(put(&mut l, &long_salt), Some(207));
            let mut short_key = mutable_put(&l, &item);
            short_key.insert_bytes("k", [0u8; 31]);
            // The decoder checks the length of `k` already; such a query is answered 203 by the
            // engine's malformed-query path.
            assert!(Message::decode(&query("put", &short_key)).is_err_and(|e| e.is_protocol_error()));
            let mut no_sig = mutable_put(&l, &item);
            no_sig.remove(b"sig");
            assert_eq!(put(&mut l, &no_sig), Some(203));
            let mut no_seq = mutable_put(&l, &item);
            no_seq.remove(b"seq");
            assert_eq!(put(&mut l, &no_seq), Some(203));
            let mut negative = mutable_put(&l, &item);
            negative.insert_int("seq", -1);
            assert_eq!(put(&mut l, &negative), Some(203));
            let mut forged = mutable_put(&l, &item);
            forged.insert_int("seq", 6);
            assert_eq!(put(&mut l, &forged), Some(206), "seq is covered by the signature");
            let mut other_salt = mutable_put(&l, &item);
            other_salt.insert_bytes("salt", b"tlas");
            assert_eq!(put(&mut l, &other_salt), Some(203), "the token was for SHA-1(k || salt)");
            assert_eq!(put_m(&mut l, &item), None);
            assert_eq!(put_m(&mut l, &item), None, "the same item again refreshes it");
            let lower = MutableItem::sign(&key(), b"salt", 4, b"3:old").unwrap();
            assert_eq!(put_m(&mut l, &lower), Some(302));
            let same_seq = MutableItem::sign(&key(), b"salt", 5, b"3:two").unwrap();
            assert_eq!(put_m(&mut l, &same_seq), Some(302), "equal seq, other value (BEP 44)");
            let next = MutableItem::sign(&key(), b"salt", 6, b"3:two").unwrap();
            let mut bad_cas = mutable_put(&l, &next);
            bad_cas.insert_int("cas", 4);
            assert_eq!(put(&mut l, &bad_cas), Some(301));
            let mut good_cas = mutable_put(&l, &next);
            good_cas.insert_int("cas", 5);
            assert_eq!(put(&mut l, &good_cas), None);

            let (r, _) = get(&l, &item.target(), None, 1024);
            let fields = Dictionary::from_bencode(&r).unwrap();
            assert_eq!(fields.get(b"seq").and_then(|v| v.as_int()), Some(6));
            assert_eq!(fields.get(b"k").and_then(|v| v.as_bytes()), Some(&next.key[..]));
            assert_eq!(fields.get(b"sig").and_then(|v| v.as_bytes()), Some(&next.signature[..]));
            assert!(fields.get(b"salt").is_none(), "the salt is never returned");
            // BEP 44: a `get` with seq >= the stored one gets only `seq`.
            let (r, _) = get(&l, &item.target(), Some(6), 1024);
            let fields = Dictionary::from_bencode(&r).unwrap();
            assert_eq!(fields.get(b"seq").and_then(|v| v.as_int()), Some(6));
            assert!(fields.get(b"v").is_none() && fields.get(b"sig").is_none());
            let (r, _) = get(&l, &item.target(), Some(5), 1024);
            assert!(Dictionary::from_bencode(&r).unwrap().get(b"v").is_some());
        }

        #[test]
        fn a_get_answer_stays_within_max_reply_len() {
            let (mut l, _) = layer(DhtConfig::default());
            let mut v = b"996:".to_vec();
            v.resize(1000, b'x');
            let item = MutableItem::sign(&key(), b"", 1, &v).unwrap();
            assert_eq!(put_m(&mut l, &item), None, "1000 bytes may be stored");
            let (r, len) = get(&l, &item.target(), None, 1024);
            assert!(len <= 1024);
            assert!(Dictionary::from_bencode(&r).unwrap().get(b"v").is_none(), "too large to serve in 1024 bytes");
            let (mut roomy, _) = layer(DhtConfig { max_reply_len: 1400, ..DhtConfig::default() });
            assert_eq!(put_m(&mut roomy, &item), None);
            let (r, _) = get(&roomy, &item.target(), None, 1400);
            assert!(Dictionary::from_bencode(&r).unwrap().get(b"v").is_some());
        }
    }
}

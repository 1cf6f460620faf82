//! Building blocks shared by the endpoint and simulation drivers: picking addresses and ids,
//! crafting replies and queries that look like a peer's, and running one command.

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::time::Duration;

use super::input::{Input, identity};
use super::watch::{Final, Watched};
use crate::dht::MutableItem;
use crate::dht::bep44::ed25519_dalek::SigningKey;
use crate::dht::bep44::{immutable_target, mutable_target};
use crate::wire::{Dictionary, Entry, ErrorOut, Insert, QueryOut, ResponseOut};
use crate::{Instant, NodeId, NodeInfo, Peer, Query, Token};

// ---------------------------------------------------------------------------------------------
// BEP 44 items: a few values, keys and salts shared by commands, queries and replies, so that
// a `get` the endpoint sends can meet a reply carrying the item it asked for.

/// Bencoded values the items are made of.
const VALUES: [&[u8]; 4] = [b"5:hello", b"i42e", b"l4:spami-1ee", b"d1:ai1ee"];
/// Salts (BEP 44: at most 64 bytes).
const SALTS: [&[u8]; 3] = [b"", b"salt", b"s"];
/// How many signing keys there are ([`key`]).
const KEYS: usize = 2;

/// Signing key number `i` (of [`KEYS`]).
fn key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&[i as u8 + 1; 32])
}

/// A value for an item: mostly one of [`VALUES`]; sometimes a byte string from the input,
/// bytes that are not bencode, one around BEP 44's 1000-byte limit, or deep nesting.
fn item_value(input: &mut Input<'_>) -> Vec<u8> {
    match input.below(10) {
        0..=5 => VALUES[input.below(VALUES.len())].to_vec(),
        6 => {
            let raw = input.short_bytes(64);
            let mut v = alloc::format!("{}:", raw.len()).into_bytes();
            v.extend_from_slice(raw);
            v
        }
        7 => input.short_bytes(40).to_vec(),
        8 => {
            let n = 990 + input.below(16);
            let mut v = alloc::format!("{n}:").into_bytes();
            v.resize(v.len() + n, b'x');
            v
        }
        _ => {
            let depth = 1 + input.below(80);
            let mut v = vec![b'l'; depth];
            v.resize(2 * depth, b'e');
            v
        }
    }
}

/// A salt: mostly one of [`SALTS`]; sometimes input bytes, possibly over 64 of them.
fn item_salt<'a>(input: &mut Input<'a>) -> &'a [u8] {
    if input.below(8) == 0 { input.short_bytes(70) } else { SALTS[input.below(SALTS.len())] }
}

/// A sequence number: small, zero, the largest, or anything (negative ones are invalid).
fn item_seq(input: &mut Input<'_>) -> i64 {
    match input.below(6) {
        0 => 0,
        1..=3 => 1 + input.below(8) as i64,
        4 => i64::MAX,
        _ => input.u64() as i64,
    }
}

/// A mutable item signed by one of the keys, for one of the salts; `target`, when given,
/// picks the key and salt that hash to it if there are such.
fn signed_item(input: &mut Input<'_>, target: Option<&NodeId>) -> Option<MutableItem> {
    let mut pick = (input.below(KEYS), SALTS[input.below(SALTS.len())]);
    if let Some(target) = target {
        for k in 0..KEYS {
            let pk = key(k).verifying_key().to_bytes();
            if let Some(salt) = SALTS.iter().find(|s| mutable_target(&pk, s) == *target) {
                pick = (k, salt);
            }
        }
    }
    let mut item = MutableItem::sign(&key(pick.0), pick.1, item_seq(input), &item_value(input)).ok()?;
    if input.below(8) == 0 {
        // A forged copy: the signature no longer matches.
        item.signature[usize::from(input.u8() % 64)] ^= 1;
    }
    Some(item)
}

/// The item `target` names among the known ones: the immutable value hashing to it, else a
/// signed mutable item.
fn item_for(input: &mut Input<'_>, target: Option<&NodeId>) -> (Vec<u8>, Option<MutableItem>) {
    if let Some(v) = VALUES.iter().find(|v| target.is_some_and(|t| immutable_target(v) == *t)) {
        return (v.to_vec(), None);
    }
    match signed_item(input, target) {
        Some(item) if input.below(8) != 0 => (item.value.clone(), Some(item)),
        _ => (item_value(input), None),
    }
}

/// A BEP 44 target: an item's, or one from the pool.
fn item_target(input: &mut Input<'_>, pool: &Pool, own: &NodeId) -> NodeId {
    match input.below(4) {
        0 => immutable_target(VALUES[input.below(VALUES.len())]),
        1 => {
            let pk = key(input.below(KEYS)).verifying_key().to_bytes();
            mutable_target(&pk, SALTS[input.below(SALTS.len())])
        }
        _ => pool.target(input, own),
    }
}

/// Addresses peers use: private and public IPv4, IPv6, a v4-mapped alias of the first, the
/// first's IP on another port, and three that can never be a node (port 0, multicast,
/// broadcast).
pub(crate) fn address_pool() -> Vec<SocketAddr> {
    let v4 = |a, b, c, d, port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port);
    vec![
        v4(10, 0, 0, 1, 6881),
        v4(10, 0, 0, 2, 6882),
        v4(192, 168, 1, 5, 6881),
        v4(1, 2, 3, 4, 6881),
        v4(5, 6, 7, 8, 51413),
        v4(203, 0, 113, 7, 6881),
        v4(198, 51, 100, 9, 1024),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), 6881),
        SocketAddr::new(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()), 6881),
        v4(10, 0, 0, 1, 6882),
        v4(1, 2, 3, 4, 0),
        v4(224, 0, 0, 1, 6881),
        v4(255, 255, 255, 255, 6881),
    ]
}

/// Where peers live, for one driver.
pub(crate) struct Pool {
    pub(crate) addrs: Vec<SocketAddr>,
    /// How many of `addrs` (from the front) are ordinary; the rest are odd ones picked rarely.
    pub(crate) ordinary: usize,
    pub(crate) id_len: usize,
}

impl Pool {
    /// An address: mostly an ordinary pool entry, sometimes one the endpoint recently sent a
    /// query to, an odd pool entry, or any address at all.
    pub(crate) fn addr(&self, input: &mut Input<'_>, w: &Watched) -> SocketAddr {
        let sel = input.u8();
        match sel {
            0..=159 => self.addrs[usize::from(sel) % self.ordinary.max(1)],
            160..=223 if !w.sent.is_empty() => w.sent[usize::from(sel) % w.sent.len()].to,
            160..=239 => self.addrs[usize::from(sel) % self.addrs.len()],
            _ => input.any_addr(),
        }
    }

    /// An id for a node at `addr`: mostly the one it answers with, else ours, one in a chosen
    /// bucket of ours, arbitrary bytes, or an id of the wrong length.
    pub(crate) fn id(&self, input: &mut Input<'_>, own: &NodeId, addr: &SocketAddr) -> NodeId {
        match input.below(8) {
            0..=3 => identity(addr, self.id_len),
            4 => *own,
            5 => near(own, input),
            6 => input.raw_id(self.id_len),
            _ => input.raw_id(if self.id_len == 20 { 8 } else { 20 }),
        }
    }

    /// A lookup target or info-hash: from a small set (so tokens and stored peers match), our
    /// id, one near ours, or arbitrary bytes.
    pub(crate) fn target(&self, input: &mut Input<'_>, own: &NodeId) -> NodeId {
        match input.below(8) {
            0..=3 => {
                let b = [input.below(4) as u8 * 0x41; crate::MAX_ID_LEN];
                NodeId::from_bytes(&b[..self.id_len]).unwrap_or(*own)
            }
            4 => *own,
            5 => near(own, input),
            6 => input.raw_id(self.id_len),
            _ => {
                let len = input_len(input);
                input.raw_id(len)
            }
        }
    }

    /// A list of up to eight nodes, mostly with the ids they answer with.
    pub(crate) fn nodes(&self, input: &mut Input<'_>, w: &Watched) -> Vec<NodeInfo> {
        let n = input.below(9);
        let own = *w.ep.id();
        (0..n)
            .map(|_| {
                let addr = self.addr(input, w);
                let id = if input.below(4) == 0 { self.id(input, &own, &addr) } else { identity(&addr, self.id_len) };
                NodeInfo::new(id, addr)
            })
            .filter(|n| n.id.len() == self.id_len)
            .collect()
    }
}

fn input_len(input: &mut Input<'_>) -> usize {
    1 + input.below(crate::MAX_ID_LEN)
}

/// An id sharing exactly a chosen number of leading bits with `own` (so it lands in that
/// bucket), the rest from the input.
pub(crate) fn near(own: &NodeId, input: &mut Input<'_>) -> NodeId {
    let bits = own.len() * 8;
    let shared = input.below(bits);
    let mut bytes = [0u8; crate::MAX_ID_LEN];
    bytes[..own.len()].copy_from_slice(own.as_bytes());
    for b in bytes[..own.len()].iter_mut() {
        *b ^= input.u8();
    }
    let mut id = NodeId::from_bytes(&bytes[..own.len()]).unwrap_or(*own);
    for i in 0..shared {
        id = id.with_bit(i, own.bit(i));
    }
    id.with_bit(shared, !own.bit(shared))
}

pub(crate) fn encode(f: impl FnOnce(&mut [u8]) -> Result<usize, crate::wire::BufferTooSmall>) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 8192];
    let len = f(&mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Peers for a `values` list: any addresses, both families.
fn peers(input: &mut Input<'_>) -> Vec<SocketAddr> {
    let n = input.below(10);
    (0..n).map(|_| input.any_addr()).collect()
}

/// A reply (response or error) to one of the endpoint's recent queries, usually from the
/// address it went to and echoing its tid; sometimes spoofed or mangled. Returns the source
/// and the bytes.
pub(crate) fn reply(input: &mut Input<'_>, w: &Watched, pool: &Pool) -> Option<(SocketAddr, Vec<u8>)> {
    if w.sent.is_empty() {
        return None;
    }
    let s = w.sent[w.sent.len() - 1 - input.below(w.sent.len())].clone();
    let from = match input.below(10) {
        0..=7 => s.to,
        8 => pool.addr(input, w),
        _ => SocketAddr::new(s.to.ip(), s.to.port().wrapping_add(1)),
    };
    let mut tid = s.tid.clone();
    if input.below(16) == 0 {
        match input.below(3) {
            0 => tid.push(input.u8()),
            1 => tid.truncate(1),
            _ => tid[0] ^= 1,
        }
    }
    let ip = if input.below(3) == 0 {
        Some(match input.below(4) {
            0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(81, 2, 3, 4)), 6881),
            1 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(124, 31, 75, 21)), 6881),
            2 => SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6)), 6881),
            _ => input.any_addr(),
        })
    } else {
        None
    };
    let version: Option<&[u8]> = if input.bool() { Some(b"LT\x01\x02") } else { None };
    let own = *w.ep.id();
    let mut bytes = match input.below(10) {
        0..=7 => {
            let id = match input.below(8) {
                0..=4 => Some(identity(&from, pool.id_len)),
                5 => Some(pool.id(input, &own, &from)),
                6 => None,
                _ => Some(own),
            };
            let nodes = if s.method == b"ping" && input.bool() { Vec::new() } else { pool.nodes(input, w) };
            let token = if input.bool() { Some(input.short_bytes(40)) } else { None };
            let values = if input.below(3) == 0 { peers(input) } else { Vec::new() };
            let mut extra = Vec::new();
            if let Some(id) = &id {
                extra.push(Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: true });
            }
            if !nodes.is_empty() {
                extra.push(Entry { key: b"nodes", value: Insert::NodesV4(&nodes), replace: true });
                extra.push(Entry { key: b"nodes6", value: Insert::NodesV6(&nodes), replace: true });
            }
            if let Some(token) = token {
                extra.push(Entry { key: b"token", value: Insert::Bytes(token), replace: true });
            }
            if !values.is_empty() {
                extra.push(Entry { key: b"values", value: Insert::Peers(&values), replace: true });
            }
            let mut dict = if input.below(4) == 0 {
                Dictionary::new()
                    .with_bytes("BFsd", input.short_bytes(300))
                    .with_int("interval", i64::from(input.u16()))
            } else {
                Dictionary::new()
            };
            if s.method == b"sample_infohashes" && input.below(4) != 0 {
                // A BEP 51 answer: samples (sometimes with a partial hash), a hostile interval.
                let n = input.below(30) * pool.id_len + usize::from(input.below(8) == 0);
                dict.insert_bytes("samples", input.bytes(n));
                let interval = match input.below(4) {
                    0 => -1,
                    1 => i64::MAX,
                    _ => i64::from(input.u16()),
                };
                dict.insert_int("interval", interval);
                dict.insert_int("num", input.u64() as i64);
            }
            if s.method == b"get" && input.below(3) != 0 {
                // A BEP 44 answer: the item asked for (or another, or a forged one), sometimes
                // only its `seq`, or a value that is not bencode.
                let (value, mutable) = item_for(input, s.target.as_ref());
                if let Some(item) = &mutable {
                    dict.insert_bytes("k", item.key);
                    dict.insert_bytes("sig", item.signature);
                    dict.insert_int("seq", if input.below(16) == 0 { input.u64() as i64 } else { item.seq });
                }
                if input.below(8) != 0 && dict.insert_bencode("v", &value).is_err() {
                    dict.insert_bytes("v", &value);
                }
            }
            encode(|buf| ResponseOut { transaction_id: &tid, values: &dict, extra: &extra, ip, version }.encode(buf))?
        }
        _ => {
            const CODES: [i64; 9] = [201, 202, 203, 204, 301, 302, 0, -1, i64::MAX];
            let code = CODES[input.below(CODES.len())];
            let message = input.short_bytes(64);
            encode(|buf| ErrorOut { transaction_id: &tid, code, message, ip, version }.encode(buf))?
        }
    };
    if input.below(32) == 0 && !bytes.is_empty() {
        // A mangled copy: one byte changed.
        let i = input.below(bytes.len());
        bytes[i] ^= input.u8() | 1;
    }
    Some((from, bytes))
}

/// A query to the endpoint from some peer.
pub(crate) fn query(input: &mut Input<'_>, w: &Watched, pool: &Pool) -> Option<(SocketAddr, Vec<u8>)> {
    let from = pool.addr(input, w);
    let own = *w.ep.id();
    const METHODS: [&[u8]; 10] = [
        b"ping",
        b"find_node",
        b"get_peers",
        b"announce_peer",
        b"get",
        b"put",
        b"vote",
        b"sample_infohashes",
        b"echo",
        b"",
    ];
    let pick = input.below(METHODS.len() + 1);
    let method = if pick < METHODS.len() { METHODS[pick] } else { input.short_bytes(70) };
    let mut args = Dictionary::new();
    if input.below(8) != 0 {
        args.insert_bytes("id", pool.id(input, &own, &from).as_bytes());
    }
    let target = if method == b"get" { item_target(input, pool, &own) } else { pool.target(input, &own) };
    match input.below(4) {
        0 => args.insert_bytes("target", target.as_bytes()),
        1 => {}
        _ => args.insert_bytes("info_hash", target.as_bytes()),
    }
    if method == b"get" && input.below(3) == 0 {
        args.insert_int("seq", item_seq(input));
    }
    if method == b"put" {
        // BEP 44 put: a value, and for a mutable item `k`, `sig`, `seq`, maybe `salt` and `cas`.
        let (value, mutable) = item_for(input, None);
        if input.below(8) != 0 && args.insert_bencode("v", &value).is_err() {
            args.insert_bytes("v", &value);
        }
        if let Some(item) = mutable {
            args.insert_bytes("k", item.key);
            args.insert_bytes("sig", item.signature);
            args.insert_int("seq", item.seq);
            if !item.salt.is_empty() || input.below(4) == 0 {
                args.insert_bytes("salt", &item.salt);
            }
            if input.below(4) == 0 {
                args.insert_int("cas", item_seq(input));
            }
        }
    }
    if method == b"announce_peer" || method == b"put" || input.below(8) == 0 {
        let token = match w.tokens.iter().rev().find(|(to, _)| *to == from) {
            Some((_, t)) if input.below(4) != 0 => t.clone(),
            _ => input.short_bytes(24).to_vec(),
        };
        args.insert_bytes("token", token);
        args.insert_int("port", i64::from(input.u16()));
        if input.bool() {
            args.insert_int("implied_port", i64::from(input.below(3) as u8));
        }
        if input.below(4) == 0 {
            args.insert_int("seed", 1);
        }
    }
    match input.below(6) {
        0 => args.insert_list_of_bytes("want", [b"n4".as_slice()]),
        1 => args.insert_list_of_bytes("want", [b"n6".as_slice()]),
        2 => args.insert_list_of_bytes("want", [b"n4".as_slice(), b"n6"]),
        _ => {}
    }
    if input.below(4) == 0 {
        args.insert_int("noseed", 1);
    }
    if input.below(4) == 0 {
        args.insert_int("scrape", 1);
    }
    let tid = input.short_bytes(34);
    let read_only = input.below(8) == 0;
    let bytes = encode(|buf| {
        QueryOut { transaction_id: tid, method, args: &args, extra: &[], read_only, version: None }.encode(buf)
    })?;
    Some((from, bytes))
}

/// A query for a command: ping, find_node, get_peers, announce_peer, or a custom method.
///
/// The application is trusted to send well-formed arguments (the engine copies them), so ids
/// and targets here have the configured length: every datagram the endpoint sends must
/// decode with its own decoder.
fn command_query(input: &mut Input<'_>, pool: &Pool, own: &NodeId) -> Query {
    let mut target = pool.target(input, own);
    if target.len() != pool.id_len {
        target = *own;
    }
    match input.below(6) {
        0 => Query::ping(),
        1 => Query::find_node(&target),
        2 => Query::get_peers(&target),
        3 => {
            let args = Dictionary::new()
                .with_bytes("info_hash", target.as_bytes())
                .with_int("port", i64::from(input.u16()))
                .with_bytes("token", input.short_bytes(20));
            Query::new("announce_peer", args).unwrap_or_else(Query::ping)
        }
        4 => {
            let args = Dictionary::new().with_int("hello", 42).with_bytes("blob", input.short_bytes(1600));
            Query::new("echo", args).unwrap_or_else(Query::ping)
        }
        _ => {
            let method = input.short_bytes(70);
            let mut args = Dictionary::new();
            if input.bool() {
                args.insert_bytes("id", input.raw_id(pool.id_len).as_bytes());
            }
            Query::new(method, args).unwrap_or_else(Query::ping)
        }
    }
}

fn peer(input: &mut Input<'_>, w: &Watched, pool: &Pool) -> Peer {
    let addr = pool.addr(input, w);
    let own = *w.ep.id();
    let mut peer = Peer::addr(addr);
    if input.bool() {
        peer.id = Some(pool.id(input, &own, &addr));
    }
    if input.below(4) == 0 {
        peer.token = Token::new(input.short_bytes(40));
    }
    peer
}

/// Command number `which` (of [`COMMANDS`]) on `w` at `at`, its arguments read from the input.
pub(crate) fn command(input: &mut Input<'_>, w: &mut Watched, pool: &Pool, at: Instant, which: usize) {
    let own = *w.ep.id();
    match which {
        0 => {
            let peer = peer(input, w, pool);
            let (to, expect) = (peer.addr, peer.id);
            let q = command_query(input, pool, &own);
            let r = w.ep.query(at, peer, q);
            w.started(r, Final::Query(to, expect));
        }
        1 => {
            let n = input.below(6);
            let peers: Vec<Peer> = (0..n).map(|_| peer(input, w, pool)).collect();
            let q = command_query(input, pool, &own);
            let r = w.ep.query_all(at, peers, q);
            w.started(r, Final::QueryAll);
        }
        2 => {
            let target = pool.target(input, &own);
            let q = command_query(input, pool, &own);
            let r = if input.bool() { w.ep.closest(at, target, q) } else { w.ep.populate(at, target, q) };
            w.started(r, Final::Lookup);
        }
        3 => {
            let target = pool.target(input, &own);
            let (r, kind) = match input.below(4) {
                0 => (w.ep.bootstrap(at), Final::Lookup),
                1 => (w.ep.find_node(at, target), Final::Lookup),
                2 => (w.ep.get_peers(at, target), Final::Lookup),
                _ => {
                    let port = if input.bool() { Some(input.u16()) } else { None };
                    (w.ep.announce(at, target, port, input.bool()), Final::Announce)
                }
            };
            w.started(r, kind);
        }
        4 => {
            if !w.ops.is_empty() {
                let op = w.ops[input.below(w.ops.len())];
                let _ = if input.bool() { w.ep.stop(op) } else { w.ep.cancel(op) };
            }
        }
        5 => {
            w.app_replied = true;
            if !w.reply_tos.is_empty() {
                let to = w.reply_tos[input.below(w.reply_tos.len())].clone();
                if input.below(3) == 0 {
                    let code = match input.below(3) {
                        0 => 201,
                        1 => 204,
                        _ => input.u64() as i64,
                    };
                    let message = input.short_bytes(200);
                    let _ = w.ep.error(&to, code, message);
                } else {
                    let values = match input.below(4) {
                        0 => Dictionary::new().with_bytes("big", input.short_bytes(2000)),
                        1 => Dictionary::new().with_bytes("id", input.raw_id(pool.id_len).as_bytes()),
                        _ => Dictionary::new().with_int("hello", 42),
                    };
                    let nodes = if input.bool() {
                        let target = pool.target(input, &own);
                        w.ep.routing_table().closest(&target, 8).to_vec()
                    } else {
                        pool.nodes(input, w)
                    };
                    let _ = w.ep.respond(&to, values, &nodes);
                }
            }
        }
        6 => {
            let addr = pool.addr(input, w);
            let id = if input.bool() { Some(pool.id(input, &own, &addr)) } else { None };
            let _ = w.ep.add_node(at, addr, id);
        }
        7 => {
            let addr = pool.addr(input, w);
            let id = pool.id(input, &own, &addr);
            let inserted = w.ep.insert_node(at, NodeInfo::new(id, addr));
            if inserted {
                let known = w.ep.routing_tables().iter().any(|t| t.contains(&id));
                assert!(known, "insert_node said yes but the table lacks it");
            }
        }
        8 => {
            let known: Vec<NodeId> = w.ep.routing_tables().iter().flat_map(|t| t.iter().map(|c| c.node.id)).collect();
            let id = if !known.is_empty() && input.bool() {
                known[input.below(known.len())]
            } else {
                let addr = pool.addr(input, w);
                pool.id(input, &own, &addr)
            };
            let removed = w.ep.remove_node(&id);
            let left = w.ep.routing_tables().iter().any(|t| t.contains(&id));
            assert!(!left, "remove_node left the node in (removed: {removed})");
        }
        9 => {
            let (dead, candidate) = if !w.ping_swaps.is_empty() && input.bool() {
                let (oldest, candidate) = w.ping_swaps[input.below(w.ping_swaps.len())].clone();
                let dead = oldest.get(input.below(oldest.len().max(1))).map_or(own, |n| n.id);
                (dead, candidate)
            } else {
                let known: Vec<NodeId> =
                    w.ep.routing_tables().iter().flat_map(|t| t.iter().map(|c| c.node.id)).collect();
                let dead = if known.is_empty() { own } else { known[input.below(known.len())] };
                let addr = pool.addr(input, w);
                (dead, NodeInfo::new(pool.id(input, &own, &addr), addr))
            };
            let _ = w.ep.swap(at, &dead, candidate);
        }
        10 => {
            if !w.transmits.is_empty() {
                let t = w.transmits[input.below(w.transmits.len())];
                w.ep.fail_transmit(at, &t);
            }
        }
        11 => bep44_command(input, w, pool, at),
        12 => {
            // BEP 51 crawl, with small caps so that it ends within the harness's patience,
            // or a look at a running crawl's numbers.
            if !w.ops.is_empty() && input.below(4) == 0 {
                let op = w.ops[input.below(w.ops.len())];
                if let Some(stats) = w.ep.crawl_stats(op) {
                    w.check_crawl_stats(op, &stats);
                }
            } else {
                let mut config = crate::CrawlConfig::new();
                config.max_info_hashes = input.below(40);
                config.max_nodes = input.below(40);
                config.rate = input.below(1_200) as u32;
                config.concurrency = input.below(10);
                let r = w.ep.crawl(at, config.clone());
                w.started(r, Final::Crawl(config.max_info_hashes as u64, config.max_nodes));
            }
        }
        _ => w.ep.close(at),
    }
}

/// How many command kinds [`command`] knows (the last one, `close`, included).
pub(crate) const COMMANDS: usize = 14;

/// A BEP 44 command: a put (immutable, mutable, read-modify-write) or a get.
fn bep44_command(input: &mut Input<'_>, w: &mut Watched, pool: &Pool, at: Instant) {
    let own = *w.ep.id();
    match input.below(5) {
        0 => {
            let value = item_value(input);
            let r = w.ep.put_immutable(at, &value);
            w.started(r, Final::PutItem);
        }
        1 => {
            // Items that cannot be signed (negative seq, long salt, bad value) are refused
            // by `MutableItem::sign` before the engine sees them.
            let Some(item) = signed_item(input, None) else { return };
            let cas = if input.below(4) == 0 { Some(item_seq(input)) } else { None };
            let r = w.ep.put_mutable(at, item, cas);
            w.started(r, Final::PutItem);
        }
        2 => {
            let key = key(input.below(KEYS));
            let salt = item_salt(input);
            let value = item_value(input);
            let r = w.ep.put_mutable_next(at, &key, salt, &value);
            w.started(r, Final::PutItem);
        }
        3 => {
            let target = item_target(input, pool, &own);
            let r = w.ep.get_immutable(at, target);
            w.started(r, Final::GetItem(target, None));
        }
        _ => {
            let pk = key(input.below(KEYS)).verifying_key().to_bytes();
            let salt = item_salt(input);
            let min_seq = if input.bool() { Some(item_seq(input)) } else { None };
            let r = w.ep.get_mutable(at, pk, salt, min_seq);
            w.started(r, Final::GetItem(mutable_target(&pk, salt), Some((pk, min_seq))));
        }
    }
}

/// A clock step: small, medium or huge; rarely to the end of time.
pub(crate) fn clock_step(input: &mut Input<'_>, clock: Instant) -> Instant {
    match input.below(16) {
        0..=7 => clock + Duration::from_millis(u64::from(input.u16() % 4000)),
        8..=11 => clock + Duration::from_secs(u64::from(input.u16() % 2000)),
        12..=14 => clock + Duration::from_secs(u64::from(input.u32())),
        _ => {
            if input.below(16) == 0 {
                Instant::MAX
            } else {
                clock + Duration::from_secs(86_400 * 365 * 100)
            }
        }
    }
}

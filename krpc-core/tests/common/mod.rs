//! Inputs shared by the wire-codec test files: the BEP 5 golden vectors, the four benchmark
//! messages of `js-codec-bench.js`, and small byte-building helpers.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset of these helpers

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use krpc_core::{NodeId, NodeInfo};

/// BEP 5's ten example packets (protocol.md §1.1), in the order the BEP lists them.
pub const ERROR: &[u8] = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
pub const PING_Q: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
pub const PING_R: &[u8] = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";
pub const FIND_NODE_Q: &[u8] =
    b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe";
pub const FIND_NODE_R: &[u8] = b"d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:y1:re";
pub const GET_PEERS_Q: &[u8] =
    b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe";
pub const GET_PEERS_R_VALUES: &[u8] =
    b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
pub const GET_PEERS_R_NODES: &[u8] =
    b"d1:rd2:id20:abcdefghij01234567895:nodes9:def456...5:token8:aoeusnthe1:t2:aa1:y1:re";
pub const ANNOUNCE_Q: &[u8] = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
pub const ANNOUNCE_R: &[u8] = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";

/// The golden vectors with a short name each.
pub const GOLDEN: [(&str, &[u8]); 10] = [
    ("error", ERROR),
    ("ping_query", PING_Q),
    ("ping_response", PING_R),
    ("find_node_query", FIND_NODE_Q),
    ("find_node_response", FIND_NODE_R),
    ("get_peers_query", GET_PEERS_Q),
    ("get_peers_response_values", GET_PEERS_R_VALUES),
    ("get_peers_response_nodes", GET_PEERS_R_NODES),
    ("announce_peer_query", ANNOUNCE_Q),
    ("announce_peer_response", ANNOUNCE_R),
];

/// Concatenates byte slices.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A bencoded byte string: `<len>:<bytes>`.
pub fn bstr(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// Lower-case hex to bytes.
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

/// Offset of the first occurrence of `needle` in `hay`.
pub fn pos(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("needle present")
}

/// Deterministic pseudo-random bytes (xorshift64*), so benchmark-shaped inputs are stable.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The inputs of the four benchmark messages of `js-codec-bench.js`, with owned data so the
/// encoders can be driven from them.
pub struct BenchInputs {
    pub id: [u8; 20],
    pub target: [u8; 20],
    pub token: [u8; 8],
    pub nodes: Vec<NodeInfo>,
    pub peers: Vec<SocketAddr>,
}

impl Default for BenchInputs {
    fn default() -> Self {
        Self::new()
    }
}

impl BenchInputs {
    pub fn new() -> Self {
        let id: [u8; 20] = pseudo_random(1, 20).try_into().unwrap();
        let target: [u8; 20] = pseudo_random(2, 20).try_into().unwrap();
        let token: [u8; 8] = pseudo_random(3, 8).try_into().unwrap();
        let nodes = (0..8)
            .map(|i| {
                let b = pseudo_random(100 + i, 26);
                let ip = Ipv4Addr::new(b[20], b[21], b[22], b[23]);
                // Port 0 is skipped by the node iterator; keep every record reachable.
                let port = u16::from_be_bytes([b[24], b[25]]).max(1);
                NodeInfo::new(NodeId::from_bytes(&b[..20]).unwrap(), SocketAddr::V4(SocketAddrV4::new(ip, port)))
            })
            .collect();
        let peers = (0..50)
            .map(|i| {
                let b = pseudo_random(1000 + i, 6);
                let port = u16::from_be_bytes([b[4], b[5]]).max(1);
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), port))
            })
            .collect();
        BenchInputs { id, target, token, nodes, peers }
    }

    /// `ping` query, `t = aa`.
    pub fn ping_query(&self) -> Vec<u8> {
        cat(&[b"d1:ad2:id", &bstr(&self.id), b"e1:q4:ping1:t2:aa1:y1:qe"])
    }

    /// `get_peers` query, `t = ab`.
    pub fn get_peers_query(&self) -> Vec<u8> {
        cat(&[b"d1:ad2:id", &bstr(&self.id), b"9:info_hash", &bstr(&self.target), b"e1:q9:get_peers1:t2:ab1:y1:qe"])
    }

    /// The 208-byte compact form of the eight nodes.
    pub fn compact_nodes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for n in &self.nodes {
            out.extend_from_slice(n.id.as_bytes());
            let SocketAddr::V4(a) = n.addr else { unreachable!() };
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        out
    }

    /// `find_node` response with eight nodes, `t = ac`.
    pub fn find_node_response(&self) -> Vec<u8> {
        cat(&[b"d1:rd2:id", &bstr(&self.id), b"5:nodes", &bstr(&self.compact_nodes()), b"e1:t2:ac1:y1:re"])
    }

    /// `get_peers` response with an 8-byte token and fifty peers, `t = ad`.
    pub fn get_peers_response(&self) -> Vec<u8> {
        let mut values = b"l".to_vec();
        for p in &self.peers {
            let SocketAddr::V4(a) = p else { unreachable!() };
            values.extend_from_slice(&bstr(&[&a.ip().octets()[..], &a.port().to_be_bytes()].concat()));
        }
        values.push(b'e');
        cat(&[b"d1:rd2:id", &bstr(&self.id), b"5:token", &bstr(&self.token), b"6:values", &values, b"e1:t2:ad1:y1:re"])
    }

    /// The four messages with their benchmark names.
    pub fn messages(&self) -> [(&'static str, Vec<u8>); 4] {
        [
            ("ping_query", self.ping_query()),
            ("get_peers_query", self.get_peers_query()),
            ("find_node_response_8", self.find_node_response()),
            ("get_peers_response_50", self.get_peers_response()),
        ]
    }
}

/// The names of the typed accessors of `f` that report something, in a fixed order. The
/// flag accessors (`implied_port`, `scrape`, `noseed`, `seed`) count only when non-zero.
pub fn present(f: &krpc_core::wire::Fields<'_>) -> Vec<&'static str> {
    let checks: [(&'static str, bool); 24] = [
        ("id", f.id().is_some()),
        ("target", f.target().is_some()),
        ("info_hash", f.info_hash().is_some()),
        ("token", f.token().is_some()),
        ("port", f.port().is_some()),
        ("implied_port", f.implied_port()),
        ("nodes", f.nodes().is_some()),
        ("nodes6", f.nodes6().is_some()),
        ("values", f.values_list().is_some()),
        ("want", f.want().is_some()),
        ("samples", f.samples_raw().is_some()),
        ("interval", f.interval().is_some()),
        ("num", f.num().is_some()),
        ("scrape", f.scrape()),
        ("noseed", f.noseed()),
        ("seed", f.seed()),
        ("BFsd", f.bloom_seeds().is_some()),
        ("BFpe", f.bloom_peers().is_some()),
        ("k", f.public_key().is_some()),
        ("sig", f.signature().is_some()),
        ("salt", f.salt().is_some()),
        ("seq", f.seq().is_some()),
        ("cas", f.cas().is_some()),
        ("v", f.value_raw().is_some()),
    ];
    checks.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
}

/// Every argument/return-value key the typed view interprets.
pub const TYPED_KEYS: [&str; 24] = [
    "id",
    "target",
    "info_hash",
    "token",
    "nodes",
    "nodes6",
    "values",
    "want",
    "samples",
    "BFsd",
    "BFpe",
    "k",
    "sig",
    "salt",
    "v",
    "port",
    "implied_port",
    "seq",
    "cas",
    "interval",
    "num",
    "scrape",
    "noseed",
    "seed",
];

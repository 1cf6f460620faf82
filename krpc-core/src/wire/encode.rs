//! Encoding outgoing messages into a caller's buffer: canonical, allocation-free.
//!
//! The engine keeps an application's arguments as a canonical [`Dictionary`] and, for every
//! datagram, merges in the keys it owns (`id`, a per-node `token`, compact `nodes`) while
//! copying the rest verbatim. That keeps encoding a single pass with no sorting and no heap.

use core::net::{IpAddr, SocketAddr};

use super::compact::{canonical_ip, write_compact_addr};
use super::dictionary::Dictionary;
use super::error::BufferTooSmall;
use super::value::Dict;
use super::writer::{Counter, Sink, Writer, for_each_entry};
use crate::NodeInfo;

/// A value the encoder merges into a dictionary.
#[derive(Clone, Copy, Debug)]
pub enum Insert<'x> {
    /// A byte string.
    Bytes(&'x [u8]),
    /// An integer.
    Int(i64),
    /// The IPv4 entries of a node list as compact node info (`nodes`).
    NodesV4(&'x [NodeInfo]),
    /// The IPv6 entries of a node list as compact node info (`nodes6`, BEP 32).
    NodesV6(&'x [NodeInfo]),
    /// Compact peer addresses as a list of 6- or 18-byte strings (`values`).
    Peers(&'x [SocketAddr]),
}

/// One key to merge into a dictionary, and whether it replaces a key of the same name.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'x> {
    /// The key.
    pub key: &'x [u8],
    /// The value.
    pub value: Insert<'x>,
    /// `true`: this entry wins over the dictionary's own; `false`: only filled in when absent.
    pub replace: bool,
}

/// An outgoing query (`y=q`).
#[derive(Clone, Copy, Debug)]
pub struct QueryOut<'x> {
    /// `t`.
    pub transaction_id: &'x [u8],
    /// `q`.
    pub method: &'x [u8],
    /// `a`, before the merged keys; must be canonical (a [`Dictionary`] always is).
    pub args: &'x Dictionary,
    /// Keys merged into `a`, sorted ascending by key.
    pub extra: &'x [Entry<'x>],
    /// `ro=1` (BEP 43) when set.
    pub read_only: bool,
    /// `v`, our client version.
    pub version: Option<&'x [u8]>,
}

/// An outgoing response (`y=r`).
#[derive(Clone, Copy, Debug)]
pub struct ResponseOut<'x> {
    /// `t`, echoed from the query.
    pub transaction_id: &'x [u8],
    /// `r`, before the merged keys; must be canonical.
    pub values: &'x Dictionary,
    /// Keys merged into `r`, sorted ascending by key.
    pub extra: &'x [Entry<'x>],
    /// `ip` (BEP 42): the querier's address as we saw it.
    pub ip: Option<SocketAddr>,
    /// `v`, our client version.
    pub version: Option<&'x [u8]>,
}

/// An outgoing error (`y=e`).
#[derive(Clone, Copy, Debug)]
pub struct ErrorOut<'x> {
    /// `t`, echoed from the query.
    pub transaction_id: &'x [u8],
    /// The error code.
    pub code: i64,
    /// The message.
    pub message: &'x [u8],
    /// `ip` (BEP 42).
    pub ip: Option<SocketAddr>,
    /// `v`, our client version.
    pub version: Option<&'x [u8]>,
}

impl QueryOut<'_> {
    /// Writes the query and returns its length, or the length it needs.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::new(buf);
        self.write(&mut w);
        w.finish()
    }

    /// The length [`encode`](Self::encode) writes, measured without writing or allocating.
    pub fn encoded_len(&self) -> usize {
        let mut c = Counter::default();
        self.write(&mut c);
        c.len()
    }

    fn write(&self, w: &mut impl Sink) {
        w.byte(b'd');
        w.bytes(b"a");
        merge_dict(w, self.args.view(), self.extra);
        w.bytes(b"q");
        w.bytes(self.method);
        if self.read_only {
            w.bytes(b"ro");
            w.int(1);
        }
        tail(w, self.transaction_id, self.version, b"q");
    }
}

impl ResponseOut<'_> {
    /// Writes the response and returns its length, or the length it needs.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::new(buf);
        self.write(&mut w);
        w.finish()
    }

    /// The length [`encode`](Self::encode) writes, measured without writing or allocating.
    pub fn encoded_len(&self) -> usize {
        let mut c = Counter::default();
        self.write(&mut c);
        c.len()
    }

    fn write(&self, w: &mut impl Sink) {
        w.byte(b'd');
        ip(w, self.ip);
        w.bytes(b"r");
        merge_dict(w, self.values.view(), self.extra);
        tail(w, self.transaction_id, self.version, b"r");
    }
}

impl ErrorOut<'_> {
    /// Writes the error and returns its length, or the length it needs.
    ///
    /// BEP 5: "The value of the 'e' key is a list. The first element is an integer
    /// representing the error code. The second element is a string containing the error
    /// message." Always both, unlike the JS library's `e: ['msg']` (weakness W20).
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::new(buf);
        self.write(&mut w);
        w.finish()
    }

    /// The length [`encode`](Self::encode) writes, measured without writing or allocating.
    pub fn encoded_len(&self) -> usize {
        let mut c = Counter::default();
        self.write(&mut c);
        c.len()
    }

    fn write(&self, w: &mut impl Sink) {
        w.byte(b'd');
        w.bytes(b"e");
        w.byte(b'l');
        w.int(self.code);
        w.bytes(self.message);
        w.byte(b'e');
        ip(w, self.ip);
        tail(w, self.transaction_id, self.version, b"e");
    }
}

fn ip(w: &mut impl Sink, ip: Option<SocketAddr>) {
    if let Some(addr) = ip {
        let mut tmp = [0u8; 18];
        let n = write_compact_addr(&addr, &mut tmp);
        w.bytes(b"ip");
        w.bytes(&tmp[..n]);
    }
}

fn tail(w: &mut impl Sink, t: &[u8], v: Option<&[u8]>, y: &[u8]) {
    w.bytes(b"t");
    w.bytes(t);
    if let Some(v) = v {
        w.bytes(b"v");
        w.bytes(v);
    }
    w.bytes(b"y");
    w.bytes(y);
    w.byte(b'e');
}

/// Writes `base` (canonical) with `extra` (sorted) merged in, in one pass.
fn merge_dict(w: &mut impl Sink, base: Dict<'_>, extra: &[Entry<'_>]) {
    w.byte(b'd');
    let mut rest = extra;
    for_each_entry(base.as_bencode(), |key, raw_value| {
        while let Some((e, tail)) = rest.split_first() {
            if e.key < key {
                write_entry(w, e);
                rest = tail;
            } else {
                break;
            }
        }
        if let Some((e, tail)) = rest.split_first() {
            if e.key == key {
                rest = tail;
                if e.replace {
                    write_entry(w, e);
                    return;
                }
            }
        }
        w.bytes(key);
        w.raw(raw_value);
    });
    for e in rest {
        write_entry(w, e);
    }
    w.byte(b'e');
}

fn write_entry(w: &mut impl Sink, e: &Entry<'_>) {
    w.bytes(e.key);
    match e.value {
        Insert::Bytes(b) => w.bytes(b),
        Insert::Int(n) => w.int(n),
        Insert::NodesV4(nodes) => write_nodes(w, nodes, false),
        Insert::NodesV6(nodes) => write_nodes(w, nodes, true),
        Insert::Peers(peers) => {
            w.byte(b'l');
            for p in peers {
                // Each peer as one write: `6:` and 6 bytes, or `18:` and 18 bytes.
                match canonical_ip(p.ip()) {
                    IpAddr::V4(ip) => {
                        let [a, b, c, d] = ip.octets();
                        let [hi, lo] = p.port().to_be_bytes();
                        w.raw(&[b'6', b':', a, b, c, d, hi, lo]);
                    }
                    IpAddr::V6(ip) => {
                        let mut item = [0u8; 21];
                        item[..3].copy_from_slice(b"18:");
                        item[3..19].copy_from_slice(&ip.octets());
                        item[19..].copy_from_slice(&p.port().to_be_bytes());
                        w.raw(&item);
                    }
                }
            }
            w.byte(b'e');
        }
    }
}

fn write_nodes(w: &mut impl Sink, nodes: &[NodeInfo], v6: bool) {
    // The family the compact form will have (an IPv4-mapped address is written as IPv4).
    let family = |n: &&NodeInfo| canonical_ip(n.addr.ip()).is_ipv6() == v6;
    let total: usize = nodes.iter().filter(family).map(|n| n.id.len() + if v6 { 18 } else { 6 }).sum();
    w.string_header(total);
    for n in nodes.iter().filter(family) {
        w.raw(n.id.as_bytes());
        match canonical_ip(n.addr.ip()) {
            IpAddr::V4(ip) => {
                let [a, b, c, d] = ip.octets();
                let [hi, lo] = n.addr.port().to_be_bytes();
                w.raw(&[a, b, c, d, hi, lo]);
            }
            IpAddr::V6(ip) => {
                w.raw(&ip.octets());
                w.raw(&n.addr.port().to_be_bytes());
            }
        }
    }
}

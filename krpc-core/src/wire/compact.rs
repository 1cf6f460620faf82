//! Compact node and peer info (BEP 5, BEP 32).
//!
//! BEP 5: "Contact information for peers is encoded as a 6-byte string. Also known as 'Compact
//! IP-address/port info' the 4-byte IP address is in network byte order with the 2 byte port
//! in network byte order concatenated onto the end." and "Contact information for nodes is
//! encoded as a 26-byte string. Also known as 'Compact node info' the 20-byte Node ID in
//! network byte order has the compact IP-address/port info concatenated to the end."
//! BEP 32 adds 18-byte peers and 38-byte nodes for IPv6.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::value::ListIter;
use crate::{NodeId, NodeInfo};

/// Reads a 6-byte (IPv4) or 18-byte (IPv6) compact address.
pub fn parse_compact_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        6 => {
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([b[4], b[5]]))))
        }
        18 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[16], b[17]]);
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0)))
        }
        _ => None,
    }
}

/// Writes `addr` in compact form into `out` and returns the bytes used (6 or 18).
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is written as IPv4, because that is the
/// family the peer will be reached over.
pub fn write_compact_addr(addr: &SocketAddr, out: &mut [u8; 18]) -> usize {
    match canonical_ip(addr.ip()) {
        IpAddr::V4(ip) => {
            out[..4].copy_from_slice(&ip.octets());
            out[4..6].copy_from_slice(&addr.port().to_be_bytes());
            6
        }
        IpAddr::V6(ip) => {
            out[..16].copy_from_slice(&ip.octets());
            out[16..18].copy_from_slice(&addr.port().to_be_bytes());
            18
        }
    }
}

/// Maps `::ffff:a.b.c.d` to `a.b.c.d`; other addresses are returned unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Lazy iterator over a `nodes` (26-byte records) or `nodes6` (38-byte records) string.
///
/// A trailing partial record is ignored (libtorrent reads `floor(len / 26)` records), and so
/// are records whose port is 0, as k-rpc does: nobody can be reached there.
#[derive(Clone, Debug)]
pub struct CompactNodes<'a> {
    raw: &'a [u8],
    id_len: usize,
    addr_len: usize,
}

impl<'a> CompactNodes<'a> {
    /// IPv4 records (`nodes`) of `id_len`-byte ids.
    pub fn v4(raw: &'a [u8], id_len: usize) -> Self {
        CompactNodes { raw, id_len, addr_len: 6 }
    }

    /// IPv6 records (`nodes6`) of `id_len`-byte ids.
    pub fn v6(raw: &'a [u8], id_len: usize) -> Self {
        CompactNodes { raw, id_len, addr_len: 18 }
    }

    /// The raw string.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    fn record_len(&self) -> usize {
        self.id_len + self.addr_len
    }
}

impl Iterator for CompactNodes<'_> {
    type Item = NodeInfo;
    fn next(&mut self) -> Option<NodeInfo> {
        let rec = self.record_len();
        while self.raw.len() >= rec && self.id_len > 0 {
            let (head, rest) = self.raw.split_at(rec);
            self.raw = rest;
            let (id, addr) = head.split_at(self.id_len);
            let (Ok(id), Some(addr)) = (NodeId::from_bytes(id), parse_compact_addr(addr)) else { continue };
            if addr.port() != 0 {
                return Some(NodeInfo { id, addr });
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.raw.len().checked_div(self.record_len()))
    }
}

/// Lazy iterator over a `values` list of compact peers (6-byte IPv4 or 18-byte IPv6).
///
/// BEP 32: a parser "MUST" accept mixed lists; entries of any other length, non-string
/// entries and port 0 are skipped.
#[derive(Clone)]
pub struct CompactPeers<'a> {
    items: Option<ListIter<'a>>,
}

impl<'a> CompactPeers<'a> {
    pub(crate) fn new(items: Option<ListIter<'a>>) -> Self {
        CompactPeers { items }
    }
}

impl Iterator for CompactPeers<'_> {
    type Item = SocketAddr;
    fn next(&mut self) -> Option<SocketAddr> {
        let items = self.items.as_mut()?;
        for v in items {
            if let Some(addr) = v.as_bytes().and_then(parse_compact_addr) {
                if addr.port() != 0 {
                    return Some(addr);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_addresses_round_trip() {
        let mut out = [0u8; 18];
        let a: SocketAddr = "1.2.3.4:6881".parse().unwrap();
        assert_eq!(write_compact_addr(&a, &mut out), 6);
        assert_eq!(&out[..6], &[1, 2, 3, 4, 0x1a, 0xe1]);
        assert_eq!(parse_compact_addr(&out[..6]), Some(a));
        let b: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(write_compact_addr(&b, &mut out), 18);
        assert_eq!(parse_compact_addr(&out[..18]), Some(b));
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:6881".parse().unwrap();
        assert_eq!(write_compact_addr(&mapped, &mut out), 6);
        assert_eq!(parse_compact_addr(&[0; 7]), None);
    }

    #[test]
    fn nodes_ignore_a_trailing_partial_record_and_port_zero() {
        let mut raw = std::vec::Vec::new();
        raw.extend_from_slice(&[1; 20]);
        raw.extend_from_slice(&[10, 0, 0, 1, 0, 80]);
        raw.extend_from_slice(&[2; 20]);
        raw.extend_from_slice(&[10, 0, 0, 2, 0, 0]); // port 0: skipped
        raw.extend_from_slice(&[3; 20]);
        raw.extend_from_slice(&[10, 0, 0, 3, 0, 81]);
        raw.extend_from_slice(&[9; 11]); // partial
        let nodes: std::vec::Vec<_> = CompactNodes::v4(&raw, 20).collect();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].id.as_bytes(), &[1; 20]);
        assert_eq!(nodes[1].addr, "10.0.0.3:81".parse().unwrap());
    }
}

//! A byte reader that turns a fuzzer input into choices. It never fails: past the end every
//! read is zero, so each input describes a finite scenario and short inputs stay meaningful.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::NodeId;

/// Reads choices from the front of a fuzzer input.
#[derive(Clone, Debug)]
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    pub(crate) fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A number in `0..n` (`n` at most 256 gives a uniform-ish choice from one byte).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        if n <= 256 { usize::from(self.u8()) % n } else { usize::from(self.u16()) % n }
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub(crate) fn short_bytes(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max + 1);
        self.bytes(len)
    }

    /// An id of `len` bytes read from the input (zero-padded at its end).
    pub(crate) fn raw_id(&mut self, len: usize) -> NodeId {
        let mut buf = [0u8; crate::MAX_ID_LEN];
        let len = len.clamp(1, crate::MAX_ID_LEN);
        let src = self.bytes(len);
        buf[..src.len()].copy_from_slice(src);
        NodeId::from_bytes(&buf[..len]).unwrap_or(NodeId::from_array([0; 20]))
    }

    /// An arbitrary address: any IPv4 or IPv6 address and port the input spells.
    pub(crate) fn any_addr(&mut self) -> SocketAddr {
        let port = self.u16();
        if self.bool() {
            let mut b = [0u8; 16];
            for x in &mut b {
                *x = self.u8();
            }
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), port)
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(self.u32())), port)
        }
    }
}

/// A deterministic 64-bit mix (splitmix64), for ids derived from addresses.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The id a simulated peer at `addr` answers with: fixed per address, so that nodes learned
/// from `nodes` lists answer with the id they were advertised with.
pub(crate) fn identity(addr: &SocketAddr, len: usize) -> NodeId {
    let mut h = u64::from(addr.port());
    match crate::wire::canonical_ip(addr.ip()) {
        IpAddr::V4(ip) => h ^= u64::from(u32::from(ip)) << 16,
        IpAddr::V6(ip) => {
            for chunk in ip.octets().chunks(8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                h = mix(h ^ u64::from_le_bytes(b));
            }
        }
    }
    let mut buf = [0u8; crate::MAX_ID_LEN];
    let len = len.clamp(1, crate::MAX_ID_LEN);
    for (i, chunk) in buf[..len].chunks_mut(8).enumerate() {
        let word = mix(h ^ i as u64).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    NodeId::from_bytes(&buf[..len]).unwrap_or(NodeId::from_array([0; 20]))
}

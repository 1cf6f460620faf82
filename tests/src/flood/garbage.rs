//! The flood's datagrams: every kind of hostile or useless input a single source can send.
//!
//! Each datagram is built by hand, byte by byte, so that it can be as wrong as wanted; the
//! valid-looking ones follow BEP 5's layout (keys sorted) so that they reach the code behind
//! the decoder.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The kinds of datagram the flood sends, in the order of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Random bytes, 1 to 1400 of them (a quarter start with `d`, to pass the first check).
    Random,
    /// A valid query cut short at a random point.
    Truncated,
    /// Lists or dictionaries nested far beyond the decoder's depth limit, closed or not.
    Nested,
    /// Strings and integers that declare huge lengths or values (`999999999:`, 30-digit
    /// integers, lengths past the end of the datagram, leading zeros).
    HugeLength,
    /// Well-formed queries whose fields have the wrong type or size: integer `info_hash`,
    /// 3-byte ids, a list as `t`, an integer `q`, a list as `a`, a string `port`, ...
    WrongType,
    /// `ping` with a random id and a random transaction id.
    Ping,
    /// `find_node` for a random target.
    FindNode,
    /// `get_peers` for a random info-hash.
    GetPeers,
    /// `announce_peer` with a token the server never issued.
    AnnounceBadToken,
    /// Responses and errors with random transaction ids, as if answering queries the server
    /// never sent us.
    SpoofedReply,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 10] = [
        Kind::Random,
        Kind::Truncated,
        Kind::Nested,
        Kind::HugeLength,
        Kind::WrongType,
        Kind::Ping,
        Kind::FindNode,
        Kind::GetPeers,
        Kind::AnnounceBadToken,
        Kind::SpoofedReply,
    ];

    /// The kind's name in reports (snake case, also the JSON key).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Random => "random_bytes",
            Kind::Truncated => "truncated_bencode",
            Kind::Nested => "deep_nesting",
            Kind::HugeLength => "huge_length",
            Kind::WrongType => "wrong_types",
            Kind::Ping => "ping",
            Kind::FindNode => "find_node",
            Kind::GetPeers => "get_peers",
            Kind::AnnounceBadToken => "announce_bad_token",
            Kind::SpoofedReply => "spoofed_reply",
        }
    }

    /// The kind's position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        Kind::ALL.iter().position(|&kind| kind == self).unwrap_or(0)
    }
}

/// Draws flood datagrams from a seeded generator: the same seed gives the same flood.
#[derive(Debug)]
pub struct Generator {
    rng: ChaCha8Rng,
}

impl Generator {
    /// A generator whose whole output follows from `seed`.
    pub fn new(seed: u64) -> Generator {
        Generator { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// Writes the next datagram into `out` (cleared first) and says what kind it is. Kinds are
    /// drawn evenly.
    pub fn next(&mut self, out: &mut Vec<u8>) -> Kind {
        let kind = Kind::ALL[self.below(Kind::ALL.len())];
        self.make(kind, out);
        kind
    }

    /// Writes one datagram of the given kind into `out` (cleared first).
    pub fn make(&mut self, kind: Kind, out: &mut Vec<u8>) {
        out.clear();
        match kind {
            Kind::Random => self.random(out),
            Kind::Truncated => self.truncated(out),
            Kind::Nested => self.nested(out),
            Kind::HugeLength => self.huge_length(out),
            Kind::WrongType => self.wrong_type(out),
            Kind::Ping => self.query(out, Method::Ping),
            Kind::FindNode => self.query(out, Method::FindNode),
            Kind::GetPeers => self.query(out, Method::GetPeers),
            Kind::AnnounceBadToken => self.query(out, Method::Announce),
            Kind::SpoofedReply => self.spoofed_reply(out),
        }
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (((self.rng.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut bytes = [0; N];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    fn random(&mut self, out: &mut Vec<u8>) {
        let len = 1 + self.below(1400);
        out.resize(len, 0);
        self.rng.fill_bytes(out);
        if self.below(4) == 0 {
            out[0] = b'd';
        }
    }

    fn truncated(&mut self, out: &mut Vec<u8>) {
        let method = [Method::Ping, Method::FindNode, Method::GetPeers, Method::Announce][self.below(4)];
        self.query(out, method);
        let keep = self.below(out.len()); // 0..len: always at least the last byte goes
        out.truncate(keep.max(1));
    }

    fn nested(&mut self, out: &mut Vec<u8>) {
        let depth = 17 + self.below(1400);
        let dictionaries = self.below(2) == 0;
        for _ in 0..depth {
            if dictionaries {
                out.extend_from_slice(b"d1:a");
            } else {
                out.push(b'l');
            }
        }
        if self.below(2) == 0 {
            out.extend_from_slice(b"i0e");
            out.extend(std::iter::repeat_n(b'e', depth));
        }
        out.truncate(1400);
    }

    fn huge_length(&mut self, out: &mut Vec<u8>) {
        let tid = self.bytes::<2>();
        let id = self.bytes::<20>();
        match self.below(7) {
            0 => out.extend_from_slice(b"999999999:"),
            // `a.id` declares a billion bytes.
            1 => {
                out.extend_from_slice(b"d1:ad2:id999999999:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"e1:q4:ping1:t2:");
                out.extend_from_slice(&tid);
                out.extend_from_slice(b"1:y1:qe");
            }
            // `t` declares 4 GiB (past u32).
            2 => {
                out.extend_from_slice(b"d1:t4294967296:");
                out.extend_from_slice(&tid);
                out.extend_from_slice(b"1:y1:qe");
            }
            // A length past usize on 64 bits.
            3 => out.extend_from_slice(b"d1:ad2:id99999999999999999999999999:xe1:q4:ping1:y1:qe"),
            // A 30-digit integer.
            4 => {
                out.extend_from_slice(b"d1:ad2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"4:porti999999999999999999999999999999ee1:q4:ping1:t2:");
                out.extend_from_slice(&tid);
                out.extend_from_slice(b"1:y1:qe");
            }
            // Leading zeros and a negative length.
            5 => {
                let weird: [&[u8]; 3] = [b"d1:t002:aa1:y1:qe", b"d1:t-2:aa1:y1:qe", b"d1:ti-0e1:y1:qe"];
                out.extend_from_slice(weird[self.below(3)]);
            }
            // A length one byte past the end.
            _ => {
                out.extend_from_slice(b"d1:ad2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"e1:q4:ping1:t3:");
                out.extend_from_slice(&tid);
            }
        }
    }

    fn wrong_type(&mut self, out: &mut Vec<u8>) {
        let tid = self.bytes::<2>();
        let id = self.bytes::<20>();
        let target = self.bytes::<20>();
        match self.below(9) {
            // `info_hash` as an integer.
            0 => {
                out.extend_from_slice(b"d1:ad2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"9:info_hashi42ee1:q9:get_peers");
            }
            // A 3-byte id.
            1 => {
                out.extend_from_slice(b"d1:ad2:id3:");
                out.extend_from_slice(&id[..3]);
                out.extend_from_slice(b"e1:q4:ping");
            }
            // A 19-byte target.
            2 => {
                out.extend_from_slice(b"d1:ad2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"6:target19:");
                out.extend_from_slice(&target[..19]);
                out.extend_from_slice(b"e1:q9:find_node");
            }
            // `t` as a list.
            3 => {
                out.extend_from_slice(b"d1:ad2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"e1:q4:ping1:tl2:");
                out.extend_from_slice(&tid);
                out.extend_from_slice(b"e1:y1:qe");
                return;
            }
            // `q` as an integer.
            4 => {
                out.extend_from_slice(b"d1:ad2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"e1:qi7e");
            }
            // `a` as a list.
            5 => {
                out.extend_from_slice(b"d1:al2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"e1:q4:ping");
            }
            // `port` as a string, `token` as an integer.
            6 => {
                out.extend_from_slice(b"d1:ad2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"9:info_hash20:");
                out.extend_from_slice(&target);
                out.extend_from_slice(b"4:port4:68815:tokeni1ee1:q13:announce_peer");
            }
            // `y` as an integer.
            7 => {
                out.extend_from_slice(b"d1:ad2:id20:");
                out.extend_from_slice(&id);
                out.extend_from_slice(b"e1:q4:ping1:t2:");
                out.extend_from_slice(&tid);
                out.extend_from_slice(b"1:yi1ee");
                return;
            }
            // A response whose `r` is a string and whose `nodes` would not fit.
            _ => {
                out.extend_from_slice(b"d1:r5:nodes1:t2:");
                out.extend_from_slice(&tid);
                out.extend_from_slice(b"1:y1:re");
                return;
            }
        }
        out.extend_from_slice(b"1:t2:");
        out.extend_from_slice(&tid);
        out.extend_from_slice(b"1:y1:qe");
    }

    /// A well-formed BEP 5 query (keys in order) with random ids and transaction id.
    fn query(&mut self, out: &mut Vec<u8>, method: Method) {
        let tid = self.bytes::<2>();
        let id = self.bytes::<20>();
        let target = self.bytes::<20>();
        out.extend_from_slice(b"d1:ad2:id20:");
        out.extend_from_slice(&id);
        let name: &[u8] = match method {
            Method::Ping => b"4:ping",
            Method::FindNode => {
                out.extend_from_slice(b"6:target20:");
                out.extend_from_slice(&target);
                b"9:find_node"
            }
            Method::GetPeers => {
                out.extend_from_slice(b"9:info_hash20:");
                out.extend_from_slice(&target);
                b"9:get_peers"
            }
            Method::Announce => {
                let token = self.bytes::<8>();
                let port = 1 + self.below(65535);
                out.extend_from_slice(b"9:info_hash20:");
                out.extend_from_slice(&target);
                out.extend_from_slice(format!("4:porti{port}e5:token8:").as_bytes());
                out.extend_from_slice(&token);
                b"13:announce_peer"
            }
        };
        out.extend_from_slice(b"e1:q");
        out.extend_from_slice(name);
        out.extend_from_slice(b"1:t2:");
        out.extend_from_slice(&tid);
        out.extend_from_slice(b"1:y1:qe");
    }

    fn spoofed_reply(&mut self, out: &mut Vec<u8>) {
        let tid = self.bytes::<2>();
        let id = self.bytes::<20>();
        if self.below(4) == 0 {
            out.extend_from_slice(b"d1:eli201e12:Server Errore1:t2:");
        } else {
            out.extend_from_slice(b"d1:rd2:id20:");
            out.extend_from_slice(&id);
            // Eight compact nodes, all on loopback, with random ids and ports.
            out.extend_from_slice(b"5:nodes208:");
            for _ in 0..8 {
                let node = self.bytes::<26>();
                out.extend_from_slice(&node[..20]);
                out.extend_from_slice(&[127, 0, 0, 1 + node[20] % 250]);
                out.extend_from_slice(&node[24..]);
            }
            out.extend_from_slice(b"e1:t2:");
        }
        out.extend_from_slice(&tid);
        out.extend_from_slice(b"1:y1:");
        out.extend_from_slice(if out.starts_with(b"d1:e") { b"ee" } else { b"re" });
    }
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Ping,
    FindNode,
    GetPeers,
    Announce,
}

#[cfg(test)]
mod tests {
    use krpc_core::wire::Decoder;

    use super::*;

    fn decodes(datagram: &[u8]) -> bool {
        Decoder::default().decode(datagram).is_ok()
    }

    /// The valid kinds must decode (else they would not test what they claim to), the broken
    /// ones must not.
    #[test]
    fn kinds_are_what_they_claim() {
        let mut generator = Generator::new(7);
        let mut out = Vec::new();
        for kind in Kind::ALL {
            for _ in 0..500 {
                generator.make(kind, &mut out);
                assert!(!out.is_empty() && out.len() <= 1400, "{kind:?}: {} bytes", out.len());
                match kind {
                    Kind::Ping | Kind::FindNode | Kind::GetPeers | Kind::AnnounceBadToken | Kind::SpoofedReply => {
                        assert!(decodes(&out), "{kind:?} does not decode: {}", String::from_utf8_lossy(&out));
                    }
                    Kind::Truncated | Kind::Nested | Kind::HugeLength => {
                        assert!(!decodes(&out), "{kind:?} decodes: {}", String::from_utf8_lossy(&out));
                    }
                    Kind::Random | Kind::WrongType => {}
                }
            }
        }
    }

    #[test]
    fn same_seed_same_flood() {
        let (mut a, mut b) = (Generator::new(3), Generator::new(3));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..1000 {
            assert_eq!(a.next(&mut x), b.next(&mut y));
            assert_eq!(x, y);
        }
    }
}

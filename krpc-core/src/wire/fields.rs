//! Typed access to the argument dictionary of a query (`a`) or the return values of a
//! response (`r`).
//!
//! The decoder walks the dictionary once, checks the type (and, for ids, the length) of every
//! key the DHT BEPs define, and records where each one is. Unknown keys are skipped but stay
//! reachable through [`Fields::dict`], which is how application-defined queries read their
//! own arguments.

use core::fmt;
use core::net::SocketAddr;

use super::compact::{CompactNodes, CompactPeers};
use super::cursor::{Budget, Cursor};
use super::error::{DecodeError, DecodeErrorKind as K, Expected};
use super::value::{Dict, List, Value};
use crate::NodeId;

/// How a well-known key is checked.
#[derive(Clone, Copy)]
enum Spec {
    /// A byte string of the configured id length (`id`, `target`, `info_hash`).
    Id,
    /// Any byte string.
    Bytes,
    /// A byte string of exactly this length.
    BytesOf(usize),
    /// A list whose items are all byte strings.
    ListOfBytes,
    /// Any value; only its raw span is kept (BEP 44 `v`).
    Any,
    /// An integer within `lo..=hi`.
    Int(i64, i64),
}

// Slot numbers. Byte-like slots first, then integer slots.
const ID: usize = 0;
const TARGET: usize = 1;
const INFO_HASH: usize = 2;
const TOKEN: usize = 3;
const NODES: usize = 4;
const NODES6: usize = 5;
const VALUES: usize = 6;
const WANT: usize = 7;
const SAMPLES: usize = 8;
const BFSD: usize = 9;
const BFPE: usize = 10;
const KEY: usize = 11;
const SIG: usize = 12;
const SALT: usize = 13;
const V: usize = 14;
const BYTE_SLOTS: usize = 15;

const PORT: usize = 0;
const IMPLIED_PORT: usize = 1;
const SEQ: usize = 2;
const CAS: usize = 3;
const INTERVAL: usize = 4;
const NUM: usize = 5;
const SCRAPE: usize = 6;
const NOSEED: usize = 7;
const SEED: usize = 8;
const INT_SLOTS: usize = 9;

/// Maps a key to its name, slot, and check. `None` for keys this crate does not interpret.
#[inline]
fn lookup(key: &[u8]) -> Option<(&'static str, usize, Spec)> {
    const ANY_INT: Spec = Spec::Int(i64::MIN, i64::MAX);
    Some(match key {
        b"id" => ("id", ID, Spec::Id),
        b"target" => ("target", TARGET, Spec::Id),
        b"info_hash" => ("info_hash", INFO_HASH, Spec::Id),
        b"token" => ("token", TOKEN, Spec::Bytes),
        b"nodes" => ("nodes", NODES, Spec::Bytes),
        b"nodes6" => ("nodes6", NODES6, Spec::Bytes),
        b"values" => ("values", VALUES, Spec::ListOfBytes),
        b"want" => ("want", WANT, Spec::ListOfBytes),
        b"samples" => ("samples", SAMPLES, Spec::Bytes),
        b"BFsd" => ("BFsd", BFSD, Spec::BytesOf(256)),
        b"BFpe" => ("BFpe", BFPE, Spec::BytesOf(256)),
        b"k" => ("k", KEY, Spec::BytesOf(32)),
        b"sig" => ("sig", SIG, Spec::BytesOf(64)),
        b"salt" => ("salt", SALT, Spec::Bytes),
        b"v" => ("v", V, Spec::Any),
        // Any integer: BEP 5 says that with `implied_port` set "the port argument should be
        // ignored", so its range is checked by `port()`, not by the decoder.
        b"port" => ("port", BYTE_SLOTS + PORT, ANY_INT),
        b"implied_port" => ("implied_port", BYTE_SLOTS + IMPLIED_PORT, ANY_INT),
        b"seq" => ("seq", BYTE_SLOTS + SEQ, ANY_INT),
        b"cas" => ("cas", BYTE_SLOTS + CAS, ANY_INT),
        b"interval" => ("interval", BYTE_SLOTS + INTERVAL, ANY_INT),
        b"num" => ("num", BYTE_SLOTS + NUM, ANY_INT),
        b"scrape" => ("scrape", BYTE_SLOTS + SCRAPE, ANY_INT),
        b"noseed" => ("noseed", BYTE_SLOTS + NOSEED, ANY_INT),
        b"seed" => ("seed", BYTE_SLOTS + SEED, ANY_INT),
        _ => return None,
    })
}

/// The typed view of an `a` or `r` dictionary.
///
/// Accessors return `None` (or `false`, or an empty iterator) for absent keys. Presence and
/// meaning are the caller's business: a `get_peers` without `info_hash` decodes fine here, and
/// the layer that handles `get_peers` answers it with a 203.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    raw: &'a [u8],
    id_len: u8,
    /// Bit `slot` set: that key is present (byte slots first, then integer slots).
    present: u32,
    /// Where each byte-like value lies in `raw`: (offset, length). Kept as `u32` pairs rather
    /// than slices to halve the size of every decoded `Message` (the decoder refuses
    /// datagrams of 4 GiB or more, so offsets fit).
    spans: [(u32, u32); BYTE_SLOTS],
    ints: [i64; INT_SLOTS],
}

impl<'a> Fields<'a> {
    /// Parses a dictionary at the cursor (on its `d`), which sits at nesting level `level`.
    pub(crate) fn parse(c: &mut Cursor<'a>, level: u8, id_len: u8, budget: &mut Budget) -> Result<Self, DecodeError> {
        let start = c.pos;
        match c.peek() {
            Some(b'd') => c.pos += 1,
            Some(_) => return Err(c.err(K::WrongType { key: "", expected: Expected::Dictionary })),
            None => return Err(c.err(K::UnexpectedEnd)),
        }
        if level > budget.max_depth {
            return Err(DecodeError::new(K::TooDeep { max: budget.max_depth }, start));
        }
        let mut f = Fields { raw: &[], id_len, present: 0, spans: [(0, 0); BYTE_SLOTS], ints: [0; INT_SLOTS] };
        // The span of the value that ends at the cursor and is `len` bytes long.
        let span = |c: &Cursor<'a>, len: usize| ((c.pos - len - start) as u32, len as u32);
        let mut seen: u32 = 0;
        loop {
            match c.peek() {
                Some(b'e') => {
                    c.pos += 1;
                    break;
                }
                None => return Err(c.err(K::UnexpectedEnd)),
                Some(_) => {}
            }
            let key = c.read_key(budget)?;
            let Some((name, slot, spec)) = lookup(key) else {
                c.skip_value(level, budget)?;
                continue;
            };
            let at = c.pos;
            if seen & (1 << slot) != 0 {
                return Err(DecodeError::new(K::DuplicateKey { key: name }, at));
            }
            seen |= 1 << slot;
            let wrong = |expected| DecodeError::new(K::WrongType { key: name, expected }, at);
            match spec {
                Spec::Id | Spec::Bytes | Spec::BytesOf(_) => {
                    if !matches!(c.peek(), Some(b'0'..=b'9')) {
                        return Err(wrong(Expected::ByteString));
                    }
                    let s = c.read_bytes()?;
                    let want = match spec {
                        Spec::Id => Some(usize::from(id_len)),
                        Spec::BytesOf(n) => Some(n),
                        _ => None,
                    };
                    if let Some(expected) = want.filter(|&n| n != s.len()) {
                        return Err(DecodeError::new(K::WrongLength { key: name, expected, found: s.len() }, at));
                    }
                    f.spans[slot] = span(c, s.len());
                }
                Spec::ListOfBytes => {
                    if c.peek() != Some(b'l') {
                        return Err(wrong(Expected::List));
                    }
                    if level + 1 > budget.max_depth {
                        return Err(c.err(K::TooDeep { max: budget.max_depth }));
                    }
                    c.pos += 1;
                    loop {
                        match c.peek() {
                            Some(b'e') => {
                                c.pos += 1;
                                break;
                            }
                            Some(b'0'..=b'9') => {
                                if !c.skip_short_string() {
                                    c.read_bytes()?;
                                }
                            }
                            // The offending item, not the list, is what could not be accepted.
                            Some(_) => return Err(c.err(K::WrongType { key: name, expected: Expected::ByteString })),
                            None => return Err(c.err(K::UnexpectedEnd)),
                        }
                    }
                    f.spans[slot] = span(c, c.pos - at);
                }
                Spec::Any => {
                    let raw = c.skip_value(level, budget)?;
                    f.spans[slot] = span(c, raw.len());
                }
                Spec::Int(lo, hi) => {
                    if c.peek() != Some(b'i') {
                        return Err(wrong(Expected::Integer));
                    }
                    let n = c.read_int()?;
                    if n < lo || n > hi {
                        return Err(DecodeError::new(K::OutOfRange { key: name }, at));
                    }
                    f.ints[slot - BYTE_SLOTS] = n;
                }
            }
        }
        f.raw = &c.buf[start..c.pos];
        f.present = seen;
        Ok(f)
    }

    /// The byte-like value in `slot`, if present.
    #[inline]
    fn bytes(&self, slot: usize) -> Option<&'a [u8]> {
        if self.present & (1 << slot) == 0 {
            return None;
        }
        let (offset, len) = self.spans[slot];
        self.raw.get(offset as usize..offset as usize + len as usize)
    }

    /// The integer in integer slot `slot`, if present.
    #[inline]
    fn int(&self, slot: usize) -> Option<i64> {
        (self.present & (1 << (BYTE_SLOTS + slot)) != 0).then_some(self.ints[slot])
    }

    /// The whole dictionary, for generic access to keys this type does not interpret.
    pub fn dict(&self) -> Dict<'a> {
        Dict::from_validated(self.raw)
    }

    /// The value of any key, interpreted or not.
    pub fn get(&self, key: &[u8]) -> Option<Value<'a>> {
        self.dict().get(key)
    }

    /// The id length the message was decoded with.
    pub fn id_len(&self) -> usize {
        usize::from(self.id_len)
    }

    /// `id`: the sender's node id (length already checked).
    pub fn id(&self) -> Option<&'a [u8]> {
        self.bytes(ID)
    }

    /// `id` as a [`NodeId`].
    pub fn node_id(&self) -> Option<NodeId> {
        self.id().and_then(|b| NodeId::from_bytes(b).ok())
    }

    /// `target` (`find_node`, BEP 44 `get`, BEP 51), length already checked.
    pub fn target(&self) -> Option<NodeId> {
        self.bytes(TARGET).and_then(|b| NodeId::from_bytes(b).ok())
    }

    /// `info_hash` (`get_peers`, `announce_peer`), length already checked.
    pub fn info_hash(&self) -> Option<NodeId> {
        self.bytes(INFO_HASH).and_then(|b| NodeId::from_bytes(b).ok())
    }

    /// `token`: a write token (any length; implementations use 4 to 20 bytes).
    pub fn token(&self) -> Option<&'a [u8]> {
        self.bytes(TOKEN)
    }

    /// `port` (`announce_peer`); `None` when absent or outside 0–65535. Out of range is not
    /// a decoding error: with `implied_port` set the value is to be ignored (BEP 5).
    pub fn port(&self) -> Option<u16> {
        self.int(PORT).and_then(|p| u16::try_from(p).ok())
    }

    /// Whether `port` is present, in range or not.
    pub fn has_port(&self) -> bool {
        self.int(PORT).is_some()
    }

    /// `implied_port`: BEP 5, "If it is present and non-zero, the port argument should be
    /// ignored and the source port of the UDP packet should be used as the peer's port".
    pub fn implied_port(&self) -> bool {
        self.int(IMPLIED_PORT).is_some_and(|v| v != 0)
    }

    /// `nodes`: compact IPv4 node info.
    pub fn nodes(&self) -> Option<CompactNodes<'a>> {
        self.bytes(NODES).map(|raw| CompactNodes::v4(raw, self.id_len()))
    }

    /// `nodes6`: compact IPv6 node info (BEP 32).
    pub fn nodes6(&self) -> Option<CompactNodes<'a>> {
        self.bytes(NODES6).map(|raw| CompactNodes::v6(raw, self.id_len()))
    }

    /// `values`: compact peers (6 or 18 bytes each), lazily; empty when absent.
    pub fn values(&self) -> CompactPeers<'a> {
        CompactPeers::new(self.values_list().map(|l| l.iter()))
    }

    /// `values` as a raw list.
    pub fn values_list(&self) -> Option<List<'a>> {
        self.bytes(VALUES).map(List::from_validated)
    }

    /// `want` (BEP 32): which address families of nodes the querier asks for.
    pub fn want(&self) -> Option<Want> {
        let list = List::from_validated(self.bytes(WANT)?);
        let mut want = Want { n4: false, n6: false };
        for item in list.iter() {
            match item.as_bytes() {
                Some(b"n4") => want.n4 = true,
                Some(b"n6") => want.n6 = true,
                // BEP 32: unknown strings "must be silently ignored".
                _ => {}
            }
        }
        Some(want)
    }

    /// `samples` (BEP 51): concatenated info-hashes; a trailing partial one is ignored.
    pub fn samples(&self) -> Option<impl Iterator<Item = NodeId> + 'a> {
        let n = self.id_len();
        self.bytes(SAMPLES).map(move |raw| raw.chunks_exact(n).filter_map(|c| NodeId::from_bytes(c).ok()))
    }

    /// `samples` as the raw string.
    pub fn samples_raw(&self) -> Option<&'a [u8]> {
        self.bytes(SAMPLES)
    }

    /// `interval` (BEP 51), in seconds.
    pub fn interval(&self) -> Option<i64> {
        self.int(INTERVAL)
    }

    /// `num` (BEP 51): how many info-hashes the responder stores.
    pub fn num(&self) -> Option<i64> {
        self.int(NUM)
    }

    /// `scrape` (BEP 33) set and non-zero.
    pub fn scrape(&self) -> bool {
        self.int(SCRAPE).is_some_and(|v| v != 0)
    }

    /// `noseed` (BEP 33) set and non-zero.
    pub fn noseed(&self) -> bool {
        self.int(NOSEED).is_some_and(|v| v != 0)
    }

    /// `seed` (BEP 33, in `announce_peer`) set and non-zero.
    pub fn seed(&self) -> bool {
        self.int(SEED).is_some_and(|v| v != 0)
    }

    /// `BFsd` (BEP 33): the 256-byte bloom filter of seeds.
    pub fn bloom_seeds(&self) -> Option<&'a [u8]> {
        self.bytes(BFSD)
    }

    /// `BFpe` (BEP 33): the 256-byte bloom filter of peers.
    pub fn bloom_peers(&self) -> Option<&'a [u8]> {
        self.bytes(BFPE)
    }

    /// `k` (BEP 44): the 32-byte ed25519 public key.
    pub fn public_key(&self) -> Option<&'a [u8]> {
        self.bytes(KEY)
    }

    /// `sig` (BEP 44): the 64-byte ed25519 signature.
    pub fn signature(&self) -> Option<&'a [u8]> {
        self.bytes(SIG)
    }

    /// `salt` (BEP 44).
    pub fn salt(&self) -> Option<&'a [u8]> {
        self.bytes(SALT)
    }

    /// `seq` (BEP 44).
    pub fn seq(&self) -> Option<i64> {
        self.int(SEQ)
    }

    /// `cas` (BEP 44).
    pub fn cas(&self) -> Option<i64> {
        self.int(CAS)
    }

    /// `v` (BEP 44) as its raw bencoded span, exactly as received: the signature covers
    /// these bytes.
    pub fn value_raw(&self) -> Option<&'a [u8]> {
        self.bytes(V)
    }

    /// `v` (BEP 44) as a [`Value`].
    pub fn value(&self) -> Option<Value<'a>> {
        self.bytes(V).map(Value::from_validated)
    }
}

impl fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.dict(), f)
    }
}

/// The address families a BEP 32 `want` list asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Want {
    /// `n4`: IPv4 nodes (`nodes`).
    pub n4: bool,
    /// `n6`: IPv6 nodes (`nodes6`).
    pub n6: bool,
}

impl Want {
    /// Without `want`, BEP 32 says to answer with the family the request came over.
    pub fn for_request(want: Option<Want>, from: &SocketAddr) -> Want {
        want.unwrap_or(Want { n4: from.is_ipv4(), n6: from.is_ipv6() })
    }
}

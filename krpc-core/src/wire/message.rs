//! `Message<'a>`: one decoded KRPC datagram, borrowing its bytes.

use core::fmt;
use core::net::SocketAddr;

use super::compact::{parse_compact_addr, write_compact_addr};
use super::cursor::{Budget, Cursor, MAX_DEPTH_LIMIT};
use super::error::{BufferTooSmall, DecodeError, DecodeErrorKind as K, Expected};
use super::fields::Fields;
use super::value::ByteStr;
use super::writer::{Counter, Sink, Writer};
use crate::DEFAULT_ID_LEN;

/// Decoding limits and the node id length. `Decoder::default()` suits the mainline DHT.
///
/// # Limits
/// Every limit is a hard cap checked before any work that depends on it:
/// - `max_len` (default 8192 bytes): longer datagrams are refused unread. KRPC messages fit in
///   1500 bytes (the largest standard one, a BEP 44 `get` reply with a 1000-byte value, is
///   about 1.7 KB); BEP 32 asks that payloads up to 1024 bytes be accepted "and should
///   receive larger ones".
/// - `max_depth` (default 16, at most 64): nesting of lists and dictionaries, counting the
///   message itself as level 1. Standard messages need 3.
/// - `max_keys` (default 256): dictionary keys in the whole message, nested ones included.
/// - `max_transaction_id_len` (default 32 bytes): `t` is echoed byte for byte, so its length is
///   bounded. Deployed clients use 1 to 10 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoder {
    id_len: u8,
    max_len: usize,
    max_depth: u8,
    max_keys: u16,
    max_transaction_id_len: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// The default limits and 20-byte ids.
    pub const fn new() -> Self {
        Decoder {
            id_len: DEFAULT_ID_LEN as u8,
            max_len: 8192,
            max_depth: 16,
            max_keys: 256,
            max_transaction_id_len: 32,
        }
    }

    /// Node ids (and `target`, `info_hash`) of `len` bytes; clamped to 1..=[`MAX_ID_LEN`](crate::MAX_ID_LEN).
    pub const fn with_id_len(mut self, len: usize) -> Self {
        self.id_len = if len == 0 {
            1
        } else if len > crate::MAX_ID_LEN {
            crate::MAX_ID_LEN as u8
        } else {
            len as u8
        };
        self
    }

    /// The longest datagram accepted (clamped to `u32::MAX` bytes: the typed views keep 32-bit
    /// offsets).
    pub const fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = if max_len > u32::MAX as usize { u32::MAX as usize } else { max_len };
        self
    }

    /// The deepest nesting accepted (clamped to 3..=64: a message with a list argument needs 3).
    pub const fn with_max_depth(mut self, depth: u8) -> Self {
        self.max_depth = if depth < 3 {
            3
        } else if depth > MAX_DEPTH_LIMIT {
            MAX_DEPTH_LIMIT
        } else {
            depth
        };
        self
    }

    /// The most dictionary keys accepted in one message.
    pub const fn with_max_keys(mut self, keys: u16) -> Self {
        self.max_keys = keys;
        self
    }

    /// The longest `t` accepted.
    pub const fn with_max_transaction_id_len(mut self, len: usize) -> Self {
        self.max_transaction_id_len = len;
        self
    }

    /// The configured id length.
    pub const fn id_len(&self) -> usize {
        self.id_len as usize
    }

    /// The configured maximum datagram length.
    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    /// The configured maximum transaction id length.
    pub const fn max_transaction_id_len(&self) -> usize {
        self.max_transaction_id_len
    }

    /// Decodes one datagram. Allocation-free; time is linear in the datagram's length.
    ///
    /// Lenient where deployed peers are sloppy: unsorted and unknown keys, absent `v`, any `t`
    /// up to the cap, `nodes` with a trailing partial record, `e` given as a bare string.
    /// Strict where safety needs it: lengths, leading zeros, overflow, nesting, key count,
    /// trailing bytes, the type of every key the DHT BEPs define and the length of every id.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        self.decode_message(buf).map_err(|err| {
            // A KRPC rule can fail before the decoder has seen the whole datagram (an integer
            // `id` in a truncated packet). Only well-formed bencode earns a protocol error, the
            // kind that gets a 203 reply; otherwise report the structural problem.
            if err.is_protocol_error() { self.structural_error(buf).unwrap_or(err) } else { err }
        })
    }

    /// The first bencode-level problem of `buf` under this decoder's limits, if any.
    fn structural_error(&self, buf: &[u8]) -> Option<DecodeError> {
        let mut budget = Budget { max_depth: self.max_depth, max_keys: u32::from(self.max_keys), keys: 0 };
        let mut c = Cursor::new(buf);
        match c.skip_value(0, &mut budget) {
            Err(err) => Some(err),
            Ok(_) if !c.at_end() => Some(c.err(K::TrailingBytes)),
            Ok(_) => None,
        }
    }

    fn decode_message<'a>(&self, buf: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        if buf.is_empty() {
            return Err(DecodeError::new(K::Empty, 0));
        }
        if buf.len() > self.max_len {
            return Err(DecodeError::new(K::TooLarge { max: self.max_len }, self.max_len));
        }
        let mut budget = Budget { max_depth: self.max_depth, max_keys: u32::from(self.max_keys), keys: 0 };
        let mut c = Cursor::new(buf);
        if c.peek() != Some(b'd') {
            return Err(c.err(K::NotADictionary));
        }
        c.pos = 1;

        let mut t = None;
        let mut y = None;
        let mut q = None;
        let mut a = None;
        let mut r = None;
        let mut e = None;
        let mut v = None;
        let mut ip = None;
        let mut ro = false;
        let mut seen: u16 = 0;

        loop {
            match c.peek() {
                Some(b'e') => {
                    c.pos += 1;
                    break;
                }
                None => return Err(c.err(K::UnexpectedEnd)),
                Some(_) => {}
            }
            let key = c.read_key(&mut budget)?;
            let at = c.pos;
            let (name, bit): (&'static str, u16) = match key {
                b"t" => ("t", 1),
                b"y" => ("y", 2),
                b"q" => ("q", 4),
                b"a" => ("a", 8),
                b"r" => ("r", 16),
                b"e" => ("e", 32),
                b"v" => ("v", 64),
                b"ip" => ("ip", 128),
                b"ro" => ("ro", 256),
                _ => {
                    c.skip_value(1, &mut budget)?;
                    continue;
                }
            };
            if seen & bit != 0 {
                return Err(DecodeError::new(K::DuplicateKey { key: name }, at));
            }
            seen |= bit;
            let string = |c: &mut Cursor<'a>| -> Result<&'a [u8], DecodeError> {
                match c.peek() {
                    Some(b'0'..=b'9') => c.read_bytes(),
                    Some(_) => Err(c.err(K::WrongType { key: name, expected: Expected::ByteString })),
                    None => Err(c.err(K::UnexpectedEnd)),
                }
            };
            match bit {
                1 => {
                    let s = string(&mut c)?;
                    if s.len() > self.max_transaction_id_len {
                        return Err(DecodeError::new(K::TransactionIdTooLong { max: self.max_transaction_id_len }, at));
                    }
                    t = Some(s);
                }
                2 => y = Some((string(&mut c)?, at)),
                4 => q = Some(string(&mut c)?),
                8 | 16 => {
                    let f = Fields::parse(&mut c, 2, self.id_len, &mut budget).map_err(|err| name_dict(err, name))?;
                    if bit == 8 { a = Some(f) } else { r = Some(f) }
                }
                32 => e = Some(parse_error_body(&mut c, &mut budget)?),
                64 => {
                    // BEP 5: "Clients should not assume its presence"; a `v` that is not a
                    // string is some client's oddity, not a reason to drop the message.
                    match c.peek() {
                        Some(b'0'..=b'9') => v = Some(c.read_bytes()?),
                        _ => {
                            c.skip_value(1, &mut budget)?;
                        }
                    }
                }
                128 => {
                    let s = string(&mut c)?;
                    ip = Some(parse_compact_addr(s).ok_or(DecodeError::new(
                        K::WrongLength { key: "ip", expected: if s.len() > 6 { 18 } else { 6 }, found: s.len() },
                        at,
                    ))?);
                }
                _ => {
                    if c.peek() != Some(b'i') {
                        return Err(c.err(K::WrongType { key: "ro", expected: Expected::Integer }));
                    }
                    ro = c.read_int()? != 0;
                }
            }
        }
        if !c.at_end() {
            return Err(c.err(K::TrailingBytes));
        }
        let end = buf.len();
        let transaction_id = t.ok_or(DecodeError::new(K::MissingKey { key: "t" }, end))?;
        let (y, y_at) = y.ok_or(DecodeError::new(K::MissingKey { key: "y" }, end))?;
        let body = match y {
            b"q" => Body::Query(QueryView {
                method: q.ok_or(DecodeError::new(K::MissingKey { key: "q" }, end))?,
                args: a.ok_or(DecodeError::new(K::MissingKey { key: "a" }, end))?,
            }),
            b"r" => Body::Response(r.ok_or(DecodeError::new(K::MissingKey { key: "r" }, end))?),
            b"e" => Body::Error(e.ok_or(DecodeError::new(K::MissingKey { key: "e" }, end))?),
            _ => return Err(DecodeError::new(K::UnknownMessageType, y_at)),
        };
        Ok(Message { transaction_id, version: v, ip, read_only: ro, body })
    }
}

/// A wrong-type error on the dictionary itself carries an empty key; name it.
fn name_dict(mut err: DecodeError, name: &'static str) -> DecodeError {
    if let K::WrongType { key: "", expected } = err.kind {
        err.kind = K::WrongType { key: name, expected };
    }
    err
}

/// BEP 5: "The value of the 'e' key is a list. The first element is an integer representing
/// the error code. The second element is a string containing the error message." Deployed
/// peers also send a bare string, or a list without the code; both are accepted with code 0.
fn parse_error_body<'a>(c: &mut Cursor<'a>, budget: &mut Budget) -> Result<KrpcError<'a>, DecodeError> {
    match c.peek() {
        Some(b'0'..=b'9') => Ok(KrpcError { code: 0, message: c.read_bytes()? }),
        Some(b'l') => {
            c.pos += 1;
            let mut err = KrpcError { code: 0, message: &[] };
            let mut index = 0;
            loop {
                match (index, c.peek()) {
                    (_, Some(b'e')) => {
                        c.pos += 1;
                        return Ok(err);
                    }
                    (0, Some(b'i')) => err.code = c.read_int()?,
                    (0 | 1, Some(b'0'..=b'9')) => {
                        err.message = c.read_bytes()?;
                        index = 1;
                    }
                    (_, Some(_)) => {
                        c.skip_value(2, budget)?;
                    }
                    (_, None) => return Err(c.err(K::UnexpectedEnd)),
                }
                index += 1;
            }
        }
        Some(_) => Err(c.err(K::WrongType { key: "e", expected: Expected::List })),
        None => Err(c.err(K::UnexpectedEnd)),
    }
}

/// One KRPC message, borrowing the datagram it was decoded from.
///
/// ```
/// use krpc_core::wire::{Body, Message};
///
/// let msg = Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe").unwrap();
/// assert_eq!(msg.transaction_id, b"aa");
/// let Body::Query(q) = msg.body else { panic!("a query") };
/// assert_eq!(q.method, b"ping");
/// assert_eq!(q.args.id(), Some(&b"abcdefghij0123456789"[..]));
///
/// // Re-encoding gives the canonical bytes back.
/// let mut buf = [0u8; 128];
/// let n = msg.encode(&mut buf).unwrap();
/// assert_eq!(&buf[..n], b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe");
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// `t`: the transaction id, echoed byte for byte in the answer.
    pub transaction_id: &'a [u8],
    /// `v`: the sender's client version, if it sent one (BEP 5: "Clients should not assume its
    /// presence").
    pub version: Option<&'a [u8]>,
    /// `ip` (BEP 42): in a response, the address the responder saw our query come from.
    pub ip: Option<SocketAddr>,
    /// `ro` (BEP 43): the sender is a read-only node and must not enter routing tables.
    pub read_only: bool,
    /// What kind of message this is, with its contents.
    pub body: Body<'a>,
}

/// The three KRPC message kinds (`y` = `q`, `r`, `e`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Body<'a> {
    /// `y=q`: a query.
    Query(QueryView<'a>),
    /// `y=r`: a response; the `r` dictionary.
    Response(Fields<'a>),
    /// `y=e`: an error.
    Error(KrpcError<'a>),
}

/// A received query, borrowed from its datagram: the method name and its argument dictionary.
///
/// Not to be confused with [`crate::Query`], the owned query an application hands the engine
/// to send.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueryView<'a> {
    /// `q`: the method name (`ping`, `find_node`, or anything an application defines).
    pub method: &'a [u8],
    /// `a`: the arguments.
    pub args: Fields<'a>,
}

/// The body of a KRPC error (`e`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KrpcError<'a> {
    /// The error code (201 generic, 202 server, 203 protocol, 204 method unknown, BEP 44's
    /// 205–207 and 301–302); 0 when the peer sent none.
    pub code: i64,
    /// The human-readable message.
    pub message: &'a [u8],
}

impl fmt::Debug for KrpcError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KrpcError").field("code", &self.code).field("message", &ByteStr(self.message)).finish()
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("t", &ByteStr(self.transaction_id));
        if let Some(v) = self.version {
            d.field("v", &ByteStr(v));
        }
        if let Some(ip) = self.ip {
            d.field("ip", &ip);
        }
        if self.read_only {
            d.field("ro", &true);
        }
        match &self.body {
            Body::Query(q) => d.field("q", &ByteStr(q.method)).field("a", &q.args),
            Body::Response(r) => d.field("r", r),
            Body::Error(e) => d.field("e", e),
        };
        d.finish()
    }
}

impl<'a> Message<'a> {
    /// Decodes with [`Decoder::default()`] (20-byte ids, default limits).
    pub fn decode(buf: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        Decoder::new().decode(buf)
    }

    /// The query, if this is one.
    pub fn as_query(&self) -> Option<&QueryView<'a>> {
        match &self.body {
            Body::Query(q) => Some(q),
            _ => None,
        }
    }

    /// The response values, if this is a response.
    pub fn as_response(&self) -> Option<&Fields<'a>> {
        match &self.body {
            Body::Response(r) => Some(r),
            _ => None,
        }
    }

    /// The error, if this is an error.
    pub fn as_error(&self) -> Option<&KrpcError<'a>> {
        match &self.body {
            Body::Error(e) => Some(e),
            _ => None,
        }
    }

    /// Writes the message in canonical form (keys sorted, nested dictionaries too) and
    /// returns its length. Keys the decoder skipped at the top level are not written.
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
        // Canonical key order: a, e, ip, q, r, ro, t, v, y.
        match &self.body {
            Body::Query(q) => {
                w.bytes(b"a");
                w.canonical_value(q.args.dict().as_bencode());
            }
            Body::Error(e) => {
                w.bytes(b"e");
                w.byte(b'l');
                w.int(e.code);
                w.bytes(e.message);
                w.byte(b'e');
            }
            Body::Response(_) => {}
        }
        if let Some(ip) = &self.ip {
            let mut tmp = [0u8; 18];
            let n = write_compact_addr(ip, &mut tmp);
            w.bytes(b"ip");
            w.bytes(&tmp[..n]);
        }
        match &self.body {
            Body::Query(q) => {
                w.bytes(b"q");
                w.bytes(q.method);
            }
            Body::Response(r) => {
                w.bytes(b"r");
                w.canonical_value(r.dict().as_bencode());
            }
            Body::Error(_) => {}
        }
        if self.read_only {
            w.bytes(b"ro");
            w.int(1);
        }
        w.bytes(b"t");
        w.bytes(self.transaction_id);
        if let Some(v) = self.version {
            w.bytes(b"v");
            w.bytes(v);
        }
        w.bytes(b"y");
        w.bytes(match self.body {
            Body::Query(_) => b"q",
            Body::Response(_) => b"r",
            Body::Error(_) => b"e",
        });
        w.byte(b'e');
    }
}

/// What can be salvaged from a datagram that failed to decode: its transaction id, if it is a
/// query. Used to answer a malformed query with a 203 error, as BEP 5 intends.
///
/// Scans only the top-level dictionary and stops at the first structural problem.
pub fn salvage_query_transaction_id(buf: &[u8], max_transaction_id_len: usize) -> Option<&[u8]> {
    let mut c = Cursor::new(buf);
    if c.peek() != Some(b'd') {
        return None;
    }
    c.pos = 1;
    let mut budget = Budget { max_depth: 16, max_keys: 256, keys: 0 };
    let mut t = None;
    let mut is_query = false;
    while let Some(b) = c.peek() {
        if b == b'e' {
            break;
        }
        let key = c.read_key(&mut budget).ok()?;
        match key {
            b"t" if matches!(c.peek(), Some(b'0'..=b'9')) => t = Some(c.read_bytes().ok()?),
            b"y" if matches!(c.peek(), Some(b'0'..=b'9')) => is_query = c.read_bytes().ok()? == b"q",
            _ => {
                if c.skip_value(1, &mut budget).is_err() {
                    // The rest is broken; answer only if t and y were already seen.
                    break;
                }
            }
        }
    }
    t.filter(|t| is_query && t.len() <= max_transaction_id_len)
}

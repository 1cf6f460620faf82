//! Decode and encode errors: small, `Copy`, allocation-free, and precise about where.

use core::fmt;

/// Why a datagram is not a KRPC message, and the byte offset where the decoder noticed.
///
/// Errors never allocate: a flood of garbage costs no heap traffic. The `Display` form is
/// short enough to go into a KRPC `203` error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// Offset into the datagram of the first byte that could not be accepted.
    pub offset: usize,
}

/// The bencode type a field was expected to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// A byte string (`4:spam`).
    ByteString,
    /// An integer (`i42e`).
    Integer,
    /// A list (`l...e`).
    List,
    /// A dictionary (`d...e`).
    Dictionary,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::ByteString => "a byte string",
            Expected::Integer => "an integer",
            Expected::List => "a list",
            Expected::Dictionary => "a dictionary",
        })
    }
}

/// The kinds of [`DecodeError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The datagram is empty.
    Empty,
    /// The datagram is longer than the decoder's `max_len`.
    TooLarge {
        /// The configured maximum.
        max: usize,
    },
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    UnexpectedByte {
        /// The byte found.
        found: u8,
    },
    /// The top-level value is not a dictionary.
    NotADictionary,
    /// A string length or integer has a superfluous leading zero (`03:abc`, `i03e`).
    LeadingZero,
    /// An integer is `-0`, which bencode forbids.
    NegativeZero,
    /// A string length is negative (`-3:`; this input hangs the JavaScript decoder).
    NegativeLength,
    /// An integer or length does not fit in 64 bits.
    IntegerOverflow,
    /// A string length points past the end of the datagram.
    LengthPastEnd {
        /// The declared length.
        declared: usize,
        /// Bytes that remained.
        remaining: usize,
    },
    /// Lists and dictionaries nest deeper than the decoder's `max_depth`.
    TooDeep {
        /// The configured maximum.
        max: u8,
    },
    /// The message has more dictionary keys than the decoder's `max_keys`.
    TooManyKeys {
        /// The configured maximum.
        max: u16,
    },
    /// Bytes follow the top-level dictionary.
    TrailingBytes,
    /// A dictionary key is not a byte string.
    KeyNotAString,
    /// A key the protocol defines appears twice in one dictionary.
    DuplicateKey {
        /// The key.
        key: &'static str,
    },
    /// A key the message kind requires is absent.
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A key has the wrong bencode type (an integer `info_hash`, say).
    WrongType {
        /// The key.
        key: &'static str,
        /// The type the protocol requires.
        expected: Expected,
    },
    /// A byte string has the wrong length (a 19-byte `id`, say).
    WrongLength {
        /// The key.
        key: &'static str,
        /// The required length.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// An integer is outside the range its key allows (a `port` of 70000, say).
    OutOfRange {
        /// The key.
        key: &'static str,
    },
    /// `y` is not `q`, `r` or `e`.
    UnknownMessageType,
    /// `t` is longer than the decoder's `max_transaction_id_len`.
    TransactionIdTooLong {
        /// The configured maximum.
        max: usize,
    },
}

impl DecodeError {
    pub(crate) const fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        DecodeError { kind, offset }
    }

    /// True when the datagram was structurally valid bencode and only a KRPC-level rule failed
    /// (a missing key, a wrong type or length). Such a query deserves a `203` reply; broken
    /// bencode is dropped silently.
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self.kind,
            DecodeErrorKind::DuplicateKey { .. }
                | DecodeErrorKind::MissingKey { .. }
                | DecodeErrorKind::WrongType { .. }
                | DecodeErrorKind::WrongLength { .. }
                | DecodeErrorKind::OutOfRange { .. }
                | DecodeErrorKind::UnknownMessageType
                | DecodeErrorKind::TransactionIdTooLong { .. }
        )
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind::*;
        match *self {
            Empty => f.write_str("empty datagram"),
            TooLarge { max } => write!(f, "datagram larger than {max} bytes"),
            UnexpectedEnd => f.write_str("input ends inside a value"),
            UnexpectedByte { found } => write!(f, "unexpected byte 0x{found:02x}"),
            NotADictionary => f.write_str("message is not a dictionary"),
            LeadingZero => f.write_str("number has a leading zero"),
            NegativeZero => f.write_str("integer is -0"),
            NegativeLength => f.write_str("negative string length"),
            IntegerOverflow => f.write_str("number does not fit in 64 bits"),
            LengthPastEnd { declared, remaining } => {
                write!(f, "string of {declared} bytes but only {remaining} remain")
            }
            TooDeep { max } => write!(f, "nesting deeper than {max}"),
            TooManyKeys { max } => write!(f, "more than {max} dictionary keys"),
            TrailingBytes => f.write_str("bytes after the message"),
            KeyNotAString => f.write_str("dictionary key is not a byte string"),
            DuplicateKey { key } => write!(f, "duplicate key `{key}`"),
            MissingKey { key } => write!(f, "missing required key `{key}`"),
            WrongType { key, expected } => write!(f, "`{key}` must be {expected}"),
            WrongLength { key, expected, found } => {
                write!(f, "`{key}` must be {expected} bytes, got {found}")
            }
            OutOfRange { key } => write!(f, "`{key}` is out of range"),
            UnknownMessageType => f.write_str("`y` is not q, r or e"),
            TransactionIdTooLong { max } => write!(f, "`t` longer than {max} bytes"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.kind, self.offset)
    }
}

impl core::error::Error for DecodeError {}

/// The output buffer is too small; `required` bytes would have been enough.
///
/// The encoder never allocates: it writes into the caller's buffer and, when that is too
/// short, measures how much room the message needs so the caller can retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// The encoded size of the message.
    pub required: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "output buffer too small: {} bytes required", self.required)
    }
}

impl core::error::Error for BufferTooSmall {}

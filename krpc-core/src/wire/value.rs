//! Lazy, borrowed views of arbitrary bencode values: the generic access that k-rpc offers for
//! application-defined queries (any `q`, any `a` dictionary).

use core::fmt;

use super::cursor::{Budget, Cursor, value_end};
use super::error::{DecodeError, DecodeErrorKind as K};

/// A bencode value borrowed from a datagram or a [`Dictionary`](super::Dictionary).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i42e`
    Int(i64),
    /// `4:spam`
    Bytes(&'a [u8]),
    /// `l...e`, iterated lazily.
    List(List<'a>),
    /// `d...e`, iterated lazily.
    Dict(Dict<'a>),
}

impl<'a> Value<'a> {
    /// Validates `raw` as exactly one bencode value (depth ≤ 64, no trailing bytes).
    pub fn parse(raw: &'a [u8]) -> Result<Value<'a>, DecodeError> {
        let mut c = Cursor::new(raw);
        let mut budget = Budget::UNLIMITED;
        if raw.is_empty() {
            return Err(DecodeError::new(K::Empty, 0));
        }
        c.skip_value(0, &mut budget)?;
        if !c.at_end() {
            return Err(c.err(K::TrailingBytes));
        }
        Ok(Value::from_validated(raw))
    }

    /// Builds a view over a span that this crate has already validated.
    pub(crate) fn from_validated(raw: &'a [u8]) -> Value<'a> {
        let mut c = Cursor::new(raw);
        match raw.first() {
            Some(b'i') => Value::Int(c.read_int().unwrap_or(0)),
            Some(b'l') => Value::List(List { raw }),
            Some(b'd') => Value::Dict(Dict { raw }),
            _ => Value::Bytes(c.read_bytes().unwrap_or(&[])),
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Value::Int(n) => Some(n),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<List<'a>> {
        match *self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<Dict<'a>> {
        match *self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Bytes(b) => write!(f, "{:?}", ByteStr(b)),
            Value::List(l) => f.debug_list().entries(l.iter()).finish(),
            Value::Dict(d) => f.debug_map().entries(d.iter().map(|(k, v)| (ByteStr(k), v))).finish(),
        }
    }
}

/// Formats bytes as text when printable, hex otherwise.
pub(crate) struct ByteStr<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for ByteStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| (0x20..0x7f).contains(b)) {
            f.write_str("\"")?;
            for &b in self.0 {
                write!(f, "{}", b as char)?;
            }
            f.write_str("\"")
        } else {
            f.write_str("0x")?;
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
}

/// A bencode list, validated and borrowed; iterate it with [`List::iter`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct List<'a> {
    raw: &'a [u8],
}

impl<'a> List<'a> {
    pub(crate) fn from_validated(raw: &'a [u8]) -> Self {
        List { raw }
    }

    /// The list's bencoded form, exactly as received.
    pub fn as_bencode(&self) -> &'a [u8] {
        self.raw
    }

    /// The items, in order.
    pub fn iter(&self) -> ListIter<'a> {
        ListIter { raw: self.raw, pos: 1 }
    }

    /// Number of items (walks the list).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when the list has no items.
    pub fn is_empty(&self) -> bool {
        self.raw.get(1) == Some(&b'e')
    }
}

impl fmt::Debug for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Value::List(*self), f)
    }
}

impl<'a> IntoIterator for List<'a> {
    type Item = Value<'a>;
    type IntoIter = ListIter<'a>;
    fn into_iter(self) -> ListIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`List`].
#[derive(Clone)]
pub struct ListIter<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = Value<'a>;
    fn next(&mut self) -> Option<Value<'a>> {
        match self.raw.get(self.pos) {
            None | Some(b'e') => None,
            Some(b'0'..=b'9') => {
                // Strings (compact peers) directly, without measuring the value first. A
                // one-digit length (`6:`, every IPv4 peer) needs no number parsing.
                if let [d @ b'0'..=b'9', b':', ..] = self.raw[self.pos..] {
                    let start = self.pos + 2;
                    let s = self.raw.get(start..start + usize::from(d - b'0'))?;
                    self.pos = start + s.len();
                    return Some(Value::Bytes(s));
                }
                let mut c = Cursor { buf: self.raw, pos: self.pos };
                let s = c.read_bytes().ok()?;
                self.pos = c.pos;
                Some(Value::Bytes(s))
            }
            Some(_) => {
                let end = value_end(self.raw, self.pos)?;
                let v = Value::from_validated(&self.raw[self.pos..end]);
                self.pos = end;
                Some(v)
            }
        }
    }
}

/// A bencode dictionary, validated and borrowed: look keys up with [`Dict::get`] or walk them
/// with [`Dict::iter`] (wire order; received dictionaries may be unsorted).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dict<'a> {
    raw: &'a [u8],
}

impl<'a> Dict<'a> {
    pub(crate) fn from_validated(raw: &'a [u8]) -> Self {
        Dict { raw }
    }

    /// Validates `raw` as one bencode dictionary.
    pub fn parse(raw: &'a [u8]) -> Result<Dict<'a>, DecodeError> {
        match Value::parse(raw)? {
            Value::Dict(d) => Ok(d),
            _ => Err(DecodeError::new(K::NotADictionary, 0)),
        }
    }

    /// The dictionary's bencoded form, exactly as received.
    pub fn as_bencode(&self) -> &'a [u8] {
        self.raw
    }

    /// The entries in wire order.
    pub fn iter(&self) -> DictIter<'a> {
        DictIter { raw: self.raw, pos: 1 }
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &[u8]) -> Option<Value<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Number of entries (walks the dictionary).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when the dictionary has no entries.
    pub fn is_empty(&self) -> bool {
        self.raw.get(1) == Some(&b'e')
    }
}

impl fmt::Debug for Dict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Value::Dict(*self), f)
    }
}

impl<'a> IntoIterator for Dict<'a> {
    type Item = (&'a [u8], Value<'a>);
    type IntoIter = DictIter<'a>;
    fn into_iter(self) -> DictIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`Dict`]'s `(key, value)` entries.
#[derive(Clone)]
pub struct DictIter<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for DictIter<'a> {
    type Item = (&'a [u8], Value<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.raw.get(self.pos).is_none_or(|&b| b == b'e') {
            return None;
        }
        let mut c = Cursor { buf: self.raw, pos: self.pos };
        let key = c.read_bytes().ok()?;
        let end = value_end(self.raw, c.pos)?;
        let v = Value::from_validated(&self.raw[c.pos..end]);
        self.pos = end;
        Some((key, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_walk_nested_values() {
        let v = Value::parse(b"d5:helloi42e4:listl1:ai-1ed1:xi0eee4:spam4:eggse").unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.get(b"hello").and_then(|v| v.as_int()), Some(42));
        assert_eq!(d.get(b"spam").and_then(|v| v.as_bytes()), Some(&b"eggs"[..]));
        let items: std::vec::Vec<_> = d.get(b"list").unwrap().as_list().unwrap().iter().collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], Value::Bytes(b"a"));
        assert_eq!(items[1], Value::Int(-1));
        assert_eq!(items[2].as_dict().unwrap().get(b"x"), Some(Value::Int(0)));
        assert!(d.get(b"nope").is_none());
    }

    #[test]
    fn parse_rejects_trailing_bytes_and_non_dicts() {
        assert_eq!(Value::parse(b"i1ei2e").unwrap_err().kind, K::TrailingBytes);
        assert_eq!(Dict::parse(b"le").unwrap_err().kind, K::NotADictionary);
        assert_eq!(Value::parse(b"").unwrap_err().kind, K::Empty);
    }
}

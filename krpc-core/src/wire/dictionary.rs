//! `Dictionary`: an owned, always-canonical bencode dictionary for building messages.

use alloc::vec::Vec;
use core::fmt;

use super::error::DecodeError;
use super::value::{Dict, Value};
use super::writer::{Counter, Sink, Writer, for_each_entry};

/// An owned bencode dictionary whose encoding is always canonical (keys sorted and unique).
///
/// This is how an application says what to send: the arguments of a query (`a`) or the values
/// of a response (`r`), including methods the BEPs never heard of. Building one allocates;
/// encoding it into a datagram does not.
///
/// ```
/// use krpc_core::wire::Dictionary;
///
/// let args = Dictionary::new()
///     .with_bytes("info_hash", [7u8; 20])
///     .with_int("port", 6881)
///     .with_bytes("a_key", "sorted first");
/// assert_eq!(args.as_bencode()[..18], *b"d5:a_key12:sorted ");
/// assert_eq!(args.get(b"port").and_then(|v| v.as_int()), Some(6881));
/// ```
#[derive(Clone)]
pub struct Dictionary {
    /// The canonical encoding; left empty for the empty dictionary (`de`), so that making
    /// one never allocates (an engine builds a ping's arguments for every ping it sends).
    encoded: Vec<u8>,
}

/// What an empty `encoded` stands for.
const EMPTY: &[u8] = b"de";

impl PartialEq for Dictionary {
    fn eq(&self, other: &Self) -> bool {
        self.as_bencode() == other.as_bencode()
    }
}

impl Eq for Dictionary {}

impl core::hash::Hash for Dictionary {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bencode().hash(state);
    }
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary::new()
    }
}

impl Dictionary {
    /// An empty dictionary (`de`). It allocates nothing until its first entry.
    pub const fn new() -> Self {
        Dictionary { encoded: Vec::new() }
    }

    /// Validates any bencoded dictionary and stores its canonical form.
    pub fn from_bencode(raw: &[u8]) -> Result<Self, DecodeError> {
        let dict = Dict::parse(raw)?;
        let mut encoded = Vec::new();
        write_canonical(&mut encoded, dict.as_bencode());
        Ok(Dictionary { encoded })
    }

    /// Copies a borrowed dictionary (from a decoded message, say) into canonical form.
    pub fn from_dict(dict: Dict<'_>) -> Self {
        let mut encoded = Vec::new();
        write_canonical(&mut encoded, dict.as_bencode());
        Dictionary { encoded }
    }

    /// The canonical encoding.
    pub fn as_bencode(&self) -> &[u8] {
        if self.encoded.is_empty() { EMPTY } else { &self.encoded }
    }

    /// A borrowed view, for lookups and iteration.
    pub fn view(&self) -> Dict<'_> {
        Dict::from_validated(self.as_bencode())
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<Value<'_>> {
        self.view().get(key)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.as_bencode().len() == 2
    }

    /// Sets `key` to a byte string.
    pub fn insert_bytes(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let value = value.as_ref();
        let mut enc = Vec::with_capacity(value.len() + 8);
        push_string(&mut enc, value);
        self.insert_encoded(key.as_ref(), &enc);
    }

    /// Sets `key` to an integer.
    pub fn insert_int(&mut self, key: impl AsRef<[u8]>, value: i64) {
        let mut enc = Vec::with_capacity(22);
        enc.push(b'i');
        enc.extend_from_slice(itoa(value, &mut [0u8; 20]));
        enc.push(b'e');
        self.insert_encoded(key.as_ref(), &enc);
    }

    /// Sets `key` to a nested dictionary.
    pub fn insert_dict(&mut self, key: impl AsRef<[u8]>, value: &Dictionary) {
        self.insert_encoded(key.as_ref(), value.as_bencode());
    }

    /// Sets `key` to a list of byte strings.
    pub fn insert_list_of_bytes<I, B>(&mut self, key: impl AsRef<[u8]>, items: I)
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut enc = alloc::vec![b'l'];
        for item in items {
            push_string(&mut enc, item.as_ref());
        }
        enc.push(b'e');
        self.insert_encoded(key.as_ref(), &enc);
    }

    /// Sets `key` to any bencoded value (validated, then stored canonically).
    pub fn insert_bencode(&mut self, key: impl AsRef<[u8]>, raw: &[u8]) -> Result<(), DecodeError> {
        Value::parse(raw)?;
        let mut enc = Vec::new();
        write_canonical(&mut enc, raw);
        self.insert_encoded(key.as_ref(), &enc);
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.find(key) {
            (start, Some(end)) => {
                self.encoded.drain(start..end);
                true
            }
            _ => false,
        }
    }

    /// Builder form of [`Dictionary::insert_bytes`].
    pub fn with_bytes(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.insert_bytes(key, value);
        self
    }

    /// Builder form of [`Dictionary::insert_int`].
    pub fn with_int(mut self, key: impl AsRef<[u8]>, value: i64) -> Self {
        self.insert_int(key, value);
        self
    }

    /// Builder form of [`Dictionary::insert_dict`].
    pub fn with_dict(mut self, key: impl AsRef<[u8]>, value: &Dictionary) -> Self {
        self.insert_dict(key, value);
        self
    }

    /// Builder form of [`Dictionary::insert_list_of_bytes`].
    pub fn with_list_of_bytes<I, B>(mut self, key: impl AsRef<[u8]>, items: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        self.insert_list_of_bytes(key, items);
        self
    }

    /// Where `key`'s entry starts (or would be inserted), and where it ends if present.
    fn find(&self, key: &[u8]) -> (usize, Option<usize>) {
        let encoded = self.as_bencode();
        let mut at = encoded.len() - 1;
        let mut found = None;
        let mut pos = 1;
        let mut done = false;
        for_each_entry(encoded, |k, v| {
            let entry_len = decimal_len(k.len()) + 1 + k.len() + v.len();
            if !done {
                if k == key {
                    at = pos;
                    found = Some(pos + entry_len);
                    done = true;
                } else if k > key {
                    at = pos;
                    done = true;
                }
            }
            pos += entry_len;
        });
        (at, found)
    }

    fn insert_encoded(&mut self, key: &[u8], value: &[u8]) {
        let (start, end) = self.find(key);
        let mut entry = Vec::with_capacity(key.len() + value.len() + 8);
        push_string(&mut entry, key);
        entry.extend_from_slice(value);
        if self.encoded.is_empty() {
            self.encoded.extend_from_slice(EMPTY);
        }
        self.encoded.splice(start..end.unwrap_or(start), entry);
    }
}

impl fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(itoa(s.len() as i64, &mut [0u8; 20]));
    out.push(b':');
    out.extend_from_slice(s);
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn itoa(n: i64, tmp: &mut [u8; 20]) -> &[u8] {
    let mut v = n.unsigned_abs();
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        // i64::MIN has 19 digits, so there is always room for the sign.
        i -= 1;
        tmp[i] = b'-';
    }
    &tmp[i..]
}

/// Appends the canonical form of a validated value, sizing with a measuring pass first.
fn write_canonical(out: &mut Vec<u8>, raw: &[u8]) {
    let mut counter = Counter::default();
    counter.canonical_value(raw);
    let start = out.len();
    out.resize(start + counter.len(), 0);
    let mut w = Writer::new(&mut out[start..]);
    w.canonical_value(raw);
    let _ = w.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_dictionary_is_one_value_however_it_was_made() {
        use core::hash::{BuildHasher, BuildHasherDefault};
        let hash = |d: &Dictionary| BuildHasherDefault::<siphasher::sip::SipHasher13>::default().hash_one(d);
        let new = Dictionary::new();
        let parsed = Dictionary::from_bencode(b"de").unwrap();
        let emptied = {
            let mut d = Dictionary::new().with_int("a", 1);
            assert!(d.remove(b"a"));
            d
        };
        for d in [&parsed, &emptied] {
            assert_eq!(*d, new);
            assert_eq!(hash(d), hash(&new));
            assert_eq!(d.as_bencode(), b"de");
            assert!(d.is_empty());
            assert_eq!(d.len(), 0);
        }
        assert_eq!(new.as_bencode(), b"de");
        assert!(!new.clone().remove(b"x"));
        // The first entry goes into a real encoding.
        assert_eq!(Dictionary::new().with_int("a", 1).as_bencode(), b"d1:ai1ee");
        assert_ne!(Dictionary::new().with_int("a", 1), new);
    }

    #[test]
    fn keys_stay_sorted_and_unique_whatever_the_insert_order() {
        let mut d = Dictionary::new();
        d.insert_int("b", 2);
        d.insert_bytes("a", "x");
        d.insert_int("c", 3);
        d.insert_int("b", 20);
        assert_eq!(d.as_bencode(), b"d1:a1:x1:bi20e1:ci3ee");
        assert!(d.remove(b"a"));
        assert!(!d.remove(b"a"));
        assert_eq!(d.as_bencode(), b"d1:bi20e1:ci3ee");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn from_bencode_canonicalises() {
        let d = Dictionary::from_bencode(b"d1:zi1e1:ad1:yi0e1:xi0eee").unwrap();
        assert_eq!(d.as_bencode(), b"d1:ad1:xi0e1:yi0ee1:zi1ee");
        assert!(Dictionary::from_bencode(b"l1:ae").is_err());
        assert!(Dictionary::from_bencode(b"d1:ai1ee1:x").is_err());
    }

    #[test]
    fn nested_values_and_lists() {
        let inner = Dictionary::new().with_int("n", -5);
        let mut d = Dictionary::new().with_dict("inner", &inner).with_list_of_bytes("want", ["n4", "n6"]);
        d.insert_bencode("v", b"l1:ai1ee").unwrap();
        assert_eq!(d.as_bencode(), b"d5:innerd1:ni-5ee1:vl1:ai1ee4:wantl2:n42:n6ee");
        assert!(d.insert_bencode("bad", b"l-3:").is_err());
    }
}

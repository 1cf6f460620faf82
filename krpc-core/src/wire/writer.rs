//! The bencode writer: appends to a caller-provided buffer and measures what does not fit.

use super::cursor::{Budget, Cursor};
use super::error::BufferTooSmall;

/// Where bencode goes: into a buffer ([`Writer`]) or nowhere, only measured ([`Counter`]).
///
/// Every encoder is written once, against this trait, so the size an encoder reports
/// (`encoded_len`) and the bytes it writes (`encode`) come from the same code and cannot
/// disagree.
pub(crate) trait Sink {
    /// Appends bytes as they are.
    fn raw(&mut self, bytes: &[u8]);

    /// Appends one byte.
    fn byte(&mut self, b: u8);

    /// Writes the decimal digits of `n` (no sign handling beyond a leading '-').
    #[inline]
    fn decimal(&mut self, n: i64) {
        // Fast paths: string lengths and small integers are nearly always one or two digits.
        if (0..10).contains(&n) {
            self.byte(b'0' + n as u8);
            return;
        }
        if (10..100).contains(&n) {
            self.raw(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
            return;
        }
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.byte(b'-');
        }
        self.raw(&tmp[i..]);
    }

    #[inline]
    fn int(&mut self, n: i64) {
        self.byte(b'i');
        self.decimal(n);
        self.byte(b'e');
    }

    #[inline]
    fn string_header(&mut self, len: usize) {
        self.decimal(len as i64);
        self.byte(b':');
    }

    #[inline]
    fn bytes(&mut self, s: &[u8]) {
        self.string_header(s.len());
        self.raw(s);
    }

    /// Re-emits a validated bencode value in canonical form: dictionary keys sorted, later
    /// duplicates dropped. Recursion is bounded by the depth the value was validated with.
    fn canonical_value(&mut self, raw: &[u8]) {
        // What peers send is almost always canonical already: copy it in one go.
        if is_canonical(raw) {
            self.raw(raw);
            return;
        }
        let mut c = Cursor::new(raw);
        canonical_at(self, &mut c);
    }
}

/// Writes bencode into a borrowed buffer without allocating.
///
/// Writes that do not fit are skipped but still counted, so after an overflow
/// [`Writer::finish`] reports the full size the message needs.
pub(crate) struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    #[inline]
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, len: 0 }
    }

    #[inline]
    pub(crate) fn finish(self) -> Result<usize, BufferTooSmall> {
        if self.len <= self.buf.len() { Ok(self.len) } else { Err(BufferTooSmall { required: self.len }) }
    }
}

impl Sink for Writer<'_> {
    #[inline]
    fn raw(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
        }
        self.len = end;
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        if let Some(dst) = self.buf.get_mut(self.len) {
            *dst = b;
        }
        self.len += 1;
    }
}

/// Measures bencode without writing it: what `encoded_len` runs.
#[derive(Default)]
pub(crate) struct Counter {
    len: usize,
}

impl Counter {
    /// The number of bytes counted so far.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Sink for Counter {
    #[inline]
    fn raw(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
    }

    #[inline]
    fn byte(&mut self, _: u8) {
        self.len += 1;
    }

    #[inline]
    fn decimal(&mut self, n: i64) {
        // Digits by arithmetic, plus the sign: the same count `Sink::decimal` writes.
        self.len += usize::from(n < 0) + n.unsigned_abs().checked_ilog10().map_or(1, |d| d as usize + 1);
    }
}

fn canonical_at<S: Sink + ?Sized>(w: &mut S, c: &mut Cursor<'_>) {
    let mut budget = Budget::UNLIMITED;
    match c.peek() {
        Some(b'i') => {
            if let Ok(n) = c.read_int() {
                w.int(n);
            }
        }
        Some(b'0'..=b'9') => {
            if let Ok(s) = c.read_bytes() {
                w.bytes(s);
            }
        }
        Some(b'l') => {
            c.pos += 1;
            w.byte(b'l');
            while matches!(c.peek(), Some(b) if b != b'e') {
                canonical_at(w, c);
            }
            c.pos += 1;
            w.byte(b'e');
        }
        Some(b'd') => {
            let start = c.pos;
            if c.skip_value(0, &mut budget).is_err() {
                return;
            }
            let raw = &c.buf[start..c.pos];
            canonical_dict(w, raw);
        }
        _ => {}
    }
}

/// Emits entries in ascending key order by repeated selection: no buffer, and O(n²) only
/// for the rare dictionary that arrived unsorted (the sorted case is one pass).
fn canonical_dict<S: Sink + ?Sized>(w: &mut S, raw: &[u8]) {
    w.byte(b'd');
    if entries_sorted(raw) {
        for_each_entry(raw, |key, value| {
            w.bytes(key);
            w.canonical_value(value);
        });
    } else {
        let mut last: Option<&[u8]> = None;
        loop {
            let mut best: Option<(&[u8], &[u8])> = None;
            for_each_entry(raw, |key, value| {
                let after_last = last.is_none_or(|l| key > l);
                let better = best.is_none_or(|(b, _)| key < b);
                if after_last && better {
                    best = Some((key, value));
                }
            });
            match best {
                Some((key, value)) => {
                    w.bytes(key);
                    w.canonical_value(value);
                    last = Some(key);
                }
                None => break,
            }
        }
    }
    w.byte(b'e');
}

/// Calls `f(key, raw_value)` for each entry of a validated dictionary, in wire order.
pub(crate) fn for_each_entry<'a>(raw: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) {
    let mut c = Cursor::new(raw);
    let mut budget = Budget::UNLIMITED;
    c.pos = 1;
    while matches!(c.peek(), Some(b) if b != b'e') {
        let Ok(key) = c.read_bytes() else { return };
        let Ok(value) = c.skip_value(0, &mut budget) else { return };
        f(key, value);
    }
}

/// True when a validated value is already in canonical form: the keys of every dictionary in
/// it strictly ascending. (Validated integers and lengths have no leading zeros and no `-0`,
/// so they are canonical as they stand.)
pub(crate) fn is_canonical(raw: &[u8]) -> bool {
    let mut c = Cursor::new(raw);
    scan_canonical(&mut c) && c.at_end()
}

/// Skips one value at the cursor; false on an unsorted or repeated key (or broken input).
/// Recursion is bounded by the depth the value was validated with.
fn scan_canonical(c: &mut Cursor<'_>) -> bool {
    match c.peek() {
        Some(b'i') => c.read_int().is_ok(),
        Some(b'0'..=b'9') => skip_string(c),
        Some(b'l') => {
            c.pos += 1;
            loop {
                match c.peek() {
                    Some(b'e') => {
                        c.pos += 1;
                        return true;
                    }
                    // Strings inline: long lists of compact peers are the common case.
                    Some(b'0'..=b'9') if skip_string(c) => {}
                    Some(b'd' | b'i' | b'l') if scan_canonical(c) => {}
                    _ => return false,
                }
            }
        }
        Some(b'd') => {
            c.pos += 1;
            let mut prev: Option<&[u8]> = None;
            loop {
                if c.peek() == Some(b'e') {
                    c.pos += 1;
                    return true;
                }
                let Ok(key) = c.read_bytes() else { return false };
                if prev.is_some_and(|p| key <= p) || !scan_canonical(c) {
                    return false;
                }
                prev = Some(key);
            }
        }
        _ => false,
    }
}

/// Skips a validated byte string.
#[inline]
fn skip_string(c: &mut Cursor<'_>) -> bool {
    c.skip_short_string() || c.read_bytes().is_ok()
}

/// True when the keys of a validated dictionary are strictly ascending.
pub(crate) fn entries_sorted(raw: &[u8]) -> bool {
    let mut prev: Option<&[u8]> = None;
    let mut sorted = true;
    for_each_entry(raw, |key, _| {
        if prev.is_some_and(|p| key <= p) {
            sorted = false;
        }
        prev = Some(key);
    });
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(f: impl FnOnce(&mut Writer<'_>), cap: usize) -> Result<std::vec::Vec<u8>, BufferTooSmall> {
        let mut buf = std::vec![0u8; cap];
        let mut w = Writer::new(&mut buf);
        f(&mut w);
        let n = w.finish()?;
        Ok(buf[..n].to_vec())
    }

    #[test]
    fn integers_and_strings_are_written_canonically() {
        let out = write(
            |w| {
                w.int(0);
                w.int(-17);
                w.int(i64::MIN);
                w.bytes(b"spam");
                w.bytes(b"");
            },
            100,
        )
        .unwrap();
        assert_eq!(out, b"i0ei-17ei-9223372036854775808e4:spam0:");
    }

    #[test]
    fn the_counter_counts_what_the_writer_writes() {
        let ints = [0, 9, 10, 99, 100, 999, 1000, -1, -9, -10, -100, i64::MAX, i64::MIN, 1 << 40];
        for n in ints {
            let written = write(|w| w.int(n), 64).unwrap();
            let mut c = Counter::default();
            c.int(n);
            assert_eq!(c.len(), written.len(), "i{n}e");
        }
        let raw: &[u8] = b"d1:bi2e1:ai-1e1:bi3e1:cld1:zi0e1:yi100eee";
        let written = write(|w| w.canonical_value(raw), 100).unwrap();
        let mut c = Counter::default();
        c.canonical_value(raw);
        assert_eq!(c.len(), written.len());
    }

    #[test]
    fn a_short_buffer_reports_the_size_needed() {
        let err = write(|w| w.bytes(b"0123456789"), 5).unwrap_err();
        assert_eq!(err, BufferTooSmall { required: 13 });
    }

    #[test]
    fn unsorted_dictionaries_are_sorted_and_deduplicated() {
        let out = write(|w| w.canonical_value(b"d1:bi2e1:ai1e1:bi3e1:cld1:zi0e1:yi0eeee"), 100).unwrap();
        assert_eq!(out, b"d1:ai1e1:bi2e1:cld1:yi0e1:zi0eeee".to_vec());
    }
}

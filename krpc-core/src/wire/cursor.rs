//! The bencode reader: a bounded, single-pass, non-recursive cursor over a borrowed datagram.
//!
//! Every length is checked against the bytes that remain before anything is sliced, so a
//! declared length can never make us read, allocate or loop beyond the input (`l-3:` is a
//! clean `NegativeLength` error, not a hang as in the JS decoder, weakness W2). Nesting is
//! tracked in a 64-bit mask instead of a recursion or a heap stack.

use super::error::{DecodeError, DecodeErrorKind as K};

/// The deepest nesting the cursor can track (one bit per level of its stack mask).
pub const MAX_DEPTH_LIMIT: u8 = 64;

pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

/// Budget shared by one decode: total keys seen and the depth limit.
pub(crate) struct Budget {
    pub(crate) max_depth: u8,
    /// A decoder's `max_keys` (a `u16`), or `u32::MAX` for no limit.
    pub(crate) max_keys: u32,
    /// Keys counted so far (saturating, so counting can never overflow).
    pub(crate) keys: u32,
}

impl Budget {
    pub(crate) const UNLIMITED: Budget = Budget { max_depth: MAX_DEPTH_LIMIT, max_keys: u32::MAX, keys: 0 };

    #[inline]
    pub(crate) fn count_key(&mut self, offset: usize) -> Result<(), DecodeError> {
        self.keys = self.keys.saturating_add(1);
        if self.keys > self.max_keys {
            let max = u16::try_from(self.max_keys).unwrap_or(u16::MAX);
            return Err(DecodeError::new(K::TooManyKeys { max }, offset));
        }
        Ok(())
    }
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(crate) fn err(&self, kind: K) -> DecodeError {
        DecodeError::new(kind, self.pos)
    }

    /// Consumes `b` or fails with `UnexpectedByte`/`UnexpectedEnd`.
    #[inline]
    pub(crate) fn expect(&mut self, b: u8) -> Result<(), DecodeError> {
        match self.peek() {
            Some(x) if x == b => {
                self.pos += 1;
                Ok(())
            }
            Some(found) => Err(self.err(K::UnexpectedByte { found })),
            None => Err(self.err(K::UnexpectedEnd)),
        }
    }

    /// Reads an integer `i<digits>e`; the cursor is on the `i`.
    pub(crate) fn read_int(&mut self) -> Result<i64, DecodeError> {
        self.expect(b'i')?;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        let mut value: i64 = 0;
        loop {
            match self.peek() {
                Some(d @ b'0'..=b'9') => {
                    if self.pos > start && self.buf[start] == b'0' {
                        return Err(DecodeError::new(K::LeadingZero, start));
                    }
                    let digit = i64::from(d - b'0');
                    // Accumulate negatively so that i64::MIN is representable.
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_sub(digit))
                        .ok_or_else(|| DecodeError::new(K::IntegerOverflow, start))?;
                    self.pos += 1;
                }
                Some(b'e') if self.pos > start => {
                    self.pos += 1;
                    if negative {
                        if value == 0 {
                            return Err(DecodeError::new(K::NegativeZero, start - 1));
                        }
                        return Ok(value);
                    }
                    return value.checked_neg().ok_or_else(|| DecodeError::new(K::IntegerOverflow, start));
                }
                Some(found) => return Err(self.err(K::UnexpectedByte { found })),
                None => return Err(self.err(K::UnexpectedEnd)),
            }
        }
    }

    /// Reads a byte string `<len>:<bytes>`; the cursor is on the first digit.
    #[inline]
    pub(crate) fn read_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let mut len: usize = 0;
        loop {
            match self.peek() {
                Some(d @ b'0'..=b'9') => {
                    if self.pos > start && self.buf[start] == b'0' {
                        return Err(DecodeError::new(K::LeadingZero, start));
                    }
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(d - b'0')))
                        .ok_or_else(|| DecodeError::new(K::IntegerOverflow, start))?;
                    self.pos += 1;
                }
                Some(b':') if self.pos > start => {
                    self.pos += 1;
                    let remaining = self.buf.len() - self.pos;
                    if len > remaining {
                        return Err(DecodeError::new(K::LengthPastEnd { declared: len, remaining }, start));
                    }
                    let s = &self.buf[self.pos..self.pos + len];
                    self.pos += len;
                    return Ok(s);
                }
                Some(b'-') if self.pos == start => return Err(self.err(K::NegativeLength)),
                Some(found) => return Err(self.err(K::UnexpectedByte { found })),
                None => return Err(self.err(K::UnexpectedEnd)),
            }
        }
    }

    /// Skips a byte string with a one-digit length (`6:` compact peers, short keys) that fits
    /// in the input, and says whether it did; anything else is left to [`Cursor::read_bytes`].
    #[inline]
    pub(crate) fn skip_short_string(&mut self) -> bool {
        if let [d @ b'0'..=b'9', b':', ..] = self.buf[self.pos..] {
            let end = self.pos + 2 + usize::from(d - b'0');
            if end <= self.buf.len() {
                self.pos = end;
                return true;
            }
        }
        false
    }

    /// Reads a dictionary key (a byte string) or reports `KeyNotAString`.
    #[inline]
    pub(crate) fn read_key(&mut self, budget: &mut Budget) -> Result<&'a [u8], DecodeError> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                budget.count_key(self.pos)?;
                self.read_bytes()
            }
            Some(_) => Err(self.err(K::KeyNotAString)),
            None => Err(self.err(K::UnexpectedEnd)),
        }
    }

    /// Skips one complete value of any type and returns its raw encoding.
    ///
    /// `depth` is the nesting level of the container holding the value (the top-level
    /// dictionary's entries are at depth 1). Iterative: a 64-bit mask records whether each
    /// open level is a list or a dictionary.
    pub(crate) fn skip_value(&mut self, depth: u8, budget: &mut Budget) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let mut stack: u64 = 0; // bit i set: level i is a dictionary
        let mut level: u32 = 0;
        loop {
            // One value head.
            match self.peek() {
                Some(b'i') => {
                    self.read_int()?;
                }
                Some(b'0'..=b'9') => {
                    self.read_bytes()?;
                }
                Some(c @ (b'l' | b'd')) => {
                    if u32::from(depth) + level + 1 > u32::from(budget.max_depth.min(MAX_DEPTH_LIMIT)) {
                        return Err(self.err(K::TooDeep { max: budget.max_depth }));
                    }
                    if c == b'd' {
                        stack |= 1 << level;
                    } else {
                        stack &= !(1 << level);
                    }
                    level += 1;
                    self.pos += 1;
                }
                Some(b'-') => return Err(self.err(K::NegativeLength)),
                Some(found) => return Err(self.err(K::UnexpectedByte { found })),
                None => return Err(self.err(K::UnexpectedEnd)),
            }
            // Close finished containers; stop before the next element.
            loop {
                if level == 0 {
                    return Ok(&self.buf[start..self.pos]);
                }
                match self.peek() {
                    Some(b'e') => {
                        self.pos += 1;
                        level -= 1;
                    }
                    _ => {
                        if stack & (1 << (level - 1)) != 0 {
                            self.read_key(budget)?;
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// Parses one complete value spanning all of `raw` (a span this crate validated earlier).
/// Used by the lazy views; a failure there would be a bug, so it yields `None` instead of
/// panicking.
pub(crate) fn value_end(raw: &[u8], pos: usize) -> Option<usize> {
    let mut c = Cursor { buf: raw, pos };
    let mut budget = Budget::UNLIMITED;
    c.skip_value(0, &mut budget).ok().map(|_| c.pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(s: &str) -> Result<i64, K> {
        Cursor::new(s.as_bytes()).read_int().map_err(|e| e.kind)
    }

    #[test]
    fn integers_follow_bencode_rules() {
        assert_eq!(int("i0e"), Ok(0));
        assert_eq!(int("i42e"), Ok(42));
        assert_eq!(int("i-42e"), Ok(-42));
        assert_eq!(int("i9223372036854775807e"), Ok(i64::MAX));
        assert_eq!(int("i-9223372036854775808e"), Ok(i64::MIN));
        assert_eq!(int("i9223372036854775808e"), Err(K::IntegerOverflow));
        assert_eq!(int("i03e"), Err(K::LeadingZero));
        assert_eq!(int("i-0e"), Err(K::NegativeZero));
        assert_eq!(int("ie"), Err(K::UnexpectedByte { found: b'e' }));
        assert_eq!(int("i-e"), Err(K::UnexpectedByte { found: b'e' }));
        assert_eq!(int("i1.5e"), Err(K::UnexpectedByte { found: b'.' }));
        assert_eq!(int("i12"), Err(K::UnexpectedEnd));
    }

    #[test]
    fn negative_length_is_an_error_not_a_hang() {
        let mut c = Cursor::new(b"l-3:");
        let err = c.skip_value(0, &mut { Budget::UNLIMITED }).unwrap_err();
        assert_eq!(err.kind, K::NegativeLength);
        assert_eq!(err.offset, 1);
    }

    #[test]
    fn skip_handles_nesting_without_recursion() {
        let deep = "l".repeat(64) + &"e".repeat(64);
        let mut c = Cursor::new(deep.as_bytes());
        assert!(c.skip_value(0, &mut { Budget::UNLIMITED }).is_ok());
        let deeper = "l".repeat(65) + &"e".repeat(65);
        let mut c = Cursor::new(deeper.as_bytes());
        assert_eq!(c.skip_value(0, &mut { Budget::UNLIMITED }).unwrap_err().kind, K::TooDeep { max: 64 });
    }

    #[test]
    fn skip_checks_dictionary_keys() {
        let mut c = Cursor::new(b"di1ei2ee");
        assert_eq!(c.skip_value(0, &mut { Budget::UNLIMITED }).unwrap_err().kind, K::KeyNotAString);
        let mut c = Cursor::new(b"d1:ai1e1:bl1:xee");
        assert_eq!(c.skip_value(0, &mut { Budget::UNLIMITED }).unwrap(), b"d1:ai1e1:bl1:xee");
    }
}

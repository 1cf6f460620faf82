//! Node ids and the XOR metric.
//!
//! BEP 5: "Each node has a globally unique identifier known as the 'node ID.' Node IDs are
//! chosen at random from the same 160-bit space as BitTorrent infohashes." k-rpc lets the
//! application choose another length (`idLength`), so [`NodeId`] carries its own length, up to
//! [`MAX_ID_LEN`] bytes. Distances are compared byte by byte, never folded into a float (the JS
//! k-bucket's double-precision ordering is weakness W18).

use core::cmp::Ordering;
use core::fmt;

/// The longest node id this crate represents, in bytes (256 bits).
pub const MAX_ID_LEN: usize = 32;

/// The BEP 5 id length in bytes (160 bits).
pub const DEFAULT_ID_LEN: usize = 20;

/// A node id or info-hash: 1 to [`MAX_ID_LEN`] bytes, compared as a big-endian number.
///
/// ```
/// use krpc_core::NodeId;
///
/// let a = NodeId::from_bytes(&[0u8; 20]).unwrap();
/// let b = NodeId::from_bytes(&[0xff; 20]).unwrap();
/// assert_eq!(a.len(), 20);
/// assert!(a.distance(&b) > a.distance(&a));
/// assert_eq!(format!("{:?}", NodeId::from_bytes(&[0xab, 0x01]).unwrap()), "NodeId(ab01)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    len: u8,
    bytes: [u8; MAX_ID_LEN],
}

/// Why a byte string is not a usable [`NodeId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidIdLength {
    /// The length that was offered.
    pub len: usize,
}

impl fmt::Display for InvalidIdLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node id length {} is outside 1..={MAX_ID_LEN}", self.len)
    }
}

impl NodeId {
    /// Copies `bytes` into an id. Fails when the length is 0 or above [`MAX_ID_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<NodeId, InvalidIdLength> {
        // The usual length first, as a fixed-size copy: ids are copied out of every routing
        // record and compact node a lookup or an answer looks at, and a copy of unknown length
        // is a call to `memcpy`.
        if let Ok(b) = <&[u8; DEFAULT_ID_LEN]>::try_from(bytes) {
            let mut id = NodeId { len: DEFAULT_ID_LEN as u8, bytes: [0; MAX_ID_LEN] };
            id.bytes[..DEFAULT_ID_LEN].copy_from_slice(b);
            return Ok(id);
        }
        if bytes.is_empty() || bytes.len() > MAX_ID_LEN {
            return Err(InvalidIdLength { len: bytes.len() });
        }
        let mut id = NodeId { len: bytes.len() as u8, bytes: [0; MAX_ID_LEN] };
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(id)
    }

    /// A 20-byte id from an array (never fails).
    pub const fn from_array(bytes: [u8; DEFAULT_ID_LEN]) -> NodeId {
        let mut out = [0u8; MAX_ID_LEN];
        let mut i = 0;
        while i < DEFAULT_ID_LEN {
            out[i] = bytes[i];
            i += 1;
        }
        NodeId { len: DEFAULT_ID_LEN as u8, bytes: out }
    }

    /// A random id of `len` bytes drawn from `rng`.
    pub fn random<R: rand_core::Rng + ?Sized>(len: usize, rng: &mut R) -> Result<NodeId, InvalidIdLength> {
        if len == 0 || len > MAX_ID_LEN {
            return Err(InvalidIdLength { len });
        }
        let mut id = NodeId { len: len as u8, bytes: [0; MAX_ID_LEN] };
        rng.fill_bytes(&mut id.bytes[..len]);
        Ok(id)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Whether `bytes` are this id's bytes. The usual length is compared as a fixed-size
    /// array, which compiles to a few loads instead of a call to `memcmp`: a routing table
    /// looks an id up among a bucket's packed records on every query it gets.
    pub(crate) fn is_bytes(&self, bytes: &[u8]) -> bool {
        let own = self.as_bytes();
        match (<&[u8; DEFAULT_ID_LEN]>::try_from(own), <&[u8; DEFAULT_ID_LEN]>::try_from(bytes)) {
            (Ok(a), Ok(b)) => {
                // As two words: the compiler calls `memcmp` for a 20-byte array comparison.
                let (a_head, a_tail) = a.split_at(16);
                let (b_head, b_tail) = b.split_at(16);
                let word = |x: &[u8]| u128::from_ne_bytes(x.try_into().unwrap_or([0; 16]));
                let tail = |x: &[u8]| u32::from_ne_bytes(x.try_into().unwrap_or([0; 4]));
                word(a_head) == word(b_head) && tail(a_tail) == tail(b_tail)
            }
            _ => own == bytes,
        }
    }

    /// The id's length in bytes.
    #[allow(clippy::len_without_is_empty)] // an id is never empty
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// The XOR distance between two ids of the same length.
    ///
    /// Ids of different lengths are compared as if the shorter one were padded with bytes whose
    /// XOR is `0xff` (the convention of the JS k-bucket, tristanls/k-bucket#29), which puts
    /// them as far away as possible.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let len = self.len.max(other.len) as usize;
        let mut d = Distance { len: len as u8, bytes: [0; MAX_ID_LEN] };
        for i in 0..len {
            d.bytes[i] = match (i < self.len(), i < other.len()) {
                (true, true) => self.bytes[i] ^ other.bytes[i],
                _ => 0xff,
            };
        }
        d
    }

    /// Compares the distances of `a` and `b` to `self` without building them.
    pub fn cmp_distance(&self, a: &NodeId, b: &NodeId) -> Ordering {
        let len = self.len.max(a.len).max(b.len) as usize;
        if self.len == a.len && self.len == b.len {
            // The common case: equal lengths, no padding rule, a tight loop.
            let (t, a, b) = (&self.bytes[..len], &a.bytes[..len], &b.bytes[..len]);
            for i in 0..len {
                let (da, db) = (t[i] ^ a[i], t[i] ^ b[i]);
                if da != db {
                    return da.cmp(&db);
                }
            }
            return Ordering::Equal;
        }
        for i in 0..len {
            let da = self.xor_byte(a, i);
            let db = self.xor_byte(b, i);
            if da != db {
                return da.cmp(&db);
            }
        }
        Ordering::Equal
    }

    fn xor_byte(&self, other: &NodeId, i: usize) -> u8 {
        if i < self.len() && i < other.len() { self.bytes[i] ^ other.bytes[i] } else { 0xff }
    }

    /// Bit `i` of the id, most significant bit of byte 0 first; bits past the end read as 0.
    pub fn bit(&self, i: usize) -> bool {
        let byte = i / 8;
        byte < self.len() && self.bytes[byte] & (0x80 >> (i % 8)) != 0
    }

    /// The number of leading bits `self` and `other` share.
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        let len = self.len.min(other.len) as usize;
        for i in 0..len {
            let x = self.bytes[i] ^ other.bytes[i];
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        len * 8
    }

    /// A copy of this id with bit `i` set to `value` (bits past the end are ignored).
    pub fn with_bit(mut self, i: usize, value: bool) -> NodeId {
        let byte = i / 8;
        if byte < self.len() {
            let mask = 0x80 >> (i % 8);
            if value { self.bytes[byte] |= mask } else { self.bytes[byte] &= !mask }
        }
        self
    }
}

impl AsRef<[u8]> for NodeId {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<[u8; DEFAULT_ID_LEN]> for NodeId {
    fn from(bytes: [u8; DEFAULT_ID_LEN]) -> Self {
        NodeId::from_array(bytes)
    }
}

impl TryFrom<&[u8]> for NodeId {
    type Error = InvalidIdLength;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        NodeId::from_bytes(bytes)
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The XOR of two ids, ordered as an unsigned big-endian number (smaller is closer).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Distance {
    len: u8,
    bytes: [u8; MAX_ID_LEN],
}

impl Distance {
    /// The distance's bytes, most significant first.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The distance's first 128 bits as a number (shorter ids padded with zero bits): enough
    /// to place it within the id space, as a fraction of 2^128.
    pub(crate) fn top128(&self) -> u128 {
        let mut top = [0u8; 16];
        let bytes = self.as_bytes();
        let n = bytes.len().min(16);
        top[..n].copy_from_slice(&bytes[..n]);
        u128::from_be_bytes(top)
    }

    /// Leading zero bits: 0 for the farthest half of the id space.
    pub fn leading_zeros(&self) -> usize {
        for (i, b) in self.as_bytes().iter().enumerate() {
            if *b != 0 {
                return i * 8 + b.leading_zeros() as usize;
            }
        }
        self.len as usize * 8
    }
}

impl PartialOrd for Distance {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Distance {
    fn cmp(&self, other: &Self) -> Ordering {
        // Longer distances come from padded ids and are treated as farther.
        self.len.cmp(&other.len).then_with(|| self.as_bytes().cmp(other.as_bytes()))
    }
}

impl fmt::Debug for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Distance(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(bytes: &[u8]) -> NodeId {
        NodeId::from_bytes(bytes).unwrap()
    }

    #[test]
    fn the_usual_length_copies_and_compares_like_any_other() {
        let mut b = [0u8; 20];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8 * 13;
        }
        let a = id(&b);
        assert_eq!(a, NodeId::from_array(b));
        assert_eq!(a.as_bytes(), &b);
        assert!(a.is_bytes(&b));
        // A difference in the first 16 bytes, in the last 4, or in the length.
        for at in [0, 15, 16, 19] {
            let mut c = b;
            c[at] ^= 1;
            assert!(!a.is_bytes(&c), "byte {at}");
        }
        assert!(!a.is_bytes(&b[..19]));
        assert!(!id(&b[..19]).is_bytes(&b));
        assert!(id(&b[..19]).is_bytes(&b[..19]));
        assert!(id(&[7; 32]).is_bytes(&[7; 32]));
    }

    #[test]
    fn distance_matches_the_k_bucket_examples() {
        // k-bucket defaultDistance.js: 00^00 = 0, 00^01 = 1, 02^01 = 3.
        assert_eq!(id(&[0]).distance(&id(&[0])).as_bytes(), &[0]);
        assert_eq!(id(&[0]).distance(&id(&[1])).as_bytes(), &[1]);
        assert_eq!(id(&[2]).distance(&id(&[1])).as_bytes(), &[3]);
        // [01, 24] vs [40, 24] = 0x4100 = 16640
        assert_eq!(id(&[0x01, 0x24]).distance(&id(&[0x40, 0x24])).as_bytes(), &[0x41, 0x00]);
        // padding convention: [00] vs [00, 00] -> missing byte counts as 0xff
        assert_eq!(id(&[0]).distance(&id(&[0, 0])).as_bytes(), &[0, 0xff]);
    }

    #[test]
    fn ordering_uses_every_bit_not_a_double() {
        // W18: the JS double folding makes these two equal. Here the low byte decides.
        let zero = id(&[0; 20]);
        let mut a = [0u8; 20];
        a[0] = 0x80;
        let mut b = a;
        b[10] = 0xff;
        assert_eq!(zero.cmp_distance(&id(&a), &id(&b)), Ordering::Less);
        assert!(zero.distance(&id(&a)) < zero.distance(&id(&b)));
    }

    #[test]
    fn bits_are_read_most_significant_first() {
        // k-bucket determineNode.js
        assert!(!id(&[0x00]).bit(0));
        assert!(!id(&[0x40]).bit(0));
        assert!(id(&[0x40]).bit(1));
        assert!(!id(&[0x40]).bit(2));
        assert!(!id(&[0x40]).bit(9));
        assert!(id(&[0x41]).bit(7));
        assert!(id(&[0x41, 0x00]).bit(7));
        assert!(id(&[0x00, 0x41, 0x00]).bit(15));
    }

    #[test]
    fn common_prefix_and_with_bit() {
        let a = id(&[0b1010_0000, 0]);
        let b = id(&[0b1011_0000, 0]);
        assert_eq!(a.common_prefix_len(&b), 3);
        assert_eq!(a.common_prefix_len(&a), 16);
        assert_eq!(a.with_bit(3, true), b);
        assert_eq!(b.with_bit(3, false), a);
        assert_eq!(a.distance(&b).leading_zeros(), 3);
    }

    #[test]
    fn lengths_outside_the_range_are_refused() {
        assert_eq!(NodeId::from_bytes(&[]), Err(InvalidIdLength { len: 0 }));
        assert_eq!(NodeId::from_bytes(&[0; 33]), Err(InvalidIdLength { len: 33 }));
        assert!(NodeId::from_bytes(&[0; 32]).is_ok());
    }
}

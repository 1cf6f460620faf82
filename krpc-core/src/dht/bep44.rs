//! BEP 44 items: immutable values stored under the SHA-1 of their encoding, and mutable values
//! signed with an ed25519 key and stored under the SHA-1 of the key and a salt.
//!
//! This module holds the pure parts: targets, the signed buffer, signing and verifying, and
//! the checks a storing node makes. The node layer answers `get`/`put` with them, and the
//! engine's `put_*`/`get_*` commands build and check items with them.
//!
//! Keys are [`ed25519_dalek`] 3 keys (re-exported here), the same crate and version the
//! `mainline` crate uses, so a `SigningKey` from one works with the other.
//!
//! ```
//! use krpc_core::dht::bep44::{MutableItem, ed25519_dalek::SigningKey, immutable_target};
//!
//! // Immutable: the target is the SHA-1 of the bencoded value.
//! let target = immutable_target(b"12:Hello World!");
//! assert_eq!(target.as_bytes()[..4], [0xe5, 0xf9, 0x6f, 0x6f]);
//!
//! // Mutable: signed by the key holder, checked by everyone.
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let item = MutableItem::sign(&key, b"salt", 1, b"5:hello").unwrap();
//! assert!(item.verify());
//! assert_eq!(item.target(), MutableItem::target_of(&item.key, b"salt"));
//! ```

use alloc::vec::Vec;
use core::fmt::Write as _;

use sha1::{Digest, Sha1};

pub use ed25519_dalek;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::NodeId;
use crate::wire::Dictionary;

/// BEP 44: "Storing nodes MAY reject put requests where the bencoded form of v is longer than
/// 1000 bytes."
pub const MAX_VALUE_LEN: usize = 1000;

/// BEP 44: the salt "MUST NOT be longer than 64 bytes".
pub const MAX_SALT_LEN: usize = 64;

/// Why an item cannot be built or stored, with the BEP 44 error code a storing node answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemError {
    /// `v` is missing, not bencode, or not in canonical form (203).
    InvalidValue,
    /// `v` is empty or longer than [`MAX_VALUE_LEN`] bytes (205).
    ValueTooBig,
    /// The signature does not verify (206).
    InvalidSignature,
    /// The salt is longer than [`MAX_SALT_LEN`] bytes (207).
    SaltTooBig,
    /// `seq` is negative (203).
    InvalidSeq,
    /// `k` or `sig` has the wrong length (203).
    InvalidKey,
}

impl ItemError {
    /// The KRPC error code BEP 44 gives this error.
    pub fn code(self) -> i64 {
        match self {
            ItemError::ValueTooBig => 205,
            ItemError::InvalidSignature => 206,
            ItemError::SaltTooBig => 207,
            ItemError::InvalidValue | ItemError::InvalidSeq | ItemError::InvalidKey => 203,
        }
    }

    /// The error message sent with [`code`](Self::code).
    pub fn message(self) -> &'static [u8] {
        match self {
            ItemError::InvalidValue => b"v must be canonical bencode",
            ItemError::ValueTooBig => b"message (v field) too big",
            ItemError::InvalidSignature => b"invalid signature",
            ItemError::SaltTooBig => b"salt (salt field) too big",
            ItemError::InvalidSeq => b"seq must be a non-negative integer",
            ItemError::InvalidKey => b"k must be 32 bytes and sig 64 bytes",
        }
    }
}

impl core::fmt::Display for ItemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(core::str::from_utf8(self.message()).unwrap_or("invalid item"))
    }
}

impl core::error::Error for ItemError {}

/// Checks a bencoded `v` as a storing node must: BEP 44 "A put request with invalid bencoding
/// [...] MUST be rejected" (non-canonical encodings included: the hash and the signature are
/// over the exact bytes), and "MAY reject [...] longer than 1000 bytes". An empty `v` cannot
/// be bencode at all; it is refused as too small, as libtorrent does (205).
pub fn check_value(v: &[u8]) -> Result<(), ItemError> {
    if v.is_empty() || v.len() > MAX_VALUE_LEN {
        return Err(ItemError::ValueTooBig);
    }
    let mut d = Dictionary::new();
    d.insert_bencode("v", v).map_err(|_| ItemError::InvalidValue)?;
    // `insert_bencode` stores the value canonically: the bytes survive only if they were.
    let raw = d.as_bencode();
    if raw.len() != v.len() + 5 || &raw[4..raw.len() - 1] != v {
        return Err(ItemError::InvalidValue);
    }
    // Our own decoder (and so every node of ours) must be able to read the `put` that
    // carries it: `v` sits two levels deep in the query, under the decoder's depth limit
    // (a fuzz finding: a value nested 15 deep made a `put` nobody would read).
    let mut query = alloc::vec::Vec::with_capacity(v.len() + 40);
    query.extend_from_slice(b"d1:ad1:v");
    query.extend_from_slice(v);
    query.extend_from_slice(b"e1:q3:put1:t4:tttt1:y1:qe");
    if crate::wire::Message::decode(&query).is_err() {
        return Err(ItemError::InvalidValue);
    }
    Ok(())
}

/// BEP 44: an immutable item's target is "the SHA-1 hash of the bencoded form of v".
pub fn immutable_target(v: &[u8]) -> NodeId {
    NodeId::from_array(Sha1::digest(v).into())
}

/// BEP 44: "the SHA-1 hash of the public key, concatenated with the salt" (an empty salt is no
/// salt).
pub fn mutable_target(key: &[u8; 32], salt: &[u8]) -> NodeId {
    let mut h = Sha1::new();
    h.update(key);
    h.update(salt);
    NodeId::from_array(h.finalize().into())
}

/// BEP 44's signed buffer: `4:salt<len>:<salt>` (only for a non-empty salt), then
/// `3:seqi<seq>e1:v` and the bencoded value, e.g. `4:salt6:foobar3:seqi4e1:v12:Hello world!`.
pub fn signed_buffer(salt: &[u8], seq: i64, v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(salt.len() + v.len() + 40);
    if !salt.is_empty() {
        let mut head = arrayvec::ArrayString::<16>::new();
        let _ = write!(head, "4:salt{}:", salt.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(salt);
    }
    let mut seq_part = arrayvec::ArrayString::<32>::new();
    let _ = write!(seq_part, "3:seqi{seq}e1:v");
    out.extend_from_slice(seq_part.as_bytes());
    out.extend_from_slice(v);
    out
}

/// Whether `sig` is `key`'s signature over the signed buffer of (`salt`, `seq`, `v`).
/// Strict verification: a key of small order or a non-canonical signature fails.
pub fn verify(key: &[u8; 32], sig: &[u8; 64], salt: &[u8], seq: i64, v: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(key) else { return false };
    key.verify_strict(&signed_buffer(salt, seq, v), &Signature::from_bytes(sig)).is_ok()
}

/// An item found by a `get`, checked before it is surfaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// An immutable item: its bencoded value, whose SHA-1 is the target.
    Immutable {
        /// The bencoded value.
        value: Vec<u8>,
    },
    /// A mutable item whose signature verified.
    Mutable(MutableItem),
}

impl Item {
    /// The bencoded value.
    pub fn value(&self) -> &[u8] {
        match self {
            Item::Immutable { value } => value,
            Item::Mutable(m) => &m.value,
        }
    }

    /// The sequence number of a mutable item.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Item::Immutable { .. } => None,
            Item::Mutable(m) => Some(m.seq),
        }
    }
}

/// A signed mutable item: everything a `put` sends, and everything needed to republish it
/// without the private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableItem {
    /// The ed25519 public key (`k`).
    pub key: [u8; 32],
    /// The salt (never sent back by a `get`; the reader supplies it).
    pub salt: Vec<u8>,
    /// The sequence number (`seq`).
    pub seq: i64,
    /// The bencoded value (`v`).
    pub value: Vec<u8>,
    /// The signature (`sig`) over [`signed_buffer`].
    pub signature: [u8; 64],
}

impl MutableItem {
    fn check(salt: &[u8], seq: i64, value: &[u8]) -> Result<(), ItemError> {
        if salt.len() > MAX_SALT_LEN {
            return Err(ItemError::SaltTooBig);
        }
        if seq < 0 {
            return Err(ItemError::InvalidSeq);
        }
        check_value(value)
    }

    /// Signs `value` (bencoded) under `key`, `salt` and `seq`.
    pub fn sign(key: &SigningKey, salt: &[u8], seq: i64, value: &[u8]) -> Result<MutableItem, ItemError> {
        Self::check(salt, seq, value)?;
        let signature = key.sign(&signed_buffer(salt, seq, value)).to_bytes();
        Ok(MutableItem {
            key: key.verifying_key().to_bytes(),
            salt: salt.to_vec(),
            seq,
            value: value.to_vec(),
            signature,
        })
    }

    /// Signs with a 64-byte *expanded* secret key (clamped scalar ‖ nonce prefix), the form
    /// libtorrent and the BEP's test vectors keep (not a 32-byte seed). The public key is
    /// derived from it.
    pub fn sign_expanded(expanded: &[u8; 64], salt: &[u8], seq: i64, value: &[u8]) -> Result<MutableItem, ItemError> {
        use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
        Self::check(salt, seq, value)?;
        let esk = ExpandedSecretKey::from_bytes(expanded);
        let public = VerifyingKey::from(&esk);
        let signature = raw_sign::<ed25519_dalek::Sha512>(&esk, &signed_buffer(salt, seq, value), &public).to_bytes();
        Ok(MutableItem { key: public.to_bytes(), salt: salt.to_vec(), seq, value: value.to_vec(), signature })
    }

    /// Whether the signature verifies and the fields are within BEP 44's limits.
    pub fn verify(&self) -> bool {
        Self::check(&self.salt, self.seq, &self.value).is_ok()
            && verify(&self.key, &self.signature, &self.salt, self.seq, &self.value)
    }

    /// Where it is stored: SHA-1(`k` ‖ salt).
    pub fn target(&self) -> NodeId {
        mutable_target(&self.key, &self.salt)
    }

    /// The target of a key and salt.
    pub fn target_of(key: &[u8; 32], salt: &[u8]) -> NodeId {
        mutable_target(key, salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    const PUBLIC: &str = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548";
    const EXPANDED: &str = "e06d3183d14159228433ed599221b80bd0a5ce8352e4bdf0262f76786ef1c74d\
                            b7e7a9fea2c0eb269d61e3b38e450a22e754941ac78479d6c54e1faf6037881d";
    const VALUE: &[u8] = b"12:Hello World!";

    #[test]
    fn bep44_test_vector_1_mutable() {
        assert_eq!(signed_buffer(b"", 1, VALUE), b"3:seqi1e1:v12:Hello World!");
        let item = MutableItem::sign_expanded(&hex(EXPANDED), b"", 1, VALUE).unwrap();
        assert_eq!(item.key, hex::<32>(PUBLIC));
        let sig: [u8; 64] = hex("305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff\
             1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01");
        assert_eq!(item.signature, sig);
        assert!(item.verify());
        assert_eq!(item.target(), NodeId::from_array(hex("4a533d47ec9c7d95b1ad75f576cffc641853b750")));
    }

    #[test]
    fn bep44_test_vector_2_mutable_with_salt() {
        assert_eq!(signed_buffer(b"foobar", 1, VALUE), b"4:salt6:foobar3:seqi1e1:v12:Hello World!");
        let item = MutableItem::sign_expanded(&hex(EXPANDED), b"foobar", 1, VALUE).unwrap();
        let sig: [u8; 64] = hex("6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d\
             df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08");
        assert_eq!(item.signature, sig);
        assert!(verify(&hex(PUBLIC), &sig, b"foobar", 1, VALUE));
        assert_eq!(item.target(), NodeId::from_array(hex("411eba73b6f087ca51a3795d9c8c938d365e32c1")));
    }

    #[test]
    fn bep44_test_vector_3_immutable() {
        assert_eq!(immutable_target(VALUE), NodeId::from_array(hex("e5f96f6f38320f0f33959cb4d3d656452117aadb")));
    }

    #[test]
    fn a_signature_over_anything_else_fails() {
        let item = MutableItem::sign_expanded(&hex(EXPANDED), b"foobar", 1, VALUE).unwrap();
        assert!(!verify(&item.key, &item.signature, b"", 1, VALUE), "salt is signed");
        assert!(!verify(&item.key, &item.signature, b"foobar", 2, VALUE), "seq is signed");
        assert!(!verify(&item.key, &item.signature, b"foobar", 1, b"12:Hello World?"), "v is signed");
        assert!(!verify(&[0; 32], &item.signature, b"foobar", 1, VALUE), "a junk key never verifies");
    }

    #[test]
    fn seed_keys_sign_and_verify() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let item = MutableItem::sign(&key, b"", 7, b"i42e").unwrap();
        assert!(item.verify());
        let mut forged = item.clone();
        forged.seq = 8;
        assert!(!forged.verify());
    }

    #[test]
    fn value_checks() {
        assert_eq!(check_value(b"i1e"), Ok(()));
        assert_eq!(check_value(b""), Err(ItemError::ValueTooBig));
        assert_eq!(check_value(b"5:abc"), Err(ItemError::InvalidValue), "truncated");
        assert_eq!(check_value(b"d1:bi1e1:ai2ee"), Err(ItemError::InvalidValue), "unsorted keys");
        assert_eq!(check_value(b"i01e"), Err(ItemError::InvalidValue), "leading zero");
        assert_eq!(check_value(b"i1ei2e"), Err(ItemError::InvalidValue), "two values");
        let mut big = b"997:".to_vec();
        big.resize(1001, b'x');
        assert_eq!(check_value(&big), Err(ItemError::ValueTooBig));
        big.truncate(1000);
        big[..4].copy_from_slice(b"996:");
        assert_eq!(check_value(&big), Ok(()), "exactly 1000 bytes");
        // Fuzz finding: a value our own decoder cannot read inside a `put` (the query adds two
        // levels around `v`, under the decoder's limit of 16).
        let nested = |depth: usize| [vec![b'l'; depth], b"i1e".to_vec(), vec![b'e'; depth]].concat();
        assert_eq!(check_value(&nested(14)), Ok(()), "14 levels fit");
        assert_eq!(check_value(&nested(15)), Err(ItemError::InvalidValue), "15 levels do not");
        let key = SigningKey::from_bytes(&[3; 32]);
        assert_eq!(MutableItem::sign(&key, &[0; 65], 1, b"i1e"), Err(ItemError::SaltTooBig));
        assert!(MutableItem::sign(&key, &[0; 64], 1, b"i1e").is_ok());
        assert_eq!(MutableItem::sign(&key, b"", -1, b"i1e"), Err(ItemError::InvalidSeq));
    }
}

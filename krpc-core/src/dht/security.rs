//! BEP 42 guards against "launching 8 or more DHT nodes with node-IDs selected close to a
//! specific target info-hash" by deriving part of the id from the node's external address:
//! "The first (most significant) 21 bits of the node ID used in the DHT MUST match the first 21
//! bits of the resulting hash." The hash is CRC32C (Castagnoli) of the masked address:
//!
//! ```text
//! IPv4: crc32c((ip & 0x030f3fff) | (r << 29))                 over 4 big-endian bytes
//! IPv6: crc32c((ip[..8] & 0x0103070f1f3f7fff) | (r << 61))    over 8 big-endian bytes
//! ```
//!
//! with `r = rand & 7`. "The last byte of the hash MUST match the random number (`r`) used to
//! generate the hash": the example code stores `rand` as the id's last byte, so a verifier
//! reads `r` back as `id[last] & 7`. The BEP prose says to hash the IPv4 value as a 64-bit
//! integer, which contradicts its own example code; the test vectors (below) match 4-byte
//! hashing, and so do libtorrent and anacrolix/dht.
//!
//! # Id lengths other than 20 bytes
//!
//! The crate allows ids of 1 to 32 bytes ([`crate::MAX_ID_LEN`]). The layout is the BEP's for
//! every length of at least 4 bytes: bytes 0..3 carry the 21-bit prefix, the last byte is
//! `rand`, everything else is random. A 3-byte id has no room for a separate `rand` byte, so
//! its last byte holds 5 prefix bits and `r` in its low 3 bits (`id[2] & 7 = r`, still "the
//! last byte" carrying `r`). Ids of 1 or 2 bytes cannot hold 21 bits: [`generate_secure_id`]
//! returns a plain random id for them and [`is_secure_id`] never accepts them.
//!
//! # Exemptions
//!
//! BEP 42: "Any peer on a local network address is exempt from this node ID verification":
//! 10/8, 172.16/12, 192.168/16, 169.254/16 and 127/8. [`is_exempt`] also exempts the shared
//! (carrier-grade NAT) range 100.64/10 and, for IPv6, loopback, link-local fe80::/10, the
//! deprecated site-local fec0::/10 and unique-local fc00::/7, as libtorrent does. An
//! IPv4-mapped IPv6 address is judged as its IPv4 address everywhere in this module.

use core::net::IpAddr;

use crate::wire::canonical_ip;
use crate::{InvalidIdLength, MAX_ID_LEN, NodeId};

/// The CRC32C lookup table (reflected polynomial 0x82F63B78), computed at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C (Castagnoli; init and final xor `0xFFFFFFFF`, reflected), as BEP 42 uses it.
///
/// ```
/// assert_eq!(krpc_core::dht::crc32c(b"123456789"), 0xE306_9283);
/// ```
pub const fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut i = 0;
    while i < data.len() {
        crc = CRC32C_TABLE[((crc ^ data[i] as u32) & 0xff) as usize] ^ (crc >> 8);
        i += 1;
    }
    !crc
}

/// The CRC whose top 21 bits a BEP 42 id for `ip` must start with, for `r` (only the low three
/// bits of `r` are used).
pub fn secure_prefix(ip: IpAddr, r: u8) -> u32 {
    let r = r & 7;
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let mask = [0x03, 0x0f, 0x3f, 0xff];
            let mut bytes = v4.octets();
            for (b, m) in bytes.iter_mut().zip(mask) {
                *b &= m;
            }
            bytes[0] |= r << 5;
            crc32c(&bytes)
        }
        IpAddr::V6(v6) => {
            let mask = [0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff];
            let octets = v6.octets();
            let mut bytes = [0u8; 8];
            for ((b, o), m) in bytes.iter_mut().zip(octets).zip(mask) {
                *b = o & m;
            }
            bytes[0] |= r << 5;
            crc32c(&bytes)
        }
    }
}

/// A random `id_len`-byte id that satisfies BEP 42 for `ip` (see the module docs for lengths
/// below 4 bytes). Fails only when `id_len` is outside `1..=`[`MAX_ID_LEN`].
///
/// ```
/// use core::net::IpAddr;
/// use krpc_core::dht::{generate_secure_id, is_secure_id};
/// use rand_chacha::ChaCha12Rng;
/// use rand_core::SeedableRng;
///
/// let ip: IpAddr = "124.31.75.21".parse().unwrap();
/// let id = generate_secure_id(ip, &mut ChaCha12Rng::seed_from_u64(3), 20).unwrap();
/// assert!(is_secure_id(&id, ip));
/// ```
pub fn generate_secure_id<R: rand_core::Rng + ?Sized>(
    ip: IpAddr,
    rng: &mut R,
    id_len: usize,
) -> Result<NodeId, InvalidIdLength> {
    let id = NodeId::random(id_len, rng)?;
    if id_len < 3 {
        return Ok(id);
    }
    let mut bytes = [0u8; MAX_ID_LEN];
    bytes[..id_len].copy_from_slice(id.as_bytes());
    // The random last byte is `rand`. For a 3-byte id that byte is byte 2, whose low three bits
    // are kept below, so `r` survives there too.
    let crc = secure_prefix(ip, bytes[id_len - 1]).to_be_bytes();
    bytes[0] = crc[0];
    bytes[1] = crc[1];
    bytes[2] = (crc[2] & 0xf8) | (bytes[2] & 0x07);
    NodeId::from_bytes(&bytes[..id_len])
}

/// Whether `id` carries the BEP 42 prefix of `ip` (with `r` read from its last byte).
///
/// This is the bare check: it does not consider exemptions (see [`is_verified`]). Ids shorter
/// than 3 bytes are never secure.
pub fn is_secure_id(id: &NodeId, ip: IpAddr) -> bool {
    let b = id.as_bytes();
    if b.len() < 3 {
        return false;
    }
    let crc = secure_prefix(ip, b[b.len() - 1]).to_be_bytes();
    b[0] == crc[0] && b[1] == crc[1] && (b[2] & 0xf8) == (crc[2] & 0xf8)
}

/// Whether `ip` is exempt from BEP 42 verification: private, loopback, link-local, shared and
/// unique-local ranges (listed in the module docs).
pub fn is_exempt(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 10                                  // 10/8
                || o[0] == 127                          // 127/8
                || (o[0] == 172 && o[1] & 0xf0 == 16)   // 172.16/12
                || (o[0] == 192 && o[1] == 168)         // 192.168/16
                || (o[0] == 169 && o[1] == 254)         // 169.254/16
                || (o[0] == 100 && o[1] & 0xc0 == 64) // 100.64/10
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || first & 0xffc0 == 0xfe80 // link-local fe80::/10
                || first & 0xffc0 == 0xfec0 // site-local fec0::/10
                || first & 0xfe00 == 0xfc00 // unique-local fc00::/7
        }
    }
}

/// Whether a node with `id` seen at `ip` passes BEP 42: its address is exempt or its id is
/// bound to it.
pub fn is_verified(id: &NodeId, ip: IpAddr) -> bool {
    is_exempt(ip) || is_secure_id(id, ip)
}

/// How strictly the node layer applies BEP 42 to other nodes.
///
/// BEP 42 describes a transition during which the rule "should not be enforced", after which
/// it may be. Either way "Requests from peers whose node ID does not match their external IP
/// should always be serviced, even after the transition period" (I9): the policy only decides
/// what a node may be *used for* (a routing-table slot, a storage target, a vote in the lookup
/// termination test), never whether its queries are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SecureIdPolicy {
    /// BEP 42 is ignored: every id is treated alike (k-rpc's behaviour).
    Off,
    /// Verified ids ([`is_verified`]) rank ahead of unverified ones: the routing table prefers
    /// them when it must choose whom to keep or evict, and lookups try them first. Nobody is
    /// refused. This is libtorrent's default (`dht_prefer_verified_node_ids`) and ours.
    #[default]
    Prefer,
    /// Unverified ids from non-exempt addresses are refused: such nodes never enter the
    /// routing table; their `get_peers` replies "should be considered to not contain a token
    /// and thus not be eligible as storage target"; and they "must not be considered to have
    /// sent a valid response when checking the termination condition of a lookup" (BEP 42
    /// I7). Their queries are still answered (I9). libtorrent's `dht_enforce_node_id`, anacrolix/dht's default.
    Enforce,
}

impl SecureIdPolicy {
    /// Whether a node with `id` at `ip` may be used at all under this policy.
    pub fn admits(self, id: &NodeId, ip: IpAddr) -> bool {
        match self {
            SecureIdPolicy::Off | SecureIdPolicy::Prefer => true,
            SecureIdPolicy::Enforce => is_verified(id, ip),
        }
    }

    /// Whether verified nodes should rank ahead of unverified ones under this policy.
    pub fn prefers_verified(self) -> bool {
        self != SecureIdPolicy::Off
    }
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn hex_id(s: &str) -> NodeId {
        let bytes: std::vec::Vec<u8> =
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
        NodeId::from_bytes(&bytes).unwrap()
    }

    /// BEP 42's table: IP, rand, example id, and the CRC32C computed for it (protocol.md §1.4).
    const BEP42_VECTORS: [(&str, u8, &str, u32); 5] = [
        ("124.31.75.21", 1, "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401", 0x5fbf_bdb2),
        ("21.75.31.124", 86, "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256", 0x5a3c_e9b0),
        ("65.23.51.170", 22, "a5d43220bc8f112a3d426c84764f8c2a1150e616", 0xa5d4_344a),
        ("84.124.73.14", 65, "1b0321dd1bb1fe518101ceef99462b947a01ff41", 0x1b03_217b),
        ("43.213.53.83", 90, "e56f6cbf5b7c4be0237986d5243b87aa6d51305a", 0xe56f_6972),
    ];

    fn prefix_matches(id: &[u8], crc: u32) -> bool {
        let c = crc.to_be_bytes();
        id[0] == c[0] && id[1] == c[1] && id[2] & 0xf8 == c[2] & 0xf8
    }

    #[test]
    fn crc32c_matches_the_castagnoli_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn the_bep42_vectors_give_their_crc_and_prefix() {
        for (addr, rand, id, crc) in BEP42_VECTORS {
            assert_eq!(secure_prefix(ip(addr), rand & 7), crc, "{addr}");
            // Only the low three bits of rand matter.
            assert_eq!(secure_prefix(ip(addr), rand), crc, "{addr}");
            let id = hex_id(id);
            assert!(prefix_matches(id.as_bytes(), crc), "{addr}");
            assert_eq!(id.as_bytes()[19], rand);
        }
    }

    #[test]
    fn the_bep42_example_ids_verify_against_their_ip_only() {
        for (i, (addr, _, id, _)) in BEP42_VECTORS.iter().enumerate() {
            let id = hex_id(id);
            assert!(is_secure_id(&id, ip(addr)), "{addr}");
            let other = BEP42_VECTORS[(i + 1) % BEP42_VECTORS.len()].0;
            assert!(!is_secure_id(&id, ip(other)), "{addr} vs {other}");
        }
    }

    #[test]
    fn the_derived_ipv6_vectors_hash_the_top_64_bits() {
        assert_eq!(secure_prefix(ip("2001:db8::1"), 0), 0x7c89_c9bd);
        assert_eq!(secure_prefix(ip("2001:db8::1"), 5), 0x4588_3a40);
        assert_eq!(secure_prefix(ip("2a01:4f8:1c1c:abcd::1"), 3), 0x9c4b_ea46);
        assert_eq!(secure_prefix(ip("2a01:4f8:1c1c:abcd:ffff::9"), 3), 0x9c4b_ea46);
        // Prefix bytes as protocol.md lists them.
        assert!(prefix_matches(&[0x7c, 0x89, 0xc8], 0x7c89_c9bd));
        assert!(prefix_matches(&[0x45, 0x88, 0x38], 0x4588_3a40));
    }

    #[test]
    fn an_ipv4_mapped_address_is_hashed_as_ipv4() {
        let mapped = IpAddr::V6(Ipv4Addr::new(124, 31, 75, 21).to_ipv6_mapped());
        assert_eq!(secure_prefix(mapped, 1), 0x5fbf_bdb2);
        assert!(is_secure_id(&hex_id(BEP42_VECTORS[0].2), mapped));
    }

    #[test]
    fn generated_ids_verify_for_every_length_of_three_bytes_or_more() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for len in 3..=MAX_ID_LEN {
            for addr in ["124.31.75.21", "8.8.8.8", "2001:db8::1", "2a01:4f8:1c1c:abcd::1"] {
                let id = generate_secure_id(ip(addr), &mut rng, len).unwrap();
                assert_eq!(id.len(), len);
                assert!(is_secure_id(&id, ip(addr)), "{addr} len {len}");
            }
        }
    }

    #[test]
    fn a_generated_id_puts_rand_in_its_last_byte_and_randomness_in_the_middle() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let a = generate_secure_id(ip("65.23.51.170"), &mut rng, 20).unwrap();
        let b = generate_secure_id(ip("65.23.51.170"), &mut rng, 20).unwrap();
        let r = a.as_bytes()[19] & 7;
        assert!(prefix_matches(a.as_bytes(), secure_prefix(ip("65.23.51.170"), r)));
        assert_ne!(a.as_bytes()[3..19], b.as_bytes()[3..19]);
    }

    #[test]
    fn a_three_byte_id_keeps_r_in_its_low_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..64 {
            let id = generate_secure_id(ip("21.75.31.124"), &mut rng, 3).unwrap();
            let b = id.as_bytes();
            assert!(prefix_matches(b, secure_prefix(ip("21.75.31.124"), b[2] & 7)));
        }
    }

    #[test]
    fn ids_of_one_or_two_bytes_are_random_and_never_secure() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for len in [1, 2] {
            let id = generate_secure_id(ip("124.31.75.21"), &mut rng, len).unwrap();
            assert_eq!(id.len(), len);
            assert!(!is_secure_id(&id, ip("124.31.75.21")));
        }
        assert_eq!(generate_secure_id(ip("1.2.3.4"), &mut rng, 0), Err(InvalidIdLength { len: 0 }));
        assert_eq!(generate_secure_id(ip("1.2.3.4"), &mut rng, 33), Err(InvalidIdLength { len: 33 }));
    }

    #[test]
    fn a_random_id_is_almost_never_secure() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let addr = ip("84.124.73.14");
        let secure = (0..10_000).filter(|_| is_secure_id(&NodeId::random(20, &mut rng).unwrap(), addr)).count();
        // 21 bits must match: about one in two million.
        assert!(secure <= 1, "{secure}");
    }

    #[test]
    fn private_loopback_and_local_ranges_are_exempt() {
        for addr in [
            "10.0.0.1",
            "10.255.255.255",
            "127.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.3.4",
            "100.64.0.1",
            "100.127.255.255",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fdff::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(is_exempt(ip(addr)), "{addr}");
        }
        for addr in [
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.0.1",
            "11.0.0.1",
            "2001:db8::1",
            "fe00::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_exempt(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn verified_means_exempt_or_secure() {
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        let random = NodeId::random(20, &mut rng).unwrap();
        assert!(is_verified(&random, ip("192.168.0.10")));
        assert!(!is_verified(&random, ip("8.8.8.8")));
        let secure = generate_secure_id(ip("8.8.8.8"), &mut rng, 20).unwrap();
        assert!(is_verified(&secure, ip("8.8.8.8")));
    }

    #[test]
    fn only_enforce_refuses_unverified_ids() {
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        let public = IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4));
        let random = NodeId::random(20, &mut rng).unwrap();
        let secure = generate_secure_id(public, &mut rng, 20).unwrap();
        assert_eq!(SecureIdPolicy::default(), SecureIdPolicy::Prefer);
        assert!(SecureIdPolicy::Off.admits(&random, public));
        assert!(SecureIdPolicy::Prefer.admits(&random, public));
        assert!(!SecureIdPolicy::Enforce.admits(&random, public));
        assert!(SecureIdPolicy::Enforce.admits(&secure, public));
        assert!(SecureIdPolicy::Enforce.admits(&random, IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(!SecureIdPolicy::Off.prefers_verified());
        assert!(SecureIdPolicy::Prefer.prefers_verified() && SecureIdPolicy::Enforce.prefers_verified());
    }
}

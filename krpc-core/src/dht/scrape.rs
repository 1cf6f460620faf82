//! BEP 33 scrape filters: 256-byte Bloom filters of the IP addresses stored for an info-hash.
//!
//! BEP 33: "To keep things simple and ensure compatibility all implementations must be
//! functionally equivalent to the following pseudocode": m = 2048 bits, k = 2,
//! `hash = sha1(ip)` over the 4 raw bytes of an IPv4 address or the 16 of an IPv6 one,
//! `index1 = hash[0] | hash[1] << 8`, `index2 = hash[2] | hash[3] << 8`, both taken modulo m,
//! and `bloom[index / 8] |= 0x01 << index % 8`. "Only IP addresses (v4 or v6) may be inserted
//! into the bloom filters. Port numbers or host names are not allowed."
//!
//! The estimate is BEP 33's `size = log(c / m) / (k * log(1 - 1/m))` with
//! `c = min(m - 1, countZeroBits(bloom))`. `core` has no logarithm, so it comes from the
//! `libm` crate (a `no_std` port of musl's). A union of filters is their bitwise OR.
//!
//! [`crate::dht::PeerStore::bloom`] builds the two filters of a reply (`BFsd` for seeds,
//! `BFpe` for the other peers).

use core::net::IpAddr;

use sha1::{Digest, Sha1};

use crate::wire::canonical_ip;

/// The size of a BEP 33 filter in bytes (m = 2048 bits).
pub const BLOOM_BYTES: usize = 256;

const M: usize = BLOOM_BYTES * 8;
const K: f64 = 2.0;

/// Adds `ip` to `filter`. An IPv4-mapped IPv6 address is inserted as its IPv4 address.
pub fn bloom_insert(filter: &mut [u8; BLOOM_BYTES], ip: IpAddr) {
    let hash = match canonical_ip(ip) {
        IpAddr::V4(v4) => Sha1::digest(v4.octets()),
        IpAddr::V6(v6) => Sha1::digest(v6.octets()),
    };
    for pair in [[hash[0], hash[1]], [hash[2], hash[3]]] {
        let index = usize::from(u16::from_le_bytes(pair)) % M;
        filter[index / 8] |= 1 << (index % 8);
    }
}

/// BEP 33's estimate of how many distinct addresses went into `filter`.
///
/// The formula saturates: an empty filter estimates 0.5 (because of the `min(m - 1, …)`), and
/// the false-positive rate "approaches one around 8000 inserted values, at this point the size
/// estimation breaks down". A completely full filter, for which the formula would divide into
/// `log(0)`, is counted as having one zero bit, which gives about 7,805 instead of infinity.
///
/// ```
/// use krpc_core::dht::{BLOOM_BYTES, bloom_estimate, bloom_insert};
///
/// let mut filter = [0u8; BLOOM_BYTES];
/// for last in 1..=100u8 {
///     bloom_insert(&mut filter, [198, 51, 100, last].into());
/// }
/// assert!((bloom_estimate(&filter) - 100.0).abs() < 10.0);
/// ```
pub fn bloom_estimate(filter: &[u8; BLOOM_BYTES]) -> f64 {
    let ones: u32 = filter.iter().map(|b| b.count_ones()).sum();
    let zeros = M - ones as usize;
    let c = zeros.clamp(1, M - 1) as f64;
    let m = M as f64;
    libm::log(c / m) / (K * libm::log(1.0 - 1.0 / m))
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// The filter BEP 33 lists under "Test Vectors".
    const BEP33_VECTOR: &str = "\
        F6C3F5EA A07FFD91 BDE89F77 7F26FB2B FF37BDB8 FB2BBAA2 FD3DDDE7 BACFFF75 EE7CCBAE \
        FE5EEDB1 FBFAFF67 F6ABFF5E 43DDBCA3 FD9B9FFD F4FFD3E9 DFF12D1B DF59DB53 DBE9FA5B \
        7FF3B8FD FCDE1AFB 8BEDD7BE 2F3EE71E BBBFE93B CDEEFE14 8246C2BC 5DBFF7E7 EFDCF24F \
        D8DC7ADF FD8FFFDF DDFFF7A4 BBEEDF5C B95CE81F C7FCFF1F F4FFFFDF E5F7FDCB B7FD79B3 \
        FA1FC77B FE07FFF9 05B7B7FF C7FEFEFF E0B8370B B0CD3F5B 7F2BD93F EB4386CF DD6F7FD5 \
        BFAF2E9E BFFFFEEC D67ADBF7 C67F17EF D5D75EBA 6FFEBA7F FF47A91E B1BFBB53 E8ABFB57 \
        62ABE8FF 237279BF EFBFEEF5 FFC5FEBF DFE5ADFF ADFEE1FB 737FFFFB FD9F6AEF FEEE76B6 \
        FD8F72EF";

    fn parse_hex(text: &str) -> [u8; BLOOM_BYTES] {
        let digits: std::vec::Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        assert_eq!(digits.len(), 2 * BLOOM_BYTES);
        let nibble = |c: u8| (c as char).to_digit(16).unwrap() as u8;
        core::array::from_fn(|i| nibble(digits[2 * i]) << 4 | nibble(digits[2 * i + 1]))
    }

    fn bep33_filter() -> [u8; BLOOM_BYTES] {
        let mut filter = [0u8; BLOOM_BYTES];
        for last in 0..=255u8 {
            bloom_insert(&mut filter, Ipv4Addr::new(192, 0, 2, last).into());
        }
        let base = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0));
        for offset in 0..=0x3e7u128 {
            bloom_insert(&mut filter, Ipv6Addr::from(base + offset).into());
        }
        filter
    }

    #[test]
    fn the_bep33_test_vector_gives_the_listed_bytes() {
        assert_eq!(bep33_filter(), parse_hex(BEP33_VECTOR));
    }

    #[test]
    fn the_bep33_test_vector_estimates_1224_93() {
        let estimate = bloom_estimate(&bep33_filter());
        assert!((estimate - 1224.9308).abs() < 0.01, "{estimate}");
    }

    #[test]
    fn an_ipv4_mapped_address_sets_the_bits_of_its_ipv4_address() {
        let v4 = Ipv4Addr::new(192, 168, 1, 1);
        let mut a = [0u8; BLOOM_BYTES];
        let mut b = [0u8; BLOOM_BYTES];
        bloom_insert(&mut a, v4.into());
        bloom_insert(&mut b, v4.to_ipv6_mapped().into());
        assert_eq!(a, b);
        assert!(a.iter().map(|x| x.count_ones()).sum::<u32>() <= 2);
    }

    #[test]
    fn inserting_the_same_address_twice_changes_nothing() {
        let mut a = [0u8; BLOOM_BYTES];
        bloom_insert(&mut a, Ipv4Addr::new(203, 0, 113, 1).into());
        let once = a;
        bloom_insert(&mut a, Ipv4Addr::new(203, 0, 113, 1).into());
        assert_eq!(a, once);
    }

    #[test]
    fn the_estimate_saturates_instead_of_diverging() {
        let empty = bloom_estimate(&[0; BLOOM_BYTES]);
        assert!((empty - 0.5).abs() < 1e-9, "{empty}");
        let full = bloom_estimate(&[0xff; BLOOM_BYTES]);
        assert!(full.is_finite() && (7800.0..7810.0).contains(&full), "{full}");
        let mut one_zero = [0xff; BLOOM_BYTES];
        one_zero[0] = 0xfe;
        assert_eq!(bloom_estimate(&one_zero), full);
    }
}

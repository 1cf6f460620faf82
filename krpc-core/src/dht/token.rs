//! Write tokens: proof that an `announce_peer` comes from the address that asked `get_peers`.
//!
//! BEP 5: "The queried node must verify that the token was previously sent to the same IP
//! address as the querying node." Its reference scheme is a "SHA1 hash of the IP address
//! concatenated onto a secret that changes every five minutes and tokens up to ten minutes old
//! are accepted."
//!
//! # Scheme
//!
//! A token is the first [`TOKEN_LEN`] (8) bytes of SipHash-2-4, keyed with a 16-byte random
//! secret, over
//!
//! ```text
//! family (1 byte: 4 or 6) ‖ querier IP (4 or 16 bytes) ‖ target length (1 byte) ‖ target bytes
//! ```
//!
//! - The IP is taken in canonical form (`::ffff:a.b.c.d` counts as `a.b.c.d`), so a dual-stack
//!   socket that reports IPv4 peers as mapped IPv6 addresses issues and accepts the same tokens.
//! - The port is left out: BEP 5 binds the token to the IP address only, and NATs may change the
//!   source port between the `get_peers` and the `announce_peer`.
//! - The target (info-hash) is bound too, unlike BEP 5's reference scheme and the JS node
//!   (weakness W19: one token per IP opened every info-hash to it). libtorrent does the same.
//! - The family byte and the length byte make the encoding injective: without them, an IPv6
//!   querier could ask for a token whose input equals that of an IPv4 victim and another
//!   info-hash, and then spoof that victim's announces.
//!
//! SipHash is a keyed pseudo-random function built for short inputs, so 64 bits of output
//! cannot be forged without the secret; eight bytes are twice what libtorrent sends and well
//! under the 20 bytes the JS node sends.
//!
//! # Rotation
//!
//! Two secrets are live: the current one, which issues tokens, and the previous one, which
//! is only accepted. [`Tokens::rotate_if_due`] turns the current secret into the previous one
//! once it is [`ROTATION_INTERVAL`] (5 minutes) old. Each secret is accepted for at most
//! [`TOKEN_LIFETIME`] (10 minutes) after it was created, checked against the `now` given to
//! [`Tokens::verify`], so a token is never accepted more than ten minutes after it was issued,
//! even if the driver stops calling [`Tokens::rotate_if_due`]. When rotation runs on time (at
//! [`Tokens::next_rotation`] or at any call after it), every token stays valid for at least
//! five minutes.
//!
//! Issuing costs one SipHash of at most 274 bytes (50 for a 20-byte info-hash) and checking at
//! most two; neither allocates, and [`Tokens`] is two secrets and their ages, plain data.

use core::net::IpAddr;
use core::time::Duration;

use siphasher::sip::SipHasher24;

use crate::Instant;
use crate::wire::canonical_ip;

/// The length of the tokens [`Tokens::issue`] hands out, in bytes.
pub const TOKEN_LEN: usize = 8;

/// How long a secret issues tokens before it is retired (BEP 5: "a secret that changes every
/// five minutes").
pub const ROTATION_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The longest a token is ever accepted (BEP 5: "tokens up to ten minutes old are accepted").
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// The longest target (info-hash) a token is bound to; longer targets are cut to this length.
const MAX_TARGET_LEN: usize = u8::MAX as usize;

/// One secret and the instant it was created.
#[derive(Clone, Copy)]
struct Secret {
    key: [u8; 16],
    born: Instant,
}

impl Secret {
    fn random<R: rand_core::Rng + ?Sized>(rng: &mut R, born: Instant) -> Secret {
        let mut key = [0u8; 16];
        rng.fill_bytes(&mut key);
        Secret { key, born }
    }

    fn accepts_at(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.born) < TOKEN_LIFETIME
    }

    fn token(&self, ip: IpAddr, target: &[u8]) -> [u8; TOKEN_LEN] {
        let mut h = SipHasher24::new_with_key(&self.key);
        // Only `write` is used: the integer helpers of `Hasher` are native-endian.
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                core::hash::Hasher::write(&mut h, &[4]);
                core::hash::Hasher::write(&mut h, &v4.octets());
            }
            IpAddr::V6(v6) => {
                core::hash::Hasher::write(&mut h, &[6]);
                core::hash::Hasher::write(&mut h, &v6.octets());
            }
        }
        let target = &target[..target.len().min(MAX_TARGET_LEN)];
        core::hash::Hasher::write(&mut h, &[target.len() as u8]);
        core::hash::Hasher::write(&mut h, target);
        core::hash::Hasher::finish(&h).to_be_bytes()
    }
}

/// The write-token issuer and checker of one node (BEP 5, "announce_peer").
///
/// ```
/// use core::net::IpAddr;
/// use core::time::Duration;
/// use krpc_core::Instant;
/// use krpc_core::dht::Tokens;
/// use rand_chacha::ChaCha12Rng;
/// use rand_core::SeedableRng;
///
/// let mut rng = ChaCha12Rng::seed_from_u64(1);
/// let ip: IpAddr = "198.51.100.7".parse().unwrap();
/// let mut tokens = Tokens::new(&mut rng, Instant::ZERO);
/// let token = tokens.issue(ip, &[0xaa; 20]);
///
/// let later = Instant::ZERO + Duration::from_secs(6 * 60);
/// tokens.rotate_if_due(later, &mut rng); // the driver calls this at `next_rotation()`
/// assert!(tokens.verify(ip, &[0xaa; 20], &token, later)); // the previous secret still counts
/// assert!(!tokens.verify(ip, &[0xbb; 20], &token, later)); // bound to the info-hash
/// ```
#[derive(Clone)]
pub struct Tokens {
    current: Secret,
    /// `None` until the first rotation: nothing was ever issued with it.
    previous: Option<Secret>,
}

impl core::fmt::Debug for Tokens {
    /// Shows the ages, never the secrets.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tokens")
            .field("current_born", &self.current.born)
            .field("previous_born", &self.previous.map(|p| p.born))
            .finish()
    }
}

impl Tokens {
    /// A fresh issuer whose first secret is created at `now`.
    pub fn new<R: rand_core::Rng + ?Sized>(rng: &mut R, now: Instant) -> Tokens {
        Tokens { current: Secret::random(rng, now), previous: None }
    }

    /// The token for a querier at `ip` asking about `info_hash` (or any other target).
    ///
    /// Targets longer than 255 bytes are bound by their first 255 bytes only.
    pub fn issue(&self, ip: IpAddr, info_hash: &[u8]) -> [u8; TOKEN_LEN] {
        self.current.token(ip, info_hash)
    }

    /// Whether `token` was issued to `ip` for `info_hash` by a secret that is still accepted at
    /// `now`.
    ///
    /// A token of any length other than [`TOKEN_LEN`] is refused. The bytes are compared
    /// without an early exit, so the time taken does not tell how many leading bytes matched.
    pub fn verify(&self, ip: IpAddr, info_hash: &[u8], token: &[u8], now: Instant) -> bool {
        let Ok(token) = <&[u8; TOKEN_LEN]>::try_from(token) else {
            return false;
        };
        let current = self.current.accepts_at(now) && same(&self.current.token(ip, info_hash), token);
        let previous = match &self.previous {
            Some(p) => p.accepts_at(now) && same(&p.token(ip, info_hash), token),
            None => false,
        };
        current | previous
    }

    /// Retires the current secret if it is at least [`ROTATION_INTERVAL`] old at `now`.
    ///
    /// The current secret becomes the previous one (accepted until it is [`TOKEN_LIFETIME`]
    /// old) and a new current secret is drawn from `rng`. If the current secret is already
    /// [`TOKEN_LIFETIME`] old (the driver has not called for ten minutes), both secrets are
    /// replaced and every outstanding token becomes invalid. Returns whether a rotation
    /// happened.
    pub fn rotate_if_due<R: rand_core::Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> bool {
        if now < self.next_rotation() {
            return false;
        }
        let age = now.saturating_duration_since(self.current.born);
        self.previous = if age < TOKEN_LIFETIME { Some(self.current) } else { None };
        self.current = Secret::random(rng, now);
        true
    }

    /// When the current secret is due for retirement: call [`Tokens::rotate_if_due`] then.
    pub fn next_rotation(&self) -> Instant {
        self.current.born.saturating_add(ROTATION_INTERVAL)
    }
}

/// Compares all eight bytes, with no early exit.
fn same(a: &[u8; TOKEN_LEN], b: &[u8; TOKEN_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};

    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;

    const HASH: [u8; 20] = [0x11; 20];

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn mins(m: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(m * 60)
    }

    fn setup() -> (Tokens, ChaCha8Rng) {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        (Tokens::new(&mut rng, Instant::ZERO), rng)
    }

    #[test]
    fn siphasher_computes_the_reference_siphash_2_4() {
        // The SipHash paper's vector: key 00..0f, message 00..0e -> a129ca6149be45e5.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        let mut h = SipHasher24::new_with_key(&key);
        core::hash::Hasher::write(&mut h, &msg);
        assert_eq!(core::hash::Hasher::finish(&h), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn a_token_is_valid_for_the_same_ip_and_info_hash() {
        let (t, _) = setup();
        let ip = v4(203, 0, 113, 5);
        let token = t.issue(ip, &HASH);
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(t.verify(ip, &HASH, &token, Instant::ZERO));
        assert!(t.verify(ip, &HASH, &token, mins(4)));
        assert_eq!(token, t.issue(ip, &HASH), "issuing is deterministic");
    }

    #[test]
    fn a_token_is_invalid_for_another_ip() {
        let (t, _) = setup();
        let token = t.issue(v4(203, 0, 113, 5), &HASH);
        assert!(!t.verify(v4(203, 0, 113, 6), &HASH, &token, Instant::ZERO));
        assert!(!t.verify("2001:db8::5".parse().unwrap(), &HASH, &token, Instant::ZERO));
    }

    #[test]
    fn a_token_is_invalid_for_another_info_hash() {
        let (t, _) = setup();
        let ip = v4(203, 0, 113, 5);
        let token = t.issue(ip, &HASH);
        let mut other = HASH;
        other[19] ^= 1;
        assert!(!t.verify(ip, &other, &token, Instant::ZERO));
        assert!(!t.verify(ip, &HASH[..19], &token, Instant::ZERO));
    }

    #[test]
    fn truncated_empty_long_and_garbage_tokens_are_refused() {
        let (t, _) = setup();
        let ip = v4(203, 0, 113, 5);
        let token = t.issue(ip, &HASH);
        assert!(!t.verify(ip, &HASH, &token[..7], Instant::ZERO));
        assert!(!t.verify(ip, &HASH, &[], Instant::ZERO));
        let mut long = [0u8; 9];
        long[..8].copy_from_slice(&token);
        assert!(!t.verify(ip, &HASH, &long, Instant::ZERO));
        assert!(!t.verify(ip, &HASH, b"aoeusnth", Instant::ZERO));
        for i in 0..TOKEN_LEN {
            let mut flipped = token;
            flipped[i] ^= 0x80;
            assert!(!t.verify(ip, &HASH, &flipped, Instant::ZERO), "byte {i}");
        }
    }

    #[test]
    fn a_token_survives_one_rotation_but_not_two() {
        let (mut t, mut rng) = setup();
        let ip = v4(198, 51, 100, 1);
        let token = t.issue(ip, &HASH);
        assert_eq!(t.next_rotation(), mins(5));
        assert!(!t.rotate_if_due(mins(4), &mut rng), "not due yet");
        assert!(t.rotate_if_due(mins(5), &mut rng));
        assert_ne!(t.issue(ip, &HASH), token, "the new secret issues other tokens");
        assert!(t.verify(ip, &HASH, &token, mins(5)));
        assert!(t.verify(ip, &HASH, &token, mins(9)));
        assert_eq!(t.next_rotation(), mins(10));
        assert!(t.rotate_if_due(mins(10), &mut rng));
        assert!(!t.verify(ip, &HASH, &token, mins(10)));
    }

    #[test]
    fn a_token_is_never_accepted_after_ten_minutes_even_without_rotation() {
        let (t, _) = setup();
        let ip = v4(198, 51, 100, 1);
        let token = t.issue(ip, &HASH);
        assert!(t.verify(ip, &HASH, &token, mins(10).saturating_sub(Duration::from_nanos(1))));
        assert!(!t.verify(ip, &HASH, &token, mins(10)));
        assert!(!t.verify(ip, &HASH, &token, mins(60)));
    }

    #[test]
    fn a_late_rotation_replaces_both_secrets() {
        let (mut t, mut rng) = setup();
        let ip = v4(198, 51, 100, 1);
        let token = t.issue(ip, &HASH);
        assert!(t.rotate_if_due(mins(11), &mut rng));
        assert!(!t.verify(ip, &HASH, &token, mins(11)));
        // The new secret is fresh: its tokens live a full interval from now.
        let fresh = t.issue(ip, &HASH);
        assert!(t.verify(ip, &HASH, &fresh, mins(20)));
        assert_eq!(t.next_rotation(), mins(16));
    }

    #[test]
    fn a_rotation_one_secret_late_keeps_the_ten_minute_bound() {
        let (mut t, mut rng) = setup();
        let ip = v4(198, 51, 100, 1);
        let token = t.issue(ip, &HASH);
        // The driver rotates at 8 minutes instead of 5: the old secret is still accepted, but
        // only until it is ten minutes old.
        assert!(t.rotate_if_due(mins(8), &mut rng));
        assert!(t.verify(ip, &HASH, &token, mins(9)));
        assert!(!t.verify(ip, &HASH, &token, mins(10)));
    }

    #[test]
    fn an_ipv4_mapped_ipv6_querier_is_the_same_as_its_ipv4_address() {
        let (t, _) = setup();
        let plain = v4(192, 0, 2, 33);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 33).to_ipv6_mapped());
        assert_eq!(t.issue(plain, &HASH), t.issue(mapped, &HASH));
        assert!(t.verify(mapped, &HASH, &t.issue(plain, &HASH), Instant::ZERO));
        assert!(t.verify(plain, &HASH, &t.issue(mapped, &HASH), Instant::ZERO));
    }

    #[test]
    fn family_and_length_are_part_of_the_hashed_input() {
        let (t, _) = setup();
        // 4-byte IP + 20-byte hash and 16-byte IP + 8-byte target concatenate to the same 24
        // bytes; the framing keeps their tokens apart.
        let v4ip = [192u8, 0, 2, 1];
        let mut concat = [0u8; 24];
        concat[..4].copy_from_slice(&v4ip);
        concat[4..].copy_from_slice(&HASH);
        let mut v6ip = [0u8; 16];
        v6ip.copy_from_slice(&concat[..16]);
        let v6 = IpAddr::V6(Ipv6Addr::from(v6ip));
        assert_ne!(t.issue(IpAddr::from(v4ip), &HASH), t.issue(v6, &concat[16..]));
    }

    #[test]
    fn two_issuers_with_different_secrets_disagree() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = Tokens::new(&mut rng, Instant::ZERO);
        let b = Tokens::new(&mut rng, Instant::ZERO);
        let ip = v4(198, 51, 100, 1);
        assert!(!b.verify(ip, &HASH, &a.issue(ip, &HASH), Instant::ZERO));
    }

    #[test]
    fn debug_output_does_not_reveal_the_secrets() {
        let (t, _) = setup();
        let s = std::format!("{t:?}");
        assert!(s.contains("current_born"));
        assert!(!s.contains("key"));
    }
}

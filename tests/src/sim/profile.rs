//! Measured inputs for `simulate --profile mainline`: how long datagrams take between two
//! given nodes of the real DHT.
//!
//! The default link ([`Latency::INTERNET`](super::link::Latency::INTERNET)) draws every
//! datagram's delay from one distribution, so a node is no nearer to one peer than to another
//! and a slow pair is slow only by chance, once. On the Internet a pair's round trip is mostly
//! fixed by where the two hosts are (distance, routes) and by each host's own access link, and
//! varies little from one packet to the next. [`PairDelays`] models exactly that:
//!
//! * a base round-trip time per *pair* of nodes, drawn once (from a hash of the pair, so that it
//!   costs no memory and is the same in both directions) from a log-normal fitted to RIPE
//!   Atlas country-pair medians (p50 ≈ 177 ms, p90 ≈ 310 ms; see `docs/simulation.md`);
//! * an access delay per *node*, added to every datagram it sends or receives (log-normal,
//!   median 10 ms one way, capped at 150 ms: the last mile of fibre, cable and DSL lines as
//!   the FCC's Measuring Broadband America reports measure it);
//! * a small jitter per datagram (±10% around the pair's delay, log-normal).
//!
//! Everything is drawn from the simulation's seed: the same seed gives the same delays.

use core::time::Duration;

use rand_core::Rng;

use super::link::unit;

/// The standard normal quantile of 0.9, to fit a log-normal from its median and 90th
/// percentile: σ = ln(p90 / p50) / 1.2816.
const Z90: f64 = 1.281_551_565_545;

/// Per-pair round trips, per-node access delays and per-datagram jitter (see the module).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairDelays {
    /// Mixed into every hash, so that two seeds give two different worlds.
    pub seed: u64,
    /// Median of the pairs' base round-trip times, in milliseconds.
    pub rtt_median_ms: f64,
    /// 90th percentile of the pairs' base round-trip times, in milliseconds.
    pub rtt_p90_ms: f64,
    /// Median one-way access delay of a node, in milliseconds.
    pub access_median_ms: f64,
    /// Standard deviation of the logarithm of the access delay.
    pub access_sigma: f64,
    /// Cap on a node's one-way access delay, in milliseconds.
    pub access_max_ms: f64,
    /// Standard deviation of the logarithm of the per-datagram jitter factor.
    pub jitter_sigma: f64,
}

impl PairDelays {
    /// The Mainline DHT as measured (see the module and `docs/simulation.md` for sources).
    pub fn mainline(seed: u64) -> PairDelays {
        PairDelays {
            seed,
            rtt_median_ms: 177.0,
            rtt_p90_ms: 310.0,
            access_median_ms: 10.0,
            access_sigma: 0.8,
            access_max_ms: 150.0,
            jitter_sigma: 0.06,
        }
    }

    /// The base round trip between nodes `a` and `b` (the same for `(b, a)`), in ms.
    pub fn base_rtt_ms(&self, a: u32, b: u32) -> f64 {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let z = normal_of(mix(self.seed ^ 0x5041_4952 ^ (u64::from(lo) << 32 | u64::from(hi))));
        let sigma = (self.rtt_p90_ms / self.rtt_median_ms).ln() / Z90;
        self.rtt_median_ms * (sigma * z).exp()
    }

    /// Node `a`'s one-way access delay, in ms.
    pub fn access_ms(&self, a: u32) -> f64 {
        let z = normal_of(mix(self.seed ^ 0x4143_4345_5353 ^ u64::from(a)));
        (self.access_median_ms * (self.access_sigma * z).exp()).min(self.access_max_ms)
    }

    /// The one-way delay of one datagram from `from` to `to`: half the pair's base round
    /// trip, both access delays, and this datagram's jitter (one draw from `rng`).
    pub fn one_way(&self, from: u32, to: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base_rtt_ms(from, to) / 2.0 + self.access_ms(from) + self.access_ms(to);
        let u1 = 1.0 - unit(rng);
        let u2 = unit(rng);
        let z = (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos();
        Duration::from_secs_f64(base * (self.jitter_sigma * z).exp() / 1e3)
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of a 64-bit key.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A standard normal value from a 64-bit hash (Box–Muller on its two halves).
fn normal_of(h: u64) -> f64 {
    let u1 = ((h >> 32) as f64 + 1.0) / 4_294_967_297.0; // (0, 1)
    let u2 = (h & 0xffff_ffff) as f64 / 4_294_967_296.0;
    (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn quantile(v: &mut [f64], q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q) as usize]
    }

    #[test]
    fn pair_round_trips_follow_the_measured_median_and_90th_percentile() {
        let p = PairDelays::mainline(7);
        let mut v: Vec<f64> = (0..20_000u32).map(|i| p.base_rtt_ms(i, i + 100_000)).collect();
        let (p50, p90) = (quantile(&mut v, 0.5), quantile(&mut v, 0.9));
        assert!((p50 - 177.0).abs() < 6.0, "p50 {p50}");
        assert!((p90 - 310.0).abs() < 12.0, "p90 {p90}");
    }

    #[test]
    fn a_pair_keeps_its_delay_in_both_directions_and_another_seed_changes_it() {
        let p = PairDelays::mainline(1);
        assert_eq!(p.base_rtt_ms(3, 9), p.base_rtt_ms(9, 3));
        assert_ne!(p.base_rtt_ms(3, 9), p.base_rtt_ms(3, 10));
        assert_ne!(p.base_rtt_ms(3, 9), PairDelays::mainline(2).base_rtt_ms(3, 9));
        let access: Vec<f64> = (0..1000).map(|a| p.access_ms(a)).collect();
        assert!(access.iter().all(|&a| a > 0.0 && a <= 150.0));
    }

    #[test]
    fn a_datagram_takes_about_half_the_round_trip_plus_both_access_delays() {
        let p = PairDelays::mainline(3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let expected = p.base_rtt_ms(1, 2) / 2.0 + p.access_ms(1) + p.access_ms(2);
        let mut v: Vec<f64> = (0..2001).map(|_| p.one_way(1, 2, &mut rng).as_secs_f64() * 1e3).collect();
        let median = quantile(&mut v, 0.5);
        assert!((median - expected).abs() < expected * 0.02, "median {median}, expected {expected}");
        assert!(v[0] > expected * 0.7 && v[v.len() - 1] < expected * 1.4, "jitter stays small");
    }
}

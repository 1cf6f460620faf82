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
//! And how long nodes stay: [`Sessions`], Weibull session lengths (`--sessions`).
//!
//! Everything is drawn from the simulation's seed: the same seed gives the same delays.

use core::time::Duration;

use rand_core::Rng;

use super::link::{normal, unit};

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
        Duration::from_secs_f64(base * (self.jitter_sigma * normal(rng)).exp() / 1e3)
    }
}

/// How long nodes stay online: a Weibull distribution of session lengths, as measured on real
/// DHTs. Its shape below 1 means many short sessions and a long tail of nodes that stay for
/// days, so a node that has been up long is likely to stay up longer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sessions {
    /// Weibull shape k.
    pub shape: f64,
    /// Weibull scale λ.
    pub scale: Duration,
}

impl Sessions {
    /// The Mainline DHT fit cited in issue 16: k ≈ 0.43, λ ≈ 470 minutes (a mean session of
    /// about 22 hours, a median of about 200 minutes).
    pub const MAINLINE: Sessions = Sessions { shape: 0.43, scale: Duration::from_secs(470 * 60) };
    /// KAD, from Steiner et al. (IMC 2007): k = 0.615, λ = 169.5 minutes.
    pub const KAD: Sessions = Sessions { shape: 0.615, scale: Duration::from_secs(10_170) };

    /// The mean session, λ·Γ(1 + 1/k).
    pub fn mean(&self) -> Duration {
        self.scale.mul_f64(gamma(1.0 + 1.0 / self.shape))
    }

    /// A whole session, for a node that joins now: λ·(−ln U)^(1/k).
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let u = 1.0 - unit(rng); // (0, 1]
        self.scale.mul_f64((-u.ln()).powf(1.0 / self.shape))
    }

    /// What is left of the session of a node found online at a random instant of a network
    /// in equilibrium: a session drawn in proportion to its length (longer sessions are more
    /// likely to be caught), times a uniform share. For a Weibull the length-biased session is
    /// λ·G^(1/k) with G ~ Gamma(1 + 1/k, 1).
    pub fn residual(&self, rng: &mut impl Rng) -> Duration {
        let g = gamma_sample(1.0 + 1.0 / self.shape, rng);
        let biased = self.scale.mul_f64(g.powf(1.0 / self.shape));
        biased.mul_f64(unit(rng))
    }

    /// The share of sessions shorter than `t`: 1 − exp(−(t/λ)^k).
    pub fn cdf(&self, t: Duration) -> f64 {
        1.0 - (-(t.as_secs_f64() / self.scale.as_secs_f64()).powf(self.shape)).exp()
    }
}

/// Γ(x) for x > 0 (Lanczos, g = 7, n = 9: about 15 significant digits).
fn gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return core::f64::consts::PI / ((core::f64::consts::PI * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    (2.0 * core::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

/// A Gamma(shape, 1) draw for shape ≥ 1 (Marsaglia and Tsang, 2000).
fn gamma_sample(shape: f64, rng: &mut impl Rng) -> f64 {
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = normal(rng);
        let v = (1.0 + c * z).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - unit(rng);
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
        }
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
    fn gamma_matches_known_values() {
        assert!((gamma(5.0) - 24.0).abs() < 1e-9);
        assert!((gamma(0.5) - core::f64::consts::PI.sqrt()).abs() < 1e-12);
        assert!((gamma(1.5) - core::f64::consts::PI.sqrt() / 2.0).abs() < 1e-12);
        // Γ(x + 1) = x·Γ(x), at the Mainline shape's 1 + 1/k.
        let x = 1.0 + 1.0 / 0.43;
        assert!((gamma(x + 1.0) - x * gamma(x)).abs() < 1e-9);
    }

    #[test]
    fn sessions_follow_their_weibull_and_residuals_their_equilibrium() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for s in [Sessions::MAINLINE, Sessions::KAD] {
            let mut v: Vec<f64> = (0..40_000).map(|_| s.sample(&mut rng).as_secs_f64()).collect();
            // The median of a Weibull is λ·(ln 2)^(1/k).
            let median = quantile(&mut v, 0.5);
            let want = s.scale.as_secs_f64() * core::f64::consts::LN_2.powf(1.0 / s.shape);
            assert!((median / want - 1.0).abs() < 0.05, "median {median} against {want}");
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            assert!((mean / s.mean().as_secs_f64() - 1.0).abs() < 0.06, "mean {mean} against {:?}", s.mean());
            assert!((s.cdf(Duration::from_secs_f64(median)) - 0.5).abs() < 0.02);
            // In equilibrium the residual life has density S(t)/mean: its mean is
            // E[T²]/(2·E[T]) = λ·Γ(1 + 2/k) / (2·Γ(1 + 1/k)), far above the mean session.
            let r: Vec<f64> = (0..40_000).map(|_| s.residual(&mut rng).as_secs_f64()).collect();
            let r_mean = r.iter().sum::<f64>() / r.len() as f64;
            let want = s.scale.as_secs_f64() * gamma(1.0 + 2.0 / s.shape) / (2.0 * gamma(1.0 + 1.0 / s.shape));
            assert!((r_mean / want - 1.0).abs() < 0.1, "residual mean {r_mean} against {want}");
        }
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

//! The link model: how long a datagram takes, whether it is lost or duplicated.
//!
//! Every datagram draws its own one-way latency, so two datagrams between the same pair of
//! nodes can overtake each other: reordering needs no separate knob.

use core::time::Duration;

use rand_core::Rng;

/// A uniform draw in `[0, 1)` with 53 bits of precision.
pub fn unit(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// True with probability `p` (`p <= 0` never, `p >= 1` always).
pub fn chance(rng: &mut impl Rng, p: f64) -> bool {
    p > 0.0 && (p >= 1.0 || unit(rng) < p)
}

/// A uniform index in `0..n` (`n > 0`), without modulo bias worth mentioning for `n < 2^32`.
pub fn below(rng: &mut impl Rng, n: usize) -> usize {
    (((rng.next_u64() >> 32) * n as u64) >> 32) as usize
}

/// An exponentially distributed wait with the given mean (for Poisson arrivals).
pub fn exponential(rng: &mut impl Rng, mean: Duration) -> Duration {
    let u = unit(rng);
    mean.mul_f64(-(1.0 - u).ln())
}

/// A standard normal draw (Box–Muller).
pub(super) fn normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - unit(rng); // (0, 1]
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (core::f64::consts::TAU * u2).cos()
}

/// The distribution of one-way latencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// Always the same delay (no reordering).
    Fixed(Duration),
    /// Uniform between two bounds.
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
    /// Log-normal around a median, clamped to `[min, max]`: most datagrams are quick, a few
    /// are slow, as on the Internet.
    LogNormal {
        /// Median delay.
        median: Duration,
        /// Standard deviation of the delay's logarithm.
        sigma: f64,
        /// Clamp below.
        min: Duration,
        /// Clamp above.
        max: Duration,
    },
}

impl Latency {
    /// The default: log-normal, median 80 ms, σ = 0.6, clamped to 20–300 ms (a round trip of
    /// about 160 ms, the order of magnitude of a DHT query on the Internet).
    pub const INTERNET: Latency = Latency::LogNormal {
        median: Duration::from_millis(80),
        sigma: 0.6,
        min: Duration::from_millis(20),
        max: Duration::from_millis(300),
    };

    /// Draws one delay.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => min + (max.saturating_sub(min)).mul_f64(unit(rng)),
            Latency::LogNormal { median, sigma, min, max } => {
                let d = median.mul_f64((sigma * normal(rng)).exp());
                d.clamp(min, max)
            }
        }
    }
}

/// What the network does to every datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// One-way latency of each datagram.
    pub latency: Latency,
    /// Chance that a datagram is lost (each direction separately, so a query and its answer
    /// both arrive with probability `(1 - loss)^2`).
    pub loss: f64,
    /// Chance that a delivered datagram arrives a second time, with its own latency.
    pub duplicate: f64,
    /// Delays per pair of nodes (`--profile mainline`): when set, they replace `latency` for
    /// datagrams between two simulated nodes.
    pub pairs: Option<super::profile::PairDelays>,
}

impl Default for Link {
    fn default() -> Self {
        Link { latency: Latency::INTERNET, loss: 0.0, duplicate: 0.0, pairs: None }
    }
}

impl Link {
    /// The one-way delay of one datagram from node `from` to node `to` (`None`: not a
    /// simulated node, e.g. an attacker).
    pub fn delay(&self, from: u32, to: Option<u32>, rng: &mut impl Rng) -> Duration {
        match (self.pairs, to) {
            (Some(p), Some(to)) => p.one_way(from, to, rng),
            _ => self.latency.sample(rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn latencies_stay_within_their_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..10_000 {
            let d = Latency::INTERNET.sample(&mut rng);
            assert!(d >= Duration::from_millis(20) && d <= Duration::from_millis(300));
            let u = Latency::Uniform { min: Duration::from_millis(5), max: Duration::from_millis(9) }.sample(&mut rng);
            assert!(u >= Duration::from_millis(5) && u <= Duration::from_millis(9));
        }
    }

    #[test]
    fn the_log_normal_median_is_near_the_configured_median() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut v: Vec<Duration> = (0..20_001).map(|_| Latency::INTERNET.sample(&mut rng)).collect();
        v.sort();
        let median = v[v.len() / 2].as_secs_f64();
        assert!((median - 0.080).abs() < 0.005, "median {median}");
    }

    #[test]
    fn chance_and_below_respect_their_ranges() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let hits = (0..100_000).filter(|_| chance(&mut rng, 0.3)).count();
        assert!((29_000..31_000).contains(&hits), "{hits}");
        assert!(!chance(&mut rng, 0.0));
        assert!(chance(&mut rng, 1.0));
        assert!((0..1000).all(|_| below(&mut rng, 7) < 7));
    }
}

//! The engine's random number generator: ChaCha12 without a buffer.
//!
//! `rand_chacha`'s `ChaCha12Rng` keeps four ChaCha blocks of output (256 bytes) next to its
//! 48-byte state, so that most draws are a copy. An engine draws rarely (a transaction id per
//! query, a target per refresh), and a simulator holds a million engines, where the buffer
//! alone is 256 MB. [`EngineRng`] keeps only the key and the position in the key stream
//! (40 bytes) and regenerates the blocks a draw reads: a draw costs one ChaCha12 refill of
//! the buffer (a few hundred nanoseconds) instead of a copy.
//!
//! The output is, word for word, `ChaCha12Rng`'s for the same seed: every seeded run draws
//! what it drew before, so simulation traces did not change when the engine switched.

use core::convert::Infallible;

use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng, TryCryptoRng, TryRng};

/// ChaCha12 keyed by a 32-byte seed, stream 0, read from word `position` on.
#[derive(Clone, Debug)]
pub(crate) struct EngineRng {
    seed: [u8; 32],
    /// Words of the key stream drawn so far (a 32-bit word is ChaCha's unit of output).
    position: u64,
}

impl EngineRng {
    /// The generator `ChaCha12Rng::from_seed(seed)` would be.
    pub(crate) fn from_seed(seed: [u8; 32]) -> Self {
        EngineRng { seed, position: 0 }
    }

    /// A generator seeded from another one, as `ChaCha12Rng::from_rng` seeds it.
    pub(crate) fn from_rng<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        EngineRng::from_seed(seed)
    }

    /// Another stream of the same key, at our position (what cloning a `ChaCha12Rng` and
    /// calling `set_stream` gives): independent of this one's output, so that a part drawing
    /// its key from it leaves every other draw unchanged.
    pub(crate) fn stream(&self, stream: u64) -> ChaCha12Rng {
        let mut rng = ChaCha12Rng::from_seed(self.seed);
        rng.set_stream(stream);
        rng.set_word_pos(u128::from(self.position));
        rng
    }

    /// Runs `draw` on a `ChaCha12Rng` placed at our position, then keeps its new position.
    fn draw<T>(&mut self, draw: impl FnOnce(&mut ChaCha12Rng) -> T) -> T {
        let mut rng = ChaCha12Rng::from_seed(self.seed);
        rng.set_word_pos(u128::from(self.position));
        let out = draw(&mut rng);
        // 2^64 words (64 ZiB of output) are never drawn; truncation cannot happen in practice.
        self.position = rng.get_word_pos() as u64;
        out
    }
}

impl TryRng for EngineRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.draw(|r| r.next_u32()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.draw(|r| r.next_u64()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.draw(|r| r.fill_bytes(dst));
        Ok(())
    }
}

/// ChaCha12 is a cryptographic generator; dropping the buffer changes nothing about that.
impl TryCryptoRng for EngineRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_exactly_what_chacha12rng_draws() {
        for seed in [[0u8; 32], [7; 32], core::array::from_fn(|i| i as u8)] {
            let mut reference = ChaCha12Rng::from_seed(seed);
            let mut ours = EngineRng::from_seed(seed);
            // Mixed sizes, across buffer boundaries (64 words) many times, and u64 draws at
            // odd word positions, where the reference straddles two refills.
            for i in 0..2_000usize {
                match i % 5 {
                    0 => assert_eq!(ours.next_u32(), reference.next_u32()),
                    1 | 3 => assert_eq!(ours.next_u64(), reference.next_u64()),
                    2 => {
                        let (mut a, mut b) = ([0u8; 20], [0u8; 20]);
                        ours.fill_bytes(&mut a);
                        reference.fill_bytes(&mut b);
                        assert_eq!(a, b);
                    }
                    _ => {
                        let n = i % 7 + 1;
                        let (mut a, mut b) = ([0u8; 7], [0u8; 7]);
                        ours.fill_bytes(&mut a[..n]);
                        reference.fill_bytes(&mut b[..n]);
                        assert_eq!(a, b);
                    }
                }
            }
            assert_eq!(u128::from(ours.position), reference.get_word_pos());
        }
    }

    #[test]
    fn another_stream_is_what_set_stream_gives() {
        let seed = [3u8; 32];
        let mut ours = EngineRng::from_seed(seed);
        let mut reference = ChaCha12Rng::from_seed(seed);
        for _ in 0..37 {
            assert_eq!(ours.next_u32(), reference.next_u32());
        }
        let mut other = reference.clone();
        other.set_stream(42);
        assert_eq!(ours.stream(42).next_u64(), other.next_u64());
        assert_ne!(ours.stream(42).next_u64(), reference.next_u64(), "another stream");
    }

    #[test]
    fn seeding_from_a_generator_takes_its_next_32_bytes() {
        let mut source = ChaCha12Rng::from_seed([5; 32]);
        let mut copy = source.clone();
        let mut ours = EngineRng::from_rng(&mut source);
        let mut reference = ChaCha12Rng::from_rng(&mut copy);
        assert_eq!(ours.next_u64(), reference.next_u64());
        assert_eq!(source.next_u32(), copy.next_u32());
    }

    #[test]
    fn is_small() {
        assert!(core::mem::size_of::<EngineRng>() <= 40);
    }
}

//! Prefetch hints: asking the processor to start loading memory the simulator is about to read.
//!
//! A simulated network's engines are spread over gigabytes, and consecutive events land on
//! engines picked at random, so each event starts with a run of cache misses, one after the
//! other: the processor cannot look as far ahead as the next event by itself. The simulator
//! knows the next event, so it asks for its memory while the current one runs. A prefetch
//! changes nothing the program can observe, so the runs and their trace hashes are the same
//! with or without it; only the time differs.

/// Asks the processor to bring `value`'s memory into the cache.
pub(super) fn prefetch<T: ?Sized>(value: &T) {
    prefetch_bytes((value as *const T).cast(), std::mem::size_of_val(value));
}

/// Asks the processor to bring the `len` bytes from `start` into the cache, line by line.
#[allow(unsafe_code)] // see the SAFETY note
fn prefetch_bytes(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        /// A cache line of the x86-64 processors this runs on.
        const LINE: usize = 64;
        let offset = start.addr() % LINE;
        let base = start.wrapping_sub(offset);
        for line in (0..offset + len).step_by(LINE) {
            // SAFETY: a prefetch is only a hint: it never faults, even on an address that is
            // not mapped, and changes nothing the program can observe. The intrinsic is
            // `unsafe` only for its `target_feature(enable = "sse")`, which every x86-64
            // processor has.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_changes_nothing_it_touches() {
        let values: Vec<u64> = (0..1_000).collect();
        prefetch(values.as_slice());
        prefetch(&values[999]);
        prefetch(&values[..0]);
        assert_eq!(values.iter().sum::<u64>(), 999 * 1_000 / 2);
    }
}

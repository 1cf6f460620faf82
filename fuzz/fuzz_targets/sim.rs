//! Fuzz target: three to eight endpoints on an in-memory network with fuzzer-chosen drops,
//! duplicates, reordering, delays and corruption, commands on any node and clock steps; every
//! node's invariants are checked after every step, and at the end the network settles and
//! every command must have ended (`krpc_core::fuzzing::check_sim`).
//!
//! Run with `cargo fuzz run sim` from the repository root; the corpus is `fuzz/corpus/sim/`,
//! replayed by `krpc-core/tests/fuzz_corpus.rs` together with the inputs of past findings in
//! `fuzz/regressions/sim/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    krpc_core::fuzzing::check_sim(data);
});

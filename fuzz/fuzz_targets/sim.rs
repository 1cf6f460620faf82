//! Fuzz target: three to eight endpoints on an in-memory network with fuzzer-chosen drops,
//! duplicates, reordering, delays and corruption, commands on any node and clock steps; every
//! node's invariants are checked after every step, and at the end the network settles and
//! every command must have ended (`krpc_core::fuzzing::check_sim`).
//!
//! Run with `cargo fuzz run sim` from the repository root; the corpus is `fuzz/corpus/sim/`,
//! replayed by `krpc-core/tests/fuzz_corpus.rs`.
#![no_main]

use std::sync::OnceLock;

use krpc_core::fuzzing::Avoid;
use libfuzzer_sys::fuzz_target;

/// Known engine bugs are steered around (`Avoid::KNOWN`) except those named in
/// `KRPC_FUZZ_STRICT` (comma-separated, or `all`), which is how the reproducers in
/// `fuzz/regressions/sim/` are run.
fn avoid() -> Avoid {
    static AVOID: OnceLock<Avoid> = OnceLock::new();
    *AVOID.get_or_init(|| match std::env::var("KRPC_FUZZ_STRICT") {
        Ok(names) => Avoid::except(&names),
        Err(_) => Avoid::KNOWN,
    })
}

fuzz_target!(|data: &[u8]| {
    krpc_core::fuzzing::check_sim_with(data, avoid());
});

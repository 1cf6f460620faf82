//! Fuzz target: one `Endpoint` fed an arbitrary sequence of datagrams (raw bytes, replies
//! echoing its recent queries, queries from peers), clock steps and commands, with
//! `Config::default()` and `Config::dht()` both reachable; after every step the outputs are
//! drained and the engine's invariants checked, and at the end every command must have
//! ended exactly once (`krpc_core::fuzzing::check_endpoint`).
//!
//! Run with `cargo fuzz run endpoint` from the repository root; the corpus is
//! `fuzz/corpus/endpoint/`, replayed by `krpc-core/tests/fuzz_corpus.rs`.
#![no_main]

use std::sync::OnceLock;

use krpc_core::fuzzing::Avoid;
use libfuzzer_sys::fuzz_target;

/// Known engine bugs are steered around (`Avoid::KNOWN`) except those named in
/// `KRPC_FUZZ_STRICT` (comma-separated, or `all`), which is how the reproducers in
/// `fuzz/regressions/endpoint/` are run.
fn avoid() -> Avoid {
    static AVOID: OnceLock<Avoid> = OnceLock::new();
    *AVOID.get_or_init(|| match std::env::var("KRPC_FUZZ_STRICT") {
        Ok(names) => Avoid::except(&names),
        Err(_) => Avoid::KNOWN,
    })
}

fuzz_target!(|data: &[u8]| {
    krpc_core::fuzzing::check_endpoint_with(data, avoid());
});

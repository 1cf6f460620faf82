//! Fuzz target: one `Endpoint` fed an arbitrary sequence of datagrams (raw bytes, replies
//! echoing its recent queries, queries from peers), clock steps and commands, with
//! `Config::default()` and `Config::dht()` both reachable; after every step the outputs are
//! drained and the engine's invariants checked, and at the end every command must have
//! ended exactly once (`krpc_core::fuzzing::check_endpoint`).
//!
//! Run with `cargo fuzz run endpoint` from the repository root; the corpus is
//! `fuzz/corpus/endpoint/`, replayed by `krpc-core/tests/fuzz_corpus.rs` together with the
//! inputs of past findings in `fuzz/regressions/endpoint/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    krpc_core::fuzzing::check_endpoint(data);
});

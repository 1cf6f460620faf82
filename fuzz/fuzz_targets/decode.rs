//! Fuzz target: decoding never panics, and whatever decodes re-encodes canonically to bytes
//! that decode again and re-encode identically (`krpc_core::wire::fuzzing::check_decode`).
//!
//! Run with `cargo fuzz run decode` from the repository root; the seed corpus is
//! `fuzz/corpus/decode/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    krpc_core::wire::fuzzing::check_decode(data);
});

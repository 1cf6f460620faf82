//! Fuzz target: the `RoutingTable` under arbitrary `insert_verified`, `record_query`,
//! `record_failure`, `remove`, `swap`, `closest`, `ping_candidates`, `stale_buckets` and
//! `random_id_in_bucket` calls, checked against a reference model after each one
//! (`krpc_core::fuzzing::check_routing`).
//!
//! Run with `cargo fuzz run routing` from the repository root; the corpus is
//! `fuzz/corpus/routing/`, replayed by `krpc-core/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    krpc_core::fuzzing::check_routing(data);
});

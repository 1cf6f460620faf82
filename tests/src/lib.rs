//! Shared helpers for krpc's integration tests (simulation, corpus replay, interop).
//!
//! [`sim`] is a deterministic network simulator of krpc engines; the `simulate` binary and the
//! tests in `tests/tests/` drive it. [`flood`] floods a `krpc serve` process with hostile
//! datagrams on loopback while legitimate clients use it (the `flood` binary and
//! `tests/tests/flood.rs`).

pub mod flood;
pub mod sim;

//! Shared helpers for krpc's integration tests (simulation, corpus replay, interop).
//!
//! [`sim`] is a deterministic network simulator of krpc engines; the `simulate` binary and the
//! tests in `tests/tests/` drive it.

pub mod sim;

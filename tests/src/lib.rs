//! Shared helpers for krpc's integration tests (simulation, corpus replay, interop).

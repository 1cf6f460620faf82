//! Helpers shared by the test files that load one engine with unsolicited pings and then let
//! it idle (`memory.rs`, `memory_heap.rs`, `rate_limit.rs`): a ping from a given id, draining
//! everything the engine has to say, and running its timers with nobody answering.
#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

use krpc_core::wire::{Dictionary, Entry, Insert, QueryOut};
use krpc_core::{Endpoint, Instant};

/// An encoded `ping` query from node id `[id; 20]` with transaction id `tid`.
pub(crate) fn ping(id: u8, tid: u16) -> Vec<u8> {
    let args = Dictionary::new();
    let id = [id; 20];
    let extra = [Entry { key: b"id", value: Insert::Bytes(&id), replace: false }];
    let t = tid.to_be_bytes();
    let q =
        QueryOut { transaction_id: &t, method: b"ping", args: &args, extra: &extra, read_only: false, version: None };
    let mut buf = [0u8; 128];
    let len = q.encode(&mut buf).unwrap();
    buf[..len].to_vec()
}

/// Takes every pending datagram and event.
pub(crate) fn drain(ep: &mut Endpoint, now: Instant) {
    let mut out = [0u8; 1500];
    while ep.poll_transmit(now, &mut out).is_some() {}
    while ep.poll_event().is_some() {}
}

/// Runs the engine's timers from `from` to `to` with nobody answering.
pub(crate) fn idle_until(ep: &mut Endpoint, from: Instant, to: Instant) {
    let mut now = from;
    while now < to {
        drain(ep, now);
        now = ep.poll_timeout().map_or(to, |t| t.max(now + Duration::from_millis(1))).min(to);
        ep.handle_timeout(now);
    }
    drain(ep, now);
}

//! What an engine keeps after a burst, measured by the allocator rather than by
//! `memory_footprint` (which is the engine's own estimate and cannot see, for example, the
//! node an emptied `BTreeMap` keeps). A network of a million engines is mostly engines whose
//! join ended, so what each keeps once its bursts are over is what the network costs.
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`

mod idle;
use idle::*;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::{Config, Endpoint, Instant, Peer, Query};

struct Counting;
thread_local! {
    // Per thread, so that tests running in parallel do not count each other. Signed: a
    // thread may free what another allocated.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + bytes));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn addr(base: u32, i: u32) -> SocketAddr {
    let [a, b, c, d] = (base + i).to_be_bytes();
    SocketAddr::from(([a, b, c, d], 6881))
}

#[test]
fn an_engine_gives_back_the_heap_a_burst_grew() {
    let start = Instant::from_millis(1);
    let before = live();
    let mut ep = Endpoint::new(Config { concurrency: 64, ..Config::default() }, [5; 32], Instant::ZERO).unwrap();
    // What a new engine holds on the heap (its bucket lists).
    let new = live() - before;

    // Our burst: 200 queries and a `query_all` of 50, every one unanswered; their burst:
    // 2,000 sources ping us at once.
    for i in 0..200 {
        ep.query(start, Peer::addr(addr(0x0b00_0000, i)), Query::ping()).unwrap();
    }
    ep.query_all(start, (0..50).map(|i| Peer::addr(addr(0x0d00_0000, i))), Query::ping()).unwrap();
    for i in 0..2_000u32 {
        ep.handle_datagram(start, addr(0x0c00_0000, i), &ping(9, i as u16));
        drain(&mut ep, start);
    }
    let peak = live() - before;
    assert!(peak > new + 50_000, "the burst did not grow anything: {new} -> {peak}");

    // Every query times out, the sources' windows end, the maintenance tick runs.
    idle_until(&mut ep, start, start + Duration::from_secs(130));
    assert_eq!(ep.operations(), 0);
    let after = live() - before;
    assert!(after <= new, "the engine keeps {after} heap bytes after the burst, {new} when new (peak {peak})");
    drop(ep);
}

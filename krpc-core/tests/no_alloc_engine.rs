//! The per-datagram path of the engine allocates nothing: answering a ping (decode, routing
//! update, encode) and matching a reply to one of our queries.
#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use krpc_core::wire::{Dictionary, Entry, Insert, QueryOut, ResponseOut};
use krpc_core::{Config, Endpoint, Instant, NodeId, NodeInfo};

struct Counting;
thread_local! {
    // Per thread, so that tests running in parallel do not count each other.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn answering_a_ping_from_a_known_node_allocates_nothing() {
    let querier = NodeInfo::new(NodeId::from_array([0x42; 20]), "10.0.0.1:6881".parse().unwrap());
    let mut endpoint = Endpoint::new(Config::default(), [1; 32], Instant::ZERO).unwrap();
    assert!(endpoint.insert_node(Instant::ZERO, querier));
    while endpoint.poll_event().is_some() {}

    let args = Dictionary::new();
    let extra = [Entry { key: b"id", value: Insert::Bytes(querier.id.as_bytes()), replace: false }];
    let mut ping = [0u8; 128];
    let q = QueryOut {
        transaction_id: b"xy",
        method: b"ping",
        args: &args,
        extra: &extra,
        read_only: false,
        version: None,
    };
    let len = q.encode(&mut ping).unwrap();
    let mut out = [0u8; 1500];

    // Warm up queues (and the rate limiter's table) so that their first growth is not
    // counted. One ping per 101 ms stays under the default limit of 100 per 10 s, which
    // stays on: counting a source is part of the path.
    let at = |i: u64| Instant::from_millis(i * 101);
    for i in 0..4 {
        endpoint.handle_datagram(at(i), querier.addr, &ping[..len]);
        let _ = endpoint.poll_transmit(at(i), &mut out);
    }
    let mut sent = 0;
    let n = allocations_during(|| {
        for i in 4..1000 {
            endpoint.handle_datagram(at(i), querier.addr, &ping[..len]);
            while let Some(t) = endpoint.poll_transmit(at(i), &mut out) {
                sent += t.len;
            }
        }
    });
    assert!(sent > 996 * 40, "every ping was answered");
    assert_eq!(n, 0, "allocations while answering pings");
    assert_eq!(endpoint.stats().replies_out, 1000);
}

#[test]
fn matching_a_reply_to_an_internal_ping_allocates_nothing() {
    // A node asked to join is pinged by the engine; its answer is matched, checked and the
    // node inserted. After warm-up, the match-and-refresh path allocates nothing.
    let peer = NodeInfo::new(NodeId::from_array([0x24; 20]), "10.0.0.2:6881".parse().unwrap());
    let mut endpoint = Endpoint::new(Config::default(), [2; 32], Instant::ZERO).unwrap();
    let mut out = [0u8; 1500];
    let mut reply = [0u8; 256];
    let values = Dictionary::new();
    let mut round = |endpoint: &mut Endpoint, i: u64| {
        let now = Instant::from_millis(i);
        endpoint.add_node(now, peer.addr, Some(peer.id)).unwrap();
        let t = endpoint.poll_transmit(now, &mut out).expect("the verification ping");
        let msg = krpc_core::wire::Message::decode(&out[..t.len]).unwrap();
        let mut tid = [0u8; 4];
        tid.copy_from_slice(msg.transaction_id);
        let extra = [Entry { key: b"id", value: Insert::Bytes(peer.id.as_bytes()), replace: false }];
        let r = ResponseOut { transaction_id: &tid, values: &values, extra: &extra, ip: None, version: None };
        let len = r.encode(&mut reply).unwrap();
        let from: SocketAddr = peer.addr;
        endpoint.handle_datagram(now, from, &reply[..len]);
        while endpoint.poll_event().is_some() {}
    };
    // The deadline queue keeps completed entries until they are due (2 s here) and is
    // compacted past 64, so it reaches its steady capacity within about a hundred rounds.
    for i in 0..200 {
        round(&mut endpoint, i);
    }
    // `add_node` is a command (it may queue); the reply path is what must not allocate, and
    // here the command's queue is already warm, so the whole round must be clean.
    let n = allocations_during(|| {
        for i in 200..1000 {
            round(&mut endpoint, i);
        }
    });
    assert_eq!(n, 0, "allocations while matching replies");
    assert!(endpoint.routing_table().contains(&peer.id));
    assert_eq!(endpoint.stats().replies_in, 1000);
}

//! The hot path never touches the heap: decoding, iterating, measuring (`encoded_len`) and
//! encoding the four benchmark messages, and rejecting a malformed datagram, perform zero
//! allocations.
//!
//! A counting global allocator wraps `System` and counts, per thread, every call that could
//! take memory (`alloc`, `alloc_zeroed`, `realloc`). Inputs are built before counting starts.
#![allow(unsafe_code)] // a `GlobalAlloc` impl is unsafe by definition; the library stays forbid(unsafe_code)

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use common::*;
use krpc_core::wire::{Body, Dictionary, Entry, ErrorOut, Insert, Message, QueryOut, ResponseOut};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the allocator can run while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`; the counter only touches a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations `f` performs on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_an_allocation() {
    // Guards the tests below against a counter that counts nothing.
    assert_eq!(allocations(|| drop(black_box(Vec::<u8>::with_capacity(64)))), 1);
    assert!(allocations(|| drop(black_box(Dictionary::new().with_int("port", 1)))) >= 1);
}

#[test]
fn decoding_the_benchmark_messages_and_walking_their_fields_allocates_nothing() {
    let inputs = BenchInputs::new();
    let messages = inputs.messages();
    let mut seen = (0usize, 0usize, 0usize);
    let n = allocations(|| {
        for (_, bytes) in &messages {
            let msg = Message::decode(black_box(bytes)).unwrap();
            match msg.body {
                Body::Query(q) => {
                    seen.0 += q.args.id().map_or(0, <[u8]>::len);
                    seen.0 += q.args.info_hash().map_or(0, |h| h.len());
                    seen.0 += q.args.dict().iter().count();
                }
                Body::Response(r) => {
                    seen.0 += r.node_id().map_or(0, |id| id.len());
                    seen.1 += r.nodes().into_iter().flatten().count();
                    seen.2 += r.values().count();
                    seen.0 += r.token().map_or(0, <[u8]>::len);
                }
                Body::Error(_) => unreachable!(),
            }
            black_box(&msg);
        }
    });
    assert_eq!(n, 0);
    // The walk really happened: 8 nodes and 50 peers were produced.
    assert_eq!((seen.1, seen.2), (8, 50));
    assert!(seen.0 > 0);
}

#[test]
fn encoding_the_benchmark_messages_allocates_nothing() {
    let inputs = BenchInputs::new();
    let ping_args = Dictionary::new();
    let get_peers_args = Dictionary::new().with_bytes("info_hash", inputs.target);
    let no_values = Dictionary::new();
    let id = [Entry { key: b"id", value: Insert::Bytes(&inputs.id), replace: false }];
    let find_node_extra = [
        Entry { key: b"id", value: Insert::Bytes(&inputs.id), replace: false },
        Entry { key: b"nodes", value: Insert::NodesV4(&inputs.nodes), replace: false },
    ];
    let get_peers_extra = [
        Entry { key: b"id", value: Insert::Bytes(&inputs.id), replace: false },
        Entry { key: b"token", value: Insert::Bytes(&inputs.token), replace: false },
        Entry { key: b"values", value: Insert::Peers(&inputs.peers), replace: false },
    ];
    let expected = inputs.messages();
    let mut outputs = [[0u8; 1500]; 4];
    let mut lens = [0usize; 4];
    let mut measured = [0usize; 4];

    let n = allocations(|| {
        let queries = [
            QueryOut {
                transaction_id: b"aa",
                method: b"ping",
                args: &ping_args,
                extra: &id,
                read_only: false,
                version: None,
            },
            QueryOut {
                transaction_id: b"ab",
                method: b"get_peers",
                args: &get_peers_args,
                extra: &id,
                read_only: false,
                version: None,
            },
        ];
        let responses = [
            ResponseOut { transaction_id: b"ac", values: &no_values, extra: &find_node_extra, ip: None, version: None },
            ResponseOut { transaction_id: b"ad", values: &no_values, extra: &get_peers_extra, ip: None, version: None },
        ];
        for (i, q) in queries.iter().enumerate() {
            measured[i] = black_box(q).encoded_len();
            lens[i] = black_box(q).encode(&mut outputs[i]).unwrap();
        }
        for (i, r) in responses.iter().enumerate() {
            measured[2 + i] = black_box(r).encoded_len();
            lens[2 + i] = black_box(r).encode(&mut outputs[2 + i]).unwrap();
        }
    });
    assert_eq!(n, 0);
    for (i, (name, bytes)) in expected.iter().enumerate() {
        assert_eq!(&outputs[i][..lens[i]], &bytes[..], "{name}");
        assert_eq!(measured[i], bytes.len(), "{name}");
    }
}

#[test]
fn re_encoding_decoded_messages_allocates_nothing() {
    let messages = BenchInputs::new().messages();
    let mut out = [0u8; 1500];
    let mut total = 0;
    let mut measured = 0;
    let n = allocations(|| {
        for (_, bytes) in &messages {
            let msg = Message::decode(black_box(bytes)).unwrap();
            total += msg.encode(&mut out).unwrap();
            measured += msg.encoded_len();
        }
    });
    assert_eq!(n, 0);
    assert_eq!(total, messages.iter().map(|(_, b)| b.len()).sum::<usize>());
    assert_eq!(measured, total);
}

#[test]
fn errors_and_rejections_allocate_nothing() {
    let malformed: [&[u8]; 6] = [
        b"d1:ad2:id-3:abce1:q4:ping1:t2:aa1:y1:qe",
        b"d1:ad2:idi5ee1:q9:get_peers1:t2:aa1:y1:qe",
        b"d1:t99999999999999999999:",
        b"d1:xi-0ee",
        b"",
        b"d1:ad2:id20:abcdefghij01234567899:info_hash19:mnopqrstuvwxyz12345e1:q9:get_peers1:t2:aa1:y1:qe",
    ];
    let error = ErrorOut { transaction_id: b"aa", code: 203, message: b"invalid info_hash", ip: None, version: None };
    let mut out = [0u8; 1500];
    let mut failures = 0;
    let mut too_small = 0;
    let n = allocations(|| {
        for input in malformed {
            if let Err(err) = Message::decode(black_box(input)) {
                failures += 1;
                let _ = black_box(err.is_protocol_error());
                let _ = black_box(krpc_core::wire::salvage_query_transaction_id(input, 32));
            }
        }
        black_box(error.encode(&mut out).unwrap());
        black_box(error.encoded_len());
        if error.encode(&mut [0u8; 8]).is_err() {
            too_small += 1;
        }
    });
    assert_eq!(n, 0);
    assert_eq!((failures, too_small), (malformed.len(), 1));
}

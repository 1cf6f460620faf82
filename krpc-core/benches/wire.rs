//! Wire codec benchmarks on the four messages of `shared/bench/js-codec-bench.js`: a `ping`
//! query, a `get_peers` query, a `find_node` response with 8 nodes and a `get_peers` response
//! with an 8-byte token and 50 peers.
//!
//! Groups (each reports time per operation):
//! - `decode/ours/*`: `Message::decode` (full validation, typed fields located).
//! - `decode/ours_walk/*`: the same plus iterating every node and peer.
//! - `decode/bendy/*`: bendy 0.6.1's strict decoder walking every object of the same bytes.
//! - `encode/engine/*`: `QueryOut`/`ResponseOut` merging the engine's keys into a reused
//!   `[u8; 1500]`.
//! - `encode/message/*`: `Message::encode` of an already decoded message.
//! - `encode/encoded_len/*`: the engine-path encoders' `encoded_len` (measuring only).
//! - `encode/empty_buffer/*`: the same size read from `encode(&mut [])`'s `BufferTooSmall`,
//!   the way sizes were measured before `encoded_len`.
//!
//! Run: `cargo bench -p krpc-core --bench wire -- --warm-up-time 1 --measurement-time 3`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use bendy::decoding::{Decoder as BendyDecoder, Object};
use common::BenchInputs;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use krpc_core::wire::{Body, Dictionary, Entry, Insert, Message, QueryOut, ResponseOut};

/// Walks one bendy object completely, parsing integers, and returns a checksum so the work
/// cannot be optimised away.
fn bendy_walk(obj: Object<'_, '_>) -> usize {
    match obj {
        Object::Integer(digits) => digits.parse::<i64>().map_or(0, |n| n as usize),
        Object::Bytes(s) => s.len(),
        Object::List(mut list) => {
            let mut sum = 1;
            while let Ok(Some(item)) = list.next_object() {
                sum += bendy_walk(item);
            }
            sum
        }
        Object::Dict(mut dict) => {
            let mut sum = 1;
            while let Ok(Some((key, value))) = dict.next_pair() {
                sum += key.len() + bendy_walk(value);
            }
            sum
        }
    }
}

fn bendy_decode(bytes: &[u8]) -> usize {
    let mut decoder = BendyDecoder::new(bytes);
    match decoder.next_object() {
        Ok(Some(obj)) => bendy_walk(obj),
        _ => 0,
    }
}

/// Decodes and touches every typed field, iterating nodes and peers.
fn ours_walk(bytes: &[u8]) -> usize {
    let msg = Message::decode(bytes).unwrap();
    match msg.body {
        Body::Query(q) => q.args.id().map_or(0, <[u8]>::len) + q.args.info_hash().map_or(0, |h| h.len()),
        Body::Response(r) => {
            r.id().map_or(0, <[u8]>::len)
                + r.token().map_or(0, <[u8]>::len)
                + r.nodes().into_iter().flatten().map(|n| usize::from(n.addr.port())).sum::<usize>()
                + r.values().map(|a| usize::from(a.port())).sum::<usize>()
        }
        Body::Error(e) => e.message.len(),
    }
}

fn decode(c: &mut Criterion) {
    let inputs = BenchInputs::new();
    let mut group = c.benchmark_group("decode");
    for (name, bytes) in inputs.messages() {
        assert!(Message::decode(&bytes).is_ok(), "{name}");
        assert!(bendy_decode(&bytes) > 0, "{name}");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("ours/{name}"), |b| b.iter(|| Message::decode(black_box(&bytes)).is_ok()));
        group.bench_function(format!("ours_walk/{name}"), |b| b.iter(|| ours_walk(black_box(&bytes))));
        group.bench_function(format!("bendy/{name}"), |b| b.iter(|| bendy_decode(black_box(&bytes))));
    }
    group.finish();
}

/// One engine-path encoder: writes a message into the buffer and returns its length.
type EncodeInto<'a> = &'a dyn Fn(&mut [u8]) -> usize;

fn encode(c: &mut Criterion) {
    let inputs = BenchInputs::new();
    let messages = inputs.messages();
    let no_args = Dictionary::new();
    let get_peers_args = Dictionary::new().with_bytes("info_hash", inputs.target);
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
    let ping = QueryOut {
        transaction_id: b"aa",
        method: b"ping",
        args: &no_args,
        extra: &id,
        read_only: false,
        version: None,
    };
    let get_peers = QueryOut {
        transaction_id: b"ab",
        method: b"get_peers",
        args: &get_peers_args,
        extra: &id,
        read_only: false,
        version: None,
    };
    let find_node_r =
        ResponseOut { transaction_id: b"ac", values: &no_args, extra: &find_node_extra, ip: None, version: None };
    let get_peers_r =
        ResponseOut { transaction_id: b"ad", values: &no_args, extra: &get_peers_extra, ip: None, version: None };

    let mut buf = [0u8; 1500];
    let mut group = c.benchmark_group("encode");
    let measure: [(&str, &dyn Fn() -> usize); 4] = [
        ("ping_query", &|| black_box(&ping).encoded_len()),
        ("get_peers_query", &|| black_box(&get_peers).encoded_len()),
        ("find_node_response_8", &|| black_box(&find_node_r).encoded_len()),
        ("get_peers_response_50", &|| black_box(&get_peers_r).encoded_len()),
    ];
    let engine: [(&str, EncodeInto<'_>); 4] = [
        ("ping_query", &|out| ping.encode(out).unwrap()),
        ("get_peers_query", &|out| get_peers.encode(out).unwrap()),
        ("find_node_response_8", &|out| find_node_r.encode(out).unwrap()),
        ("get_peers_response_50", &|out| get_peers_r.encode(out).unwrap()),
    ];
    for ((name, encode), (_, expected)) in engine.iter().zip(&messages) {
        // The engine path produces exactly the benchmark bytes.
        let n = encode(&mut buf);
        assert_eq!(&buf[..n], &expected[..], "{name}");
        group.throughput(Throughput::Bytes(n as u64));
        group.bench_function(format!("engine/{name}"), |b| b.iter(|| encode(black_box(&mut buf))));
    }
    for ((name, measure), (_, expected)) in measure.iter().zip(&messages) {
        assert_eq!(measure(), expected.len(), "{name}");
        group.throughput(Throughput::Bytes(expected.len() as u64));
        group.bench_function(format!("encoded_len/{name}"), |b| b.iter(|| black_box(measure())));
    }
    let empty_buffer: [(&str, &dyn Fn() -> usize); 4] = [
        ("ping_query", &|| black_box(&ping).encode(&mut []).unwrap_err().required),
        ("get_peers_query", &|| black_box(&get_peers).encode(&mut []).unwrap_err().required),
        ("find_node_response_8", &|| black_box(&find_node_r).encode(&mut []).unwrap_err().required),
        ("get_peers_response_50", &|| black_box(&get_peers_r).encode(&mut []).unwrap_err().required),
    ];
    for ((name, measure), (_, expected)) in empty_buffer.iter().zip(&messages) {
        assert_eq!(measure(), expected.len(), "{name}");
        group.throughput(Throughput::Bytes(expected.len() as u64));
        group.bench_function(format!("empty_buffer/{name}"), |b| b.iter(|| black_box(measure())));
    }
    for (name, bytes) in &messages {
        let msg = Message::decode(bytes).unwrap();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("message/{name}"), |b| {
            b.iter(|| black_box(&msg).encode(black_box(&mut buf)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);

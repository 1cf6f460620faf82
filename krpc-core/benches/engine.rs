//! Engine benchmarks: answering a ping end to end, and lookup steps on a large table.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use criterion::{Criterion, criterion_group, criterion_main};
use krpc_core::routing::RoutingTable;
use krpc_core::wire::{Dictionary, Entry, Insert, QueryOut};
use krpc_core::{Config, Endpoint, Instant, NodeId, NodeInfo, Query};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

fn addr(i: u32) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | i), 6881))
}

fn random_id(rng: &mut ChaCha8Rng) -> NodeId {
    let mut b = [0u8; 20];
    rng.fill_bytes(&mut b);
    NodeId::from_array(b)
}

fn ping_datagram(id: &NodeId) -> Vec<u8> {
    let args = Dictionary::new();
    let extra = [Entry { key: b"id", value: Insert::Bytes(id.as_bytes()), replace: false }];
    let q = QueryOut {
        transaction_id: b"aa",
        method: b"ping",
        args: &args,
        extra: &extra,
        read_only: false,
        version: None,
    };
    let mut buf = [0u8; 1500];
    let n = q.encode(&mut buf).expect("fits");
    buf[..n].to_vec()
}

fn answer_ping(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // The default rate limit stays on: it is part of the path. One ping per 101 ms of virtual
    // time keeps the querier under 100 per 10 s; bucket refresh is pushed out of the way so
    // that the virtual hours the benchmark covers start no lookups.
    let config = Config { k: 8, bucket_refresh: std::time::Duration::from_secs(1 << 40), ..Config::default() };
    let mut endpoint = Endpoint::new(config, [3; 32], Instant::ZERO).expect("valid");
    let querier = NodeInfo::new(random_id(&mut rng), addr(1));
    endpoint.insert_node(Instant::ZERO, querier);
    while endpoint.poll_event().is_some() {}
    let datagram = ping_datagram(&querier.id);
    let mut out = [0u8; 1500];
    let mut now = Instant::from_millis(1);
    c.bench_function("engine/answer_ping (decode + rate limit + table touch + encode reply)", |b| {
        b.iter(|| {
            now += std::time::Duration::from_millis(101);
            endpoint.handle_datagram(now, querier.addr, black_box(&datagram));
            let t = endpoint.poll_transmit(now, &mut out).expect("a pong");
            black_box(t.len)
        })
    });
}

fn lookup_step(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let local = random_id(&mut rng);
    let mut table = RoutingTable::new(local, 64);
    // Random ids only fill the far buckets; build 64 contacts for every shared-prefix length
    // (the id agrees with ours on the first `depth` bits, then differs) to reach 10,000.
    let mut i = 0u32;
    'fill: for depth in 0..159 {
        for _ in 0..64 {
            if table.len() >= 10_000 {
                break 'fill;
            }
            let mut id = random_id(&mut rng);
            for bit in 0..depth {
                id = id.with_bit(bit, local.bit(bit));
            }
            id = id.with_bit(depth, !local.bit(depth));
            let _ = table.insert_verified(NodeInfo::new(id, addr(i)), Instant::ZERO);
            i += 1;
        }
    }
    assert!(table.len() >= 9_000, "table holds {}", table.len());
    let targets: Vec<NodeId> = (0..64).map(|_| random_id(&mut rng)).collect();
    let mut n = 0;
    c.bench_function(&format!("routing/closest 8 of {} entries", table.len()), |b| {
        b.iter(|| {
            n = (n + 1) % targets.len();
            black_box(table.closest(black_box(&targets[n]), 8).len())
        })
    });

    // A lookup step: seed candidates from a 10k-entry table, choose and register α queries
    // (random tids), then stop it (the unsent queries are dropped, so state does not grow).
    let config = Config { k: 64, ..Config::default() };
    let mut endpoint = Endpoint::new(config, [4; 32], Instant::ZERO).expect("valid");
    for c in table.iter() {
        endpoint.insert_node(Instant::ZERO, c.node);
    }
    while endpoint.poll_event().is_some() {}
    c.bench_function("engine/closest start + stop, 16 queries chosen (10k table)", |b| {
        b.iter(|| {
            n = (n + 1) % targets.len();
            let t = targets[n];
            let op = endpoint.closest(Instant::ZERO, t, Query::find_node(&t)).expect("starts");
            endpoint.stop(op).expect("running");
            black_box(endpoint.poll_event())
        })
    });
}

criterion_group!(benches, answer_ping, lookup_step);
criterion_main!(benches);

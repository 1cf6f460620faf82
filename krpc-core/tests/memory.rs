//! Memory an engine keeps: a burst of traffic grows its queues, its transaction slab and its
//! rate limiter, and an idle engine gives that back. A simulated network of a million
//! engines is mostly idle engines, so what each keeps after its bursts is what the network
//! costs (docs/simulation.md, "Million nodes").

mod idle;
use idle::*;

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::{Config, Endpoint, Instant, NodeId, Peer, Query};

#[test]
fn a_burst_of_queries_and_sources_is_given_back_once_the_engine_is_idle() {
    let config = Config { concurrency: 64, ..Config::default() };
    let mut ep = Endpoint::new(config, [5; 32], Instant::ZERO).unwrap();
    let idle = ep.memory_footprint();
    let start = Instant::from_millis(1);
    // Our burst: 200 queries waiting for 64 slots, every one unanswered.
    for i in 0..200u32 {
        let [a, b, c, d] = (0x0b00_0000 + i).to_be_bytes();
        ep.query(start, Peer::addr(SocketAddr::from(([a, b, c, d], 6881))), Query::ping()).unwrap();
    }
    // Their burst: 2,000 sources ping us at once.
    for i in 0..2_000u32 {
        let [a, b, c, d] = (0x0c00_0000 + i).to_be_bytes();
        ep.handle_datagram(start, SocketAddr::from(([a, b, c, d], 6881)), &ping(9, i as u16));
        drain(&mut ep, start);
    }
    let peak = ep.memory_footprint();
    assert!(peak > idle + 50_000, "the burst did not grow anything: {idle} -> {peak}");

    // Every query times out, the sources' windows end, the maintenance tick runs.
    idle_until(&mut ep, start, start + Duration::from_secs(130));
    assert_eq!(ep.in_flight(), 0);
    assert_eq!(ep.operations(), 0);
    let after = ep.memory_footprint();
    assert!(after <= idle, "idle engine keeps {after} bytes after a burst (idle {idle}, peak {peak})");
}

#[test]
fn one_query_at_a_time_keeps_its_small_capacity() {
    // The other side of giving memory back: a quiet engine's queues do not shrink below their
    // first allocation, so the per-datagram path stays allocation-free (`no_alloc_engine.rs`).
    let mut ep = Endpoint::new(Config::default(), [6; 32], Instant::ZERO).unwrap();
    let now = Instant::from_millis(1);
    let from: SocketAddr = "10.1.2.3:6881".parse().unwrap();
    // Queues take one slot at first (`krpc-core/src/lean.rs`), so warming up takes two pings: the first
    // from an unknown source leaves its verification ping in flight, the second finds it there
    // and takes a slot of the verification queue. From then on nothing grows or shrinks.
    for i in 1..=2u16 {
        ep.handle_datagram(now, from, &ping(7, i));
        drain(&mut ep, now);
    }
    let warm = ep.memory_footprint();
    for i in 3..50u16 {
        ep.handle_datagram(now, from, &ping(7, i));
        drain(&mut ep, now);
        assert_eq!(ep.memory_footprint(), warm, "ping {i}");
    }
    let _ = NodeId::from_array([0; 20]);
}

#[test]
fn a_routing_entry_takes_35_bytes() {
    use krpc_core::NodeInfo;
    use krpc_core::routing::RoutingTable;
    // A BEP 5 table of IPv4 nodes, grown by splits to many buckets, some of them not full.
    let local = NodeId::from_array([0x55; 20]);
    let mut table = RoutingTable::new(local, 8);
    let mut x = 0x1234_5678_9abc_def0u64;
    for i in 0..5_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&x.to_be_bytes());
        // Every fourth id near ours, so that the table grows deep.
        if i % 4 == 0 {
            id[..4].copy_from_slice(&[0x55, 0x55, 0x55, (x >> 56) as u8]);
        }
        let [a, b, c, d] = (0x0a00_0000 + i).to_be_bytes();
        let _ = table.insert_verified(
            NodeInfo::new(NodeId::from_array(id), SocketAddr::from(([a, b, c, d], 6881))),
            Instant::ZERO,
        );
    }
    assert!(
        table.len() > 100 && table.bucket_count() > 15,
        "{} contacts in {} buckets",
        table.len(),
        table.bucket_count()
    );
    assert_eq!(table.entry_bytes(), 35);
    // The contacts, plus a time and a length per bucket and the bucket count, in one
    // allocation with room to the next of four steps per doubling: at most a quarter more.
    let held = 35 * table.len() + 9 * table.bucket_count() + 1;
    assert!(
        (held..=held + held / 4).contains(&table.heap_bytes()),
        "{} bytes for {} contacts in {} buckets ({held} held)",
        table.heap_bytes(),
        table.len(),
        table.bucket_count()
    );
    table.check_invariants().unwrap();
}

#[test]
fn an_idle_engine_stays_within_its_measured_size() {
    // Issue 16's goal is an idle engine of at most 1.5 KB (1,536 bytes). Measured: 1,336
    // bytes, the `Endpoint` struct (1,304 B: the configuration 288 B, with the node layer's
    // settings boxed; the RNG 40 B, a ChaCha12 key and position without its 256-byte buffer;
    // the RPC part 376 B, which reads its limits from the configuration rather than keeping
    // copies; two routing tables, whose records are a `Vec` with room to the next size step
    // rather than an exactly sized box, 8 B more each; the counters 168 B) and the two tables'
    // allocations (10 B each, in 16 B of room). It was 2,176 bytes at first, 1,512 when the
    // goal was first met, 1,300 before the tables kept room (docs/simulation.md, "Million
    // nodes"). The bound keeps a little room, not 200 bytes.
    let ep = Endpoint::new(Config::default(), [8; 32], Instant::ZERO).unwrap();
    assert!(ep.memory_footprint() <= 1_344, "idle engine {} bytes", ep.memory_footprint());
}

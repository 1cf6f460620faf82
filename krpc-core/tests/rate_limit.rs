//! The inbound abuse controls seen from outside the engine: per-source limits on unsolicited
//! queries and the global reply byte budget (`Config::rate_limit`).

mod idle;
use idle::*;

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::{Config, Endpoint, Instant, LocalSources, NodeId, RateLimit};

/// Feeds `n` pings from `from` at `now` and returns how many were answered.
fn answered(ep: &mut Endpoint, now: Instant, from: SocketAddr, n: u16) -> usize {
    let mut out = [0u8; 1500];
    let before = ep.stats().replies_out;
    for i in 0..n {
        ep.handle_datagram(now, from, &ping(9, i));
        while ep.poll_transmit(now, &mut out).is_some() {}
        while ep.poll_event().is_some() {}
    }
    (ep.stats().replies_out - before) as usize
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn endpoint(limit: RateLimit) -> Endpoint {
    let config = Config { rate_limit: limit, verify_queriers: false, ..Config::dht() };
    Endpoint::new(config, [3; 32], Instant::ZERO).unwrap()
}

#[test]
fn a_flooding_source_is_blocked_and_others_are_still_answered() {
    let mut ep = endpoint(RateLimit::default());
    let now = Instant::from_millis(1);
    let flooder = addr("203.0.113.7:4000");
    assert_eq!(answered(&mut ep, now, flooder, 1000), 100, "the default allows 100 queries per window");
    assert_eq!(ep.stats().rate_limited, 900);
    assert_eq!(ep.stats().sources_blocked, 1);
    // Same IP, other port: the same source on the public internet.
    assert_eq!(answered(&mut ep, now, addr("203.0.113.7:4001"), 5), 0);
    assert_eq!(answered(&mut ep, now, addr("198.51.100.1:4000"), 5), 5);
    // Malformed datagrams from a blocked source get no 203 either.
    let mut out = [0u8; 1500];
    ep.handle_datagram(now, flooder, b"d1:t2:xy1:y1:qe");
    assert!(ep.poll_transmit(now, &mut out).is_none());
    // The block lasts one minute from the query that went over.
    assert_eq!(answered(&mut ep, now + Duration::from_secs(59), flooder, 1), 0);
    assert_eq!(answered(&mut ep, now + Duration::from_secs(60), flooder, 1), 1);
}

#[test]
fn loopback_sources_are_counted_per_socket_by_default() {
    let mut ep = endpoint(RateLimit::default());
    let now = Instant::from_millis(1);
    assert_eq!(answered(&mut ep, now, addr("127.0.0.1:1000"), 150), 100);
    // A test swarm's other nodes share the IP but not the port.
    assert_eq!(answered(&mut ep, now, addr("127.0.0.1:1001"), 50), 50);

    let mut per_ip = endpoint(RateLimit { local: LocalSources::PerIp, ..RateLimit::default() });
    assert_eq!(answered(&mut per_ip, now, addr("127.0.0.1:1000"), 150), 100);
    assert_eq!(answered(&mut per_ip, now, addr("127.0.0.1:1001"), 50), 0);

    let mut exempt = endpoint(RateLimit { local: LocalSources::Exempt, ..RateLimit::default() });
    assert_eq!(answered(&mut exempt, now, addr("10.1.2.3:1000"), 500), 500);
    assert_eq!(exempt.tracked_sources(), 0);
}

#[test]
fn off_answers_everything() {
    let mut ep = endpoint(RateLimit::OFF);
    assert_eq!(answered(&mut ep, Instant::from_millis(1), addr("203.0.113.7:4000"), 2000), 2000);
    assert_eq!(ep.stats().rate_limited, 0);
}

#[test]
fn the_source_table_stays_within_its_cap_under_a_spoofed_flood() {
    // The reply budget off: 20,000 pongs in one instant would exceed it.
    let limit = RateLimit { sources: 256, reply_bytes_per_sec: 0, ..RateLimit::default() };
    let mut ep = endpoint(limit);
    let now = Instant::from_millis(1);
    let before = ep.memory_footprint();
    for i in 0..20_000u32 {
        let from = SocketAddr::new(std::net::Ipv4Addr::from(0x0b00_0000 + i).into(), 6881);
        assert_eq!(answered(&mut ep, now, from, 1), 1);
        assert!(ep.tracked_sources() <= 256);
    }
    assert_eq!(ep.tracked_sources(), 256);
    // 256 slots of 28 bytes; the rest of the engine did not grow with the number of sources.
    assert!(ep.memory_footprint() - before <= 256 * 28 + 4096, "grew by {}", ep.memory_footprint() - before);
}

#[test]
fn answers_over_the_reply_budget_are_dropped_and_counted() {
    let limit = RateLimit { reply_bytes_per_sec: 2000, ..RateLimit::OFF };
    let mut ep = endpoint(limit);
    let now = Instant::from_millis(1);
    let n = answered(&mut ep, now, addr("203.0.113.7:4000"), 100);
    // A pong with `ip` and `v` is about 70 bytes: the one-second burst covers about 2000 / 70.
    assert!((25..=32).contains(&n), "{n} answered");
    assert_eq!(ep.stats().replies_over_budget, 100 - n as u64);
    // Half a second later, half a second's budget is back.
    let m = answered(&mut ep, now + Duration::from_millis(500), addr("203.0.113.8:4000"), 100);
    assert!((12..=16).contains(&m), "{m} answered after 0.5 s");
    // Our own queries are never held back by the budget.
    let op = ep.query(now, krpc_core::Peer::addr(addr("203.0.113.9:1")), krpc_core::Query::ping());
    assert!(op.is_ok());
    let mut out = [0u8; 1500];
    assert!(ep.poll_transmit(now + Duration::from_millis(500), &mut out).is_some());
}

#[test]
fn a_rate_limited_querier_is_not_verified_nor_inserted() {
    let config = Config { ..Config::dht() };
    let mut ep = Endpoint::new(config, [4; 32], Instant::ZERO).unwrap();
    let now = Instant::from_millis(1);
    let from = addr("203.0.113.7:4000");
    assert_eq!(answered(&mut ep, now, from, 100), 100);
    let before = ep.stats().queries_out;
    // Over the limit with a new id: no answer and no verification ping.
    let mut out = [0u8; 1500];
    ep.handle_datagram(now, from, &ping(0x77, 1));
    assert!(ep.poll_transmit(now, &mut out).is_none());
    assert_eq!(ep.stats().queries_out, before);
    assert!(!ep.routing_table().contains(&NodeId::from_array([0x77; 20])));
}

#[test]
fn a_limit_without_a_window_is_refused() {
    let config =
        Config { rate_limit: RateLimit { window: Duration::ZERO, ..RateLimit::default() }, ..Config::default() };
    assert!(config.validate().is_err());
    let config = Config { rate_limit: RateLimit { window: Duration::ZERO, ..RateLimit::OFF }, ..Config::default() };
    assert!(config.validate().is_ok());
}

#[test]
fn nodes_in_the_routing_table_are_answered_while_the_budget_is_spent() {
    let limit = RateLimit { reply_bytes_per_sec: 1000, ..RateLimit::OFF };
    let mut ep = endpoint(limit);
    let now = Instant::from_millis(1);
    let table_node = krpc_core::NodeInfo::new(NodeId::from_array([9; 20]), addr("198.51.100.9:6881"));
    assert!(ep.insert_node(now, table_node));
    // Strangers spend the budget...
    let strangers = answered(&mut ep, now, addr("203.0.113.7:4000"), 100);
    assert!(strangers < 20, "{strangers} answered");
    assert!(ep.stats().replies_over_budget > 0);
    // ...but a node we route through (its queries carry the id `ping` sends: 9 repeated) is
    // still answered, every time.
    assert_eq!(answered(&mut ep, now, table_node.addr, 50), 50);
    // The same id from another address is a stranger.
    assert_eq!(answered(&mut ep, now, addr("198.51.100.10:6881"), 5), 0);
}

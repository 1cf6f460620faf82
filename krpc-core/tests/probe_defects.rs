//! Defects found by a black-box probe of `krpc serve` (issue 15), each reproduced against the
//! engine: these tests fail on the engine before the fix.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::wire::Dictionary;
use krpc_core::{Config, Event};
use support::{Script, id_with, query_bytes, sa};

fn dht() -> Config {
    Config { bootstrap: vec![], ..Config::dht() }
}

fn answers_to(s: &mut Script, from: SocketAddr) -> Vec<support::Sent> {
    s.sent().into_iter().filter(|m| m.to == from && !m.is_query()).collect()
}

#[test]
fn a_query_without_an_id_gets_203_not_a_full_answer() {
    // The probe: a 66-byte `get_peers` with no `id` and an empty `t` drew 1,016 bytes back.
    let mut s = Script::new(dht());
    let nodes: Vec<_> = (1..=20u8)
        .map(|i| krpc_core::NodeInfo::new(id_with(&[i * 9, i]), SocketAddr::from(([10, 1, 0, i], 6881))))
        .collect();
    s.insert(&nodes);
    let from = sa("10.9.9.9:7000");
    for method in ["get_peers", "find_node", "announce_peer", "ping", "sample_infohashes"] {
        let args = Dictionary::new().with_bytes("info_hash", [0x42; 20]).with_bytes("target", [0x42; 20]);
        let query = query_bytes(b"", method, &args, None, false);
        s.deliver(from, &query);
        let answers = answers_to(&mut s, from);
        assert_eq!(answers.len(), 1, "{method}");
        assert_eq!(answers[0].error(), (203, b"query requires a.id".to_vec()), "{method}");
        assert!(
            answers[0].bytes.len() <= query.len(),
            "{method}: {} bytes back for {}",
            answers[0].bytes.len(),
            query.len()
        );
    }
    assert!(s.events().iter().all(|e| !matches!(e, Event::Query(_))));
}

#[test]
fn implied_port_ignores_an_out_of_range_port() {
    // BEP 5: "If it is present and non-zero, the port argument should be ignored and the
    // source port of the UDP packet should be used as the peer's port instead."
    let mut s = Script::new(dht());
    let ih = [0x42u8; 20];
    let announcer = sa("10.7.7.7:5555");
    let querier = id_with(&[0xee, 1]);
    let ask = |s: &mut Script, tid: &[u8], method: &str, args: Dictionary| {
        s.deliver(announcer, &query_bytes(tid, method, &args, Some(&querier), false));
        answers_to(s, announcer).pop().unwrap_or_else(|| panic!("no answer to {method}"))
    };
    let token = ask(&mut s, b"g1", "get_peers", Dictionary::new().with_bytes("info_hash", ih))
        .values()
        .token()
        .unwrap()
        .to_vec();
    for port in [70_000, -1, 65_536] {
        let args = Dictionary::new()
            .with_bytes("info_hash", ih)
            .with_int("implied_port", 1)
            .with_int("port", port)
            .with_bytes("token", &token);
        let ack = ask(&mut s, b"a1", "announce_peer", args);
        assert!(ack.message().as_response().is_some(), "port {port} with implied_port: stored, not {:?}", ack.error());
    }
    // Without `implied_port` the range matters, and the error says which argument.
    let args = Dictionary::new().with_bytes("info_hash", ih).with_int("port", 70_000).with_bytes("token", &token);
    assert_eq!(
        ask(&mut s, b"a2", "announce_peer", args).error(),
        (203, b"announce_peer a.port must be 1-65535".to_vec())
    );
    let reply = ask(&mut s, b"g2", "get_peers", Dictionary::new().with_bytes("info_hash", ih));
    assert_eq!(reply.values().values().collect::<Vec<_>>(), vec![announcer], "stored at the source port");
    let _ = Duration::ZERO;
}

/// A node `victim` is in the table at `real`; `attacker` queries with the victim's id and
/// answers the verification ping. Returns the script after the attacker's answer.
fn hijack_attempt(real: SocketAddr, attacker: SocketAddr) -> (Script, krpc_core::NodeId) {
    let mut s = Script::new(dht());
    let victim = id_with(&[0x80, 0x01]);
    s.insert(&[krpc_core::NodeInfo::new(victim, real)]);
    let _ = s.sent();
    s.incoming_query(attacker, b"hj", "ping", Some(&victim));
    let sent = s.sent();
    let verify = sent.iter().find(|m| m.is_query() && m.to == attacker).expect("the attacker is pinged to verify it");
    let verify = verify.clone();
    s.reply(&verify, &victim);
    (s, victim)
}

#[test]
fn a_claim_on_a_known_id_from_another_address_does_not_displace_the_entry() {
    let (real, attacker) = (sa("10.1.1.1:6881"), sa("10.66.6.6:6666"));
    let (mut s, victim) = hijack_attempt(real, attacker);
    let entry = s.ep.routing_table().get(&victim).expect("still in the table");
    assert_eq!(entry.addr(), real, "the claim did not move the entry");
    // The real node is asked instead; it answers, so the claim is dropped for good.
    let check = s.sent().into_iter().find(|m| m.is_query() && m.to == real).expect("the real address is pinged");
    assert_eq!(check.method(), b"ping");
    s.reply(&check, &victim);
    assert_eq!(s.ep.routing_table().get(&victim).unwrap().addr(), real);
    assert!(s.events().iter().all(|e| !matches!(e, Event::NodeUpdated { .. } | Event::NodeRemoved(_))));
    // find_node never lists the victim's id at the attacker's address.
    s.deliver(
        sa("10.9.9.9:7000"),
        &query_bytes(
            b"fn",
            "find_node",
            &Dictionary::new().with_bytes("target", victim.as_bytes()),
            Some(&id_with(&[0x11])),
            false,
        ),
    );
    let answer = s.sent().into_iter().find(|m| m.to == sa("10.9.9.9:7000") && !m.is_query()).unwrap();
    let listed: Vec<_> = answer.values().nodes().unwrap().collect();
    assert!(listed.iter().any(|n| n.id == victim && n.addr == real));
    assert!(listed.iter().all(|n| n.addr != attacker));
}

#[test]
fn the_claimant_takes_the_entry_only_when_the_old_address_is_silent() {
    let (real, moved) = (sa("10.1.1.1:6881"), sa("10.1.1.1:7777"));
    let (mut s, victim) = hijack_attempt(real, moved);
    assert!(s.sent().iter().any(|m| m.is_query() && m.to == real), "the old address is pinged");
    // No answer from the old address: the node moved (a NAT rebinding, a restart on another port).
    s.advance(Duration::from_secs(3));
    let events = s.events();
    assert_eq!(s.ep.routing_table().get(&victim).unwrap().addr(), moved);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::NodeUpdated { node, previous } if node.addr == moved && *previous == real))
    );
}

#[test]
fn a_refused_claim_costs_one_check_not_one_per_query() {
    // Fuzz finding 8: two hosts sharing an id pinged each other for ever, each query costing
    // a verification ping and a ping of the old address. Once the old address has answered,
    // the claimant's further queries are answered but buy no pings for 15 minutes.
    let (real, attacker) = (sa("10.1.1.1:6881"), sa("10.66.6.6:6666"));
    let (mut s, victim) = hijack_attempt(real, attacker);
    let check = s.sent().into_iter().find(|m| m.is_query() && m.to == real).expect("the real address is pinged");
    s.reply(&check, &victim);
    for i in 0..50u8 {
        s.incoming_query(attacker, &[b'q', i], "ping", Some(&victim));
        s.advance(Duration::from_secs(1));
    }
    let sent = s.sent();
    assert_eq!(sent.iter().filter(|m| !m.is_query() && m.to == attacker).count(), 50, "every query is answered");
    assert!(
        sent.iter().all(|m| !m.is_query() || (m.to != attacker && m.to != real)),
        "no verification of the claimant and no check of the old address after the refusal"
    );
    // After the memory runs out, a claim is checked once more.
    s.advance(Duration::from_secs(15 * 60));
    let _ = s.sent();
    s.incoming_query(attacker, b"zz", "ping", Some(&victim));
    assert_eq!(s.sent().iter().filter(|m| m.is_query() && m.to == attacker).count(), 1);
    assert_eq!(s.ep.routing_table().get(&victim).unwrap().addr(), real);
}

/// A public address in its own /24 for each `i`.
fn stranger(i: usize) -> SocketAddr {
    SocketAddr::from(([50, (i / 250) as u8, (i % 250) as u8, 9], 6881))
}

/// `n` strangers each send one query and never answer our verification ping.
fn silent_queriers(s: &mut Script, n: usize, addr: impl Fn(usize) -> SocketAddr) {
    for i in 0..n {
        s.incoming_query(addr(i), b"sq", "ping", Some(&id_with(&[0x40, (i >> 8) as u8, i as u8])));
    }
}

/// Virtual seconds until a ping goes to `to`, stepping 100 ms at a time for at most `limit`.
fn seconds_until_pinged(s: &mut Script, to: SocketAddr, limit: u64) -> Option<f64> {
    for step in 0..=limit * 10 {
        if let Some(ping) = s.sent().into_iter().find(|m| m.is_query() && m.to == to) {
            s.reply(&ping, &id_with(&[0x77]));
            return Some(step as f64 / 10.0);
        }
        s.advance(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_hundred_silent_queriers_do_not_keep_a_newcomer_out() {
    // The probe: 20 silent one-packet queriers delayed an honest newcomer by about 10 s, and
    // 100 meant it was never verified (the shared queue of 64 dropped it).
    let mut s = Script::new(dht());
    silent_queriers(&mut s, 100, stranger);
    let honest = SocketAddr::from(([60, 1, 2, 3], 6881));
    s.incoming_query(honest, b"hq", "ping", Some(&id_with(&[0x77])));
    let waited = seconds_until_pinged(&mut s, honest, 30).expect("the newcomer is verified");
    assert!(waited <= 10.0, "verified after {waited} s");
    assert!(s.ep.routing_table().contains(&id_with(&[0x77])));
}

#[test]
fn one_crowded_subnet_cannot_fill_the_verification_queue() {
    let mut s = Script::new(dht());
    // 200 silent queriers from one /24 (different ports count as one source: only one each).
    silent_queriers(&mut s, 200, |i| SocketAddr::from(([70, 0, 0, (i % 250) as u8 + 1], 6881)));
    let honest = SocketAddr::from(([60, 1, 2, 3], 6881));
    s.incoming_query(honest, b"hq", "ping", Some(&id_with(&[0x77])));
    assert!(seconds_until_pinged(&mut s, honest, 30).is_some(), "the newcomer from another subnet is verified");
    assert!(s.ep.stats().verifications_dropped > 0);
}

#[test]
fn table_upkeep_is_not_starved_by_strangers() {
    let mut s = Script::new(dht());
    silent_queriers(&mut s, 100, stranger);
    let _ = s.sent();
    let friend = SocketAddr::from(([60, 9, 9, 9], 6881));
    s.ep.add_node(s.now, friend, None).expect("room for upkeep pings");
    assert!(s.sent().iter().any(|m| m.is_query() && m.to == friend), "sent at once, in its own slots");
}

#[test]
fn two_spoofed_queries_a_second_do_not_keep_the_table_empty() {
    // The probe: about 2 spoofed packets per second kept a fresh node's table empty.
    let mut s = Script::new(dht());
    let mut joined = 0;
    for second in 0..60usize {
        silent_queriers(&mut s, 2, |i| stranger(1000 + 2 * second + i));
        // One honest querier every 5 s, which answers its verification.
        if second % 5 == 0 {
            let honest = SocketAddr::from(([61, 0, second as u8, 1], 6881));
            // Ids spread over the id space, so that no bucket fills.
            let id = id_with(&[(second * 41 % 256) as u8, 0x90]);
            s.incoming_query(honest, b"hq", "ping", Some(&id));
            for _ in 0..10 {
                if let Some(ping) = s.sent().into_iter().find(|m| m.is_query() && m.to == honest) {
                    s.reply(&ping, &id);
                    joined += 1;
                    break;
                }
                s.advance(Duration::from_millis(100));
            }
        } else {
            s.advance(Duration::from_secs(1));
        }
    }
    assert_eq!(joined, 12, "every honest querier was verified within a second");
    assert!(s.ep.routing_table().len() >= 12);
}

/// Amplification (reply bytes / query bytes) for the smallest valid query of every method the
/// node layer answers, with everything that can make an answer large in place: a full table
/// of both families, `want` of both, a swarm of stored peers, BEP 33 filters. The bounds are
/// the ones docs/security.md states.
#[test]
fn amplification_is_bounded_for_every_method() {
    let mut s = Script::new(dht());
    let v4: Vec<_> = (1..=40u8)
        .map(|i| krpc_core::NodeInfo::new(id_with(&[i * 6, i]), SocketAddr::from(([50, i, 0, 1], 6881))))
        .collect();
    let v6: Vec<_> = (1..=40u8)
        .map(|i| {
            krpc_core::NodeInfo::new(id_with(&[i * 6, i, 6]), format!("[2001:db8:{i:x}::1]:6881").parse().unwrap())
        })
        .collect();
    for n in v4.iter().chain(&v6) {
        let _ = s.ep.insert_node(s.now, *n); // as many as fit
    }
    let ih = [0x42u8; 20];
    for i in 0..300u32 {
        let from = SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 4000));
        let querier = id_with(&[0xee, i as u8]);
        s.deliver(
            from,
            &query_bytes(b"g", "get_peers", &Dictionary::new().with_bytes("info_hash", ih), Some(&querier), false),
        );
        let token = answers_to(&mut s, from).pop().unwrap().values().token().unwrap().to_vec();
        let args = Dictionary::new()
            .with_bytes("info_hash", ih)
            .with_int("port", 4000)
            .with_int("seed", i64::from(i % 2))
            .with_bytes("token", &token);
        s.deliver(from, &query_bytes(b"a", "announce_peer", &args, Some(&querier), false));
    }
    let _ = s.sent();
    let want = |d: Dictionary| d.with_list_of_bytes("want", ["n4", "n6"]);
    let cases: [(&str, Dictionary, f64); 8] = [
        ("ping", Dictionary::new(), 1.5),
        ("find_node", Dictionary::new().with_bytes("target", ih), 6.0),
        ("find_node", want(Dictionary::new().with_bytes("target", ih)), 6.0),
        ("get_peers", Dictionary::new().with_bytes("info_hash", ih), 12.0),
        ("get_peers", want(Dictionary::new().with_bytes("info_hash", ih)), 12.0),
        ("get_peers", want(Dictionary::new().with_bytes("info_hash", ih).with_int("scrape", 1)), 12.0),
        (
            "announce_peer",
            Dictionary::new().with_bytes("info_hash", ih).with_int("port", 1).with_bytes("token", b"x"),
            1.5,
        ),
        ("sample_infohashes", want(Dictionary::new().with_bytes("target", ih)), 6.0),
    ];
    let from = sa("60.6.6.6:6881");
    for (i, (method, args, bound)) in cases.into_iter().enumerate() {
        // The smallest `t` there is: empty.
        let query = query_bytes(b"", method, &args, Some(&id_with(&[0x33, i as u8])), false);
        s.deliver(from, &query);
        let answer = answers_to(&mut s, from).pop().unwrap_or_else(|| panic!("{method}: no answer"));
        let ratio = answer.bytes.len() as f64 / query.len() as f64;
        assert!(ratio <= bound, "{method}: {} bytes for {} ({ratio:.2}x > {bound}x)", answer.bytes.len(), query.len());
        assert!(answer.bytes.len() <= 1024, "{method}: within max_reply_len");
    }
}

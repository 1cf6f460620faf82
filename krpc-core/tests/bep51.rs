//! BEP 51 `sample_infohashes`, server side: a random sample of stored info-hashes with `num`,
//! `interval` and the closest nodes, drawn again at most once per interval, within the reply
//! budget.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use krpc_core::dht::DhtConfig;
use krpc_core::wire::Dictionary;
use krpc_core::{Config, NodeId, NodeInfo};
use support::{Script, id_with, query_bytes, sa};

fn dht(sample_interval: Duration, max_reply_len: usize) -> Config {
    let dht = DhtConfig { sample_interval, max_reply_len, ..DhtConfig::default() };
    Config { bootstrap: vec![], dht: Some(dht.into()), ..Config::dht() }
}

fn ask(s: &mut Script, from: SocketAddr, method: &str, args: Dictionary) -> support::Sent {
    s.deliver(from, &query_bytes(b"qq", method, &args, Some(&id_with(&[0xee, from.port() as u8])), false));
    s.sent().into_iter().find(|m| m.to == from && !m.is_query()).unwrap_or_else(|| panic!("no answer to {method}"))
}

/// Announces `n` info-hashes from one peer; returns them.
fn announce(s: &mut Script, n: u8) -> HashSet<NodeId> {
    let from = sa("10.7.7.7:5555");
    (0..n)
        .map(|i| {
            let ih = [i.wrapping_mul(13).wrapping_add(1); 20];
            let token = ask(s, from, "get_peers", Dictionary::new().with_bytes("info_hash", ih))
                .values()
                .token()
                .unwrap()
                .to_vec();
            let args = Dictionary::new().with_bytes("info_hash", ih).with_int("port", 6881).with_bytes("token", &token);
            ask(s, from, "announce_peer", args);
            NodeId::from_array(ih)
        })
        .collect()
}

fn sample(s: &mut Script) -> (i64, i64, Vec<NodeId>, usize) {
    let r = ask(s, sa("10.9.9.9:7000"), "sample_infohashes", Dictionary::new().with_bytes("target", [0x42; 20]));
    let v = r.values();
    let samples: Vec<NodeId> = v.samples().expect("samples").collect();
    (v.interval().expect("interval"), v.num().expect("num"), samples, v.nodes().map_or(0, |n| n.count()))
}

#[test]
fn a_sample_of_twenty_stored_info_hashes_with_num_interval_and_nodes() {
    let mut s = Script::new(dht(Duration::from_secs(21_600), 1024));
    let nodes: Vec<_> =
        (1..=8u8).map(|i| NodeInfo::new(id_with(&[i * 30, i]), SocketAddr::from(([10, 1, 0, i], 6881)))).collect();
    s.insert(&nodes);
    let stored = announce(&mut s, 30);
    let (interval, num, samples, node_count) = sample(&mut s);
    assert_eq!(num, 30);
    assert_eq!(interval, 21_600);
    assert_eq!(samples.len(), 20, "as libtorrent: 20 when there are more");
    assert!(samples.iter().all(|h| stored.contains(h)), "only stored info-hashes");
    assert_eq!(samples.iter().collect::<HashSet<_>>().len(), 20, "no repeats");
    assert_eq!(node_count, 8, "and the closest nodes");
}

#[test]
fn the_sample_changes_at_most_once_per_interval() {
    let mut s = Script::new(dht(Duration::from_secs(60), 1024));
    announce(&mut s, 3);
    let (first_interval, num, first, _) = sample(&mut s);
    assert_eq!((first_interval, num, first.len()), (60, 3, 3));
    announce(&mut s, 10);
    s.wait(Duration::from_secs(20));
    let (interval, num, again, _) = sample(&mut s);
    assert_eq!((num, again.len()), (3, 3), "the same sample until the interval passes");
    assert!(interval <= 40, "interval counts down: {interval}");
    s.wait(Duration::from_secs(41));
    let (_, num, fresh, _) = sample(&mut s);
    assert_eq!((num, fresh.len()), (10, 10), "a new sample after the interval");
}

#[test]
fn the_answer_fits_the_reply_budget_and_a_missing_target_is_203() {
    let mut s = Script::new(dht(Duration::from_secs(21_600), 300));
    let nodes: Vec<_> =
        (1..=8u8).map(|i| NodeInfo::new(id_with(&[i * 30, i]), SocketAddr::from(([10, 1, 0, i], 6881)))).collect();
    s.insert(&nodes);
    announce(&mut s, 30);
    let r = ask(&mut s, sa("10.9.9.9:7000"), "sample_infohashes", Dictionary::new().with_bytes("target", [0x42; 20]));
    assert!(r.bytes.len() <= 300, "{} bytes", r.bytes.len());
    assert_eq!(r.values().num(), Some(30));
    let r = ask(&mut s, sa("10.9.9.9:7000"), "sample_infohashes", Dictionary::new());
    assert_eq!(r.error(), (203, b"sample_infohashes requires a.target".to_vec()));
}

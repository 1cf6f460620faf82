//! BEP 44 through the blocking driver: immutable and mutable puts and gets on a small network
//! of `Config::dht()` nodes on 127.0.0.1 (the same cases as krpc-tokio's tests/bep44.rs).

mod common;

use std::ops::ControlFlow;

use common::LOCAL;
use krpc_std::ed25519_dalek::SigningKey;
use krpc_std::{CommandError, Config, Error, Krpc, LookupOutcome, MutableItem, NodeId, QueryError, immutable_target};

/// `n` BEP 5 nodes on 127.0.0.1: the first is the seed every other one bootstraps from.
fn dht_network(n: usize) -> Vec<Krpc> {
    let seed = Krpc::bind(LOCAL, Config::dht()).expect("bind on loopback");
    let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    let mut nodes = vec![seed];
    for _ in 1..n {
        let node = Krpc::bind(LOCAL, config.clone()).expect("bind on loopback");
        assert_eq!(node.bootstrap().expect("bootstrap").outcome, LookupOutcome::Completed);
        nodes.push(node);
    }
    nodes
}

/// Every mutable item `get_mutable` reports, and the most recent.
fn get_mutable(node: &Krpc, key: [u8; 32], salt: &[u8], min_seq: Option<i64>) -> (Vec<i64>, Option<MutableItem>) {
    let mut seen = Vec::new();
    let latest = node
        .get_mutable(key, salt, min_seq, |item| {
            seen.push(item.seq);
            ControlFlow::Continue(())
        })
        .unwrap();
    (seen, latest)
}

#[test]
fn an_immutable_item_put_by_one_node_is_read_by_another() {
    let nodes = dht_network(8);
    let outcome = nodes[2].put_immutable(b"12:Hello World!").unwrap();
    assert_eq!(outcome.target, immutable_target(b"12:Hello World!"));
    assert!(outcome.stored >= 1 && outcome.errors.is_empty(), "{outcome:?}");
    assert_eq!(outcome.seq, None);

    let value = nodes[6].get_immutable(outcome.target).unwrap();
    assert_eq!(value.as_deref(), Some(&b"12:Hello World!"[..]));
    // Nothing stored under another target.
    assert_eq!(nodes[6].get_immutable(immutable_target(b"3:abc")).unwrap(), None);
}

#[test]
fn mutable_items_follow_seq_and_a_lower_seq_is_refused_with_302() {
    let nodes = dht_network(8);
    let key = SigningKey::from_bytes(&[21; 32]);
    let public = key.verifying_key().to_bytes();
    let first = MutableItem::sign(&key, b"salt", 1, b"5:first").unwrap();
    let outcome = nodes[1].put_mutable(first.clone(), None).unwrap();
    assert!(outcome.stored >= 1 && outcome.errors.is_empty(), "{outcome:?}");
    assert_eq!(outcome.seq, Some(1));
    assert_eq!(nodes[5].get_mutable_most_recent(public, b"salt").unwrap(), Some(first.clone()));
    assert_eq!(nodes[5].get_mutable_most_recent(public, b"other").unwrap(), None, "the salt is the reader's");

    // Read-modify-write: the network holds seq 1, so this is seq 2 with cas 1.
    let outcome = nodes[3].put_mutable_next(&key, b"salt", b"6:second").unwrap();
    assert_eq!(outcome.seq, Some(2));
    assert!(outcome.stored >= 1 && outcome.errors.is_empty(), "{outcome:?}");
    let (seen, latest) = get_mutable(&nodes[7], public, b"salt", Some(2));
    assert!(!seen.is_empty() && seen.iter().all(|&seq| seq == 2), "{seen:?}");
    let latest = latest.expect("seq 2 found");
    assert_eq!((latest.seq, &latest.value[..]), (2, &b"6:second"[..]));
    assert_eq!(get_mutable(&nodes[7], public, b"salt", Some(3)), (Vec::new(), None), "nothing as new as seq 3");

    // Putting seq 1 again: every node that holds seq 2 refuses with 302, and the caller sees
    // each refusal with its node's address. Only the writer of seq 2, which did not put it
    // to itself and still holds seq 1, may take it (as a republish).
    let outcome = nodes[4].put_mutable(first, None).unwrap();
    assert!(outcome.stored <= 1, "{outcome:?}");
    assert!(!outcome.errors.is_empty() && outcome.errors.iter().all(|e| e.code == 302), "{outcome:?}");
    let addrs: Vec<_> = nodes.iter().map(Krpc::local_addr).collect();
    assert!(outcome.errors.iter().all(|e| addrs.contains(&e.from)), "{outcome:?}");

    // A cas that is not the stored seq: 301.
    let third = MutableItem::sign(&key, b"salt", 3, b"5:third").unwrap();
    let outcome = nodes[4].put_mutable(third, Some(1)).unwrap();
    assert!(outcome.stored <= 1, "{outcome:?}");
    assert!(outcome.errors.iter().any(|e| e.code == 301), "{outcome:?}");
}

#[test]
fn invalid_items_are_refused_before_anything_is_sent() {
    let nodes = dht_network(2);
    let sent = || nodes[1].inspect(|endpoint| endpoint.stats().queries_out).unwrap();
    let before = sent();
    let result = nodes[1].put_immutable(b"not bencode");
    assert!(matches!(result, Err(Error::Refused(CommandError::InvalidItem(_)))), "{result:?}");
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut forged = MutableItem::sign(&key, b"", 1, b"1:a").unwrap();
    forged.value = b"1:b".to_vec();
    let result = nodes[1].put_mutable(forged, None);
    assert!(matches!(result, Err(Error::Refused(CommandError::InvalidItem(_)))), "{result:?}");
    let result = nodes[1].put_mutable_next(&key, &[0; 65], b"1:a");
    assert!(matches!(result, Err(Error::Refused(CommandError::InvalidItem(_)))), "{result:?}");
    assert_eq!(sent(), before);
}

#[test]
fn a_put_without_any_node_fails_with_no_nodes() {
    let lonely = Krpc::bind(LOCAL, Config::dht()).unwrap();
    let result = lonely.put_immutable(b"1:a");
    assert!(matches!(result, Err(Error::Query(QueryError::NoNodes))), "{result:?}");
    let key = SigningKey::from_bytes(&[5; 32]);
    let result = lonely.put_mutable_next(&key, b"", b"1:a");
    assert!(matches!(result, Err(Error::Query(QueryError::NoNodes))), "{result:?}");
    // A get with no node to ask ends empty.
    assert_eq!(lonely.get_immutable(NodeId::from_array([1; 20])).unwrap(), None);
}

#[test]
fn break_from_get_mutable_stops_the_lookup() {
    let nodes = dht_network(6);
    let key = SigningKey::from_bytes(&[9; 32]);
    nodes[1].put_mutable_next(&key, b"", b"1:x").unwrap();
    let mut calls = 0;
    let latest = nodes[4]
        .get_mutable(key.verifying_key().to_bytes(), b"", None, |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(calls, 1, "no call after Break");
    assert_eq!(latest.map(|item| item.seq), Some(1));
}

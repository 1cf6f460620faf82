//! BEP 44 through the tokio driver: immutable and mutable puts and gets on a small network of
//! `Config::dht()` nodes on 127.0.0.1 (the same cases as krpc-std's tests/bep44.rs).

use krpc_tokio::ed25519_dalek::SigningKey;
use krpc_tokio::{CommandError, Config, Error, LookupOutcome, MutableItem, NodeId, QueryError, Rpc, immutable_target};

/// `n` BEP 5 nodes on 127.0.0.1: the first is the seed every other one bootstraps from.
async fn dht_network(n: usize) -> Vec<Rpc> {
    let seed = Rpc::bind("127.0.0.1:0", Config::dht()).await.expect("bind on loopback");
    let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    let mut nodes = vec![seed];
    for _ in 1..n {
        let node = Rpc::bind("127.0.0.1:0", config.clone()).await.expect("bind on loopback");
        assert_eq!(node.bootstrap().await.expect("bootstrap").outcome, LookupOutcome::Completed);
        nodes.push(node);
    }
    nodes
}

/// Every mutable item `get_mutable` yields (their `seq`), and the most recent.
async fn get_mutable(node: &Rpc, key: [u8; 32], salt: &[u8], min_seq: Option<i64>) -> (Vec<i64>, Option<MutableItem>) {
    let mut items = node.get_mutable(key, salt, min_seq).await.unwrap();
    let mut seen = Vec::new();
    while let Some(item) = items.next().await {
        seen.push(item.seq);
    }
    let summary = items.end().cloned().expect("ended");
    assert_eq!(summary.outcome, LookupOutcome::Completed);
    (seen, summary.mutable())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_item_put_by_one_node_is_read_by_another() {
    let nodes = dht_network(8).await;
    let outcome = nodes[2].put_immutable(b"12:Hello World!").await.unwrap();
    assert_eq!(outcome.target, immutable_target(b"12:Hello World!"));
    assert!(outcome.stored >= 1 && outcome.errors.is_empty(), "{outcome:?}");
    assert_eq!(outcome.seq, None);

    let value = nodes[6].get_immutable(outcome.target).await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"12:Hello World!"[..]));
    assert_eq!(nodes[6].get_immutable(immutable_target(b"3:abc")).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_items_follow_seq_and_a_lower_seq_is_refused_with_302() {
    let nodes = dht_network(8).await;
    let key = SigningKey::from_bytes(&[21; 32]);
    let public = key.verifying_key().to_bytes();
    let first = MutableItem::sign(&key, b"salt", 1, b"5:first").unwrap();
    let outcome = nodes[1].put_mutable(first.clone(), None).await.unwrap();
    assert!(outcome.stored >= 1 && outcome.errors.is_empty(), "{outcome:?}");
    assert_eq!(outcome.seq, Some(1));
    let latest = nodes[5].get_mutable(public, "salt", None).await.unwrap().most_recent().await;
    assert_eq!(latest, Some(first.clone()));
    let other = nodes[5].get_mutable(public, "other", None).await.unwrap().most_recent().await;
    assert_eq!(other, None, "the salt is the reader's");

    // Read-modify-write: the network holds seq 1, so this is seq 2 with cas 1.
    let outcome = nodes[3].put_mutable_next(&key, "salt", "6:second").await.unwrap();
    assert_eq!(outcome.seq, Some(2));
    assert!(outcome.stored >= 1 && outcome.errors.is_empty(), "{outcome:?}");
    let (seen, latest) = get_mutable(&nodes[7], public, b"salt", Some(2)).await;
    assert!(!seen.is_empty() && seen.iter().all(|&seq| seq == 2), "{seen:?}");
    let latest = latest.expect("seq 2 found");
    assert_eq!((latest.seq, &latest.value[..]), (2, &b"6:second"[..]));
    assert_eq!(get_mutable(&nodes[7], public, b"salt", Some(3)).await, (Vec::new(), None), "nothing as new as seq 3");

    // Putting seq 1 again: every node that holds seq 2 refuses with 302, and the caller sees
    // each refusal with its node's address. Only the writer of seq 2, which did not put it
    // to itself and still holds seq 1, may take it (as a republish).
    let outcome = nodes[4].put_mutable(first, None).await.unwrap();
    assert!(outcome.stored <= 1, "{outcome:?}");
    assert!(!outcome.errors.is_empty() && outcome.errors.iter().all(|e| e.code == 302), "{outcome:?}");
    let addrs: Vec<_> = nodes.iter().map(Rpc::local_addr).collect();
    assert!(outcome.errors.iter().all(|e| addrs.contains(&e.from)), "{outcome:?}");

    // A cas that is not the stored seq: 301.
    let third = MutableItem::sign(&key, b"salt", 3, b"5:third").unwrap();
    let outcome = nodes[4].put_mutable(third, Some(1)).await.unwrap();
    assert!(outcome.stored <= 1, "{outcome:?}");
    assert!(outcome.errors.iter().any(|e| e.code == 301), "{outcome:?}");
}

#[tokio::test]
async fn invalid_items_are_refused_before_anything_is_sent() {
    let nodes = dht_network(2).await;
    let sent = || nodes[1].inspect(|endpoint| endpoint.stats().queries_out);
    let before = sent().await.unwrap();
    let result = nodes[1].put_immutable(b"not bencode").await;
    assert!(matches!(result, Err(Error::Refused(CommandError::InvalidItem(_)))), "{result:?}");
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut forged = MutableItem::sign(&key, b"", 1, b"1:a").unwrap();
    forged.value = b"1:b".to_vec();
    let result = nodes[1].put_mutable(forged, None).await;
    assert!(matches!(result, Err(Error::Refused(CommandError::InvalidItem(_)))), "{result:?}");
    let result = nodes[1].put_mutable_next(&key, [0; 65], "1:a").await;
    assert!(matches!(result, Err(Error::Refused(CommandError::InvalidItem(_)))), "{result:?}");
    let result = nodes[1].get_mutable(key.verifying_key().to_bytes(), [0; 65], None).await;
    assert!(matches!(result, Err(Error::Refused(CommandError::InvalidItem(_)))), "{:?}", result.err());
    assert_eq!(sent().await.unwrap(), before);
}

#[tokio::test]
async fn a_put_without_any_node_fails_with_no_nodes() {
    let lonely = Rpc::bind("127.0.0.1:0", Config::dht()).await.unwrap();
    let result = lonely.put_immutable("1:a").await;
    assert!(matches!(result, Err(Error::Query(QueryError::NoNodes))), "{result:?}");
    let key = SigningKey::from_bytes(&[5; 32]);
    let result = lonely.put_mutable_next(&key, "", "1:a").await;
    assert!(matches!(result, Err(Error::Query(QueryError::NoNodes))), "{result:?}");
    assert_eq!(lonely.get_immutable(NodeId::from_array([1; 20])).await.unwrap(), None);
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // the test's own socket, on loopback
async fn shutdown_ends_a_get_and_a_put_with_shut_down() {
    // A bootstrap node that never answers: the lookups wait until the shutdown.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = Config { bootstrap: vec![silent.local_addr().unwrap()], ..Config::dht() };
    let node = Rpc::bind("127.0.0.1:0", config).await.unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut items = node.get_mutable(key.verifying_key().to_bytes(), "", None).await.unwrap();
    let put = tokio::spawn({
        let node = node.clone();
        async move { node.put_immutable("1:a").await }
    });
    // The put has started once the engine runs two operations.
    while node.inspect(|endpoint| endpoint.operations()).await.unwrap() < 2 {
        tokio::task::yield_now().await;
    }
    node.shutdown().await;
    while items.next().await.is_some() {}
    assert_eq!(items.end().map(|summary| summary.outcome), Some(LookupOutcome::ShutDown));
    assert!(put.await.unwrap().unwrap_err().is_shut_down());
    assert!(node.get_immutable(NodeId::from_array([1; 20])).await.unwrap_err().is_shut_down());
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // the test's own socket, on loopback
async fn dropping_a_get_stream_or_future_stops_the_lookup() {
    // A bootstrap node that never answers: the lookups would wait for it.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = Config { bootstrap: vec![silent.local_addr().unwrap()], ..Config::dht() };
    let node = Rpc::bind("127.0.0.1:0", config).await.unwrap();
    let operations = || node.inspect(|endpoint| endpoint.operations());

    let items = node.get_mutable([1; 32], "", None).await.unwrap();
    assert_eq!(operations().await.unwrap(), 1);
    drop(items);
    // The stop goes to the task before this inspection: commands are applied in order.
    assert_eq!(operations().await.unwrap(), 0);

    let get = tokio::spawn({
        let node = node.clone();
        async move { node.get_immutable(NodeId::from_array([2; 20])).await }
    });
    while operations().await.unwrap() == 0 {
        tokio::task::yield_now().await;
    }
    get.abort();
    assert!(get.await.unwrap_err().is_cancelled());
    assert_eq!(operations().await.unwrap(), 0);
}

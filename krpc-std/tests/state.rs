//! Saved state through the blocking driver (the same cases as krpc-tokio's tests/state.rs):
//! a node restarted from its state file rejoins with no bootstrap host, a broken file means
//! a fresh start, and a failed save leaves the old file whole. Also `bootstrap_hosts` with a
//! name that does not resolve.
#![allow(clippy::disallowed_methods)] // the test waits on its own thread for the rejoin

mod common;

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use common::LOCAL;
use krpc_std::{
    Builder, Config, Error, Krpc, LookupOutcome, NodeId, SavedState, load_state_file, save_state_file, temp_path,
};

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

/// A fresh directory of this test's own in the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("krpc-std-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A host name that fails to resolve without asking any DNS server: a label longer than
/// DNS's 63 bytes is refused by the resolver before it sends anything.
fn unresolvable() -> String {
    format!("{}.invalid:6881", "x".repeat(64))
}

#[test]
fn a_node_restarted_from_its_state_file_rejoins_with_no_bootstrap_host() {
    let nodes = dht_network(6);
    let file = scratch("restart").join("dht.state");
    let node = &nodes[5];
    node.save_state_file(&file).unwrap();
    let saved = load_state_file(&file).unwrap();
    assert_eq!(saved.id, node.id());
    assert!(saved.nodes.len() >= 3, "{saved:?}");
    node.shutdown();

    let info_hash = NodeId::from_array([0x42; 20]);
    assert!(nodes[1].announce(info_hash, Some(6000), false).unwrap() >= 1);

    // No bootstrap host: the saved nodes are all it has.
    let restarted = Builder::new(Config::dht()).state_file(&file).bind(LOCAL).unwrap();
    assert_eq!(restarted.id(), saved.id, "the id survives the restart");
    assert!(restarted.inspect(|e| e.config().bootstrap.is_empty()).unwrap());
    // The driver rejoined through them by itself: someone answered it before we asked
    // anything. (Waits for the loopback round trip; fails only if none comes in 10 s.)
    let mut answered = 0;
    for _ in 0..500 {
        answered = restarted.inspect(|e| e.stats().replies_in).unwrap();
        if answered > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(answered > 0, "the restored node never rejoined");
    let mut peers = Vec::new();
    let summary = restarted
        .get_peers(info_hash, |peer| {
            peers.push(peer);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(peers, vec![SocketAddr::new(nodes[1].local_addr().ip(), 6000)]);
    assert_eq!(summary.outcome, LookupOutcome::Completed);
}

#[test]
fn a_missing_or_broken_state_file_means_a_fresh_start() {
    let dir = scratch("broken");
    let nodes = dht_network(3);
    let good = nodes[2].save_state().unwrap();
    assert!(!good.nodes.is_empty());
    let bytes = good.encode();
    let foreign = String::from_utf8_lossy(&bytes).replace("7:versioni1e", "7:versioni99e");
    assert_ne!(foreign.as_bytes(), &bytes[..], "the version field was found");
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"not a state at all".to_vec()),
        ("truncated", bytes[..bytes.len() - 7].to_vec()),
        ("foreign", foreign.into_bytes()),
        ("empty", Vec::new()),
    ];
    for (name, contents) in cases {
        let file = dir.join(name);
        std::fs::write(&file, &contents).unwrap();
        assert!(load_state_file(&file).is_err(), "{name}");
        let krpc = Builder::new(Config::dht()).state_file(&file).bind(LOCAL).unwrap();
        assert_ne!(krpc.id(), good.id, "{name}: a fresh id");
        assert_eq!(krpc.routing_table().unwrap().len(), 0, "{name}: no node");
        // Loading never touches the file.
        assert_eq!(std::fs::read(&file).unwrap(), contents, "{name}");
        krpc.shutdown();
    }
    let missing = dir.join("missing");
    assert!(load_state_file(&missing).unwrap_err().is_missing());
    let krpc = Builder::new(Config::dht()).state_file(&missing).bind(LOCAL).unwrap();
    assert_eq!(krpc.routing_table().unwrap().len(), 0);
    assert!(!missing.exists());
}

#[test]
fn a_save_that_fails_midway_leaves_the_old_file_whole() {
    let dir = scratch("failed-save");
    let file = dir.join("dht.state");
    let old = SavedState { id: NodeId::from_array([1; 20]), nodes: Vec::new() };
    save_state_file(&file, &old).unwrap();
    let before = std::fs::read(&file).unwrap();
    assert!(!temp_path(&file).exists(), "the temporary file was renamed");

    // A directory where the temporary file goes: the write fails before any rename (the
    // tests may run as root, for whom permissions would not stop the write).
    std::fs::create_dir(temp_path(&file)).unwrap();
    let nodes = dht_network(3);
    let error = nodes[2].save_state_file(&file).unwrap_err();
    assert!(matches!(error, Error::Io(_)), "{error}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(SavedState::decode(&before).unwrap(), old);

    // Once the way is clear, the new state replaces the old one whole.
    std::fs::remove_dir(temp_path(&file)).unwrap();
    nodes[2].save_state_file(&file).unwrap();
    assert_eq!(load_state_file(&file).unwrap().id, nodes[2].id());
}

#[test]
fn bootstrap_hosts_skip_a_name_that_does_not_resolve_if_another_does() {
    let router = Krpc::bind(LOCAL, Config::dht()).unwrap();
    let krpc = Builder::new(Config::dht())
        .bootstrap_hosts([unresolvable(), router.local_addr().to_string()])
        .bind(LOCAL)
        .unwrap();
    let bootstrap = krpc.inspect(|endpoint| endpoint.config().bootstrap.clone()).unwrap();
    assert_eq!(bootstrap, vec![router.local_addr()]);

    let error = Builder::new(Config::dht()).bootstrap_hosts([unresolvable()]).bind(LOCAL).unwrap_err();
    assert!(matches!(error, Error::Resolve { .. }), "{error}");
}

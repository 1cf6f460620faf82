//! Saved state through the driver: a node restarted from its state file rejoins with no
//! bootstrap host, a broken file means a fresh start, and a failed save leaves the old file
//! whole. Also `bootstrap_hosts` with a name that does not resolve.

use std::path::PathBuf;

use krpc_tokio::{Config, LookupOutcome, NodeId, Rpc, SavedState, save_state_file, temp_path};

/// `n` BEP 5 nodes on 127.0.0.1: the first is the seed every other one bootstraps from.
async fn dht_network(n: usize) -> Vec<Rpc> {
    let seed = Rpc::bind("127.0.0.1:0", Config::dht()).await.expect("bind on loopback");
    let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    let mut nodes = vec![seed];
    for _ in 1..n {
        let node = Rpc::bind("127.0.0.1:0", config.clone()).await.expect("bind on loopback");
        let joined = node.bootstrap().await.expect("bootstrap");
        assert_eq!(joined.outcome, LookupOutcome::Completed);
        nodes.push(node);
    }
    nodes
}

/// A fresh directory of this test's own in the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("krpc-tokio-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A host name that fails to resolve without asking any DNS server: a label longer than
/// DNS's 63 bytes is refused by the resolver before it sends anything.
fn unresolvable() -> String {
    format!("{}.invalid:6881", "x".repeat(64))
}

async fn replies_in(rpc: &Rpc) -> u64 {
    rpc.inspect(|endpoint| endpoint.stats().replies_in).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_from_its_state_file_rejoins_with_no_bootstrap_host() {
    let nodes = dht_network(6).await;
    let file = scratch("restart").join("dht.state");
    let node = &nodes[5];
    node.save_state_file(&file).await.unwrap();
    let saved = krpc_tokio::load_state_file(&file).unwrap();
    assert_eq!(saved.id, node.id());
    assert!(saved.nodes.len() >= 3, "{saved:?}");
    node.shutdown().await;

    let info_hash = NodeId::from_array([0x42; 20]);
    assert!(nodes[1].announce(info_hash, Some(6000), false).await.unwrap() >= 1);

    // No bootstrap host: the saved nodes are all it has.
    let restarted = Rpc::builder(Config::dht()).state_file(&file).bind("127.0.0.1:0").await.unwrap();
    assert_eq!(restarted.id(), saved.id, "the id survives the restart");
    assert!(restarted.inspect(|e| e.config().bootstrap.is_empty()).await.unwrap());
    // The driver rejoined through them by itself: someone answered it before we asked
    // anything. (Waits for the loopback round trip; fails only if none comes in 10 s.)
    let mut answered = 0;
    for _ in 0..500 {
        answered = replies_in(&restarted).await;
        if answered > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(answered > 0, "the restored node never rejoined");
    let (peers, summary) = restarted.get_peers(info_hash).await.unwrap().finish().await;
    assert_eq!(peers, vec![std::net::SocketAddr::new(nodes[1].local_addr().ip(), 6000)]);
    assert_eq!(summary.outcome, LookupOutcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_broken_state_file_means_a_fresh_start() {
    let dir = scratch("broken");
    let nodes = dht_network(3).await;
    let good = nodes[2].save_state().await.unwrap();
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
        assert!(krpc_tokio::load_state_file(&file).is_err(), "{name}");
        let rpc = Rpc::builder(Config::dht()).state_file(&file).bind("127.0.0.1:0").await.unwrap();
        assert_ne!(rpc.id(), good.id, "{name}: a fresh id");
        assert_eq!(rpc.routing_table().await.unwrap().len(), 0, "{name}: no node");
        // Loading never touches the file.
        assert_eq!(std::fs::read(&file).unwrap(), contents, "{name}");
        rpc.shutdown().await;
    }
    let missing = dir.join("missing");
    assert!(krpc_tokio::load_state_file(&missing).unwrap_err().is_missing());
    let rpc = Rpc::builder(Config::dht()).state_file(&missing).bind("127.0.0.1:0").await.unwrap();
    assert_eq!(rpc.routing_table().await.unwrap().len(), 0);
    assert!(!missing.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_fails_midway_leaves_the_old_file_whole() {
    let dir = scratch("failed-save");
    let file = dir.join("dht.state");
    let old = SavedState { id: NodeId::from_array([1; 20]), nodes: Vec::new() };
    save_state_file(&file, &old).unwrap();
    let before = std::fs::read(&file).unwrap();
    assert!(!temp_path(&file).exists(), "the temporary file was renamed");

    // A directory where the temporary file goes: the write fails before any rename (the
    // tests may run as root, for whom permissions would not stop the write).
    std::fs::create_dir(temp_path(&file)).unwrap();
    let nodes = dht_network(3).await;
    let error = nodes[2].save_state_file(&file).await.unwrap_err();
    assert_eq!(std::fs::read(&file).unwrap(), before, "{error}");
    assert_eq!(SavedState::decode(&before).unwrap(), old);

    // Once the way is clear, the new state replaces the old one whole.
    std::fs::remove_dir(temp_path(&file)).unwrap();
    nodes[2].save_state_file(&file).await.unwrap();
    assert_eq!(krpc_tokio::load_state_file(&file).unwrap().id, nodes[2].id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_hosts_skip_a_name_that_does_not_resolve_if_another_does() {
    let router = Rpc::bind("127.0.0.1:0", Config::dht()).await.unwrap();
    let rpc = Rpc::builder(Config::dht())
        .bootstrap_hosts([unresolvable(), router.local_addr().to_string()])
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let bootstrap = rpc.inspect(|endpoint| endpoint.config().bootstrap.clone()).await.unwrap();
    assert_eq!(bootstrap, vec![router.local_addr()]);

    let error = Rpc::builder(Config::dht()).bootstrap_hosts([unresolvable()]).bind("127.0.0.1:0").await.unwrap_err();
    assert!(error.to_string().contains("resolving bootstrap host"), "{error}");
}

/// Milliseconds since `start`.
#[allow(clippy::disallowed_methods)] // a measurement reads the clock
fn ms(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Starts with `make` and runs `get_peers(info_hash)` until it yields `peer`: the time from
/// before the bind until then, in ms, the queries the node had sent by then (its join
/// included), and the node (kept running, so that the swarm holds
/// no dead node that lookups would wait for).
async fn time_to_useful<F, Fut>(info_hash: NodeId, peer: std::net::SocketAddr, make: F) -> (f64, f64, Rpc)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Rpc>,
{
    #[allow(clippy::disallowed_methods)] // a measurement reads the clock
    let start = std::time::Instant::now();
    let rpc = make().await;
    let mut peers = rpc.get_peers(info_hash).await.unwrap();
    let mut found = false;
    while let Some(p) = peers.next().await {
        if p == peer {
            found = true;
            break;
        }
    }
    let elapsed = ms(start);
    assert!(found, "the announced peer was not found");
    let queries = rpc.inspect(|endpoint| endpoint.stats().queries_out).await.unwrap();
    (elapsed, queries as f64, rpc)
}

/// The measurement in docs/performance.md ("Restarting from a saved state"): time to the
/// first useful result (a `get_peers` that finds an announced peer) for a node restarted
/// from a saved state with no bootstrap host, against a fresh node joining through one
/// bootstrap node. `cargo test -p krpc-tokio --test state -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints medians"]
#[allow(clippy::print_stdout)] // the measurement's output
async fn measure_time_to_useful_from_a_saved_state_and_through_one_bootstrap_node() {
    const NODES: usize = 64;
    const RUNS: usize = 15;
    let nodes = dht_network(NODES).await;
    let info_hash = NodeId::from_array([0x3c; 20]);
    assert!(nodes[NODES / 2].announce(info_hash, Some(7000), false).await.unwrap() >= 1);
    let peer = std::net::SocketAddr::new(nodes[NODES / 2].local_addr().ip(), 7000);
    let seed = nodes[0].local_addr();
    let (mut fresh_join_first, mut fresh_direct, mut restored, mut running) =
        ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()], [Vec::new(), Vec::new()], Vec::new());
    for _ in 0..RUNS {
        // A node that was in the swarm: joined, saved its state, stopped; it restarts on the
        // same address, as `krpc serve --bind ADDR --state FILE` does.
        let before = Rpc::bind("127.0.0.1:0", Config { bootstrap: vec![seed], ..Config::dht() }).await.unwrap();
        before.bootstrap().await.unwrap();
        let state = before.save_state().await.unwrap();
        let addr = before.local_addr();
        before.shutdown().await;
        let (ms, queries, rpc) = time_to_useful(info_hash, peer, || async {
            Rpc::builder(Config::dht()).state(state).bind(addr).await.unwrap()
        })
        .await;
        restored[0].push(ms);
        restored[1].push(queries);
        running.push(rpc);
        let through_seed = || Config { bootstrap: vec![seed], ..Config::dht() };
        let (ms, queries, rpc) = time_to_useful(info_hash, peer, || async {
            let rpc = Rpc::bind("127.0.0.1:0", through_seed()).await.unwrap();
            rpc.bootstrap().await.unwrap();
            rpc
        })
        .await;
        fresh_join_first[0].push(ms);
        fresh_join_first[1].push(queries);
        running.push(rpc);
        let (ms, queries, rpc) =
            time_to_useful(info_hash, peer, || async { Rpc::bind("127.0.0.1:0", through_seed()).await.unwrap() }).await;
        fresh_direct[0].push(ms);
        fresh_direct[1].push(queries);
        running.push(rpc);
    }
    println!("{NODES} nodes, {RUNS} runs each, medians until a get_peers finds the peer:");
    for (what, [times, queries]) in [
        ("restored from a saved state, no bootstrap host", restored),
        ("fresh, bootstrap() through one node, then get_peers", fresh_join_first),
        ("fresh, get_peers at once through one bootstrap node", fresh_direct),
    ] {
        println!("  {what}: {:.2} ms, {} queries sent", median(times), median(queries));
    }
}

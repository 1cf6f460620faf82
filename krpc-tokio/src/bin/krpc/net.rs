//! The commands that talk to a network: `ping`, `find-node`, `get-peers`, `announce`, `serve`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use krpc_tokio::{Config, NodeId, RateLimit, Reachability, Rpc, SavedState};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::out::{Failure, Out, Progress, count, done, millis, ms_since, stats};
use crate::{ClientArgs, ServeArgs};

/// Resolves `host:port` / `[v6]:port` names, each to all its addresses. A name that does not
/// resolve is skipped with a note as long as another one does: a list of routers where one
/// is gone (or mistyped) still works. None at all is a failure.
pub(crate) async fn resolve(out: &Out, names: &[String]) -> Result<Vec<SocketAddr>, Failure> {
    let mut addrs = Vec::new();
    let mut failed = Vec::new();
    for name in names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(resolved) => {
                let before = addrs.len();
                for addr in resolved {
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
                if addrs.len() == before {
                    failed.push(format!("{name}: no address"));
                }
            }
            Err(error) => failed.push(format!("{name}: {error}")),
        }
    }
    if addrs.is_empty() && !failed.is_empty() {
        return Err(Failure::new(format!("cannot resolve {}", failed.join("; "))));
    }
    for failure in &failed {
        out.note(&format!("cannot resolve {failure}; going on with the other addresses"));
    }
    Ok(addrs)
}

/// Whether a socket bound to `local` can send to `peer`: the same family, or an IPv6
/// wildcard socket, which reaches IPv4 peers through mapped addresses.
fn reachable(local: SocketAddr, peer: SocketAddr) -> bool {
    match (local, peer) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => true,
        (SocketAddr::V6(local), SocketAddr::V4(_)) => local.ip().is_unspecified(),
        (SocketAddr::V4(_), SocketAddr::V6(_)) => false,
    }
}

/// Keeps the peers a socket on `bind` can reach; none is a usage error (exit code 2) that
/// says why, rather than the socket's bare "cannot send" later.
fn reachable_from(out: &Out, bind: SocketAddr, peers: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Failure> {
    let (ok, other): (Vec<_>, Vec<_>) = peers.into_iter().partition(|peer| reachable(bind, *peer));
    if ok.is_empty() && !other.is_empty() {
        return Err(Failure::usage(format!(
            "--bind {bind} cannot reach {}: another address family; give a --bind of their family, or none",
            list(&other)
        )));
    }
    if !other.is_empty() {
        out.note(&format!("--bind {bind} cannot reach {} (another address family); skipped", list(&other)));
    }
    Ok(ok)
}

/// `a, b, c`.
fn list(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The failure of a one-shot command whose bootstrap nodes all stayed silent.
pub(crate) fn nobody_answered(command: &str, bootstrap: &[SocketAddr]) -> Failure {
    Failure::new(format!("{command}: no node answered; no reply from the bootstrap nodes ({})", list(bootstrap)))
}

/// Port 0 on every interface of the family the peers need: IPv4 unless one of them is IPv6
/// (an IPv6 socket reaches IPv4 peers too, through mapped addresses).
fn any_addr(peers: &[SocketAddr]) -> SocketAddr {
    if peers.iter().any(SocketAddr::is_ipv6) {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

/// A short-lived node for one operation: the node layer (BEP 5 defaults) in read-only mode
/// (BEP 43: the nodes we ask do not put us in their routing tables, since we leave at once).
pub(crate) async fn client(out: &Out, bootstrap: Vec<SocketAddr>, bind: Option<SocketAddr>) -> Result<Rpc, Failure> {
    let bind = bind.unwrap_or_else(|| any_addr(&bootstrap));
    let bootstrap = reachable_from(out, bind, bootstrap)?;
    let config = Config { bootstrap, read_only: true, ..Config::dht() };
    Rpc::bind(bind, config).await.map_err(|error| Failure::new(format!("cannot bind {bind}: {error}")))
}

/// The client and the bootstrap addresses it starts from.
pub(crate) async fn joined_client(out: &Out, args: &ClientArgs) -> Result<(Rpc, Vec<SocketAddr>), Failure> {
    let bootstrap = resolve(out, &args.bootstrap).await?;
    let rpc = client(out, bootstrap, args.bind).await?;
    let bootstrap = rpc.inspect(|endpoint| endpoint.config().bootstrap.clone()).await.unwrap_or_default();
    Ok((rpc, bootstrap))
}

pub(crate) async fn ping(out: &Out, addr: &str, bind: Option<SocketAddr>) -> Result<(), Failure> {
    let resolved = resolve(out, &[addr.to_owned()]).await?;
    let bind = bind.unwrap_or_else(|| any_addr(&resolved));
    let to = *reachable_from(out, bind, resolved)?.first().ok_or_else(|| Failure::new("no address"))?;
    let started = Instant::now();
    let rpc = client(out, Vec::new(), Some(bind)).await?;
    let sent = Instant::now();
    let reply = rpc.ping(to).await.map_err(|error| Failure::new(format!("no reply from {to}: {error}")))?;
    let rtt = millis(sent.elapsed());
    let id = reply.id().map(|id| id.to_string());
    out.emit(json!({ "event": "pong", "addr": reply.from().to_string(), "id": id, "rtt_ms": rtt }), || {
        format!("pong from {} id {} in {rtt:.3} ms", reply.from(), id.as_deref().unwrap_or("(none)"))
    });
    done(out, "ping", &rpc, started, json!({}), None).await;
    rpc.shutdown().await;
    Ok(())
}

/// BEP 51 against one node: `interval`, `num`, then one line per sampled info-hash.
pub(crate) async fn sample(out: &Out, addr: &str, bind: Option<SocketAddr>) -> Result<(), Failure> {
    let resolved = resolve(out, &[addr.to_owned()]).await?;
    let bind = bind.unwrap_or_else(|| any_addr(&resolved));
    let to = *reachable_from(out, bind, resolved)?.first().ok_or_else(|| Failure::new("no address"))?;
    let started = Instant::now();
    let rpc = client(out, Vec::new(), Some(bind)).await?;
    // Any target will do: the samples are the node's own; the target only picks `nodes`.
    let target = rpc.id();
    let reply = rpc
        .query(to, krpc_tokio::Query::sample_infohashes(&target))
        .await
        .map_err(|error| Failure::new(format!("no sample from {to}: {error}")))?;
    let message = reply.message();
    let Some(fields) = message.as_response() else {
        rpc.shutdown().await;
        return Err(Failure::new(format!("{to} sent no response")));
    };
    let (Some(interval), Some(num), Some(samples)) = (fields.interval(), fields.num(), fields.samples()) else {
        rpc.shutdown().await;
        return Err(Failure::new(format!("{to} does not support BEP 51 (no interval, num and samples in its answer)")));
    };
    let samples: Vec<String> = samples.map(|h| h.to_string()).collect();
    out.emit(json!({ "event": "sample", "addr": to.to_string(), "interval": interval, "num": num, "samples": samples.len() }), || {
        format!("interval {interval}\nnum {num}")
    });
    for hash in &samples {
        out.emit(json!({ "event": "infohash", "infohash": hash }), || hash.clone());
    }
    done(out, "sample", &rpc, started, json!({}), None).await;
    rpc.shutdown().await;
    Ok(())
}

pub(crate) async fn find_node(out: &Out, target: NodeId, args: ClientArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (rpc, bootstrap) = joined_client(out, &args).await?;
    let progress = Progress::start(out, &rpc, "find_node", Some("nodes answered"));
    let mut lookup = rpc.find_node(target).await.map_err(|error| Failure::new(format!("find_node: {error}")))?;
    while lookup.next().await.is_some() {
        progress.bump();
    }
    progress.finish().await;
    let summary = lookup.end().cloned().ok_or_else(|| Failure::new("find_node: the lookup did not end"))?;
    if summary.closest.is_empty() {
        rpc.shutdown().await;
        return Err(nobody_answered("find_node", &bootstrap));
    }
    for found in &summary.closest {
        let (id, addr) = (found.node.id, found.node.addr);
        out.emit(json!({ "event": "node", "id": id.to_string(), "addr": addr.to_string() }), || {
            let mark = if id == target { "  <- target" } else { "" };
            format!("{id} {addr}{mark}")
        });
    }
    let exact = summary.closest[0].node.id == target;
    let text = format!(
        "closest {} from {}; target {}",
        count(summary.closest.len(), "node", "nodes"),
        count(summary.replies, "answer", "answers"),
        if exact { "found" } else { "not in the network" }
    );
    let extra = json!({ "nodes": summary.closest.len(), "answered": summary.replies, "found": exact });
    done(out, "find-node", &rpc, started, extra, Some(text)).await;
    rpc.shutdown().await;
    Ok(())
}

pub(crate) async fn get_peers(out: &Out, info_hash: NodeId, args: ClientArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (rpc, bootstrap) = joined_client(out, &args).await?;
    let progress = Progress::start(out, &rpc, "get_peers", Some("peers"));
    let mut peers = rpc.get_peers(info_hash).await.map_err(|error| Failure::new(format!("get_peers: {error}")))?;
    while let Some(peer) = peers.next().await {
        progress.bump();
        out.emit(json!({ "event": "peer", "addr": peer.to_string() }), || format!("{peer}"));
    }
    progress.finish().await;
    let found = peers.found();
    let summary = peers.end().cloned().ok_or_else(|| Failure::new("get_peers: the lookup did not end"))?;
    let tokens = summary.closest.iter().filter(|node| node.token.is_some()).count();
    let extra = json!({ "peers": found, "answered": summary.replies, "tokens": tokens });
    let text = format!("{} from {}", count(found, "peer", "peers"), count(summary.replies, "node", "nodes"));
    let outcome = match (found, summary.replies) {
        (0, 0) => Err(nobody_answered("get_peers", &bootstrap)),
        (0, _) => Err(Failure::new(format!("no peers found for {info_hash}"))),
        _ => Ok(()),
    };
    // With --json the last line is either `done` or `error`, never both.
    if outcome.is_ok() || !out.json() {
        done(out, "get-peers", &rpc, started, extra, Some(text)).await;
    }
    rpc.shutdown().await;
    outcome
}

pub(crate) async fn announce(
    out: &Out,
    info_hash: NodeId,
    port: Option<u16>,
    seed: bool,
    args: ClientArgs,
) -> Result<(), Failure> {
    let started = Instant::now();
    let (rpc, bootstrap) = joined_client(out, &args).await?;
    let progress = Progress::start(out, &rpc, "announce", None);
    let result = rpc.announce(info_hash, port, seed).await;
    progress.finish().await;
    let stored = match result {
        Ok(stored) => stored,
        Err(_) if stats(&rpc).await.replies_in == 0 => {
            rpc.shutdown().await;
            return Err(nobody_answered("announce", &bootstrap));
        }
        Err(error) => {
            rpc.shutdown().await;
            return Err(Failure::new(format!("announce: {error}")));
        }
    };
    let port = port.unwrap_or(rpc.local_addr().port());
    let text = format!("{info_hash} announced on port {port}: stored by {}", count(stored, "node", "nodes"));
    done(out, "announce", &rpc, started, json!({ "stored": stored, "port": port }), Some(text)).await;
    rpc.shutdown().await;
    Ok(())
}

/// `serve`'s statistics line.
/// `reachable=` of the stats lines: `yes`, `no` (firewalled) or `unknown`.
fn reachable_word(r: Reachability) -> &'static str {
    match r {
        Reachability::Reachable => "yes",
        Reachability::Firewalled => "no",
        _ => "unknown",
    }
}

async fn serve_stats(out: &Out, rpc: &Rpc, started: Instant, event: &str) {
    let s = stats(rpc).await;
    let status = rpc.inspect(|endpoint| endpoint.status()).await.ok();
    let nodes = status.as_ref().map_or(0, |st| st.table_sizes[0]);
    let elapsed = ms_since(started);
    let mut line = json!({ "event": event });
    // What an operator asks (issue 14): id, external address, both tables, the DHT's size.
    if let (Some(st), Some(line)) = (status.as_ref(), line.as_object_mut()) {
        line.insert("id".into(), st.id.to_string().into());
        line.insert("nodes6".into(), st.table_sizes[1].into());
        line.insert("good_nodes".into(), (st.good_nodes[0] + st.good_nodes[1]).into());
        let ips: Vec<String> = st.external_address.iter().flatten().map(ToString::to_string).collect();
        line.insert("external_address".into(), ips.into());
        line.insert("dht_size_estimate".into(), st.dht_size_estimate.into());
        line.insert("reachable".into(), reachable_word(st.reachability).into());
        line.insert("read_only".into(), st.read_only.into());
    }
    if event == "done" {
        line["command"] = "serve".into();
    }
    let counts = json!({
        "elapsed_ms": elapsed,
        "nodes": nodes,
        "queries_in": s.queries_in,
        "replies_out": s.replies_out,
        "queries": s.queries_out,
        "replies": s.replies_in,
        "timeouts": s.timeouts,
        "malformed": s.malformed,
        "rate_limited": s.rate_limited,
        "sources_blocked": s.sources_blocked,
        "replies_over_budget": s.replies_over_budget,
    });
    if let (Some(line), Value::Object(counts)) = (line.as_object_mut(), counts) {
        line.extend(counts);
    }
    out.emit(line, || {
        format!(
            "{:>7.1}s  {}  answered {} of {} queries{}  sent {}: {} replies, {} timeouts  reachable={}{}{}",
            elapsed / 1e3,
            count(nodes, "node", "nodes"),
            s.replies_out,
            s.queries_in,
            if s.rate_limited > 0 { format!(" ({} rate-limited)", s.rate_limited) } else { String::new() },
            count(s.queries_out as usize, "query", "queries"),
            s.replies_in,
            s.timeouts,
            status.as_ref().map_or("unknown", |st| reachable_word(st.reachability)),
            if status.as_ref().is_some_and(|st| st.read_only) { "  read-only" } else { "" },
            if event == "done" { "  (stopped)" } else { "" }
        )
    });
}

pub(crate) async fn serve(out: &Out, args: ServeArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let bootstrap = resolve(out, &args.bootstrap).await?;
    let rate_limit = match args.rate_limit {
        0 => RateLimit::OFF,
        queries => RateLimit { queries, reply_bytes_per_sec: args.reply_budget, ..RateLimit::default() },
    };
    // The listening address first, so that bootstrap nodes it cannot reach (another address
    // family) are a usage error that says so, not a send error at run time.
    let bind = tokio::net::lookup_host(args.bind.as_str())
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| Failure::new(format!("cannot resolve --bind {}", args.bind)))?;
    let bootstrap = reachable_from(out, bind, bootstrap)?;
    // Adaptive read-only mode unless told otherwise (issue 14): a node behind a NAT must not
    // pose as a full node. On loopback there is no NAT to find out about, and no public
    // address to confirm, so a loopback node is a full node.
    let adaptive = !args.full && !args.read_only && !bind.ip().is_loopback();
    let config = Config {
        bootstrap: bootstrap.clone(),
        rate_limit,
        read_only: args.read_only,
        adaptive_read_only: adaptive,
        ..Config::dht()
    };
    let (saved, state_warning) = match args.state.as_deref().map(load_state) {
        Some(Ok(state)) => (Some(state), None),
        Some(Err(message)) => (None, Some(message)),
        None => (None, None),
    };
    let restored = saved.as_ref().map_or(0, |state| state.nodes.len());
    let mut builder = Rpc::builder(config);
    if let Some(state) = saved {
        builder = builder.state(state);
    }
    let rpc = builder.bind(bind).await.map_err(|error| Failure::new(format!("cannot bind {}: {error}", args.bind)))?;
    // SIGTERM (what `kill`, systemd and docker send) stops the node as Ctrl-C does: a last
    // statistics line and exit code 0. Registered before the `listening` line, so that a
    // supervisor that signals as soon as it sees that line is heard.
    #[cfg(unix)]
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| Failure::new(format!("cannot handle SIGTERM: {error}")))?;
    #[cfg(unix)]
    let terminate = async move {
        sigterm.recv().await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let mut terminate = std::pin::pin!(terminate);
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let (addr, id) = (rpc.local_addr(), rpc.id());
    out.emit(json!({ "event": "listening", "addr": addr.to_string(), "id": id.to_string() }), || {
        format!("listening on {addr} as {id}")
    });

    // After the `listening` line, which stays the first line of --json output.
    if let Some(message) = state_warning {
        out.warn(json!({ "event": "warning", "message": message }), &format!("warning: {message}"));
    }
    if let (Some(path), true) = (&args.state, restored > 0) {
        let nodes = rpc.inspect(|endpoint| endpoint.routing_tables().iter().map(|t| t.len()).sum::<usize>()).await;
        let nodes = nodes.unwrap_or(0);
        // With no --bootstrap the driver has already started rejoining through them.
        out.emit(json!({ "event": "restored", "file": path.display().to_string(), "nodes": nodes }), || {
            format!("restored {} from {}", count(nodes, "node", "nodes"), path.display())
        });
    }

    let mut joining = None;
    if !bootstrap.is_empty() {
        let rpc = rpc.clone();
        joining = Some(tokio::spawn(async move {
            let joined = rpc.bootstrap().await;
            let nodes = rpc.inspect(|endpoint| endpoint.routing_table().len()).await.unwrap_or(0);
            (joined, nodes)
        }));
    }

    let interval = Duration::from_secs_f64(args.interval);
    let mut tick = tokio::time::interval_at(started + interval, interval);
    let stop = async {
        match args.run_for {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds)).await,
            None => std::future::pending().await,
        }
    };
    let mut stop = std::pin::pin!(stop);
    let asked = bootstrap.len();
    let mut save_tick = tokio::time::interval_at(started + SAVE_EVERY, SAVE_EVERY);
    loop {
        tokio::select! {
            _ = save_tick.tick(), if args.state.is_some() => {
                if let Some(path) = &args.state {
                    save_state(out, &rpc, path).await;
                }
            }
            _ = &mut ctrl_c => break,
            () = &mut terminate => break,
            () = &mut stop => break,
            joined = async { joining.as_mut().expect("guarded").await }, if joining.is_some() => {
                joining = None;
                // A bootstrap nobody answered is a failure, said plainly; the node goes on
                // running, since other nodes may still find it.
                let failed = match joined {
                    Ok((Ok(summary), nodes)) if summary.replies > 0 => {
                        out.emit(
                            json!({ "event": "bootstrapped", "answered": summary.replies, "nodes": nodes }),
                            || format!("joined: {} answered, {nodes} in the routing table", count(summary.replies, "node", "nodes")),
                        );
                        None
                    }
                    Ok((Ok(_), _)) => {
                        let who = match asked {
                            1 => "the bootstrap node did not answer".to_owned(),
                            n => format!("none of the {n} bootstrap nodes answered"),
                        };
                        Some(format!("{who} ({}); the node waits to be found", list(&bootstrap)))
                    }
                    Ok((Err(error), _)) => Some(error.to_string()),
                    Err(error) => Some(error.to_string()),
                };
                if let Some(message) = failed {
                    out.warn(
                        json!({ "event": "bootstrap_failed", "message": message }),
                        &format!("bootstrap failed: {message}"),
                    );
                }
            }
            _ = tick.tick() => serve_stats(out, &rpc, started, "stats").await,
        }
    }
    if let Some(path) = &args.state {
        save_state(out, &rpc, path).await;
    }
    serve_stats(out, &rpc, started, "done").await;
    rpc.shutdown().await;
    Ok(())
}

/// How often `serve --state` writes its state file (and once more at shutdown).
const SAVE_EVERY: Duration = Duration::from_secs(300);

/// Reads `serve --state`'s file. Anything but a usable state is a warning (the message
/// returned) and a fresh start, never a failure: the file is replaced by a complete one at
/// the next save.
fn load_state(path: &Path) -> Result<SavedState, String> {
    krpc_tokio::load_state_file(path).map_err(|error| {
        let why = if error.is_missing() { "no such file".to_owned() } else { error.to_string() };
        format!("state file {}: {why}; starting fresh", path.display())
    })
}

/// Writes `serve --state`'s file; a failure is a warning (the old file is left whole).
async fn save_state(out: &Out, rpc: &Rpc, path: &Path) {
    if let Err(error) = rpc.save_state_file(path).await {
        let message = format!("cannot save the state to {}: {error}; the previous file is kept", path.display());
        out.warn(json!({ "event": "warning", "message": message }), &format!("warning: {message}"));
    }
}

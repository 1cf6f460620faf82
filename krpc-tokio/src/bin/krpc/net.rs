//! The commands that talk to a network: `ping`, `find-node`, `get-peers`, `announce`, `serve`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use krpc_tokio::{Config, NodeId, RateLimit, Rpc};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::out::{Failure, Out, Progress, count, done, millis, ms_since, stats};
use crate::{ClientArgs, ServeArgs};

/// Resolves `host:port` / `[v6]:port` names, each to all its addresses.
async fn resolve(names: &[String]) -> Result<Vec<SocketAddr>, Failure> {
    let mut addrs = Vec::new();
    for name in names {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host(name.as_str())
            .await
            .map_err(|error| Failure::new(format!("cannot resolve {name}: {error}")))?
            .collect();
        if resolved.is_empty() {
            return Err(Failure::new(format!("cannot resolve {name}: no address")));
        }
        for addr in resolved {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
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
async fn client(bootstrap: Vec<SocketAddr>, bind: Option<SocketAddr>) -> Result<Rpc, Failure> {
    let bind = bind.unwrap_or_else(|| any_addr(&bootstrap));
    let config = Config { bootstrap, read_only: true, ..Config::dht() };
    Rpc::bind(bind, config).await.map_err(|error| Failure::new(format!("cannot bind {bind}: {error}")))
}

pub(crate) async fn joined_client(args: &ClientArgs) -> Result<Rpc, Failure> {
    let bootstrap = resolve(&args.bootstrap).await?;
    client(bootstrap, args.bind).await
}

pub(crate) async fn ping(out: &Out, addr: &str, bind: Option<SocketAddr>) -> Result<(), Failure> {
    let to = *resolve(&[addr.to_owned()]).await?.first().ok_or_else(|| Failure::new("no address"))?;
    let started = Instant::now();
    let rpc = client(Vec::new(), bind.or(Some(any_addr(&[to])))).await?;
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

pub(crate) async fn find_node(out: &Out, target: NodeId, args: ClientArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let rpc = joined_client(&args).await?;
    let progress = Progress::start(out, &rpc, "find_node", Some("nodes answered"));
    let mut lookup = rpc.find_node(target).await.map_err(|error| Failure::new(format!("find_node: {error}")))?;
    while lookup.next().await.is_some() {
        progress.bump();
    }
    progress.finish().await;
    let summary = lookup.end().cloned().ok_or_else(|| Failure::new("find_node: the lookup did not end"))?;
    if summary.closest.is_empty() {
        return Err(Failure::new("find_node: no node answered"));
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
    let rpc = joined_client(&args).await?;
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
    done(out, "get-peers", &rpc, started, extra, Some(text)).await;
    rpc.shutdown().await;
    match (found, summary.replies) {
        (0, 0) => Err(Failure::new("get_peers: no node answered")),
        (0, _) => Err(Failure::new(format!("no peers found for {info_hash}"))),
        _ => Ok(()),
    }
}

pub(crate) async fn announce(
    out: &Out,
    info_hash: NodeId,
    port: Option<u16>,
    seed: bool,
    args: ClientArgs,
) -> Result<(), Failure> {
    let started = Instant::now();
    let rpc = joined_client(&args).await?;
    let progress = Progress::start(out, &rpc, "announce", None);
    let result = rpc.announce(info_hash, port, seed).await;
    progress.finish().await;
    let stored = result.map_err(|error| Failure::new(format!("announce: {error}")))?;
    let port = port.unwrap_or(rpc.local_addr().port());
    let text = format!("{info_hash} announced on port {port}: stored by {}", count(stored, "node", "nodes"));
    done(out, "announce", &rpc, started, json!({ "stored": stored, "port": port }), Some(text)).await;
    rpc.shutdown().await;
    Ok(())
}

/// `serve`'s statistics line.
async fn serve_stats(out: &Out, rpc: &Rpc, started: Instant, event: &str) {
    let s = stats(rpc).await;
    let nodes = rpc.inspect(|endpoint| endpoint.routing_table().len()).await.unwrap_or(0);
    let elapsed = ms_since(started);
    let mut line = json!({ "event": event });
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
            "{:>7.1}s  {}  answered {} of {} queries{}  sent {}: {} replies, {} timeouts{}",
            elapsed / 1e3,
            count(nodes, "node", "nodes"),
            s.replies_out,
            s.queries_in,
            if s.rate_limited > 0 { format!(" ({} rate-limited)", s.rate_limited) } else { String::new() },
            count(s.queries_out as usize, "query", "queries"),
            s.replies_in,
            s.timeouts,
            if event == "done" { "  (stopped)" } else { "" }
        )
    });
}

pub(crate) async fn serve(out: &Out, args: ServeArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let bootstrap = resolve(&args.bootstrap).await?;
    let rate_limit = match args.rate_limit {
        0 => RateLimit::OFF,
        queries => RateLimit { queries, reply_bytes_per_sec: args.reply_budget, ..RateLimit::default() },
    };
    let config = Config { bootstrap: bootstrap.clone(), rate_limit, ..Config::dht() };
    let rpc = Rpc::bind(args.bind.as_str(), config)
        .await
        .map_err(|error| Failure::new(format!("cannot bind {}: {error}", args.bind)))?;
    let (addr, id) = (rpc.local_addr(), rpc.id());
    out.emit(json!({ "event": "listening", "addr": addr.to_string(), "id": id.to_string() }), || {
        format!("listening on {addr} as {id}")
    });

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
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            () = &mut stop => break,
            joined = async { joining.as_mut().expect("guarded").await }, if joining.is_some() => {
                joining = None;
                match joined {
                    Ok((Ok(summary), nodes)) => out.emit(
                        json!({ "event": "bootstrapped", "answered": summary.replies, "nodes": nodes }),
                        || format!("joined: {} answered, {nodes} in the routing table", count(summary.replies, "node", "nodes")),
                    ),
                    Ok((Err(error), _)) => out.note(&format!("bootstrap failed: {error}")),
                    Err(error) => out.note(&format!("bootstrap failed: {error}")),
                }
            }
            _ = tick.tick() => serve_stats(out, &rpc, started, "stats").await,
        }
    }
    serve_stats(out, &rpc, started, "done").await;
    rpc.shutdown().await;
    Ok(())
}

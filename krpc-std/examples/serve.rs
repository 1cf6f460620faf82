//! `serve` on the blocking driver: a DHT node (`Config::dht()`: pings and the BEP 5 node layer,
//! `find_node`, `get_peers`, `announce_peer`, all answered inside the engine) that runs for a
//! while or until killed, printing statistics. The std counterpart of `krpc serve` (krpc-tokio's
//! command-line tool), used by the loopback serving benchmark (`tests/bench/throughput.sh`).
//!
//! ```text
//! cargo run --release -p krpc-std --example serve -- --bind 127.0.0.1:6881
//! cargo run --release -p krpc-std --example serve -- --bind 127.0.0.1:6881 --for 30 --interval 5
//! cargo run --release -p krpc-std --example serve -- --bind 127.0.0.1:6881 --manual
//! cargo run --release -p krpc-std --example serve -- --bind 127.0.0.1:6881 --rate-limit 0
//! ```
//!
//! By default the node runs on the driver's own thread (a [`Krpc`] handle; this thread only
//! prints). `--manual` steps a [`Driver`](krpc_std::Driver) on the main thread instead (the
//! "drive it yourself" mode). `--bootstrap HOST:PORT` (repeatable) joins a network first.
//! `--rate-limit N` lets one source send N queries in 10 seconds before it is ignored for a
//! minute (default 100, as `krpc serve`); `--rate-limit 0` turns off every inbound limit, this
//! one and the budget for the bytes sent in answers, as a loopback benchmark needs.
#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user
#![allow(clippy::disallowed_methods)] // it reads the clock and sleeps: it is the application

use std::process::ExitCode;
use std::time::{Duration, Instant};

use krpc_std::{Builder, Config, Endpoint, Event, Krpc, RateLimit};

const USAGE: &str = "usage: serve --bind ADDR [--for SECONDS] [--interval SECONDS] [--bootstrap HOST:PORT]... \
                     [--rate-limit N] [--manual]";

struct Args {
    bind: std::net::SocketAddr,
    run_for: Option<Duration>,
    interval: Duration,
    bootstrap: Vec<String>,
    /// Unsolicited queries per source per 10 s; `Some(0)`: no limits; `None`: the default.
    rate_limit: Option<u32>,
    manual: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut bind, mut run_for, mut interval, mut bootstrap, mut rate_limit, mut manual) =
        (None, None, Duration::from_secs(5), Vec::new(), None, false);
    let seconds = |value: Option<String>, flag: &str| -> Result<Duration, String> {
        let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
        match value.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
            _ => Err(format!("{flag}: expected a positive number of seconds, got {value:?}")),
        }
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => {
                let value = args.next().ok_or("--bind needs a value")?;
                bind = Some(value.parse().map_err(|e| format!("--bind {value}: {e}"))?);
            }
            "--for" => run_for = Some(seconds(args.next(), "--for")?),
            "--interval" => interval = seconds(args.next(), "--interval")?,
            "--bootstrap" => bootstrap.push(args.next().ok_or("--bootstrap needs a value")?),
            "--rate-limit" => {
                let value = args.next().ok_or("--rate-limit needs a value")?;
                rate_limit = Some(value.parse().map_err(|e| format!("--rate-limit {value}: {e}"))?);
            }
            "--manual" => manual = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let bind = bind.ok_or("--bind is required")?;
    Ok(Args { bind, run_for, interval, bootstrap, rate_limit, manual })
}

/// One statistics line.
fn stats_line(endpoint: &Endpoint, started: Instant, done: bool) -> String {
    let s = endpoint.stats();
    format!(
        "{:>7.1}s  {} nodes  answered {} of {} queries  sent {} queries: {} replies, {} timeouts, {} malformed{}",
        started.elapsed().as_secs_f64(),
        endpoint.routing_table().len(),
        s.replies_out,
        s.queries_in,
        s.queries_out,
        s.replies_in,
        s.timeouts,
        s.malformed,
        if done { "  (stopped)" } else { "" }
    )
}

/// The node on its own thread; this one wakes up for the statistics only.
fn threaded(builder: Builder, args: &Args, started: Instant, stop: Option<Instant>) -> Result<(), String> {
    let node = builder.bind(args.bind).map_err(|e| format!("cannot start on {}: {e}", args.bind))?;
    println!("listening on {} as {}", node.local_addr(), node.id());
    if !args.bootstrap.is_empty() {
        match node.bootstrap() {
            Ok(joined) => println!("joined: {} nodes answered", joined.replies),
            Err(error) => eprintln!("bootstrap failed: {error}"),
        }
    }
    let line = |node: &Krpc, done: bool| node.inspect(move |e| stats_line(e, started, done));
    loop {
        let now = Instant::now();
        let next = stop.map_or(now + args.interval, |stop| stop.min(now + args.interval));
        std::thread::sleep(next.saturating_duration_since(now));
        if stop.is_some_and(|stop| Instant::now() >= stop) {
            break;
        }
        println!("{}", line(&node, false).map_err(|e| e.to_string())?);
    }
    println!("{}", line(&node, true).map_err(|e| e.to_string())?);
    node.shutdown();
    Ok(())
}

/// The node stepped on this thread.
fn manual(builder: Builder, args: &Args, started: Instant, stop: Option<Instant>) -> Result<(), String> {
    let mut driver = builder.bind_driver(args.bind).map_err(|e| format!("cannot start on {}: {e}", args.bind))?;
    println!("listening on {} as {}", driver.local_addr(), driver.endpoint().id());
    if !args.bootstrap.is_empty() {
        let now = driver.now();
        driver.endpoint_mut().bootstrap(now).map_err(|e| format!("bootstrap: {e}"))?;
    }
    let mut next_stats = started + args.interval;
    loop {
        let now = Instant::now();
        if stop.is_some_and(|stop| now >= stop) {
            break;
        }
        if now >= next_stats {
            println!("{}", stats_line(driver.endpoint(), started, false));
            next_stats += args.interval;
        }
        let wake = stop.map_or(next_stats, |stop| stop.min(next_stats));
        driver.step(Some(wake.saturating_duration_since(now))).map_err(|e| format!("socket failed: {e}"))?;
        // The node layer answers every query itself; only our bootstrap lookup reports here.
        while let Some(event) = driver.endpoint_mut().poll_event() {
            match event {
                Event::LookupDone { replies, .. } => println!("joined: {replies} nodes answered"),
                Event::Query(query) => {
                    // Not reached with `Config::dht()`; answer like a node that does not know the method.
                    let _ = driver.endpoint_mut().error(query.reply_to(), 204, b"Method Unknown");
                }
                _ => {}
            }
        }
    }
    println!("{}", stats_line(driver.endpoint(), started, true));
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("serve: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let stop = args.run_for.map(|d| started + d);
    let hosts = args.bootstrap.clone();
    let mut config = Config::dht();
    match args.rate_limit {
        Some(0) => config.rate_limit = RateLimit::OFF,
        Some(queries) => config.rate_limit.queries = queries,
        None => {}
    }
    let builder = Builder::new(config).bootstrap_hosts(hosts);
    let result =
        if args.manual { manual(builder, &args, started, stop) } else { threaded(builder, &args, started, stop) };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("serve: {message}");
            ExitCode::FAILURE
        }
    }
}

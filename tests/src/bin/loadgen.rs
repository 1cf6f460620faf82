//! `loadgen`: the client of the loopback serving benchmark (`tests/bench/throughput.sh`).
//!
//! It keeps a window of KRPC `ping` queries in flight against one server — each reply (matched
//! by its 2-byte transaction id) is followed at once by a new query — and reports replies per
//! second, timeouts and the round-trip time (p50/p99) over a measured period that follows a
//! warm-up. Given the server's pid it also reports the server's CPU use over that period (from
//! `/proc/PID/stat`, utime + stime, every thread), and always its own, so that a saturated
//! client shows. `--echo` accepts the server's echo of our own query as its reply (for
//! `udp_echo`, the ceiling).
//!
//! Queries the server sends us (a KRPC node pings an unknown querier before it enters its
//! routing table) are answered, as a real node would: the server then knows us, and verifying
//! us costs it nothing more.
//!
//! ```text
//! loadgen 127.0.0.1:7001 [--window 128] [--warmup 2] [--duration 10] [--server-pid PID] [--echo]
//! ```
//!
//! I/O: one connected socket, `recv` then `send` per datagram (`--batch 1`), or, with
//! `--batch N`, up to N datagrams per `recvmmsg` and per `sendmmsg`, so that the client spends
//! fewer system calls per query than the server it measures (the two share a 2-core machine).
//! Only loopback targets are accepted.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)] // a tool that prints, binds and reads the clock

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

/// Keeps a window of `ping` queries in flight against a KRPC server and measures its replies.
#[derive(Debug, Parser)]
#[command(name = "loadgen", max_term_width = 100)]
struct Args {
    /// The server: a loopback `ip:port`.
    target: SocketAddr,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Milliseconds after which a query counts as lost and its slot is reused.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Accept an echo of our own query as its reply (the raw UDP echo server).
    #[arg(long)]
    echo: bool,
    /// The server's pid, for its CPU use (Linux `/proc`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Datagrams per system call: 1 = `recv`/`send`; more = `recvmmsg`/`sendmmsg` (Linux).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// A name for the result line.
    #[arg(long, default_value = "server")]
    label: String,
    /// Print the result as one line of `key=value` pairs (for scripts) instead of text.
    #[arg(long)]
    kv: bool,
}

/// Our node id in every query (any 20 bytes do; a fixed one keeps us one node to the server).
const OUR_ID: [u8; 20] = *b"loadgen-client-id-01";

/// `d1:ad2:id20:<id>e1:q4:ping1:t2:<tid>1:y1:qe`
const PING_HEAD: &[u8] = b"d1:ad2:id20:";
const PING_MID: &[u8] = b"e1:q4:ping1:t2:";
const PING_TAIL: &[u8] = b"1:y1:qe";
const PING_LEN: usize = PING_HEAD.len() + 20 + PING_MID.len() + 2 + PING_TAIL.len();
const TID_AT: usize = PING_HEAD.len() + 20 + PING_MID.len();

fn ping_template() -> [u8; PING_LEN] {
    let mut ping = [0u8; PING_LEN];
    let parts: [&[u8]; 5] = [PING_HEAD, &OUR_ID, PING_MID, b"\0\0", PING_TAIL];
    let mut at = 0;
    for part in parts {
        ping[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    ping
}

/// The top-level `t`, `y` and `q` of a KRPC message (just enough bencode to find them).
#[derive(Debug, Default)]
struct Top<'a> {
    t: Option<&'a [u8]>,
    y: Option<&'a [u8]>,
    q: Option<&'a [u8]>,
}

/// Skips one bencoded value at `at`; returns the position after it.
fn skip(data: &[u8], at: usize, depth: u8) -> Option<usize> {
    match *data.get(at)? {
        b'i' => Some(at + data[at..].iter().position(|&b| b == b'e')? + 1),
        b'0'..=b'9' => string(data, at).map(|(_, end)| end),
        b'l' | b'd' if depth < 32 => {
            let mut at = at + 1;
            while *data.get(at)? != b'e' {
                at = skip(data, at, depth + 1)?;
            }
            Some(at + 1)
        }
        _ => None,
    }
}

/// A byte string at `at`: its bytes and the position after it.
fn string(data: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let colon = at + data.get(at..)?.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&data[at..colon]).ok()?.parse().ok()?;
    let start = colon + 1;
    let end = start.checked_add(len)?;
    Some((data.get(start..end)?, end))
}

fn top(data: &[u8]) -> Option<Top<'_>> {
    if data.first() != Some(&b'd') {
        return None;
    }
    let (mut top, mut at) = (Top::default(), 1);
    while *data.get(at)? != b'e' {
        let (key, value_at) = string(data, at)?;
        let end = skip(data, value_at, 1)?;
        let value = || string(data, value_at).map(|(v, _)| v);
        match key {
            b"t" => top.t = value(),
            b"y" => top.y = value(),
            b"q" => top.q = value(),
            _ => {}
        }
        at = end;
    }
    Some(top)
}

/// `d1:rd2:id20:<id>e1:t<len>:<t>1:y1:re`: our answer to the server's ping.
fn pong(t: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + t.len());
    out.extend_from_slice(b"d1:rd2:id20:");
    out.extend_from_slice(&OUR_ID);
    out.extend_from_slice(format!("e1:t{}:", t.len()).as_bytes());
    out.extend_from_slice(t);
    out.extend_from_slice(b"1:y1:re");
    out
}

/// Round-trip times in microseconds, one bucket per microsecond up to the timeout.
struct Histogram {
    buckets: Vec<u32>,
    count: u64,
}

impl Histogram {
    fn new(max_us: usize) -> Histogram {
        Histogram { buckets: vec![0; max_us + 1], count: 0 }
    }

    fn record(&mut self, rtt: Duration) {
        let us = usize::try_from(rtt.as_micros()).unwrap_or(usize::MAX).min(self.buckets.len() - 1);
        self.buckets[us] += 1;
        self.count += 1;
    }

    /// The `q` quantile, in microseconds (the upper edge of its bucket).
    fn quantile(&self, q: f64) -> Option<usize> {
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (us, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(us + 1);
            }
        }
        None
    }
}

/// Counters of the measured period.
#[derive(Default, Clone, Copy)]
struct Counts {
    sent: u64,
    replies: u64,
    timeouts: u64,
    /// Replies whose transaction id matched nothing in flight (late, duplicated, foreign).
    stray: u64,
    /// Queries from the server, answered.
    server_queries: u64,
    send_errors: u64,
}

/// The load: transaction slots, the send order (for timeouts), counters.
struct Load {
    echo: bool,
    timeout: Duration,
    origin: Instant,
    template: [u8; PING_LEN],
    /// Send time of the query with this tid, in ns since `origin`, plus 1; 0 = free.
    slots: Vec<u64>,
    /// (tid, slot value) in send order; stale entries are skipped.
    order: VecDeque<(u16, u64)>,
    next_tid: u16,
    in_flight: usize,
    measuring: bool,
    counts: Counts,
    rtt: Histogram,
    /// Answers to the server's queries, waiting to be sent.
    answers: Vec<Vec<u8>>,
}

impl Load {
    fn new(echo: bool, timeout: Duration) -> Load {
        let max_us = usize::try_from(timeout.as_micros()).unwrap_or(usize::MAX).min(10_000_000);
        Load {
            echo,
            timeout,
            origin: Instant::now(),
            template: ping_template(),
            slots: vec![0; 1 << 16],
            order: VecDeque::with_capacity(1 << 16),
            next_tid: 0,
            in_flight: 0,
            measuring: false,
            counts: Counts::default(),
            rtt: Histogram::new(max_us),
            answers: Vec::new(),
        }
    }

    fn stamp(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A new query into `out`, its slot taken.
    fn next_query(&mut self, now: Instant, out: &mut [u8; PING_LEN]) {
        while self.slots[usize::from(self.next_tid)] != 0 {
            self.next_tid = self.next_tid.wrapping_add(1);
        }
        let tid = self.next_tid;
        self.next_tid = tid.wrapping_add(1);
        let stamp = self.stamp(now);
        self.slots[usize::from(tid)] = stamp;
        self.order.push_back((tid, stamp));
        self.in_flight += 1;
        *out = self.template;
        out[TID_AT..TID_AT + 2].copy_from_slice(&tid.to_be_bytes());
        if self.measuring {
            self.counts.sent += 1;
        }
    }

    /// One datagram from the server.
    fn on_datagram(&mut self, now: Instant, data: &[u8]) {
        let Some(top) = top(data) else {
            self.counts.stray += u64::from(self.measuring);
            return;
        };
        let (t, y) = (top.t.unwrap_or_default(), top.y.unwrap_or_default());
        let is_reply = match y {
            b"r" | b"e" => !self.echo,
            b"q" if self.echo => data.len() == PING_LEN && data[..TID_AT] == self.template[..TID_AT],
            b"q" => {
                if top.q == Some(b"ping") {
                    self.answers.push(pong(t));
                    self.counts.server_queries += u64::from(self.measuring);
                }
                return;
            }
            _ => false,
        };
        let slot = match <[u8; 2]>::try_from(t) {
            Ok(tid) if is_reply => usize::from(u16::from_be_bytes(tid)),
            _ => {
                self.counts.stray += u64::from(self.measuring);
                return;
            }
        };
        let sent = self.slots[slot];
        if sent == 0 {
            self.counts.stray += u64::from(self.measuring);
            return;
        }
        self.slots[slot] = 0;
        self.in_flight -= 1;
        if self.measuring {
            self.counts.replies += 1;
            self.rtt.record(Duration::from_nanos(self.stamp(now) - sent));
        }
    }

    /// Frees the slots of queries older than the timeout.
    fn expire(&mut self, now: Instant) {
        let now = self.stamp(now);
        let timeout = u64::try_from(self.timeout.as_nanos()).unwrap_or(u64::MAX);
        while let Some(&(tid, stamp)) = self.order.front() {
            let slot = &mut self.slots[usize::from(tid)];
            if *slot == stamp {
                if now.saturating_sub(stamp) < timeout {
                    break;
                }
                *slot = 0;
                self.in_flight -= 1;
                self.counts.timeouts += u64::from(self.measuring);
            }
            self.order.pop_front();
        }
    }
}

/// CPU time (user, system; every thread) of a process so far, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // Fields 14 and 15 of proc(5) (utime, stime) are the 12th and 13th after the name.
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// Receive-queue bytes and drop count of the IPv4 UDP socket bound to each of these local
/// ports (from `/proc/net/udp`). Where the datagrams wait shows which side is the bottleneck:
/// in the server's queue when the server is slower than the client, in ours when we are.
fn udp_queues(ports: [u16; 2]) -> [Option<(u64, u64)>; 2] {
    let mut found = [None; 2];
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else { return found };
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = fields.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
        let queue = fields.get(4).and_then(|q| q.split(':').nth(1)).and_then(|q| u64::from_str_radix(q, 16).ok());
        let drops = fields.get(12).and_then(|d| d.parse::<u64>().ok());
        for (slot, want) in found.iter_mut().zip(ports) {
            if slot.is_none() && port == Some(want) {
                *slot = queue.zip(drops);
            }
        }
    }
    found
}

/// Averages of the receive queues over the measured period.
#[derive(Default)]
struct Queues {
    samples: u64,
    server_bytes: u64,
    client_bytes: u64,
    /// The server socket's drop count when the measurement started.
    server_drops_start: Option<u64>,
    server_drops: Option<u64>,
}

impl Queues {
    fn sample(&mut self, ports: [u16; 2]) {
        let [server, client] = udp_queues(ports);
        if let (Some((server, drops)), Some((client, _))) = (server, client) {
            self.samples += 1;
            self.server_bytes += server;
            self.client_bytes += client;
            self.server_drops_start.get_or_insert(drops);
            self.server_drops = Some(drops);
        }
    }

    /// (server, client) average queue in KiB, and the server's drops.
    fn summary(&self) -> Option<(f64, f64, u64)> {
        let n = self.samples.max(1) as f64;
        let drops = self.server_drops?.saturating_sub(self.server_drops_start?);
        (self.samples > 0)
            .then(|| (self.server_bytes as f64 / n / 1024.0, self.client_bytes as f64 / n / 1024.0, drops))
    }
}

/// The machine's CPU time so far, in clock ticks: (busy, all), from the first line of
/// `/proc/stat` (idle and iowait are not busy).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line.split_whitespace().take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let all: u64 = fields.iter().sum();
    Some((all - fields.get(3)? - fields.get(4)?, all))
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0)
}

/// The I/O of one round: receive what is there (waiting a little if nothing is), then send.
trait Io {
    /// Receives up to a batch of datagrams, feeding each to `load`; `Ok(0)` after a short wait
    /// with none.
    fn receive(&mut self, load: &mut Load) -> io::Result<usize>;
    /// Sends the server's answers, then queries until the window is full.
    fn send(&mut self, load: &mut Load, window: usize) -> io::Result<()>;
}

/// One datagram per system call.
struct Single {
    socket: UdpSocket,
    buf: Vec<u8>,
}

impl Io for Single {
    fn receive(&mut self, load: &mut Load) -> io::Result<usize> {
        match self.socket.recv(&mut self.buf) {
            Ok(len) => {
                load.on_datagram(Instant::now(), &self.buf[..len]);
                Ok(1)
            }
            Err(error) if is_transient(&error) => Ok(0),
            Err(error) => Err(error),
        }
    }

    fn send(&mut self, load: &mut Load, window: usize) -> io::Result<()> {
        for answer in std::mem::take(&mut load.answers) {
            let _ = self.socket.send(&answer);
        }
        let mut query = [0u8; PING_LEN];
        while load.in_flight < window {
            load.next_query(Instant::now(), &mut query);
            if let Err(error) = self.socket.send(&query) {
                load.counts.send_errors += u64::from(load.measuring);
                if !is_transient(&error) {
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted | ErrorKind::ConnectionRefused
    )
}

#[cfg(target_os = "linux")]
mod batch {
    //! `recvmmsg`/`sendmmsg` through nix (safe wrappers).

    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};

    use super::{Io, Load, PING_LEN, is_transient};

    pub(super) struct Batch {
        socket: UdpSocket,
        size: usize,
        bufs: Vec<Vec<u8>>,
        out: Vec<Vec<u8>>,
    }

    impl Batch {
        pub(super) fn new(socket: UdpSocket, size: usize) -> Batch {
            Batch { socket, size, bufs: vec![vec![0; 2048]; size], out: Vec::with_capacity(size) }
        }
    }

    impl Io for Batch {
        fn receive(&mut self, load: &mut Load) -> io::Result<usize> {
            let fd = self.socket.as_raw_fd();
            let lens: Vec<usize> = {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                    self.bufs.iter_mut().map(|b| [IoSliceMut::new(&mut b[..])]).collect();
                let mut headers = MultiHeaders::<SockaddrIn>::preallocate(slices.len(), None);
                // Blocks for the first datagram (the socket's read timeout applies), then
                // takes what else is queued without waiting.
                match recvmmsg(fd, &mut headers, slices.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                    Ok(msgs) => msgs.map(|m| m.bytes).collect(),
                    Err(errno) => {
                        let error = io::Error::from(errno);
                        return if is_transient(&error) { Ok(0) } else { Err(error) };
                    }
                }
            };
            let now = Instant::now();
            for (buf, &len) in self.bufs.iter().zip(&lens) {
                load.on_datagram(now, &buf[..len]);
            }
            Ok(lens.len())
        }

        fn send(&mut self, load: &mut Load, window: usize) -> io::Result<()> {
            self.out.clear();
            self.out.append(&mut load.answers);
            let mut query = [0u8; PING_LEN];
            let now = Instant::now();
            loop {
                while self.out.len() < self.size && load.in_flight < window {
                    load.next_query(now, &mut query);
                    self.out.push(query.to_vec());
                }
                if self.out.is_empty() {
                    return Ok(());
                }
                let fd = self.socket.as_raw_fd();
                let slices: Vec<[IoSlice<'_>; 1]> = self.out.iter().map(|d| [IoSlice::new(d)]).collect();
                let mut headers = MultiHeaders::<SockaddrIn>::preallocate(slices.len(), None);
                let addrs = vec![None; slices.len()]; // the socket is connected
                let sent = match sendmmsg(fd, &mut headers, &slices, &addrs, [], MsgFlags::empty()) {
                    Ok(results) => results.count(),
                    Err(errno) => {
                        let error = io::Error::from(errno);
                        if !is_transient(&error) {
                            return Err(error);
                        }
                        0
                    }
                };
                // What the kernel refused is lost (its slots time out): count it, move on.
                let refused = self.out.len() - sent;
                load.counts.send_errors += if load.measuring { refused as u64 } else { 0 };
                self.out.clear();
                if refused > 0 || load.in_flight >= window {
                    return Ok(());
                }
            }
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if !args.target.ip().is_loopback() {
        return Err(format!("{} is not a loopback address: this benchmark stays on 127.0.0.0/8", args.target));
    }
    if args.window == 0 || args.window > 32_768 || args.batch == 0 || args.batch > 1024 {
        return Err("--window must be 1..=32768 and --batch 1..=1024".into());
    }
    let bind: SocketAddr =
        if args.target.is_ipv4() { ([127, 0, 0, 1], 0).into() } else { "[::1]:0".parse().expect("valid") };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot bind: {e}"))?;
    socket.connect(args.target).map_err(|e| format!("cannot connect to {}: {e}", args.target))?;
    socket.set_read_timeout(Some(Duration::from_millis(5))).map_err(|e| e.to_string())?;
    let ports = [args.target.port(), socket.local_addr().map_err(|e| e.to_string())?.port()];
    let mut io: Box<dyn Io> = if args.batch == 1 {
        Box::new(Single { socket, buf: vec![0; 65_536] })
    } else {
        #[cfg(target_os = "linux")]
        {
            if !args.target.is_ipv4() {
                return Err("--batch above 1 supports IPv4 targets only".into());
            }
            Box::new(batch::Batch::new(socket, args.batch))
        }
        #[cfg(not(target_os = "linux"))]
        return Err("--batch above 1 needs Linux".into());
    };

    let mut load = Load::new(args.echo, Duration::from_millis(args.timeout_ms));
    let server = args.server_pid.map(|pid| pid.to_string());
    let hz = clock_ticks_per_second();
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let measure_until = measure_from + Duration::from_secs_f64(args.duration);
    let mut cpu_start = None;
    let mut queues = Queues::default();
    let mut next_sample = measure_from;
    let mut rounds = 0u64;
    let mut received = 0u64;
    loop {
        io.send(&mut load, args.window).map_err(|e| format!("send: {e}"))?;
        let got = io.receive(&mut load).map_err(|e| format!("receive: {e}"))?;
        if load.measuring {
            rounds += 1;
            received += got as u64;
        }
        let now = Instant::now();
        load.expire(now);
        if load.measuring && now >= next_sample {
            queues.sample(ports);
            next_sample = now + Duration::from_millis(50);
        }
        if !load.measuring && cpu_start.is_none() && now >= measure_from {
            load.measuring = true;
            let ticks = |pid: &str| cpu_ticks(pid);
            cpu_start = Some((now, ticks("self"), server.as_deref().and_then(ticks), machine_ticks()));
        } else if load.measuring && now >= measure_until {
            load.measuring = false;
            break;
        }
    }
    let end = Instant::now();
    let (from, client_start, server_start, machine_start) = cpu_start.expect("measured");
    let secs = (end - from).as_secs_f64();
    // (user, system) seconds of CPU over the measured period.
    let cpu = |start: Option<(u64, u64)>, pid: &str| -> Option<(f64, f64)> {
        let ((user0, system0), (user, system)) = (start?, cpu_ticks(pid)?);
        Some((user.saturating_sub(user0) as f64 / hz, system.saturating_sub(system0) as f64 / hz))
    };
    let client_cpu = cpu(client_start, "self");
    let server_cpu = server.as_deref().and_then(|pid| cpu(server_start, pid));
    let pct = |cpu: Option<(f64, f64)>| cpu.map(|(user, system)| (user + system) / secs * 100.0);
    // Everything else the machine did meanwhile, in % of one core: other processes disturb
    // the measurement (the machine has few cores), so it is reported with it.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let other_cpu = machine_ticks().zip(machine_start).and_then(|((busy, all), (busy0, all0))| {
        let busy = (busy - busy0) as f64 / (all - all0).max(1) as f64 * cores * 100.0;
        Some((busy - pct(client_cpu)? - pct(server_cpu).unwrap_or(0.0)).max(0.0))
    });
    let c = load.counts;
    let rate = c.replies as f64 / secs;
    // The server's CPU per reply: what it would answer with a core to itself.
    let per_reply = |seconds: f64| (c.replies > 0).then(|| seconds / c.replies as f64 * 1e6);
    let server_us = server_cpu.and_then(|(user, system)| per_reply(user + system));
    let server_user_us = server_cpu.and_then(|(user, _)| per_reply(user));
    let client_us = client_cpu.and_then(|(user, system)| per_reply(user + system));
    let queues = queues.summary();
    let per_call = if rounds > 0 { received as f64 / rounds as f64 } else { 0.0 };
    let int = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    let dec = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    let us = |v: Option<usize>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let fields = [
        ("label", args.label.clone()),
        ("replies_per_s", format!("{rate:.0}")),
        ("replies", c.replies.to_string()),
        ("sent", c.sent.to_string()),
        ("timeouts", c.timeouts.to_string()),
        ("stray", c.stray.to_string()),
        ("server_queries", c.server_queries.to_string()),
        ("send_errors", c.send_errors.to_string()),
        ("p50_us", us(load.rtt.quantile(0.50))),
        ("p99_us", us(load.rtt.quantile(0.99))),
        ("server_cpu_pct", int(pct(server_cpu))),
        ("server_us_per_reply", dec(server_us)),
        ("server_user_us_per_reply", dec(server_user_us)),
        ("client_cpu_pct", int(pct(client_cpu))),
        ("client_us_per_reply", dec(client_us)),
        ("other_cpu_pct", int(other_cpu)),
        ("server_queue_kib", dec(queues.map(|q| q.0))),
        ("client_queue_kib", dec(queues.map(|q| q.1))),
        ("server_drops", queues.map_or_else(|| "-".to_string(), |q| q.2.to_string())),
        ("secs", format!("{secs:.2}")),
        ("window", args.window.to_string()),
        ("batch", args.batch.to_string()),
        ("per_receive", format!("{per_call:.2}")),
    ];
    if args.kv {
        let line: Vec<String> = fields.iter().map(|(key, value)| format!("{key}={value}")).collect();
        println!("{}", line.join(" "));
    } else {
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map_or("-", |(_, v)| v.as_str());
        println!(
            "{}: {} replies/s ({} in {} s, window {}), {} timeouts, {} stray; rtt p50 {} µs, p99 {} µs",
            get("label"),
            get("replies_per_s"),
            get("replies"),
            get("secs"),
            get("window"),
            get("timeouts"),
            get("stray"),
            get("p50_us"),
            get("p99_us"),
        );
        println!(
            "  server: {}% CPU, {} µs per reply ({} in user space), receive queue {} KiB on average, {} drops",
            get("server_cpu_pct"),
            get("server_us_per_reply"),
            get("server_user_us_per_reply"),
            get("server_queue_kib"),
            get("server_drops"),
        );
        println!(
            "  client: {}% CPU, {} µs per reply, receive queue {} KiB, {} datagrams per receive call; \
             other processes {}% CPU",
            get("client_cpu_pct"),
            get("client_us_per_reply"),
            get("client_queue_kib"),
            get("per_receive"),
            get("other_cpu_pct"),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}

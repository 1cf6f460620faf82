//! `udp_echo`: the ceiling of the loopback serving benchmark. It sends every datagram back to
//! its sender unchanged, one `recv_from` and one `send_to` per datagram — the least a UDP
//! server that answers each datagram on its own can do (the KRPC drivers do the same two system
//! calls, plus the engine's work in between). See `tests/bench/throughput.sh`.
//!
//! ```text
//! cargo run --release -p krpc-tests --bin udp_echo -- --bind 127.0.0.1:7001 [--for 30]
//! ```
//!
//! Only loopback addresses are accepted: a benchmark tool must never answer the outside world.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)] // a tool that prints and owns a socket

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

/// Echoes every UDP datagram back to its sender.
#[derive(Debug, Parser)]
#[command(name = "udp_echo", max_term_width = 100)]
struct Args {
    /// Loopback address to listen on, e.g. `127.0.0.1:7001`.
    #[arg(long)]
    bind: SocketAddr,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long = "for", value_name = "SECONDS")]
    run_for: Option<f64>,
    /// Seconds between two statistics lines on stderr (0: none).
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    interval: f64,
    /// Use the socket the way an async runtime does (Linux): non-blocking, registered with
    /// epoll (edge-triggered), drained until `WouldBlock`, then `epoll_wait`. Separates what
    /// that way costs from what a runtime and an engine add.
    #[arg(long)]
    epoll: bool,
    /// Datagrams per system call (Linux): up to N per `recvmmsg`, their echoes in one
    /// `sendmmsg`. 1 (the default) is one `recv_from` and one `send_to` per datagram: the
    /// ceiling of the benchmark. Shows what batching the system calls is worth on this machine.
    #[arg(long, default_value_t = 1, value_name = "N")]
    batch: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bind.ip().is_loopback() {
        eprintln!("udp_echo: {} is not a loopback address", args.bind);
        return ExitCode::from(2);
    }
    let socket = match UdpSocket::bind(args.bind) {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("udp_echo: cannot bind {}: {error}", args.bind);
            return ExitCode::FAILURE;
        }
    };
    let addr = socket.local_addr().map_or_else(|_| args.bind.to_string(), |a| a.to_string());
    println!("listening on {addr}");
    let started = Instant::now();
    let stop = args.run_for.map(|s| started + Duration::from_secs_f64(s));
    let interval = (args.interval > 0.0).then(|| Duration::from_secs_f64(args.interval));
    // Woken at least this often to check the clock; the datagram path never looks at it.
    if let Err(error) = socket.set_read_timeout(Some(Duration::from_millis(200))) {
        eprintln!("udp_echo: {error}");
        return ExitCode::FAILURE;
    }
    #[cfg(target_os = "linux")]
    let poller = match args.epoll.then(|| readiness::Poller::new(&socket)).transpose() {
        Ok(poller) => poller,
        Err(error) => {
            eprintln!("udp_echo: epoll: {error}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(not(target_os = "linux"))]
    if args.epoll {
        eprintln!("udp_echo: --epoll needs Linux");
        return ExitCode::from(2);
    }
    if args.batch == 0 || args.batch > 1024 {
        eprintln!("udp_echo: --batch must be 1..=1024");
        return ExitCode::from(2);
    }
    #[cfg(target_os = "linux")]
    if args.batch > 1 {
        return batch::run(&socket, args.batch, stop);
    }
    #[cfg(not(target_os = "linux"))]
    if args.batch > 1 {
        eprintln!("udp_echo: --batch above 1 needs Linux");
        return ExitCode::from(2);
    }
    let mut buf = vec![0u8; 65_536];
    let (mut echoed, mut failed) = (0u64, 0u64);
    let mut next_stats = interval.map(|i| started + i);
    loop {
        // The hot loop: echo until the socket has been idle for the read timeout, then look at
        // the clock. `--for` is approximate under load (checked every 65,536 datagrams too).
        for _ in 0..65_536 {
            match socket.recv_from(&mut buf) {
                Ok((len, from)) => match socket.send_to(&buf[..len], from) {
                    Ok(_) => echoed += 1,
                    Err(_) => failed += 1,
                },
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    #[cfg(target_os = "linux")]
                    if let Some(poller) = &poller {
                        poller.wait();
                    }
                    break;
                }
                // ICMP reports of earlier sends, interruptions: nothing to answer.
                Err(_) => {}
            }
        }
        let now = Instant::now();
        if let (Some(interval), Some(next)) = (interval, next_stats.as_mut()) {
            if now >= *next {
                eprintln!("{:>7.1}s  echoed {echoed}, {failed} sends failed", (now - started).as_secs_f64());
                *next += interval;
            }
        }
        if stop.is_some_and(|stop| now >= stop) {
            break;
        }
    }
    println!("echoed {echoed} datagrams in {:.1} s, {failed} sends failed", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}

#[cfg(target_os = "linux")]
mod readiness {
    //! The `--epoll` mode: what mio (under tokio) does with a UDP socket.

    use std::io;
    use std::net::UdpSocket;

    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

    pub(super) struct Poller {
        epoll: Epoll,
    }

    impl Poller {
        /// Switches the socket to non-blocking and registers it, edge-triggered.
        pub(super) fn new(socket: &UdpSocket) -> io::Result<Poller> {
            socket.set_nonblocking(true)?;
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            epoll.add(socket, EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, 0))?;
            Ok(Poller { epoll })
        }

        /// Waits until the socket is readable again (at most 200 ms).
        pub(super) fn wait(&self) {
            let mut events = [EpollEvent::empty(); 4];
            let _ = self.epoll.wait(&mut events, EpollTimeout::from(200u8));
        }
    }
}

#[cfg(target_os = "linux")]
mod batch {
    //! The `--batch N` mode: `recvmmsg` (waiting for the first datagram only) and `sendmmsg`,
    //! through nix's safe wrappers.

    use std::io::{IoSlice, IoSliceMut};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::process::ExitCode;
    use std::time::Instant;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

    pub(super) fn run(socket: &UdpSocket, size: usize, stop: Option<Instant>) -> ExitCode {
        const LEN: usize = 2048;
        let started = Instant::now();
        let fd = socket.as_raw_fd();
        let mut bufs = vec![0u8; LEN * size];
        let mut lens = vec![0usize; size];
        let mut from: Vec<Option<SockaddrStorage>> = vec![None; size];
        let mut receive = MultiHeaders::<SockaddrStorage>::preallocate(size, None);
        let mut send = MultiHeaders::<SockaddrStorage>::preallocate(size, None);
        let (mut echoed, mut failed) = (0u64, 0u64);
        loop {
            let got = {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs.chunks_mut(LEN).map(|b| [IoSliceMut::new(b)]).collect();
                match recvmmsg(fd, &mut receive, slices.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                    Ok(msgs) => {
                        let mut n = 0;
                        for (i, msg) in msgs.enumerate() {
                            lens[i] = msg.bytes;
                            from[i] = msg.address;
                            n = i + 1;
                        }
                        n
                    }
                    Err(_) => 0, // the read timeout, or an ICMP report of an earlier send
                }
            };
            if got > 0 {
                let slices: Vec<[IoSlice<'_>; 1]> =
                    bufs.chunks(LEN).zip(&lens).take(got).map(|(b, &len)| [IoSlice::new(&b[..len])]).collect();
                match sendmmsg(fd, &mut send, &slices, &from[..got], [], MsgFlags::empty()) {
                    Ok(sent) => {
                        let sent = sent.count();
                        echoed += sent as u64;
                        failed += (got - sent) as u64;
                    }
                    Err(_) => failed += got as u64,
                }
            }
            if stop.is_some_and(|stop| Instant::now() >= stop) {
                break;
            }
        }
        println!("echoed {echoed} datagrams in {:.1} s, {failed} sends failed", started.elapsed().as_secs_f64());
        ExitCode::SUCCESS
    }
}

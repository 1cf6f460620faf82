//! The flooder: UDP sockets on 127.0.0.1 (one by default) sending [`Generator`] datagrams at a
//! paced rate, in batches, and a second thread counting what the server sends back to them.

use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::garbage::{Generator, Kind};

/// The flooder's source address: the one IP every flood datagram comes from.
pub const FLOOD_SOURCE: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// What the flooder sent, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams handed to the kernel, by kind (indexed as [`Kind::ALL`]).
    pub datagrams: [u64; Kind::ALL.len()],
    /// Bytes sent, by kind.
    pub bytes: [u64; Kind::ALL.len()],
    /// Of those, datagrams the kernel refused to send (counted, not retried; on loopback it
    /// refuses none).
    pub send_errors: u64,
    /// Time from the first send to the last.
    pub elapsed: Duration,
    /// Of that, time spent waiting for the server's receive queue to drain
    /// ([`Plan::max_queue`]), from the first reading over the limit to the first under it
    /// (the readings themselves are not counted).
    pub throttled: Duration,
}

impl Sent {
    /// Datagrams sent, every kind.
    pub fn total(&self) -> u64 {
        self.datagrams.iter().sum()
    }

    /// Bytes sent, every kind.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }
}

/// What came back to the flooder's socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Responses (`y` = `r`).
    pub responses: u64,
    /// KRPC errors (`y` = `e`).
    pub errors: u64,
    /// Queries the server sent us (its pings to verify the ids we claimed).
    pub queries: u64,
    /// Anything else.
    pub other: u64,
    /// Bytes, all together.
    pub bytes: u64,
}

impl Received {
    /// Datagrams received, all together.
    pub fn total(&self) -> u64 {
        self.responses + self.errors + self.queries + self.other
    }

    fn count(&mut self, datagram: &[u8]) {
        self.bytes += datagram.len() as u64;
        // The top-level `y` of a message we know the layout of (keys sorted, `y` last).
        if datagram.ends_with(b"1:y1:re") {
            self.responses += 1;
        } else if datagram.ends_with(b"1:y1:ee") {
            self.errors += 1;
        } else if datagram.ends_with(b"1:y1:qe") {
            self.queries += 1;
        } else {
            self.other += 1;
        }
    }
}

/// How to flood.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Where to.
    pub target: SocketAddr,
    /// How many datagrams.
    pub count: u64,
    /// Datagrams per second; 0 = as fast as the socket takes them.
    pub rate: u64,
    /// Datagrams per system call (`sendmmsg` on Linux; elsewhere one `send` each).
    pub batch: usize,
    /// Seed of the [`Generator`].
    pub seed: u64,
    /// Source sockets, all on 127.0.0.1, each on its own port, taking turns batch by batch.
    /// One is a single source; more are one host rotating its source port, which a limiter
    /// that tells loopback sources apart by port (as `krpc-core`'s does by default, for test
    /// swarms) sees as many sources.
    pub ports: usize,
    /// Back-pressure: before each batch, wait while the server socket's receive queue holds
    /// more than this many bytes (Linux `/proc/net/udp`; ignored elsewhere). Without it, a
    /// server that falls behind, for want of CPU on a busy machine, has datagrams dropped by
    /// its kernel, the legitimate ones among them, which says nothing about the server itself.
    pub max_queue: Option<u64>,
}

/// A flood in progress.
#[derive(Debug)]
pub struct Flood {
    sender: JoinHandle<io::Result<Sent>>,
    receiver: JoinHandle<io::Result<Received>>,
    stop_receiving: Arc<AtomicBool>,
    local: Vec<SocketAddr>,
}

impl Flood {
    /// Binds the flood sockets on 127.0.0.1 and starts sending.
    #[allow(clippy::disallowed_methods)] // a load generator binds sockets and spawns threads
    pub fn start(plan: Plan) -> io::Result<Flood> {
        if !plan.target.ip().is_loopback() {
            return Err(io::Error::new(ErrorKind::InvalidInput, "the flood stays on 127.0.0.0/8"));
        }
        let mut sockets = Vec::new();
        for _ in 0..plan.ports.max(1) {
            let socket = UdpSocket::bind((FLOOD_SOURCE, 0))?;
            socket.connect(plan.target)?;
            sockets.push(socket);
        }
        let local = sockets.iter().map(UdpSocket::local_addr).collect::<io::Result<Vec<_>>>()?;
        let listen = sockets.iter().map(UdpSocket::try_clone).collect::<io::Result<Vec<_>>>()?;
        match &listen[..] {
            [one] => one.set_read_timeout(Some(Duration::from_millis(50)))?,
            many => many.iter().try_for_each(|socket| socket.set_nonblocking(true))?,
        }
        let stop_receiving = Arc::new(AtomicBool::new(false));
        let stop = stop_receiving.clone();
        let receiver = std::thread::Builder::new().name("flood-recv".into()).spawn(move || receive(&listen, &stop))?;
        let sender = std::thread::Builder::new().name("flood-send".into()).spawn(move || send(&sockets, plan))?;
        Ok(Flood { sender, receiver, stop_receiving, local })
    }

    /// The flood sockets' addresses (127.0.0.1 and a port each).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Whether every datagram has been sent.
    pub fn is_finished(&self) -> bool {
        self.sender.is_finished()
    }

    /// Waits for the last datagram to be sent, then keeps counting what comes back for
    /// `linger` more, and returns both counts.
    pub fn finish(self, linger: Duration) -> io::Result<(Sent, Received)> {
        let sent = self.sender.join().map_err(|_| io::Error::other("the flood sender panicked"))??;
        sleep(linger);
        self.stop_receiving.store(true, Ordering::Relaxed);
        let received = self.receiver.join().map_err(|_| io::Error::other("the flood receiver panicked"))??;
        Ok((sent, received))
    }
}

#[allow(clippy::disallowed_methods)] // a load generator waits on the real clock
fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

#[allow(clippy::disallowed_methods)] // a load generator reads the real clock
fn now() -> Instant {
    Instant::now()
}

/// Counts what arrives on the sockets until `stop`: one socket blocks (with a read timeout);
/// several are non-blocking and waited on together (epoll on Linux, elsewhere a pass over all
/// of them with a pause after a pass that found nothing).
fn receive(sockets: &[UdpSocket], stop: &AtomicBool) -> io::Result<Received> {
    let mut received = Received::default();
    let mut buf = vec![0u8; 65536];
    let mut ready = Ready::new(sockets)?;
    while !stop.load(Ordering::Relaxed) {
        for i in ready.wait(sockets)? {
            // A single socket blocks: one datagram per wait. Several: drain the ready one.
            loop {
                match sockets[i].recv(&mut buf) {
                    Ok(len) => received.count(&buf[..len]),
                    Err(error) if is_transient(&error) => break,
                    Err(error) => return Err(error),
                }
                if sockets.len() == 1 {
                    break;
                }
            }
        }
    }
    Ok(received)
}

/// Which sockets may have something to read.
#[cfg(target_os = "linux")]
struct Ready {
    epoll: Option<nix::sys::epoll::Epoll>,
    events: Vec<nix::sys::epoll::EpollEvent>,
}

#[cfg(target_os = "linux")]
impl Ready {
    fn new(sockets: &[UdpSocket]) -> io::Result<Ready> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
        if sockets.len() == 1 {
            return Ok(Ready { epoll: None, events: Vec::new() });
        }
        let epoll = Epoll::new(EpollCreateFlags::empty())?;
        for (i, socket) in sockets.iter().enumerate() {
            epoll.add(socket, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
        }
        Ok(Ready { epoll: Some(epoll), events: vec![EpollEvent::empty(); 256] })
    }

    /// Waits (at most 50 ms) and returns the indices of the sockets to read.
    fn wait(&mut self, _sockets: &[UdpSocket]) -> io::Result<Vec<usize>> {
        let Some(epoll) = &self.epoll else { return Ok(vec![0]) };
        let n = match epoll.wait(&mut self.events, 50u16) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(errno) => return Err(errno.into()),
        };
        Ok(self.events[..n].iter().map(|event| usize::try_from(event.data()).unwrap_or(0)).collect())
    }
}

/// Which sockets may have something to read.
#[cfg(not(target_os = "linux"))]
struct Ready;

#[cfg(not(target_os = "linux"))]
impl Ready {
    fn new(_sockets: &[UdpSocket]) -> io::Result<Ready> {
        Ok(Ready)
    }

    /// All of them; several sockets (non-blocking) after a millisecond's pause.
    fn wait(&mut self, sockets: &[UdpSocket]) -> io::Result<Vec<usize>> {
        if sockets.len() > 1 {
            sleep(Duration::from_millis(1));
        }
        Ok((0..sockets.len()).collect())
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
    ) || error.raw_os_error() == Some(nix::libc::ENOBUFS)
}

fn send(sockets: &[UdpSocket], plan: Plan) -> io::Result<Sent> {
    let mut generator = Generator::new(plan.seed);
    let batch = plan.batch.max(1);
    let mut datagrams: Vec<Vec<u8>> = vec![Vec::with_capacity(1500); batch];
    let mut kinds = vec![Kind::Random; batch];
    let mut sent = Sent::default();
    let started = now();
    let mut done = 0u64;
    while done < plan.count {
        if let Some(max_queue) = plan.max_queue {
            let mut waiting = None;
            while super::server::udp_socket(plan.target).is_some_and(|(_, queue)| queue > max_queue) {
                waiting.get_or_insert_with(now);
                sleep(Duration::from_micros(100));
            }
            sent.throttled += waiting.map_or(Duration::ZERO, |since: Instant| since.elapsed());
        }
        let n = batch.min(usize::try_from(plan.count - done).unwrap_or(batch));
        for (datagram, kind) in datagrams.iter_mut().zip(kinds.iter_mut()).take(n) {
            *kind = generator.next(datagram);
        }
        let socket = &sockets[usize::try_from(done / batch as u64).unwrap_or(0) % sockets.len()];
        sent.send_errors += send_batch(socket, &datagrams[..n])? as u64;
        for (datagram, kind) in datagrams.iter().zip(&kinds).take(n) {
            sent.datagrams[kind.index()] += 1;
            sent.bytes[kind.index()] += datagram.len() as u64;
        }
        done += n as u64;
        if plan.rate > 0 {
            // Pace: the n-th datagram is due at n / rate seconds.
            let due = started + Duration::from_secs_f64(done as f64 / plan.rate as f64);
            let early = due.saturating_duration_since(now());
            if !early.is_zero() {
                sleep(early);
            }
        }
    }
    sent.elapsed = started.elapsed();
    Ok(sent)
}

/// Sends the datagrams on the connected socket; returns how many the kernel refused (those are
/// lost, as a flood's would be).
#[cfg(target_os = "linux")]
fn send_batch(socket: &UdpSocket, datagrams: &[Vec<u8>]) -> io::Result<usize> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};

    let (mut at, mut refused) = (0, 0);
    while at < datagrams.len() {
        let rest = &datagrams[at..];
        let slices: Vec<[IoSlice<'_>; 1]> = rest.iter().map(|d| [IoSlice::new(d)]).collect();
        let mut headers = MultiHeaders::<SockaddrIn>::preallocate(slices.len(), None);
        let addrs = vec![None; slices.len()]; // the socket is connected
        match sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addrs, [], MsgFlags::empty()) {
            Ok(results) => match results.count() {
                0 => (refused, at) = (refused + 1, at + 1),
                n => at += n,
            },
            Err(errno) => {
                let error = io::Error::from(errno);
                if !is_transient(&error) {
                    return Err(error);
                }
                // The datagram at the head was refused: skip it, send the rest.
                refused += 1;
                at += 1;
            }
        }
    }
    Ok(refused)
}

/// Sends the datagrams on the connected socket, one call each; returns how many were refused.
#[cfg(not(target_os = "linux"))]
fn send_batch(socket: &UdpSocket, datagrams: &[Vec<u8>]) -> io::Result<usize> {
    let mut refused = 0;
    for datagram in datagrams {
        match socket.send(datagram) {
            Ok(_) => {}
            Err(error) if is_transient(&error) => refused += 1,
            Err(error) => return Err(error),
        }
    }
    Ok(refused)
}

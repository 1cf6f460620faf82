//! [`Driver`]: the engine, a socket and a clock, stepped by the caller ("drive it yourself").

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use krpc_core::{Config, Endpoint, Instant, SavedState};

use crate::udp::{Inbox, MAX_BATCH, Outbox};
use crate::{Error, clock::Clock};

/// The shortest read timeout set on the socket: shorter deadlines would only spin.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// The engine, its UDP socket and a clock, moved forward by [`step`](Self::step) on the
/// caller's thread: for applications that run their own loop. [`Krpc`](crate::Krpc) runs one
/// of these on a background thread.
///
/// Issue commands on [`endpoint_mut`](Self::endpoint_mut) with [`now`](Self::now) (they are sent by
/// the next `step` or [`flush`](Self::flush)), and drain `endpoint_mut().poll_event()` after
/// every `step`: while events wait, the engine's deadline is "now", so `step` does not block.
///
/// ```
/// use std::time::Duration;
/// use krpc_std::{Builder, Config, Event, Query};
///
/// let mut a = Builder::new(Config::default()).bind_driver("127.0.0.1:0")?;
/// let mut b = Builder::new(Config::default()).bind_driver("127.0.0.1:0")?;
/// let now = a.now();
/// let op = a.endpoint_mut().query(now, b.local_addr(), Query::ping())?;
/// let reply = 'run: loop {
///     // Zero timeout: take what is there, never wait (b is stepped on this thread too).
///     a.step(Some(Duration::ZERO))?;
///     b.step(Some(Duration::from_millis(1)))?;
///     while let Some(event) = a.endpoint_mut().poll_event() {
///         if let Event::QueryDone { op: done, result } = event {
///             assert_eq!(done, op);
///             break 'run result?;
///         }
///     }
///     while b.endpoint_mut().poll_event().is_some() {}
/// };
/// assert_eq!(reply.id().as_ref(), Some(b.endpoint().id()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Driver {
    pub(crate) endpoint: Endpoint,
    socket: UdpSocket,
    clock: Clock,
    /// Datagrams received, up to [`MAX_BATCH`] per system call on a busy socket.
    inbox: Inbox,
    /// Datagrams to send, up to [`MAX_BATCH`] per system call.
    outbox: Outbox,
    local: SocketAddr,
    nonblocking: bool,
    /// The read timeout last set on the socket: setting it costs a system call, so it is set
    /// again only when it no longer fits the wait (see [`timeout_fits`]).
    read_timeout: Option<Duration>,
}

impl Driver {
    pub(crate) fn new(
        socket: UdpSocket,
        config: Config,
        seed: [u8; 32],
        state: Option<&SavedState>,
    ) -> Result<Driver, Error> {
        let clock = Clock::start();
        let now = clock.now();
        let no_hosts = config.bootstrap.is_empty();
        let mut endpoint = match state {
            Some(state) => Endpoint::restore(config, seed, now, state),
            None => Endpoint::new(config, seed, now),
        }
        .map_err(Error::Config)?;
        // A restarted node with no bootstrap host rejoins through the nodes it saved, at
        // once: nobody else would start it. With hosts, the application bootstraps as usual.
        let restored: usize = endpoint.routing_tables().iter().map(|table| table.len()).sum();
        if no_hosts && restored > 0 {
            match endpoint.bootstrap(now) {
                Ok(_) => tracing::debug!(restored, "rejoining through the saved nodes"),
                Err(error) => tracing::debug!(%error, "cannot rejoin through the saved nodes"),
            }
        }
        // One byte longer than the engine accepts: a longer datagram is cut short, and the
        // engine drops it as too long.
        let max = endpoint.config().max_datagram_len;
        let (inbox, outbox) = (Inbox::new(max.min(usize::from(u16::MAX)) + 1), Outbox::new(max));
        socket.set_nonblocking(false)?;
        let local = socket.local_addr()?;
        socket.set_read_timeout(None)?;
        Ok(Driver { endpoint, socket, clock, inbox, outbox, local, nonblocking: false, read_timeout: None })
    }

    /// The engine, for getters.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The engine, for commands and events.
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// The current time on the engine's time line (zero when the driver was built).
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The socket. Its blocking mode and read timeout belong to the driver.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// One turn of the engine's run loop: sends what is queued, waits for a datagram, feeds it
    /// and every other one already waiting (up to 32 in one system call on Linux; the batch
    /// grows only while the socket is busy), sends the answers, fires due timers, sends again.
    /// Returns whether a datagram was fed.
    ///
    /// It waits no longer than `timeout` and never past the engine's next deadline (it may
    /// return a little earlier, without a datagram); `Some(Duration::ZERO)` does not wait at
    /// all, `None` waits for the deadline alone (for ever once the endpoint is closed). Errors
    /// are the socket's, other than timeouts, interruptions and ICMP reports of earlier sends
    /// (which some systems return on receive).
    pub fn step(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        // The clock is read twice per turn, before and after the wait: the engine's work in
        // between takes microseconds, and each read costs about as much as decoding a query.
        let now = self.now();
        self.flush_at(now);
        let until_deadline = self.endpoint.poll_timeout().map(|d| d.saturating_duration_since(now));
        let wait = match (timeout, until_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.recv(wait)?;
        // One clock read for the batch: every datagram in it was waiting when it was read.
        let now = self.now();
        let wake = self.wake_addr();
        let mut fed = false;
        for i in 0..self.inbox.len() {
            match self.inbox.get(i) {
                // A wake-up from a `Krpc` handle, not a message.
                (from, []) if from == wake => {}
                (from, datagram) => {
                    self.endpoint.handle_datagram(now, from, datagram);
                    fed = true;
                }
            }
        }
        // The answers first: while they wait, the engine's deadline is "now", which would run
        // the timers after every batch for nothing.
        self.flush_at(now);
        if self.endpoint.poll_timeout().is_some_and(|deadline| deadline <= now) {
            self.endpoint.handle_timeout(now);
            self.flush_at(now);
        }
        Ok(fed)
    }

    /// Sends every datagram the engine has queued. A datagram the socket refuses (no route,
    /// too long, wrong address family, a full buffer on a non-blocking socket) is reported to
    /// the engine with [`Endpoint::fail_transmit`], so the query it carried fails at once
    /// with `SendFailed`.
    pub fn flush(&mut self) {
        let now = self.now();
        self.flush_at(now);
    }

    /// [`flush`](Self::flush) at a time read by the caller.
    /// Datagrams leave in batches of up to 32 per system call (Linux).
    fn flush_at(&mut self, now: Instant) {
        let local = self.local;
        loop {
            let taken = self.outbox.fill(&mut self.endpoint, now, local);
            let mut sent = 0;
            while sent < taken {
                match self.outbox.send(&self.socket, sent) {
                    Ok(n) => sent += n,
                    Err(error) => {
                        let (transmit, to) = self.outbox.transmit(sent);
                        tracing::debug!(%to, %error, "send failed");
                        self.endpoint.fail_transmit(now, transmit);
                        sent += 1;
                    }
                }
            }
            if taken < MAX_BATCH {
                return;
            }
        }
    }

    /// Where `Krpc` handles send their empty wake-up datagrams: our own address, loopback when
    /// the socket is bound to an unspecified one.
    pub(crate) fn wake_addr(&self) -> SocketAddr {
        let mut addr = self.local;
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        addr
    }

    /// Waits for datagrams (into the inbox, empty when none came): `Some(ZERO)` polls, `None`
    /// blocks without limit.
    fn recv(&mut self, wait: Option<Duration>) -> io::Result<()> {
        let nonblocking = wait.is_some_and(|w| w.is_zero());
        if nonblocking != self.nonblocking {
            self.socket.set_nonblocking(nonblocking)?;
            self.nonblocking = nonblocking;
        }
        if !nonblocking {
            let wanted = wait.map(|w| w.max(MIN_WAIT));
            if !timeout_fits(self.read_timeout, wanted) {
                // A little short of the wait, so that it still fits the next steps' waits
                // while the deadline comes closer.
                let set = wanted.map(|w| (w - w / 8).max(MIN_WAIT));
                self.socket.set_read_timeout(set)?;
                self.read_timeout = set;
            }
        }
        match self.inbox.receive(&self.socket) {
            Ok(()) => Ok(()),
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock
                | ErrorKind::TimedOut
                | ErrorKind::Interrupted
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionRefused => Ok(()),
                _ => Err(e),
            },
        }
    }
}

/// Whether the read timeout already set (`current`) serves for a wait of `wanted`: never longer
/// (the wait must not overrun the engine's deadline), and not much shorter (at worst the socket
/// wakes up a quarter of the wait early, and the next step waits again). Setting it costs a
/// system call; this way a busy driver sets it a few dozen times per deadline, not once per
/// datagram (the wait shrinks as the deadline comes closer, or stays at the caller's cap).
fn timeout_fits(current: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (current, wanted) {
        (None, None) => true,
        (Some(current), Some(wanted)) => current <= wanted && current >= wanted - wanted / 4,
        _ => false,
    }
}

//! Datagrams in batches, for any driver: up to [`MAX_BATCH`] per system call on Linux and
//! Android (`recvmmsg` and `sendmmsg`, through nix's safe wrappers), one per call elsewhere.
//!
//! This is the one copy of the batching code; krpc-std's [`Driver`](crate::Driver) and
//! krpc-tokio's task both use it. What differs between them, how a system call waits, is the
//! [`Socket`] they pass in: a blocking `std::net::UdpSocket` (implemented here) waits for the
//! first datagram of a receive as its read timeout says, a tokio socket never waits and
//! clears its readiness on `WouldBlock`.
//!
//! Receive slots start at one and double each time a receive fills them all (the socket is
//! busy), so an idle node keeps a slot or two and a loaded one reads up to [`MAX_BATCH`]
//! datagrams per call. Outgoing datagrams are written back to back into one buffer and leave
//! together. Once the slots have grown, receiving and sending allocate nothing per datagram.
//! Nothing here looks inside a datagram.
//!
//! Addresses: an IPv6 socket reaches IPv4 nodes through IPv4-mapped addresses (when it is
//! dual-stack), so [`Outbox::fill`] maps IPv4 destinations for it, and [`Inbox::get`] gives
//! `::ffff:a.b.c.d` back as `a.b.c.d`: one address per peer, as the engine knows it.
//!
//! # Example
//! A blocking echo of one datagram, the way the drivers feed the engine:
//! ```
//! use std::net::UdpSocket;
//! use krpc_std::udp::Inbox;
//!
//! let (a, b) = (UdpSocket::bind("127.0.0.1:0")?, UdpSocket::bind("127.0.0.1:0")?);
//! a.send_to(b"hello", b.local_addr()?)?;
//! let mut inbox = Inbox::new(1500);
//! inbox.receive(&b)?; // blocks for the first datagram, takes what else is queued
//! assert_eq!(inbox.len(), 1);
//! assert_eq!(inbox.get(0), (a.local_addr()?, &b"hello"[..]));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::{SocketAddr, UdpSocket};

use krpc_core::{Endpoint, Instant, Transmit};

/// Most datagrams one system call moves: 32 on Linux and Android, 1 elsewhere.
pub const MAX_BATCH: usize = if cfg!(any(target_os = "linux", target_os = "android")) { 32 } else { 1 };

/// Most bytes of receive slots (each is as long as the longest datagram accepted, plus one).
const RECEIVE_BYTES: usize = 256 * 1024;

/// Which way a system call moves datagrams, for [`Socket::io`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A receive.
    Receive,
    /// A send.
    Send,
}

/// What the batched system calls need of a socket: a file descriptor on Linux and Android,
/// nothing elsewhere (where datagrams move one per call).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub trait Descriptor: std::os::fd::AsFd {}
#[cfg(any(target_os = "linux", target_os = "android"))]
impl<T: std::os::fd::AsFd> Descriptor for T {}

/// What the batched system calls need of a socket: a file descriptor on Linux and Android,
/// nothing elsewhere (where datagrams move one per call).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub trait Descriptor {}
#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl<T> Descriptor for T {}

/// A UDP socket as a driver uses it: how its system calls wait.
pub trait Socket: Descriptor {
    /// True when a receive waits for its first datagram as the socket is set (a blocking
    /// socket with a read timeout); false when no call ever waits (an event loop's socket).
    /// Batched receives then pass `MSG_WAITFORONE`, or `MSG_DONTWAIT` to both directions.
    const WAITS: bool;

    /// Receives one datagram: its length and sender.
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;

    /// Sends one datagram; returns the bytes sent.
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize>;

    /// Runs `call`, a batched system call on this socket, as the socket's runtime wants it
    /// (tokio's `try_io`, which clears the socket's readiness on `WouldBlock`). By default it
    /// just runs it.
    fn io<R>(&self, direction: Direction, call: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        let _ = direction;
        call()
    }
}

/// A blocking (or, with `set_nonblocking`, polling) standard socket: receives wait for the
/// first datagram as its read timeout says.
impl Socket for UdpSocket {
    const WAITS: bool = true;

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf)
    }

    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, to)
    }
}

/// The receive slots and what the last receive put in them.
#[derive(Debug)]
pub struct Inbox {
    buf: Vec<u8>,
    slot_len: usize,
    slots: usize,
    max_slots: usize,
    /// Slot, length and sender of each datagram received.
    got: Vec<(usize, usize, SocketAddr)>,
}

impl Inbox {
    /// Slots of `slot_len` bytes: a longer datagram is cut to `slot_len` (give one byte more
    /// than the engine's `max_datagram_len`, and the engine drops what was cut as too long).
    /// Where datagrams come one per call, the one slot holds any UDP payload: some systems
    /// (Windows) fail a receive into a shorter buffer instead of cutting the datagram, which
    /// a driver would take as fatal.
    pub fn new(slot_len: usize) -> Inbox {
        let slot_len = if MAX_BATCH == 1 { slot_len.max(1 << 16) } else { slot_len.max(1) };
        let max_slots = (RECEIVE_BYTES / slot_len).clamp(1, MAX_BATCH);
        Inbox { buf: vec![0; slot_len], slot_len, slots: 1, max_slots, got: Vec::with_capacity(max_slots) }
    }

    /// How many datagrams the last receive got.
    #[inline] // called per datagram, from the other driver crate too
    pub fn len(&self) -> usize {
        self.got.len()
    }

    /// Whether the last receive got none.
    #[inline] // called per datagram, from the other driver crate too
    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// The `i`th datagram received: its sender (IPv4-mapped addresses as IPv4) and bytes.
    ///
    /// # Panics
    /// When `i` is not below [`len`](Self::len).
    #[inline] // called per datagram, from the other driver crate too
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8]) {
        let (slot, len, from) = self.got[i];
        let start = slot * self.slot_len;
        // One address per peer: `::ffff:a.b.c.d` (dual-stack socket) is a.b.c.d.
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        (from, &self.buf[start..start + len])
    }

    /// Receives what is queued, up to one datagram per slot, in one system call. It waits for
    /// the first as the socket does ([`Socket::WAITS`]), never for the others; on error
    /// (`WouldBlock` included) the inbox is empty.
    pub fn receive<S: Socket>(&mut self, socket: &S) -> io::Result<()> {
        self.got.clear();
        let received = if self.slots == 1 {
            let (len, from) = socket.recv_from(&mut self.buf[..self.slot_len])?;
            self.got.push((0, len, from));
            1
        } else {
            sys::receive(socket, &mut self.buf, self.slot_len, self.slots, &mut self.got)?
        };
        if received == self.slots && self.slots < self.max_slots {
            self.slots = (self.slots * 2).min(self.max_slots);
            self.buf.resize(self.slots * self.slot_len, 0);
        }
        Ok(())
    }
}

/// Datagrams from the engine, waiting to be sent.
#[derive(Debug)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes offered to the engine for each datagram.
    room: usize,
    queued: Vec<Queued>,
}

#[derive(Clone, Copy, Debug)]
struct Queued {
    transmit: Transmit,
    /// The destination as the socket takes it.
    to: SocketAddr,
    start: usize,
}

impl Outbox {
    /// Offers the engine `room` bytes for each datagram (its `max_datagram_len`).
    pub fn new(room: usize) -> Outbox {
        Outbox { buf: vec![0; room], room, queued: Vec::with_capacity(MAX_BATCH) }
    }

    /// Takes up to [`MAX_BATCH`] datagrams from the engine, forgetting those taken before, and
    /// returns how many. `local` is the socket's address: for an IPv6 socket, IPv4
    /// destinations become IPv4-mapped ones.
    pub fn fill(&mut self, endpoint: &mut Endpoint, now: Instant, local: SocketAddr) -> usize {
        self.queued.clear();
        let mut used = 0;
        while self.queued.len() < MAX_BATCH {
            let end = used + self.room;
            if self.buf.len() < end {
                self.buf.resize(end, 0);
            }
            let Some(transmit) = endpoint.poll_transmit(now, &mut self.buf[used..end]) else { break };
            self.queued.push(Queued { transmit, to: reachable(transmit.destination, local), start: used });
            used += transmit.len;
        }
        self.queued.len()
    }

    /// The `i`th datagram taken: what the engine said of it (for
    /// [`Endpoint::fail_transmit`]), and where it goes.
    ///
    /// # Panics
    /// When `i` is not below what [`fill`](Self::fill) returned.
    #[inline] // called per datagram, from the other driver crate too
    pub fn transmit(&self, i: usize) -> (&Transmit, SocketAddr) {
        (&self.queued[i].transmit, self.queued[i].to)
    }

    /// Sends the datagrams taken from the `from`th on, in one system call: how many the
    /// socket took (at least one), or the error of the `from`th (`WouldBlock` when a socket
    /// that never waits has a full buffer).
    pub fn send<S: Socket>(&self, socket: &S, from: usize) -> io::Result<usize> {
        match self.queued.get(from..).unwrap_or_default() {
            [] => Ok(0),
            [one] => socket.send_to(self.bytes(one), one.to).map(|_| 1),
            rest => sys::send(socket, rest.iter().map(|q| (self.bytes(q), q.to))),
        }
    }

    fn bytes(&self, queued: &Queued) -> &[u8] {
        &self.buf[queued.start..queued.start + queued.transmit.len]
    }
}

/// An IPv6 socket reaches IPv4 nodes through IPv4-mapped addresses (when it is dual-stack);
/// the engine knows those nodes by their IPv4 addresses, which [`Inbox::get`] gives back.
fn reachable(to: SocketAddr, local: SocketAddr) -> SocketAddr {
    match (to, local) {
        (SocketAddr::V4(v4), SocketAddr::V6(_)) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        _ => to,
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

    use super::{Direction, MAX_BATCH, Socket};

    /// `recvmmsg` into the first `slots` slots of `buf`; returns how many datagrams it got
    /// (those from an address of no IP family, which do not occur, are left out of `got`).
    pub(super) fn receive<S: Socket>(
        socket: &S,
        buf: &mut [u8],
        slot_len: usize,
        slots: usize,
        got: &mut Vec<(usize, usize, SocketAddr)>,
    ) -> io::Result<usize> {
        let slots = slots.min(MAX_BATCH);
        let mut chunks = buf.chunks_mut(slot_len);
        let mut iovs: [[IoSliceMut<'_>; 1]; MAX_BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slots, None);
        // A waiting socket waits for the first datagram as it is set, then takes what is
        // queued; the other never waits.
        let flags = if S::WAITS { MsgFlags::MSG_WAITFORONE } else { MsgFlags::MSG_DONTWAIT };
        let fd = socket.as_fd().as_raw_fd();
        socket.io(Direction::Receive, || {
            let msgs = recvmmsg(fd, &mut headers, iovs[..slots].iter_mut(), flags, None)?;
            let mut received = 0;
            for (slot, msg) in msgs.enumerate() {
                received += 1;
                if let Some(from) = msg.address.as_ref().and_then(socket_addr) {
                    got.push((slot, msg.bytes, from));
                }
            }
            Ok(received)
        })
    }

    /// `sendmmsg` of up to [`MAX_BATCH`] datagrams: how many the socket took.
    pub(super) fn send<'a, S: Socket>(
        socket: &S,
        datagrams: impl ExactSizeIterator<Item = (&'a [u8], SocketAddr)>,
    ) -> io::Result<usize> {
        let n = datagrams.len().min(MAX_BATCH);
        let mut iovs = [[IoSlice::new(&[])]; MAX_BATCH];
        let mut addrs = [None; MAX_BATCH];
        for ((bytes, to), (iov, addr)) in datagrams.zip(iovs.iter_mut().zip(&mut addrs)) {
            *iov = [IoSlice::new(bytes)];
            *addr = Some(SockaddrStorage::from(to));
        }
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(n, None);
        let flags = if S::WAITS { MsgFlags::empty() } else { MsgFlags::MSG_DONTWAIT };
        let fd = socket.as_fd().as_raw_fd();
        socket.io(Direction::Send, || {
            let sent = sendmmsg(fd, &mut headers, &iovs[..n], &addrs[..n], [], flags)?;
            Ok(sent.count())
        })
    }

    fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = addr.as_sockaddr_in() {
            return Some(SocketAddrV4::from(*v4).into());
        }
        addr.as_sockaddr_in6().map(|v6| SocketAddrV6::from(*v6).into())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod sys {
    //! One datagram per system call ([`MAX_BATCH`](super::MAX_BATCH) is 1 here).

    use std::io;
    use std::net::SocketAddr;

    use super::Socket;

    pub(super) fn receive<S: Socket>(
        socket: &S,
        buf: &mut [u8],
        slot_len: usize,
        _slots: usize,
        got: &mut Vec<(usize, usize, SocketAddr)>,
    ) -> io::Result<usize> {
        let (len, from) = socket.recv_from(&mut buf[..slot_len])?;
        got.push((0, len, from));
        Ok(1)
    }

    pub(super) fn send<'a, S: Socket>(
        socket: &S,
        mut datagrams: impl ExactSizeIterator<Item = (&'a [u8], SocketAddr)>,
    ) -> io::Result<usize> {
        match datagrams.next() {
            Some((bytes, to)) => socket.send_to(bytes, to).map(|_| 1),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn ipv4_destinations_are_mapped_only_for_an_ipv6_socket() {
        let v4: SocketAddr = (Ipv4Addr::new(10, 0, 0, 1), 6881).into();
        let v6_local: SocketAddr = (Ipv6Addr::UNSPECIFIED, 1).into();
        let v4_local: SocketAddr = (Ipv4Addr::UNSPECIFIED, 1).into();
        assert_eq!(reachable(v4, v4_local), v4);
        let mapped = reachable(v4, v6_local);
        assert_eq!(mapped, SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into(), 6881));
        // And back: what a dual-stack socket reports is the address the engine knows.
        assert_eq!(SocketAddr::new(mapped.ip().to_canonical(), mapped.port()), v4);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the test owns its sockets
    fn a_busy_socket_grows_the_slots_and_a_batch_keeps_each_sender_and_length() {
        let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
        b.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut inbox = Inbox::new(100);
        let mut seen = Vec::new();
        for round in 0..6u8 {
            // Twice as many as the slots can hold: every receive fills them.
            for i in 0..2 * MAX_BATCH {
                a.send_to(&vec![round; i % 7 + 1], b.local_addr().unwrap()).unwrap();
            }
            let mut left = 2 * MAX_BATCH;
            while left > 0 {
                inbox.receive(&b).unwrap();
                assert!(!inbox.is_empty() && inbox.len() <= left);
                for i in 0..inbox.len() {
                    let (from, bytes) = inbox.get(i);
                    assert_eq!(from, a.local_addr().unwrap());
                    assert!(bytes.iter().all(|&byte| byte == round), "{bytes:?}");
                    seen.push(bytes.len());
                }
                left -= inbox.len();
            }
        }
        assert_eq!(seen.len(), 6 * 2 * MAX_BATCH);
        // After a few full receives the slots have grown to a whole batch.
        assert_eq!(inbox.slots, MAX_BATCH);
    }
}

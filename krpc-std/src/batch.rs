//! Datagrams in batches: up to [`MAX_BATCH`] per system call on Linux and Android (`recvmmsg`
//! and `sendmmsg`, through nix's safe wrappers), one per call elsewhere.
//!
//! Receive slots start at one and double each time a receive fills them all (the socket is
//! busy), so an idle node keeps a slot or two and a loaded one reads up to [`MAX_BATCH`]
//! datagrams per call. Outgoing datagrams are written back to back into one buffer and leave
//! together. Nothing here looks inside a datagram.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use krpc_core::{Endpoint, Instant, Transmit};

/// Most datagrams one system call moves.
pub(crate) const MAX_BATCH: usize = if cfg!(any(target_os = "linux", target_os = "android")) { 32 } else { 1 };

/// Most bytes of receive slots (each is as long as the longest datagram accepted, plus one).
const RECEIVE_BYTES: usize = 256 * 1024;

/// The receive slots and what the last receive put in them.
#[derive(Debug)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
    slot_len: usize,
    slots: usize,
    max_slots: usize,
    /// Slot, length and sender of each datagram received.
    got: Vec<(usize, usize, SocketAddr)>,
}

impl Inbox {
    /// Slots of `slot_len` bytes: a longer datagram is cut to `slot_len`, which the engine
    /// rejects when it is longer than `max_datagram_len`. Where datagrams come one per call,
    /// the one slot holds any UDP payload: some systems (Windows) fail a receive into a
    /// shorter buffer instead of cutting the datagram, which the driver would take as fatal.
    pub(crate) fn new(slot_len: usize) -> Inbox {
        let slot_len = if MAX_BATCH == 1 { slot_len.max(1 << 16) } else { slot_len };
        let max_slots = (RECEIVE_BYTES / slot_len).clamp(1, MAX_BATCH);
        Inbox { buf: vec![0; slot_len], slot_len, slots: 1, max_slots, got: Vec::with_capacity(max_slots) }
    }

    /// How many datagrams the last receive got.
    pub(crate) fn len(&self) -> usize {
        self.got.len()
    }

    /// The `i`th datagram received: its sender and bytes.
    pub(crate) fn get(&self, i: usize) -> (SocketAddr, &[u8]) {
        let (slot, len, from) = self.got[i];
        let start = slot * self.slot_len;
        (from, &self.buf[start..start + len])
    }

    /// Receives what is queued, up to one datagram per slot, in one system call; it waits for
    /// the first as the socket is set (blocking with its read timeout, or not at all), never
    /// for the others.
    pub(crate) fn receive(&mut self, socket: &UdpSocket) -> io::Result<()> {
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
pub(crate) struct Outbox {
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
    /// Offers the engine `room` bytes for each datagram.
    pub(crate) fn new(room: usize) -> Outbox {
        Outbox { buf: vec![0; room], room, queued: Vec::with_capacity(MAX_BATCH) }
    }

    /// Takes up to [`MAX_BATCH`] datagrams from the engine, forgetting those taken before;
    /// `to` gives the address the socket sends each destination to. Returns how many.
    pub(crate) fn fill(
        &mut self,
        endpoint: &mut Endpoint,
        now: Instant,
        to: impl Fn(SocketAddr) -> SocketAddr,
    ) -> usize {
        self.queued.clear();
        let mut used = 0;
        while self.queued.len() < MAX_BATCH {
            let end = used + self.room;
            if self.buf.len() < end {
                self.buf.resize(end, 0);
            }
            let Some(transmit) = endpoint.poll_transmit(now, &mut self.buf[used..end]) else { break };
            self.queued.push(Queued { transmit, to: to(transmit.destination), start: used });
            used += transmit.len;
        }
        self.queued.len()
    }

    /// The `i`th datagram taken: what the engine said of it, and where it goes.
    pub(crate) fn transmit(&self, i: usize) -> (&Transmit, SocketAddr) {
        (&self.queued[i].transmit, self.queued[i].to)
    }

    /// Sends the datagrams taken from the `from`th on, in one system call: how many the
    /// socket took (at least one), or the error of the `from`th.
    pub(crate) fn send(&self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        match &self.queued[from..] {
            [] => Ok(0),
            [one] => socket.send_to(self.bytes(one), one.to).map(|_| 1),
            rest => sys::send(socket, rest.iter().map(|q| (self.bytes(q), q.to))),
        }
    }

    fn bytes(&self, queued: &Queued) -> &[u8] {
        &self.buf[queued.start..queued.start + queued.transmit.len]
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

    use super::MAX_BATCH;

    /// `recvmmsg` into the first `slots` slots of `buf`; returns how many datagrams it got
    /// (those from an address of no IP family, which do not occur, are left out of `got`).
    pub(super) fn receive(
        socket: &UdpSocket,
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
        // Waits for the first datagram as the socket says, then takes what is queued.
        let msgs =
            recvmmsg(socket.as_raw_fd(), &mut headers, iovs[..slots].iter_mut(), MsgFlags::MSG_WAITFORONE, None)?;
        let mut received = 0;
        for (slot, msg) in msgs.enumerate() {
            received += 1;
            if let Some(from) = msg.address.as_ref().and_then(socket_addr) {
                got.push((slot, msg.bytes, from));
            }
        }
        Ok(received)
    }

    /// `sendmmsg` of up to [`MAX_BATCH`] datagrams: how many the socket took.
    pub(super) fn send<'a>(
        socket: &UdpSocket,
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
        let sent = sendmmsg(socket.as_raw_fd(), &mut headers, &iovs[..n], &addrs[..n], [], MsgFlags::empty())?;
        Ok(sent.count())
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
    use std::net::{SocketAddr, UdpSocket};

    pub(super) fn receive(
        socket: &UdpSocket,
        buf: &mut [u8],
        slot_len: usize,
        _slots: usize,
        got: &mut Vec<(usize, usize, SocketAddr)>,
    ) -> io::Result<usize> {
        let (len, from) = socket.recv_from(&mut buf[..slot_len])?;
        got.push((0, len, from));
        Ok(1)
    }

    pub(super) fn send<'a>(
        socket: &UdpSocket,
        mut datagrams: impl ExactSizeIterator<Item = (&'a [u8], SocketAddr)>,
    ) -> io::Result<usize> {
        match datagrams.next() {
            Some((bytes, to)) => socket.send_to(bytes, to).map(|_| 1),
            None => Ok(0),
        }
    }
}

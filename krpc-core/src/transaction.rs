//! Our queries in flight: random transaction ids, matching, deadlines.
//!
//! A reply completes a transaction only when its `t` **and** its source address (IP and port)
//! match the query's (k-rpc compared the IP only and issued sequential ids, weakness W3).
//! Every query waits the same configured timeout, so deadlines are already in send order and
//! a FIFO queue serves as the timer: O(1) per send, O(1) per expiry.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::hash::{BuildHasherDefault, Hasher};
use core::net::SocketAddr;

use hashbrown::HashMap;

use crate::event::OpId;
use crate::lean;
use crate::query::Token;
use crate::wire::canonical_ip;
use crate::{Instant, NodeId};

/// Bytes in the transaction ids of our queries. BEP 5 only says "typically 2 characters",
/// but the Rust `mainline` crate (pkarr's DHT) drops every query whose `t` is not exactly
/// 4 bytes, and 4 random bytes make a spoofed reply a 1 in 2^32 guess rather than 1 in 65,536.
/// libtorrent, bittorrent-dht and k-rpc echo any `t`.
pub(crate) const TID_LEN: usize = 4;

/// What a transaction is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A `query` or one node of a `query_all`.
    Op(OpId),
    /// One query of a lookup.
    Lookup(OpId),
    /// A ping to check a contact of a full bucket (built-in ping/swap).
    Check,
    /// A ping to verify a node before it may enter the routing table (`add_node`).
    Verify,
    /// A ping to verify an unknown querier. These have slots of their own, so that a flood
    /// of strangers cannot hold up table upkeep.
    VerifyQuerier,
    /// A ping to a table entry whose id another address claims: the claim wins only if this
    /// goes unanswered.
    AddressCheck,
    /// The operation ended (stopped lookup, cancelled op); the reply still feeds the routing
    /// table but reaches nobody.
    Detached,
}

impl Purpose {
    /// A ping the engine sends on its own (verification, ping/swap check): it runs in slots
    /// of its own, beside the application's `concurrency`.
    pub(crate) fn is_internal(self) -> bool {
        matches!(self, Purpose::Check | Purpose::Verify | Purpose::VerifyQuerier | Purpose::AddressCheck)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Tx {
    pub(crate) tid: u32,
    pub(crate) seq: u64,
    pub(crate) addr: SocketAddr,
    pub(crate) expect_id: Option<NodeId>,
    pub(crate) token: Option<Token>,
    pub(crate) purpose: Purpose,
    /// Set when the datagram leaves (`poll_transmit`), so time spent queued does not count.
    pub(crate) deadline: Option<Instant>,
}

/// Transaction ids are ours and random, so hashing them needs no key; a fixed multiplicative
/// hash keeps the table deterministic.
#[derive(Default)]
pub(crate) struct TidHasher(u64);

impl Hasher for TidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The capacity the slab keeps when it empties (see [`Transactions::remove`]).
const KEPT: usize = 4;

/// Slab of transactions plus the tid index and the deadline queue.
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    slots: Vec<Option<Tx>>,
    free: Vec<u32>,
    by_tid: HashMap<u32, u32, BuildHasherDefault<TidHasher>>,
    deadlines: VecDeque<(Instant, u32, u64)>,
    next_seq: u64,
    /// How many live transactions are internal pings ([`Purpose::is_internal`]).
    internal: usize,
    /// How many of those verify unknown queriers.
    queriers: usize,
}

/// Handle on a transaction that survives slot reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxRef {
    pub(crate) slot: u32,
    pub(crate) seq: u64,
}

pub(crate) fn same_endpoint(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() == b.port() && canonical_ip(a.ip()) == canonical_ip(b.ip())
}

impl Transactions {
    pub(crate) fn len(&self) -> usize {
        self.by_tid.len()
    }

    /// Live transactions that are internal pings.
    pub(crate) fn internal_len(&self) -> usize {
        self.internal
    }

    /// Live transactions that verify unknown queriers.
    pub(crate) fn querier_len(&self) -> usize {
        self.queriers
    }

    /// Registers a transaction under a fresh random tid. `draw` yields random u32s; it is
    /// asked again while the tid is in use.
    pub(crate) fn insert(
        &mut self,
        mut draw: impl FnMut() -> u32,
        addr: SocketAddr,
        expect_id: Option<NodeId>,
        token: Option<Token>,
        purpose: Purpose,
    ) -> TxRef {
        let mut tid = draw();
        while self.by_tid.contains_key(&tid) {
            tid = draw();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let tx = Tx { tid, seq, addr, expect_id, token, purpose, deadline: None };
        self.internal += usize::from(purpose.is_internal());
        self.queriers += usize::from(purpose == Purpose::VerifyQuerier);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(tx);
                slot
            }
            None => {
                // One slot first: most engines of a large network have one transaction at a
                // time.
                lean::push(&mut self.slots, Some(tx));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_tid.insert(tid, slot);
        TxRef { slot, seq }
    }

    pub(crate) fn get(&self, r: TxRef) -> Option<&Tx> {
        self.slots.get(r.slot as usize)?.as_ref().filter(|tx| tx.seq == r.seq)
    }

    pub(crate) fn get_mut(&mut self, r: TxRef) -> Option<&mut Tx> {
        self.slots.get_mut(r.slot as usize)?.as_mut().filter(|tx| tx.seq == r.seq)
    }

    /// Starts the clock of a transaction whose query just left.
    pub(crate) fn mark_sent(&mut self, r: TxRef, deadline: Instant) {
        if let Some(tx) = self.get_mut(r) {
            tx.deadline = Some(deadline);
            lean::push_back(&mut self.deadlines, (deadline, r.slot, r.seq));
        }
        // Completed transactions leave their deadline behind; keep the queue proportional
        // to the live ones.
        if self.deadlines.len() > 2 * self.len() + 64 {
            let slots = &self.slots;
            self.deadlines.retain(|&(_, slot, seq)| {
                slots.get(slot as usize).and_then(|s| s.as_ref()).is_some_and(|tx| tx.seq == seq)
            });
        }
    }

    /// Finds the transaction a reply belongs to: same tid, same IP and port.
    pub(crate) fn find(&self, tid: &[u8], from: &SocketAddr) -> Result<TxRef, Mismatch> {
        let Ok(tid) = <[u8; TID_LEN]>::try_from(tid) else { return Err(Mismatch::UnknownTid) };
        let slot = *self.by_tid.get(&u32::from_be_bytes(tid)).ok_or(Mismatch::UnknownTid)?;
        let tx = self.slots[slot as usize].as_ref().ok_or(Mismatch::UnknownTid)?;
        if tx.deadline.is_none() {
            // Not sent yet: nobody can be answering it.
            return Err(Mismatch::UnknownTid);
        }
        if !same_endpoint(&tx.addr, from) {
            return Err(Mismatch::WrongAddress);
        }
        Ok(TxRef { slot, seq: tx.seq })
    }

    pub(crate) fn remove(&mut self, r: TxRef) -> Option<Tx> {
        let tx = self.slots.get_mut(r.slot as usize)?.take_if(|tx| tx.seq == r.seq)?;
        self.by_tid.remove(&tx.tid);
        lean::push(&mut self.free, r.slot);
        self.internal -= usize::from(tx.purpose.is_internal());
        self.queriers -= usize::from(tx.purpose == Purpose::VerifyQuerier);
        if self.by_tid.is_empty() {
            // Every deadline left is stale.
            self.deadlines.clear();
            if self.slots.capacity() > KEPT || self.deadlines.capacity() > KEPT || self.by_tid.capacity() > KEPT {
                self.relax();
            }
        }
        Some(tx)
    }

    /// Gives back all memory when no transaction is live: what a burst grew, and (at the
    /// maintenance tick) the small capacity one query at a time keeps. `seq` keeps counting,
    /// so an old `TxRef` still matches nothing.
    pub(crate) fn relax(&mut self) {
        if self.by_tid.is_empty() {
            self.slots = Vec::new();
            self.free = Vec::new();
            self.by_tid = HashMap::default();
            self.deadlines = VecDeque::new();
        }
    }

    /// The earliest deadline of a live transaction.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, slot, seq)) = self.deadlines.front() {
            if self.get(TxRef { slot, seq }).is_some() {
                return Some(deadline);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// Removes and returns one transaction whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Tx> {
        while let Some(&(deadline, slot, seq)) = self.deadlines.front() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop_front();
            if let Some(tx) = self.remove(TxRef { slot, seq }) {
                return Some(tx);
            }
        }
        None
    }

    /// Every live transaction, in slot order (deterministic).
    pub(crate) fn refs(&self) -> impl Iterator<Item = TxRef> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|tx| TxRef { slot: i as u32, seq: tx.seq }))
    }

    /// Bytes held beyond the transactions themselves (for memory accounting).
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Option<Tx>>()
            + self.free.capacity() * 4
            + self.by_tid.capacity() * 8
            + self.deadlines.capacity() * core::mem::size_of::<(Instant, u32, u64)>()
    }
}

/// Why a reply matched no transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// No query of ours carries this `t`.
    UnknownTid,
    /// The `t` is ours but the reply came from another address than the query went to.
    WrongAddress,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn replies_match_on_tid_ip_and_port() {
        let mut txs = Transactions::default();
        let mut n = 7u32;
        let r = txs.insert(|| n, addr("10.0.0.1:1000"), None, None, Purpose::Check);
        let tid = txs.get(r).unwrap().tid.to_be_bytes();
        assert_eq!(txs.find(&tid, &addr("10.0.0.1:1000")), Err(Mismatch::UnknownTid), "not sent yet");
        txs.mark_sent(r, Instant::from_millis(2000));
        assert_eq!(txs.find(&tid, &addr("10.0.0.1:1000")), Ok(r));
        assert_eq!(txs.find(&tid, &addr("10.0.0.1:1001")), Err(Mismatch::WrongAddress));
        assert_eq!(txs.find(&tid, &addr("10.0.0.2:1000")), Err(Mismatch::WrongAddress));
        assert_eq!(txs.find(&[0, 0, 0, 8], &addr("10.0.0.1:1000")), Err(Mismatch::UnknownTid));
        assert_eq!(txs.find(&[0, 7], &addr("10.0.0.1:1000")), Err(Mismatch::UnknownTid), "2-byte t");
        assert_eq!(txs.find(&[0, 0, 0, 7, 0], &addr("10.0.0.1:1000")), Err(Mismatch::UnknownTid));
        assert_eq!(txs.find(&tid, &addr("[::ffff:10.0.0.1]:1000")), Ok(r), "v4-mapped is the same endpoint");
        n = 9;
        let _ = n;
    }

    #[test]
    fn tids_in_use_are_never_reissued() {
        let mut txs = Transactions::default();
        let mut draws = [5u32, 5, 5, 6].into_iter();
        let a = txs.insert(|| draws.next().unwrap(), addr("10.0.0.1:1"), None, None, Purpose::Check);
        let b = txs.insert(|| draws.next().unwrap(), addr("10.0.0.1:1"), None, None, Purpose::Check);
        assert_eq!(txs.get(a).unwrap().tid, 5);
        assert_eq!(txs.get(b).unwrap().tid, 6);
    }

    #[test]
    fn deadlines_expire_in_order_and_skip_completed_transactions() {
        let mut txs = Transactions::default();
        let mut next = 0u32;
        let mut draw = || {
            next += 1;
            next
        };
        let a = txs.insert(&mut draw, addr("10.0.0.1:1"), None, None, Purpose::Check);
        let b = txs.insert(&mut draw, addr("10.0.0.1:1"), None, None, Purpose::Check);
        txs.mark_sent(a, Instant::from_millis(10));
        txs.mark_sent(b, Instant::from_millis(20));
        assert_eq!(txs.next_deadline(), Some(Instant::from_millis(10)));
        txs.remove(a);
        assert_eq!(txs.next_deadline(), Some(Instant::from_millis(20)));
        assert!(txs.pop_expired(Instant::from_millis(19)).is_none());
        assert_eq!(txs.pop_expired(Instant::from_millis(20)).unwrap().seq, b.seq);
        assert_eq!(txs.len(), 0);
        assert_eq!(txs.next_deadline(), None);
    }

    #[test]
    fn the_deadline_queue_stays_bounded_when_replies_are_fast() {
        let mut txs = Transactions::default();
        let mut next = 0u32;
        for i in 0..10_000u64 {
            let r = txs.insert(
                || {
                    next = next.wrapping_add(1);
                    next
                },
                addr("10.0.0.1:1"),
                None,
                None,
                Purpose::Check,
            );
            txs.mark_sent(r, Instant::from_millis(i + 2000));
            txs.remove(r);
        }
        assert!(txs.deadlines.len() <= 64 + 1);
    }
}

//! Reachability: can nodes we never contacted reach us, or does a NAT or firewall stand in the
//! way? And adaptive read-only mode, which follows it (mainline's adaptive mode).
//!
//! # What proves reachability
//! A NAT or stateful firewall lets in replies, and often queries, from the addresses we sent
//! to recently: an address-restricted NAT keeps a permission per destination IP as long as its
//! mapping lives. So a query proves that we are reachable only when it comes from an IP we
//! have not sent anything to for longer than any mapping lives. RFC 4787 (REQ-5) asks NATs to
//! keep UDP mappings at least 2 minutes and recommends 5; Linux keeps an answered UDP flow
//! 180 s. We remember every IP we sent to for [`CONTACT_MEMORY`] (10 minutes, twice the
//! recommended lifetime) and up to twice that: a query from any other IP is *unsolicited*.
//! Memory is bounded and fixed: two generations of a 8,192-bit hashed bitmap (2 KiB), keyed
//! with a secret so that nobody can aim collisions at it. A collision makes a query look
//! solicited, never the reverse: errors only cost evidence.
//!
//! Queries from our own external address (hairpinning), and from addresses that lookups may
//! not query (local addresses on the public DHT), are not counted.
//!
//! # States
//! - [`Reachability::Reachable`]: an unsolicited query arrived within the last
//!   [`REACHABLE_FOR`] (30 minutes: BEP 5 nodes refresh buckets every 15, so a node in
//!   others' tables hears from strangers well within that).
//! - [`Reachability::Firewalled`]: we have been findable (a full node, or a read-only node
//!   probing) for at least [`FIREWALLED_AFTER`] and no unsolicited query came within
//!   [`REACHABLE_FOR`].
//! - [`Reachability::Unknown`]: neither yet; a read-only node that never probes stays here
//!   (others do not add read-only nodes, BEP 43, so nobody would ever query it).
//!
//! # The probe
//! A read-only node is in nobody's table, so it cannot hear from strangers. In adaptive mode it
//! probes: every [`PROBE_INTERVAL`] while reachability is unknown (every [`PROBE_RETRY`] once
//! firewalled) it looks up its own id *without* `ro=1`, as a joining full node does, and
//! answers the pings that the nodes it asked send back to verify it (only those, for
//! [`PROBE_ANSWER_WINDOW`] after asking each; every other query stays unanswered, BEP 43).
//! The nodes near its id that have room add it and hand it out in answers near its id; the
//! nodes that then query it have never heard from it, so a reachable node soon gets
//! unsolicited queries and a NATed one does not. A first probe that only reached the nodes of
//! a sparse table is followed by others as the network around the id fills with full nodes.
//! The cost is bounded: a NATed node enters the tables of the few nodes nearest its id with
//! room, stays good there for at most BEP 5's 15 minutes after the probe (it answers their
//! later queries never), and once firewalled probes once an hour.

use alloc::boxed::Box;
use core::hash::Hasher;
use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use crate::rng::EngineRng;
use arrayvec::ArrayVec;
use rand_core::Rng;
use siphasher::sip::SipHasher13;

use crate::Instant;
use crate::wire::canonical_ip;

/// Whether nodes we never contacted can reach us: in [`NodeStatus`](crate::NodeStatus) and
/// [`Endpoint::reachability`](crate::Endpoint::reachability). The rules are in the
/// [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reachability {
    /// Not known yet: no unsolicited query so far, and not findable for long enough to
    /// conclude anything (a read-only node that does not probe stays here).
    Unknown,
    /// A query from an address we had not sent to for at least [`CONTACT_MEMORY`] arrived
    /// within the last [`REACHABLE_FOR`].
    Reachable,
    /// Findable (a full node, or probing) for at least [`FIREWALLED_AFTER`], and no
    /// unsolicited query within the last [`REACHABLE_FOR`]: a NAT or firewall drops them.
    Firewalled,
}

/// Every IP we sent to is remembered at least this long (and at most twice as long): a
/// query from it may have come through a NAT's permission, so it proves nothing.
pub const CONTACT_MEMORY: Duration = Duration::from_secs(10 * 60);

/// One unsolicited query keeps us [`Reachability::Reachable`] this long.
pub const REACHABLE_FOR: Duration = Duration::from_secs(30 * 60);

/// Findable this long without an unsolicited query: [`Reachability::Firewalled`].
pub const FIREWALLED_AFTER: Duration = Duration::from_secs(20 * 60);

/// A read-only adaptive node probes this often while its reachability is unknown.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// ... and this often once it is firewalled (in case a port was opened meanwhile).
pub const PROBE_RETRY: Duration = Duration::from_secs(60 * 60);

/// A node the probe asked may verify us with a ping for this long after it was asked.
pub const PROBE_ANSWER_WINDOW: Duration = Duration::from_secs(60);

/// The probe's most recent destinations whose pings are answered (a lookup asks about 10-20).
const MAX_PROBED: usize = 32;

/// Bits per generation of the contact filter (a power of two).
const FILTER_BITS: usize = 8192;
const WORDS: usize = FILTER_BITS / 64;

/// The IPs we sent to recently: two generations of a keyed, hashed bitmap (two bits per IP).
/// An IP recorded in the current generation is remembered between [`CONTACT_MEMORY`] and twice
/// that. Never allocates after construction.
#[derive(Clone)]
pub(crate) struct RecentContacts {
    generations: [[u64; WORDS]; 2],
    /// Index of the current generation.
    current: usize,
    started: Instant,
    key: (u64, u64),
}

impl core::fmt::Debug for RecentContacts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecentContacts").field("started", &self.started).finish_non_exhaustive()
    }
}

impl RecentContacts {
    /// The key comes from a stream of its own of the endpoint's RNG (the same seed, another
    /// ChaCha stream), so that every other random choice of the endpoint is what it was
    /// before reachability was tracked: traces of seeded runs do not change.
    fn new(rng: &EngineRng, now: Instant) -> Self {
        let mut own = rng.stream(u64::from_be_bytes(*b"reachbl\0"));
        RecentContacts { generations: [[0; WORDS]; 2], current: 0, started: now, key: (own.next_u64(), own.next_u64()) }
    }

    fn bits(&self, ip: IpAddr) -> [usize; 2] {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        match canonical_ip(ip) {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        let x = h.finish();
        [(x as usize) % FILTER_BITS, ((x >> 32) as usize) % FILTER_BITS]
    }

    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.started);
        if age < CONTACT_MEMORY {
            return;
        }
        if age >= CONTACT_MEMORY * 2 {
            // Nothing was recorded for a whole generation: both are stale.
            self.generations = [[0; WORDS]; 2];
        } else {
            self.current ^= 1;
            self.generations[self.current] = [0; WORDS];
        }
        self.started = now;
    }

    /// We sent a datagram to `ip`.
    pub(crate) fn record(&mut self, ip: IpAddr, now: Instant) {
        self.rotate(now);
        let bits = self.bits(ip);
        let generation = &mut self.generations[self.current];
        for b in bits {
            generation[b / 64] |= 1 << (b % 64);
        }
    }

    /// Did we send to `ip` within the memory (or does a collision say so)?
    pub(crate) fn contains(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.rotate(now);
        let bits = self.bits(ip);
        self.generations.iter().any(|g| bits.iter().all(|&b| g[b / 64] & (1 << (b % 64)) != 0))
    }
}

/// The reachability tracker and the probe schedule of adaptive mode.
#[derive(Debug)]
pub(crate) struct Tracker {
    contacts: Box<RecentContacts>,
    last_unsolicited: Option<Instant>,
    /// Since when others could find us: the first probe, or the start as a full node.
    findable_since: Option<Instant>,
    /// The last probe, or when a full node went back to read-only.
    last_probe: Option<Instant>,
    /// The nodes the probe asked, and when: their verification pings are answered.
    probed: ArrayVec<(SocketAddr, Instant), MAX_PROBED>,
}

impl Tracker {
    /// `findable`: we start as a full node (others may add us from the first query).
    pub(crate) fn new(rng: &EngineRng, now: Instant, findable: bool) -> Self {
        Tracker {
            contacts: Box::new(RecentContacts::new(rng, now)),
            last_unsolicited: None,
            findable_since: findable.then_some(now),
            last_probe: None,
            probed: ArrayVec::new(),
        }
    }

    /// We sent a datagram to `to`.
    pub(crate) fn sent_to(&mut self, to: &SocketAddr, now: Instant) {
        self.contacts.record(to.ip(), now);
    }

    /// A query arrived from `from`; true when it is unsolicited (and so proof of reachability).
    pub(crate) fn query_from(&mut self, from: &SocketAddr, now: Instant) -> bool {
        if self.contacts.contains(from.ip(), now) {
            return false;
        }
        self.last_unsolicited = Some(now);
        true
    }

    pub(crate) fn state(&self, now: Instant) -> Reachability {
        if self.last_unsolicited.is_some_and(|t| now.saturating_duration_since(t) < REACHABLE_FOR) {
            Reachability::Reachable
        } else if self.findable_since.is_some_and(|t| now.saturating_duration_since(t) >= FIREWALLED_AFTER) {
            Reachability::Firewalled
        } else {
            Reachability::Unknown
        }
    }

    /// We became (or stay) findable from now on: a full node.
    pub(crate) fn findable(&mut self, now: Instant) {
        self.findable_since.get_or_insert(now);
    }

    /// Whether a probe is due: [`PROBE_INTERVAL`] after the last, [`PROBE_RETRY`] once
    /// firewalled.
    pub(crate) fn probe_due(&self, now: Instant) -> bool {
        let wait = if self.state(now) == Reachability::Firewalled { PROBE_RETRY } else { PROBE_INTERVAL };
        self.last_probe.is_none_or(|t| now.saturating_duration_since(t) >= wait)
    }

    /// A probe started: from now on others may find us.
    pub(crate) fn probe_started(&mut self, now: Instant) {
        self.last_probe = Some(now);
        self.findable(now);
    }

    /// The probe asked `to` (a query without `ro=1`).
    pub(crate) fn probe_sent(&mut self, to: SocketAddr, now: Instant) {
        if self.probed.is_full() {
            self.probed.remove(0);
        }
        self.probed.push((to, now));
    }

    /// Back to read-only: the next probe is a retry.
    pub(crate) fn retry_later(&mut self, now: Instant) {
        self.last_probe = Some(now);
    }

    /// Did the probe ask `from` within [`PROBE_ANSWER_WINDOW`]?
    pub(crate) fn was_probed(&self, from: &SocketAddr, now: Instant) -> bool {
        self.probed.iter().any(|(p, t)| {
            crate::transaction::same_endpoint(p, from) && now.saturating_duration_since(*t) < PROBE_ANSWER_WINDOW
        })
    }

    pub(crate) fn memory_footprint(&self) -> usize {
        core::mem::size_of::<Self>() + core::mem::size_of::<RecentContacts>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4((0x0a00_0000 | i).into())
    }

    #[test]
    fn contacts_are_remembered_for_the_memory_and_forgotten_after_twice_that() {
        let rng = EngineRng::from_seed([1; 32]);
        let mut c = RecentContacts::new(&rng, at(0));
        c.record(ip(1), at(0));
        assert!(c.contains(ip(1), at(0)));
        assert!(!c.contains(ip(2), at(0)), "never contacted");
        // One rotation later it is still there.
        assert!(c.contains(ip(1), at(CONTACT_MEMORY.as_secs())));
        assert!(c.contains(ip(1), at(CONTACT_MEMORY.as_secs() * 2 - 1)));
        // After the second rotation it is gone.
        assert!(!c.contains(ip(1), at(CONTACT_MEMORY.as_secs() * 2 + 1)));
    }

    #[test]
    fn the_filter_is_not_saturated_by_a_thousand_contacts() {
        let rng = EngineRng::from_seed([2; 32]);
        let mut c = RecentContacts::new(&rng, at(0));
        for i in 0..1000 {
            c.record(ip(i), at(0));
        }
        assert!((0..1000).all(|i| c.contains(ip(i), at(1))), "no false negatives");
        let false_positives = (1000..11_000).filter(|&i| c.contains(ip(i), at(1))).count();
        // Two bits of 8,192 per IP: about (1 - e^(-2000/8192))^2 = 4.7 %.
        assert!(false_positives < 800, "{false_positives} of 10,000 strangers look contacted");
    }

    #[test]
    fn reachable_after_an_unsolicited_query_firewalled_after_silence() {
        let rng = EngineRng::from_seed([3; 32]);
        let mut t = Tracker::new(&rng, at(0), false);
        assert_eq!(t.state(at(0)), Reachability::Unknown);
        assert_eq!(t.state(at(10_000)), Reachability::Unknown, "never findable: never firewalled");
        let probed: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        t.sent_to(&probed, at(0));
        t.probe_started(at(0));
        t.probe_sent(probed, at(0));
        assert!(!t.probe_due(at(PROBE_INTERVAL.as_secs() - 1)));
        assert!(t.probe_due(at(PROBE_INTERVAL.as_secs())));
        assert!(t.was_probed(&probed, at(1)));
        assert!(!t.was_probed(&probed, at(PROBE_ANSWER_WINDOW.as_secs())), "the window closed");
        assert!(!t.query_from(&probed, at(1)), "the probed node's ping back proves nothing");
        assert_eq!(t.state(at(1)), Reachability::Unknown);
        assert_eq!(t.state(at(FIREWALLED_AFTER.as_secs())), Reachability::Firewalled);
        assert!(!t.probe_due(at(FIREWALLED_AFTER.as_secs())), "firewalled: the next probe is an hour after the last");
        assert!(t.probe_due(at(PROBE_RETRY.as_secs())));
        let stranger: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        assert!(t.query_from(&stranger, at(FIREWALLED_AFTER.as_secs())));
        assert_eq!(t.state(at(FIREWALLED_AFTER.as_secs())), Reachability::Reachable);
        assert_eq!(t.state(at((FIREWALLED_AFTER + REACHABLE_FOR).as_secs())), Reachability::Firewalled, "lost");
    }
}

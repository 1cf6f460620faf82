//! The peers stored by `announce_peer` and served by `get_peers`, with hard caps.
//!
//! BEP 5: an `announce_peer` with a valid token makes the queried node "store the IP address of
//! the querying node and the supplied port number under the infohash in its store of peer
//! contact information", and `get_peers` returns them as `values`. BEP 33 adds a seed flag
//! ("Nodes following this BEP must store the seed status of announcing nodes") and scrape
//! filters over the stored addresses.
//!
//! # Caps and their defaults ([`PeerStoreLimits`])
//!
//! | limit | default | why |
//! |---|---|---|
//! | peers per info-hash | 500 | libtorrent's `dht_max_peers`; BEP 33 wants `max(seeds, peers)` below 6000, and 500 keeps scrape estimates meaningful while a reply carries at most about 100 |
//! | peers in total | 10,000 | a full store holds about 2.5 MB (56-byte entries, their queue records, the maps) |
//! | info-hashes | 1,000 | libtorrent stores 2000 torrents; a node holds the hashes near its own id, far fewer in practice |
//! | entries per public IP | 32 | weakness W19: one address must not be able to flush the store (see below) |
//! | time to live | 30 minutes | two BEP 5 re-announce periods of libtorrent's 15 minutes; the JS store never expired peers |
//!
//! Every limit is enforced on every call; tests fill past each one.
//!
//! # Eviction order
//!
//! - One entry per `(IP, port)` per info-hash: a re-announce refreshes its expiry and its seed
//!   flag and never adds an entry. (BEP 33 keys the set by IP alone; the port is kept in the key
//!   so that peers behind one NAT, and simulations on one loopback address, stay distinct.)
//! - Expired entries are removed before anything else is considered.
//! - A full info-hash replaces its own oldest entry (the one announced least recently).
//! - A new info-hash when all hash slots are taken evicts the info-hash announced to least
//!   recently, with all its peers.
//! - A full store evicts the globally oldest entry.
//! - An IP that already holds [`PeerStoreLimits::max_peers_per_ip`] entries cannot add another
//!   one (it can still refresh its entries): [`Refused::IpQuota`]. The stored address is always
//!   the announcer's own (the token proves it), so without this one machine could push out
//!   every other peer; with it, flushing the default store takes over 300 addresses. Private,
//!   loopback and link-local addresses ([`crate::dht::is_exempt`]) are not limited, so local
//!   networks and loopback simulations keep working.
//!
//! # Memory
//!
//! Entries live in one small vector per info-hash. Expiry order is kept in an insertion-ordered
//! queue of `(expiry, stamp, info-hash)`, where the stamp identifies one version of an entry; a
//! refreshed or evicted entry leaves its old queue record behind (lazy deletion), and the queue
//! is compacted when it grows past twice the live entries plus a small slack. A second queue
//! orders the info-hashes by their last announce in the same way. So memory is bounded by the
//! caps whatever the input: [`PeerStore::memory_bytes`] reports it. Maps are keyed with
//! SipHash-1-3 under a random key, because info-hashes and addresses are chosen by strangers.
//!
//! # Choosing which peers to return
//!
//! When more live peers match than a reply can carry, [`PeerStore::get`] picks a uniformly
//! random subset (selection sampling, one pass, no allocation) with the `rng` it is given, so
//! repeated queries see different peers and no peer is starved. With
//! [`PeerRequest::prefer_non_seeds`] (BEP 33's `noseed=1`: "try to fill the values list with
//! non-seed items on a best-effort basis") non-seeds are chosen first and seeds fill the rest.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::hash::BuildHasher;
use core::mem::size_of;
use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use arrayvec::ArrayVec;
use hashbrown::HashMap;
use siphasher::sip::SipHasher13;

use super::scrape::{BLOOM_BYTES, bloom_insert};
use super::security::is_exempt;
use crate::wire::canonical_ip;
use crate::{Instant, NodeId};

/// Default cap on the peers stored for one info-hash.
pub const DEFAULT_MAX_PEERS_PER_HASH: usize = 500;
/// Default cap on the peers stored in total.
pub const DEFAULT_MAX_PEERS: usize = 10_000;
/// Default cap on the info-hashes stored.
pub const DEFAULT_MAX_HASHES: usize = 1_000;
/// Default cap on the entries one public IP address may hold.
pub const DEFAULT_MAX_PEERS_PER_IP: usize = 32;
/// Default lifetime of an announce.
pub const DEFAULT_PEER_TTL: Duration = Duration::from_secs(30 * 60);

/// Queue records allowed beyond twice the live entries before a compaction.
const QUEUE_SLACK: usize = 64;

/// The caps of a [`PeerStore`]. Zero caps are raised to 1, and the per-hash cap is lowered to
/// the total cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStoreLimits {
    /// Peers stored for one info-hash.
    pub max_peers_per_hash: usize,
    /// Peers stored in total.
    pub max_peers: usize,
    /// Info-hashes stored.
    pub max_hashes: usize,
    /// Entries (over all info-hashes) one non-exempt IP address may hold.
    pub max_peers_per_ip: usize,
    /// How long an announce is kept.
    pub ttl: Duration,
}

impl Default for PeerStoreLimits {
    fn default() -> Self {
        PeerStoreLimits {
            max_peers_per_hash: DEFAULT_MAX_PEERS_PER_HASH,
            max_peers: DEFAULT_MAX_PEERS,
            max_hashes: DEFAULT_MAX_HASHES,
            max_peers_per_ip: DEFAULT_MAX_PEERS_PER_IP,
            ttl: DEFAULT_PEER_TTL,
        }
    }
}

impl PeerStoreLimits {
    fn sanitized(self) -> Self {
        let max_peers = self.max_peers.max(1);
        PeerStoreLimits {
            max_peers,
            max_peers_per_hash: self.max_peers_per_hash.clamp(1, max_peers),
            max_hashes: self.max_hashes.max(1),
            max_peers_per_ip: self.max_peers_per_ip.max(1),
            ttl: self.ttl,
        }
    }
}

/// An address family. IPv4-mapped IPv6 addresses belong to [`Family::V4`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (6-byte compact peers).
    V4,
    /// IPv6 (18-byte compact peers, BEP 32).
    V6,
}

impl Family {
    /// The family of `ip`, after mapping `::ffff:a.b.c.d` to IPv4.
    pub fn of(ip: IpAddr) -> Family {
        match canonical_ip(ip) {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// What [`PeerStore::get`] should return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerRequest {
    /// Only peers of this family (BEP 32: "announce_peer can only announce the address family
    /// of the request", and `values` should not mix families).
    pub family: Family,
    /// At most this many (further limited by the room left in the output).
    pub max: usize,
    /// BEP 33 `noseed=1`: non-seeds first, seeds only to fill up.
    pub prefer_non_seeds: bool,
}

impl PeerRequest {
    /// Up to `max` peers of `family`, seeds and non-seeds alike.
    pub const fn new(family: Family, max: usize) -> Self {
        PeerRequest { family, max, prefer_non_seeds: false }
    }
}

/// A successful announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A new entry (possibly in place of an evicted one).
    Added,
    /// The `(IP, port)` was already stored for this info-hash: its expiry and seed flag were
    /// updated.
    Refreshed,
}

/// Why an announce was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Port 0, or an unspecified, multicast or broadcast address: nobody can connect there.
    InvalidAddress,
    /// The address already holds [`PeerStoreLimits::max_peers_per_ip`] entries.
    IpQuota,
}

/// Live seeds and non-seeds stored for one info-hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwarmCounts {
    /// Entries announced with `seed=1`.
    pub seeds: usize,
    /// The other entries.
    pub peers: usize,
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    addr: SocketAddr,
    expires: Instant,
    stamp: u64,
    seed: bool,
}

impl Peer {
    fn is_live(&self, now: Instant) -> bool {
        now < self.expires
    }
}

#[derive(Clone, Debug, Default)]
struct Swarm {
    peers: Vec<Peer>,
    /// The stamp of the last announce to this info-hash.
    touched: u64,
}

/// One version of one entry, in expiry order.
#[derive(Clone, Copy, Debug)]
struct Expiry {
    expires: Instant,
    stamp: u64,
    hash: NodeId,
}

/// One announce to an info-hash, in announce order.
#[derive(Clone, Copy, Debug)]
struct Touch {
    stamp: u64,
    hash: NodeId,
}

/// SipHash-1-3 under a random key, for maps keyed by data strangers choose.
#[derive(Clone)]
struct KeyedHasher {
    k0: u64,
    k1: u64,
}

impl core::fmt::Debug for KeyedHasher {
    /// Never shows the key.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeyedHasher")
    }
}

impl BuildHasher for KeyedHasher {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// The announce store of one node (BEP 5 `announce_peer`, BEP 33 seeds and scrapes).
///
/// ```
/// use core::net::SocketAddr;
/// use arrayvec::ArrayVec;
/// use krpc_core::{Instant, NodeId};
/// use krpc_core::dht::{Family, PeerRequest, PeerStore, PeerStoreLimits, Stored};
/// use rand_chacha::ChaCha12Rng;
/// use rand_core::SeedableRng;
///
/// let mut rng = ChaCha12Rng::seed_from_u64(1);
/// let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng);
/// let hash = NodeId::from_array([0x42; 20]);
/// let peer: SocketAddr = "198.51.100.3:6881".parse().unwrap();
///
/// assert_eq!(store.announce(&hash, peer, false, Instant::ZERO), Ok(Stored::Added));
/// assert_eq!(store.announce(&hash, peer, true, Instant::ZERO), Ok(Stored::Refreshed));
///
/// let mut out = ArrayVec::<SocketAddr, 100>::new();
/// store.get(&hash, Instant::ZERO, PeerRequest::new(Family::V4, 50), &mut rng, &mut out);
/// assert_eq!(out.as_slice(), &[peer]);
/// assert_eq!(store.counts(&hash, Instant::ZERO).seeds, 1);
/// ```
#[derive(Clone, Debug)]
pub struct PeerStore {
    limits: PeerStoreLimits,
    swarms: HashMap<NodeId, Swarm, KeyedHasher>,
    per_ip: HashMap<IpAddr, u32, KeyedHasher>,
    expiries: VecDeque<Expiry>,
    touches: VecDeque<Touch>,
    len: usize,
    next_stamp: u64,
}

impl PeerStore {
    /// An empty store. `rng` keys the hash maps.
    pub fn new<R: rand_core::Rng + ?Sized>(limits: PeerStoreLimits, rng: &mut R) -> Self {
        let hasher = KeyedHasher { k0: rng.next_u64(), k1: rng.next_u64() };
        PeerStore {
            limits: limits.sanitized(),
            swarms: HashMap::with_hasher(hasher.clone()),
            per_ip: HashMap::with_hasher(hasher),
            expiries: VecDeque::new(),
            touches: VecDeque::new(),
            len: 0,
            next_stamp: 0,
        }
    }

    /// The caps in force (after sanitizing).
    pub fn limits(&self) -> &PeerStoreLimits {
        &self.limits
    }

    /// Stores `peer` under `info_hash` until `now + ttl`, or refreshes it (BEP 5
    /// `announce_peer`; `seed` is BEP 33's `seed=1`). The caller has checked the token and
    /// resolved `implied_port`. An IPv4-mapped address is stored as IPv4.
    pub fn announce(
        &mut self,
        info_hash: &NodeId,
        peer: SocketAddr,
        seed: bool,
        now: Instant,
    ) -> Result<Stored, Refused> {
        let addr = SocketAddr::new(canonical_ip(peer.ip()), peer.port());
        if !is_storable(addr) {
            return Err(Refused::InvalidAddress);
        }
        self.expire(now);
        let expires = now.saturating_add(self.limits.ttl);

        let existing = match self.swarms.get_mut(info_hash) {
            Some(swarm) => match swarm.peers.iter_mut().find(|p| p.addr == addr) {
                Some(p) => {
                    let stamp = bump(&mut self.next_stamp);
                    *p = Peer { addr, expires, stamp, seed };
                    swarm.touched = stamp;
                    self.record(info_hash, expires, stamp);
                    return Ok(Stored::Refreshed);
                }
                None => Some(swarm.peers.len()),
            },
            None => None,
        };
        if !self.accepts_new_from(addr.ip()) {
            return Err(Refused::IpQuota);
        }

        match existing {
            Some(n) if n >= self.limits.max_peers_per_hash => {
                self.replace_oldest_in(info_hash, addr, seed, expires);
                return Ok(Stored::Added);
            }
            None if self.swarms.len() >= self.limits.max_hashes => self.evict_least_recent_hash(),
            _ => {}
        }
        while self.len >= self.limits.max_peers && self.evict_oldest() {}

        let stamp = bump(&mut self.next_stamp);
        let swarm = self.swarms.entry(*info_hash).or_default();
        swarm.peers.push(Peer { addr, expires, stamp, seed });
        swarm.touched = stamp;
        self.len += 1;
        *self.per_ip.entry(addr.ip()).or_insert(0) += 1;
        self.record(info_hash, expires, stamp);
        Ok(Stored::Added)
    }

    /// Whether a *new* entry from `ip` would be accepted now (a refresh always is). An endpoint
    /// can withhold the `get_peers` token when this is false: BEP 33, "If a node does not
    /// return a token it indicates that it currently cannot accept announces".
    pub fn accepts_new_from(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        is_exempt(ip) || self.per_ip.get(&ip).is_none_or(|&n| (n as usize) < self.limits.max_peers_per_ip)
    }

    /// Writes up to `request.max` live peers of `request.family` for `info_hash` into `out`
    /// (never more than its remaining capacity), chosen uniformly at random with `rng` when
    /// more are stored. Returns how many were written. Never allocates.
    pub fn get<R: rand_core::Rng + ?Sized, const N: usize>(
        &self,
        info_hash: &NodeId,
        now: Instant,
        request: PeerRequest,
        rng: &mut R,
        out: &mut ArrayVec<SocketAddr, N>,
    ) -> usize {
        let Some(swarm) = self.swarms.get(info_hash) else {
            return 0;
        };
        let max = request.max.min(out.remaining_capacity());
        let matches = |p: &Peer| p.is_live(now) && Family::of(p.addr.ip()) == request.family;
        let before = out.len();
        if request.prefer_non_seeds {
            let non_seeds = |p: &Peer| matches(p) && !p.seed;
            let taken = sample(&swarm.peers, non_seeds, max, rng, out);
            sample(&swarm.peers, |p: &Peer| matches(p) && p.seed, max - taken, rng, out);
        } else {
            sample(&swarm.peers, matches, max, rng, out);
        }
        out.len() - before
    }

    /// BEP 51: up to `N` info-hashes with live peers, drawn uniformly at random (reservoir
    /// sampling, in the map's seeded order), into `out`; returns how many info-hashes have
    /// live peers (`num`). One pass over the store.
    pub fn sample_hashes<R: rand_core::Rng + ?Sized, const N: usize>(
        &self,
        now: Instant,
        rng: &mut R,
        out: &mut ArrayVec<NodeId, N>,
    ) -> usize {
        let start = out.len();
        let room = out.remaining_capacity();
        let mut live = 0usize;
        for (hash, swarm) in &self.swarms {
            if !swarm.peers.iter().any(|p| p.is_live(now)) {
                continue;
            }
            live += 1;
            if live <= room {
                out.push(*hash);
            } else {
                let j = (rng.next_u64() % live as u64) as usize;
                if j < room {
                    out[start + j] = *hash;
                }
            }
        }
        live
    }

    /// Live seeds and non-seeds stored for `info_hash`, both families together.
    pub fn counts(&self, info_hash: &NodeId, now: Instant) -> SwarmCounts {
        let mut counts = SwarmCounts::default();
        for p in self.swarms.get(info_hash).into_iter().flat_map(|s| &s.peers).filter(|p| p.is_live(now)) {
            if p.seed {
                counts.seeds += 1;
            } else {
                counts.peers += 1;
            }
        }
        counts
    }

    /// BEP 33 scrape filters `(BFsd, BFpe)` over the live entries of `info_hash`: the IP
    /// addresses of seeds in the first, of the other peers in the second. `None` when no live
    /// entry is stored (BEP 33 adds the filters only if the node "has database entries for that
    /// infohash").
    pub fn bloom(&self, info_hash: &NodeId, now: Instant) -> Option<([u8; BLOOM_BYTES], [u8; BLOOM_BYTES])> {
        let swarm = self.swarms.get(info_hash)?;
        let mut seeds = [0u8; BLOOM_BYTES];
        let mut peers = [0u8; BLOOM_BYTES];
        let mut any = false;
        for p in swarm.peers.iter().filter(|p| p.is_live(now)) {
            bloom_insert(if p.seed { &mut seeds } else { &mut peers }, p.addr.ip());
            any = true;
        }
        any.then_some((seeds, peers))
    }

    /// Removes every entry that has expired at `now`; returns how many. [`PeerStore::announce`]
    /// does this itself, so calling it is only needed to free memory while no announces
    /// arrive. Amortised O(1) per entry.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(front) = self.expiries.front().copied() {
            if front.expires > now {
                break;
            }
            self.expiries.pop_front();
            if self.remove_stamp(&front.hash, front.stamp) {
                removed += 1;
            }
        }
        self.compact();
        // A flood of announces grows the maps and queues to its peak; once its entries
        // expired, give the room back (here, at expiry, not per announce). Nothing iterates the maps in an
        // order that reaches an answer, so rehashing changes no output.
        shrink_map(&mut self.swarms);
        shrink_map(&mut self.per_ip);
        shrink(&mut self.expiries);
        shrink(&mut self.touches);
        removed
    }

    /// Entries stored (expired ones count until the next [`PeerStore::expire`] or announce).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Info-hashes stored.
    pub fn hashes(&self) -> usize {
        self.swarms.len()
    }

    /// An estimate of the heap memory held, in bytes: allocated capacity times element size
    /// for every map (plus one control byte per slot), vector and queue.
    pub fn memory_bytes(&self) -> usize {
        let swarm_slots = self.swarms.capacity() * (size_of::<(NodeId, Swarm)>() + 1);
        let peers: usize = self.swarms.values().map(|s| s.peers.capacity() * size_of::<Peer>()).sum();
        let ip_slots = self.per_ip.capacity() * (size_of::<(IpAddr, u32)>() + 1);
        let queues = self.expiries.capacity() * size_of::<Expiry>() + self.touches.capacity() * size_of::<Touch>();
        swarm_slots + peers + ip_slots + queues
    }

    /// Pushes the queue records of a new entry version and compacts the queues if needed.
    fn record(&mut self, hash: &NodeId, expires: Instant, stamp: u64) {
        self.expiries.push_back(Expiry { expires, stamp, hash: *hash });
        self.touches.push_back(Touch { stamp, hash: *hash });
        self.compact();
    }

    /// Drops stale queue records once a queue holds more than twice its live records plus
    /// [`QUEUE_SLACK`].
    fn compact(&mut self) {
        let swarms = &self.swarms;
        if self.expiries.len() > 2 * self.len + QUEUE_SLACK {
            self.expiries.retain(|e| swarms.get(&e.hash).is_some_and(|s| s.peers.iter().any(|p| p.stamp == e.stamp)));
            shrink(&mut self.expiries);
        }
        if self.touches.len() > 2 * swarms.len() + QUEUE_SLACK {
            self.touches.retain(|t| swarms.get(&t.hash).is_some_and(|s| s.touched == t.stamp));
            shrink(&mut self.touches);
        }
    }

    /// Puts a new entry in place of the least recently announced one of a full info-hash.
    fn replace_oldest_in(&mut self, hash: &NodeId, addr: SocketAddr, seed: bool, expires: Instant) {
        let stamp = bump(&mut self.next_stamp);
        let Some(swarm) = self.swarms.get_mut(hash) else { return };
        let Some(oldest) = swarm.peers.iter_mut().min_by_key(|p| (p.expires, p.stamp)) else { return };
        let old_ip = oldest.addr.ip();
        *oldest = Peer { addr, expires, stamp, seed };
        swarm.touched = stamp;
        release_ip(&mut self.per_ip, old_ip);
        *self.per_ip.entry(addr.ip()).or_insert(0) += 1;
        self.record(hash, expires, stamp);
    }

    /// Removes the info-hash whose last announce is the oldest, with all its entries.
    fn evict_least_recent_hash(&mut self) {
        while let Some(t) = self.touches.pop_front() {
            if self.swarms.get(&t.hash).is_some_and(|s| s.touched == t.stamp) {
                if let Some(swarm) = self.swarms.remove(&t.hash) {
                    self.len -= swarm.peers.len();
                    for p in &swarm.peers {
                        release_ip(&mut self.per_ip, p.addr.ip());
                    }
                }
                return;
            }
        }
    }

    /// Removes the live entry that expires first. Every stored entry has a queue record, so
    /// this fails only on an empty store.
    fn evict_oldest(&mut self) -> bool {
        while let Some(front) = self.expiries.pop_front() {
            if self.remove_stamp(&front.hash, front.stamp) {
                return true;
            }
        }
        false
    }

    /// Removes the entry of `hash` whose current version is `stamp`, if it still exists.
    fn remove_stamp(&mut self, hash: &NodeId, stamp: u64) -> bool {
        let Some(swarm) = self.swarms.get_mut(hash) else { return false };
        let Some(i) = swarm.peers.iter().position(|p| p.stamp == stamp) else { return false };
        let peer = swarm.peers.swap_remove(i);
        if swarm.peers.is_empty() {
            self.swarms.remove(hash);
        } else if swarm.peers.capacity() > 8 && swarm.peers.len() * 4 < swarm.peers.capacity() {
            let keep = swarm.peers.len() * 2;
            swarm.peers.shrink_to(keep);
        }
        self.len -= 1;
        release_ip(&mut self.per_ip, peer.addr.ip());
        true
    }
}

fn bump(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

fn release_ip(per_ip: &mut HashMap<IpAddr, u32, KeyedHasher>, ip: IpAddr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}

/// Shrinks a map that is less than a quarter full to twice its entries (an empty one frees its
/// table).
fn shrink_map<K: Eq + core::hash::Hash, V>(map: &mut HashMap<K, V, KeyedHasher>) {
    if map.capacity() > 4 * map.len() + 16 || (map.is_empty() && map.capacity() > 0) {
        map.shrink_to(2 * map.len());
    }
}

fn shrink<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > 4 * queue.len() + 2 * QUEUE_SLACK {
        queue.shrink_to(2 * queue.len() + QUEUE_SLACK);
    }
}

/// Whether anyone could connect to `addr` (already canonical).
fn is_storable(addr: SocketAddr) -> bool {
    addr.port() != 0
        && match addr.ip() {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
            IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
        }
}

/// Selection sampling (Knuth's Algorithm S): pushes a uniformly random subset of `want` of the
/// peers matching `keep` into `out`, in stored order. Returns how many were pushed.
fn sample<R: rand_core::Rng + ?Sized, const N: usize>(
    peers: &[Peer],
    keep: impl Fn(&Peer) -> bool,
    want: usize,
    rng: &mut R,
    out: &mut ArrayVec<SocketAddr, N>,
) -> usize {
    let mut left = peers.iter().filter(|p| keep(p)).count();
    let mut need = want.min(left).min(out.remaining_capacity());
    let taken = need;
    for p in peers.iter().filter(|p| keep(p)) {
        if need == 0 {
            break;
        }
        // Take this one with probability need / left.
        if need >= left || below(rng, left) < need {
            out.push(p.addr);
            need -= 1;
        }
        left -= 1;
    }
    taken
}

/// A uniform integer in `0..n` for `n` up to 2^32 (multiply-shift; the bias is below
/// `n / 2^32`, far under one in a million for a store's sizes).
fn below<R: rand_core::Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    ((u64::from(rng.next_u32()) * n as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr};
    use std::collections::BTreeSet;

    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng, SeedableRng};

    use super::*;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(77)
    }

    fn hash(n: u32) -> NodeId {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&n.to_be_bytes());
        NodeId::from_array(b)
    }

    /// A public IPv4 peer; distinct `n` give distinct addresses.
    fn peer(n: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n)), 6881)
    }

    fn peer6(n: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n)), 6881)
    }

    fn secs(s: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(s)
    }

    fn limits(per_hash: usize, total: usize, hashes: usize) -> PeerStoreLimits {
        PeerStoreLimits {
            max_peers_per_hash: per_hash,
            max_peers: total,
            max_hashes: hashes,
            max_peers_per_ip: 1_000_000,
            ttl: DEFAULT_PEER_TTL,
        }
    }

    fn all(store: &PeerStore, h: &NodeId, now: Instant, family: Family) -> BTreeSet<SocketAddr> {
        let mut out = ArrayVec::<SocketAddr, 1024>::new();
        store.get(h, now, PeerRequest::new(family, 1024), &mut rng(), &mut out);
        out.into_iter().collect()
    }

    /// The invariants every public call must keep.
    fn check_bounds(store: &PeerStore) {
        let l = store.limits;
        assert!(store.len() <= l.max_peers);
        assert!(store.hashes() <= l.max_hashes);
        let stored: usize = store.swarms.values().map(|s| s.peers.len()).sum();
        assert_eq!(stored, store.len());
        assert!(store.swarms.values().all(|s| !s.peers.is_empty() && s.peers.len() <= l.max_peers_per_hash));
        assert_eq!(store.per_ip.values().map(|&n| n as usize).sum::<usize>(), store.len());
        assert!(store.expiries.len() <= 2 * store.len() + QUEUE_SLACK);
        assert!(store.touches.len() <= 2 * store.hashes() + QUEUE_SLACK);
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let l = PeerStoreLimits::default();
        assert_eq!(
            (l.max_peers_per_hash, l.max_peers, l.max_hashes, l.max_peers_per_ip, l.ttl),
            (500, 10_000, 1_000, 32, Duration::from_secs(1800))
        );
        let zero = PeerStoreLimits { max_peers_per_hash: 0, max_peers: 0, max_hashes: 0, max_peers_per_ip: 0, ..l };
        let store = PeerStore::new(zero, &mut rng());
        assert_eq!((store.limits().max_peers_per_hash, store.limits().max_peers, store.limits().max_hashes), (1, 1, 1));
    }

    #[test]
    fn a_reannounce_refreshes_instead_of_adding() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        assert_eq!(store.announce(&h, peer(1), false, secs(0)), Ok(Stored::Added));
        assert_eq!(store.announce(&h, peer(1), true, secs(1000)), Ok(Stored::Refreshed));
        assert_eq!(store.len(), 1);
        assert_eq!(store.counts(&h, secs(1000)), SwarmCounts { seeds: 1, peers: 0 });
        // The refresh moved the expiry: alive after the first announce's 30 minutes.
        assert_eq!(all(&store, &h, secs(1900), Family::V4).len(), 1);
        assert_eq!(store.expire(secs(2799)), 0);
        assert_eq!(store.expire(secs(2800)), 1);
        assert!(store.is_empty());
        check_bounds(&store);
    }

    #[test]
    fn the_same_ip_on_another_port_is_another_entry() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        let mut other_port = peer(1);
        other_port.set_port(6882);
        store.announce(&h, peer(1), false, secs(0)).unwrap();
        store.announce(&h, other_port, false, secs(0)).unwrap();
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn an_ipv4_mapped_announce_is_stored_as_ipv4() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        let mapped = SocketAddr::new(IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped()), 6881);
        store.announce(&h, mapped, false, secs(0)).unwrap();
        assert_eq!(store.announce(&h, "198.51.100.1:6881".parse().unwrap(), false, secs(0)), Ok(Stored::Refreshed));
        assert_eq!(
            all(&store, &h, secs(0), Family::V4).into_iter().collect::<std::vec::Vec<_>>(),
            ["198.51.100.1:6881".parse::<SocketAddr>().unwrap()]
        );
        assert!(all(&store, &h, secs(0), Family::V6).is_empty());
    }

    #[test]
    fn unusable_addresses_are_refused() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        for bad in
            ["198.51.100.1:0", "0.0.0.0:6881", "255.255.255.255:6881", "224.0.0.1:6881", "[::]:6881", "[ff02::1]:1"]
        {
            assert_eq!(store.announce(&hash(1), bad.parse().unwrap(), false, secs(0)), Err(Refused::InvalidAddress));
        }
        assert!(store.is_empty());
    }

    #[test]
    fn expired_peers_are_not_returned_and_are_purged() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        store.announce(&h, peer(1), false, secs(0)).unwrap();
        store.announce(&h, peer(2), false, secs(600)).unwrap();
        let t = secs(1800);
        assert_eq!(all(&store, &h, t, Family::V4), [peer(2)].into_iter().collect());
        assert_eq!(store.counts(&h, t), SwarmCounts { seeds: 0, peers: 1 });
        assert_eq!(store.len(), 2, "purging is lazy");
        assert_eq!(store.expire(t), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.expire(secs(2400)), 1);
        assert_eq!((store.len(), store.hashes()), (0, 0));
        assert!(store.bloom(&h, secs(2400)).is_none());
        check_bounds(&store);
    }

    #[test]
    fn a_flood_of_announces_gives_its_room_back_once_expired() {
        let mut store = PeerStore::new(
            PeerStoreLimits { max_peers: 100_000, max_hashes: 100_000, ..PeerStoreLimits::default() },
            &mut rng(),
        );
        let empty = store.memory_bytes();
        for i in 0..2_000 {
            store.announce(&hash(i), peer(i), false, secs(0)).unwrap();
        }
        // One announce that stays live, made later.
        store.announce(&hash(9_999), peer(9_999), false, secs(1200)).unwrap();
        let peak = store.memory_bytes();
        assert!(peak > empty + 100_000, "{empty} -> {peak}");
        assert_eq!(store.expire(secs(1800)), 2_000);
        let after = store.memory_bytes();
        assert!(after < peak / 20, "{after} of {peak}");
        assert_eq!(all(&store, &hash(9_999), secs(1800), Family::V4), [peer(9_999)].into_iter().collect());
        check_bounds(&store);
        // Once the last entry expired, the maps are freed; the queues keep their slack.
        store.expire(secs(3600));
        assert_eq!(store.swarms.capacity() + store.per_ip.capacity(), 0);
        assert!(store.memory_bytes() <= empty + 2 * QUEUE_SLACK * 64, "{}", store.memory_bytes());
    }

    #[test]
    fn a_full_info_hash_replaces_its_oldest_entry() {
        let mut store = PeerStore::new(limits(3, 100, 10), &mut rng());
        let h = hash(1);
        for i in 0..3 {
            store.announce(&h, peer(i), false, secs(u64::from(i))).unwrap();
        }
        // peer(0) is refreshed, so peer(1) becomes the oldest.
        store.announce(&h, peer(0), false, secs(10)).unwrap();
        assert_eq!(store.announce(&h, peer(3), false, secs(11)), Ok(Stored::Added));
        assert_eq!(all(&store, &h, secs(11), Family::V4), [peer(0), peer(2), peer(3)].into_iter().collect());
        assert_eq!(store.announce(&h, peer(4), false, secs(12)), Ok(Stored::Added));
        assert_eq!(all(&store, &h, secs(12), Family::V4), [peer(0), peer(3), peer(4)].into_iter().collect());
        assert_eq!(store.len(), 3);
        check_bounds(&store);
        // Far past the cap, the bound holds.
        for i in 5..1000 {
            store.announce(&h, peer(i), false, secs(12 + u64::from(i))).unwrap();
            check_bounds(&store);
        }
        assert_eq!(all(&store, &h, secs(2000), Family::V4), [peer(997), peer(998), peer(999)].into_iter().collect());
    }

    #[test]
    fn a_full_store_evicts_expired_entries_first_then_the_globally_oldest() {
        let mut store = PeerStore::new(limits(100, 4, 100), &mut rng());
        let ttl = DEFAULT_PEER_TTL.as_secs();
        store.announce(&hash(1), peer(1), false, secs(0)).unwrap();
        store.announce(&hash(2), peer(2), false, secs(100)).unwrap();
        store.announce(&hash(3), peer(3), false, secs(200)).unwrap();
        store.announce(&hash(4), peer(4), false, secs(300)).unwrap();
        // At ttl + 50, peer(1) has expired: it goes, the others stay.
        store.announce(&hash(5), peer(5), false, secs(ttl + 50)).unwrap();
        let live: std::vec::Vec<usize> =
            (1..=5).map(|i| all(&store, &hash(i), secs(ttl + 50), Family::V4).len()).collect();
        assert_eq!(live, [0, 1, 1, 1, 1]);
        // Nothing expired now: the globally oldest (peer(2), announced at 100) goes.
        store.announce(&hash(6), peer(6), false, secs(ttl + 60)).unwrap();
        let live: std::vec::Vec<usize> =
            (1..=6).map(|i| all(&store, &hash(i), secs(ttl + 60), Family::V4).len()).collect();
        assert_eq!(live, [0, 0, 1, 1, 1, 1]);
        assert_eq!(store.len(), 4);
        assert_eq!(store.hashes(), 4);
        check_bounds(&store);
    }

    #[test]
    fn a_refresh_saves_an_entry_from_global_eviction() {
        let mut store = PeerStore::new(limits(100, 3, 100), &mut rng());
        for i in 0..3 {
            store.announce(&hash(i), peer(i), false, secs(u64::from(i))).unwrap();
        }
        store.announce(&hash(0), peer(0), false, secs(10)).unwrap();
        store.announce(&hash(9), peer(9), false, secs(11)).unwrap();
        assert_eq!(all(&store, &hash(0), secs(11), Family::V4).len(), 1);
        assert!(all(&store, &hash(1), secs(11), Family::V4).is_empty());
    }

    #[test]
    fn a_new_info_hash_beyond_the_cap_evicts_the_least_recently_announced_hash() {
        let mut store = PeerStore::new(limits(100, 1000, 3), &mut rng());
        for i in 0..3 {
            for p in 0..5 {
                store.announce(&hash(i), peer(i * 10 + p), false, secs(u64::from(i))).unwrap();
            }
        }
        // Hash 0 is announced to again, so hash 1 is now the least recent.
        store.announce(&hash(0), peer(100), false, secs(5)).unwrap();
        store.announce(&hash(7), peer(200), false, secs(6)).unwrap();
        assert_eq!(store.hashes(), 3);
        assert!(all(&store, &hash(1), secs(6), Family::V4).is_empty());
        assert_eq!(all(&store, &hash(0), secs(6), Family::V4).len(), 6);
        assert_eq!(all(&store, &hash(2), secs(6), Family::V4).len(), 5);
        assert_eq!(store.len(), 6 + 5 + 1);
        check_bounds(&store);
    }

    #[test]
    fn one_public_ip_cannot_flood_the_store() {
        let l = PeerStoreLimits { max_peers_per_ip: 4, ..PeerStoreLimits::default() };
        let mut store = PeerStore::new(l, &mut rng());
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        let mut stored = 0;
        for i in 0..1000u32 {
            let addr = SocketAddr::new(attacker, 1000 + (i % 60_000) as u16);
            match store.announce(&hash(i), addr, false, secs(0)) {
                Ok(_) => stored += 1,
                Err(e) => assert_eq!(e, Refused::IpQuota),
            }
        }
        assert_eq!(stored, 4);
        assert!(!store.accepts_new_from(attacker));
        // Its existing entries can still be refreshed.
        assert_eq!(store.announce(&hash(0), SocketAddr::new(attacker, 1000), true, secs(1)), Ok(Stored::Refreshed));
        // Others are unaffected, and loopback / private addresses have no quota.
        assert!(store.accepts_new_from("203.0.113.10".parse().unwrap()));
        for i in 0..100u16 {
            store.announce(&hash(5000), SocketAddr::new([127, 0, 0, 1].into(), 1000 + i), false, secs(1)).unwrap();
        }
        assert_eq!(store.counts(&hash(5000), secs(1)).peers, 100);
        // Once its entries expire, the address may announce again.
        store.expire(secs(1) + DEFAULT_PEER_TTL);
        assert!(store.accepts_new_from(attacker));
        check_bounds(&store);
    }

    #[test]
    fn get_returns_only_the_requested_family_and_at_most_max() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        for i in 0..30 {
            store.announce(&h, peer(i), false, secs(0)).unwrap();
            store.announce(&h, peer6(i as u16 + 1), false, secs(0)).unwrap();
        }
        let mut out = ArrayVec::<SocketAddr, 100>::new();
        let n = store.get(&h, secs(0), PeerRequest::new(Family::V6, 10), &mut rng(), &mut out);
        assert_eq!(n, 10);
        assert!(out.iter().all(|a| a.is_ipv6()));
        // The output's capacity caps the answer too, and existing contents are kept.
        let mut small = ArrayVec::<SocketAddr, 8>::new();
        small.push(peer(999));
        assert_eq!(store.get(&h, secs(0), PeerRequest::new(Family::V4, 50), &mut rng(), &mut small), 7);
        assert_eq!(small[0], peer(999));
        assert!(small.iter().all(|a| a.is_ipv4()));
        // Unknown info-hash: nothing.
        assert_eq!(store.get(&hash(2), secs(0), PeerRequest::new(Family::V4, 50), &mut rng(), &mut out), 0);
    }

    #[test]
    fn repeated_gets_see_different_random_subsets() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        for i in 0..200 {
            store.announce(&h, peer(i), false, secs(0)).unwrap();
        }
        let mut r = rng();
        let mut seen = BTreeSet::new();
        let mut first = None;
        let mut differs = false;
        for _ in 0..50 {
            let mut out = ArrayVec::<SocketAddr, 20>::new();
            assert_eq!(store.get(&h, secs(0), PeerRequest::new(Family::V4, 20), &mut r, &mut out), 20);
            let set: BTreeSet<SocketAddr> = out.iter().copied().collect();
            assert_eq!(set.len(), 20, "no duplicates");
            differs |= first.as_ref().is_some_and(|f| *f != set);
            first.get_or_insert(set.clone());
            seen.extend(set);
        }
        assert!(differs);
        // 50 draws of 20 out of 200 reach nearly every peer (the chance a given peer is never
        // drawn is 0.9^50, about 0.5%).
        assert!(seen.len() > 180, "{}", seen.len());
    }

    #[test]
    fn selection_is_roughly_uniform() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        for i in 0..10 {
            store.announce(&h, peer(i), false, secs(0)).unwrap();
        }
        let mut r = rng();
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            let mut out = ArrayVec::<SocketAddr, 3>::new();
            store.get(&h, secs(0), PeerRequest::new(Family::V4, 3), &mut r, &mut out);
            for a in out {
                hits[(u32::from(match a.ip() {
                    IpAddr::V4(v4) => v4,
                    IpAddr::V6(_) => unreachable!(),
                }) - 0x0b00_0000) as usize] += 1;
            }
        }
        // Expected 3000 each; allow 10%.
        assert!(hits.iter().all(|&n| (2700..3300).contains(&n)), "{hits:?}");
    }

    #[test]
    fn noseed_prefers_non_seeds_and_fills_with_seeds() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        for i in 0..10 {
            store.announce(&h, peer(i), i < 7, secs(0)).unwrap();
        }
        let request = PeerRequest { prefer_non_seeds: true, ..PeerRequest::new(Family::V4, 3) };
        let mut out = ArrayVec::<SocketAddr, 10>::new();
        store.get(&h, secs(0), request, &mut rng(), &mut out);
        assert_eq!(out.iter().copied().collect::<BTreeSet<_>>(), [peer(7), peer(8), peer(9)].into_iter().collect());
        let mut out = ArrayVec::<SocketAddr, 10>::new();
        store.get(&h, secs(0), PeerRequest { max: 5, ..request }, &mut rng(), &mut out);
        assert_eq!(out.len(), 5);
        assert!([peer(7), peer(8), peer(9)].iter().all(|p| out.contains(p)));
    }

    #[test]
    fn counts_and_bloom_filters_split_seeds_from_peers() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        let h = hash(1);
        for i in 0..256u32 {
            let addr = SocketAddr::new(Ipv4Addr::new(192, 0, 2, i as u8).into(), 6881);
            store.announce(&h, addr, i % 2 == 0, secs(0)).unwrap();
        }
        assert_eq!(store.counts(&h, secs(0)), SwarmCounts { seeds: 128, peers: 128 });
        let (seeds, peers) = store.bloom(&h, secs(0)).unwrap();
        let mut expect_seeds = [0u8; BLOOM_BYTES];
        let mut expect_peers = [0u8; BLOOM_BYTES];
        for i in 0..256u32 {
            let ip = Ipv4Addr::new(192, 0, 2, i as u8).into();
            bloom_insert(if i % 2 == 0 { &mut expect_seeds } else { &mut expect_peers }, ip);
        }
        assert_eq!((seeds, peers), (expect_seeds, expect_peers));
        let estimate = super::super::scrape::bloom_estimate(&seeds);
        assert!((estimate - 128.0).abs() < 15.0, "{estimate}");
        assert!(store.bloom(&hash(2), secs(0)).is_none());
    }

    #[test]
    fn a_million_announces_over_random_hashes_keep_memory_bounded() {
        let l = PeerStoreLimits { max_peers: 2_000, max_hashes: 500, max_peers_per_hash: 50, ..Default::default() };
        let mut store = PeerStore::new(l, &mut rng());
        let mut r = ChaCha8Rng::seed_from_u64(1);
        let mut peak_memory = 0;
        let mut peak_queue = 0;
        for i in 0..1_000_000u64 {
            // Mostly new random hashes from random public addresses, some repeats, slowly
            // advancing time so that expiry also runs.
            let h = if i % 4 == 0 { hash(r.next_u32() % 64) } else { NodeId::random(20, &mut r).unwrap() };
            let ip = Ipv4Addr::from(0x0b00_0000 | (r.next_u32() & 0x00ff_ffff));
            let _ = store.announce(&h, SocketAddr::new(ip.into(), 6881), r.next_u32() & 1 == 0, secs(i / 200));
            peak_queue = peak_queue.max(store.expiries.len() + store.touches.len());
            if i % 1000 == 0 {
                check_bounds(&store);
                peak_memory = peak_memory.max(store.memory_bytes());
            }
        }
        check_bounds(&store);
        assert_eq!(store.hashes(), l.max_hashes, "the hash cap is what binds under this flood");
        assert!(peak_queue <= 2 * l.max_peers + 2 * l.max_hashes + 2 * QUEUE_SLACK, "{peak_queue}");
        // Entries, queues and maps of the caps' sizes, with growth headroom: well under 2 MB.
        assert!(peak_memory < 2_000_000, "{peak_memory}");
    }

    #[test]
    fn a_flood_on_one_info_hash_keeps_it_at_its_cap() {
        let l = PeerStoreLimits { max_peers_per_hash: 100, ..Default::default() };
        let mut store = PeerStore::new(l, &mut rng());
        let h = hash(1);
        for i in 0..50_000u32 {
            store.announce(&h, peer(i), false, secs(u64::from(i / 100))).unwrap();
        }
        check_bounds(&store);
        assert_eq!(store.len(), 100);
        assert_eq!(all(&store, &h, secs(500), Family::V4), (49_900..50_000).map(peer).collect());
        assert!(store.memory_bytes() < 64 * 1024, "{}", store.memory_bytes());
    }

    #[test]
    fn a_full_default_store_holds_under_three_megabytes() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        for i in 0..20_000u32 {
            store.announce(&hash(i % 1000), peer(i), i % 3 == 0, secs(u64::from(i / 10))).unwrap();
        }
        check_bounds(&store);
        assert_eq!((store.len(), store.hashes()), (DEFAULT_MAX_PEERS, DEFAULT_MAX_HASHES));
        assert!(store.memory_bytes() < 3_000_000, "{}", store.memory_bytes());
    }

    #[test]
    fn expiring_everything_releases_the_queues() {
        let mut store = PeerStore::new(PeerStoreLimits::default(), &mut rng());
        for i in 0..5000u32 {
            store.announce(&hash(i % 700), peer(i), false, secs(0)).unwrap();
        }
        check_bounds(&store);
        assert_eq!(store.expire(secs(0) + DEFAULT_PEER_TTL), 5000);
        assert_eq!((store.len(), store.hashes()), (0, 0));
        assert!(store.expiries.len() <= QUEUE_SLACK && store.touches.len() <= QUEUE_SLACK);
        check_bounds(&store);
    }
}

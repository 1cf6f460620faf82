//! The BEP 44 items a node stores for others, with hard caps.
//!
//! # Policy
//! - **Caps**: at most [`ItemStoreLimits::max_items`] items (700, libtorrent's per-table
//!   default) and [`ItemStoreLimits::max_bytes`] bytes of values, keys and signatures together.
//! - **Per source**: a public IP address may hold at most
//!   [`ItemStoreLimits::max_items_per_ip`] items it stored first (it can always update or
//!   refresh them); more are refused. Private, loopback and link-local addresses
//!   ([`crate::dht::is_exempt`]) are not limited, as in the peer store.
//! - **Expiry**: BEP 44 "Without re-announcement, these items MAY expire in 2 hours": an item
//!   neither stored again nor updated for [`ItemStoreLimits::lifetime`] (2 hours) is gone.
//! - **Eviction**: when a new item does not fit, the least recently refreshed items are evicted
//!   until it does (the LRU policy of the `mainline` crate, by last store rather than last
//!   read: a `get` costs nothing to fake, a `put` needs a token from the requester's address).
//!   A flood of puts thus only ever replaces items; memory stays bounded by the caps.
//!
//! The store does not check signatures or targets: the node layer does that before it
//! calls [`ItemStore::put_immutable`] or [`ItemStore::put_mutable`]. It enforces the ordering
//! rules of BEP 44 (`cas`, `seq`), which depend on what it holds.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::time::Duration;

use super::security::is_exempt;
use crate::wire::canonical_ip;
use crate::{Instant, NodeId};

/// Bytes counted per item besides its value: key, signature, target and bookkeeping.
pub const ITEM_OVERHEAD: usize = 160;

/// The caps of an [`ItemStore`]. Zero caps are raised to 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemStoreLimits {
    /// Items stored.
    pub max_items: usize,
    /// Bytes stored: each item counts its value plus [`ITEM_OVERHEAD`].
    pub max_bytes: usize,
    /// Items one non-exempt IP address may have stored first.
    pub max_items_per_ip: usize,
    /// How long an item lives without being stored again.
    pub lifetime: Duration,
}

impl Default for ItemStoreLimits {
    fn default() -> Self {
        ItemStoreLimits {
            max_items: 700,
            max_bytes: 512 * 1024,
            max_items_per_ip: 32,
            lifetime: Duration::from_secs(7200),
        }
    }
}

/// The signed part of a stored mutable item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed {
    /// `k`.
    pub key: [u8; 32],
    /// `sig`.
    pub signature: [u8; 64],
    /// `seq`.
    pub seq: i64,
}

/// An item as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredItem {
    /// The bencoded value `v`, byte for byte as put.
    pub value: Vec<u8>,
    /// `k`, `sig` and `seq` of a mutable item; `None` for an immutable one.
    pub signed: Option<Signed>,
    source: IpAddr,
    refreshed: Instant,
}

impl StoredItem {
    fn bytes(&self) -> usize {
        self.value.len() + ITEM_OVERHEAD
    }
}

/// Why a put was refused by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutRefused {
    /// BEP 44: `cas` differs from the stored `seq` (301).
    CasMismatch,
    /// BEP 44: `seq` is lower than the stored one, or equal with another value (302).
    SeqTooLow,
    /// The source address holds its quota of items (203).
    SourceQuota,
    /// The item is larger than the whole store (205).
    TooLarge,
}

impl PutRefused {
    /// The KRPC error code.
    pub fn code(self) -> i64 {
        match self {
            PutRefused::CasMismatch => 301,
            PutRefused::SeqTooLow => 302,
            PutRefused::SourceQuota => 203,
            PutRefused::TooLarge => 205,
        }
    }

    /// The error message.
    pub fn message(self) -> &'static [u8] {
        match self {
            PutRefused::CasMismatch => b"the CAS hash mismatched, re-read value and try again",
            PutRefused::SeqTooLow => b"sequence number less than current",
            PutRefused::SourceQuota => b"put refused: too many items from this address",
            PutRefused::TooLarge => b"message (v field) too big",
        }
    }
}

/// The stored items, under their targets.
#[derive(Debug)]
pub struct ItemStore {
    limits: ItemStoreLimits,
    items: BTreeMap<NodeId, StoredItem>,
    per_ip: BTreeMap<IpAddr, u32>,
    bytes: usize,
}

impl ItemStore {
    /// An empty store.
    pub fn new(limits: ItemStoreLimits) -> ItemStore {
        let limits = ItemStoreLimits {
            max_items: limits.max_items.max(1),
            max_bytes: limits.max_bytes.max(1),
            max_items_per_ip: limits.max_items_per_ip.max(1),
            lifetime: limits.lifetime,
        };
        ItemStore { limits, items: BTreeMap::new(), per_ip: BTreeMap::new(), bytes: 0 }
    }

    /// Items stored (expired ones included until [`expire`](Self::expire)).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes counted against [`ItemStoreLimits::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Source addresses tracked for the per-address quota.
    pub fn sources(&self) -> usize {
        self.per_ip.len()
    }

    /// The live item under `target`.
    pub fn get(&self, target: &NodeId, now: Instant) -> Option<&StoredItem> {
        self.items.get(target).filter(|i| now < i.refreshed + self.limits.lifetime)
    }

    /// Stores an immutable item (its target already checked), or refreshes it.
    pub fn put_immutable(
        &mut self,
        target: NodeId,
        value: &[u8],
        source: IpAddr,
        now: Instant,
    ) -> Result<(), PutRefused> {
        if let Some(item) = self.items.get_mut(&target) {
            // The same target is the same value (SHA-1); storing it again refreshes it.
            item.refreshed = now;
            return Ok(());
        }
        self.insert(target, StoredItem { value: value.to_vec(), signed: None, source, refreshed: now }, now)
    }

    /// Stores a mutable item (target and signature already checked), applying BEP 44's rules:
    /// "if a cas value is present and a value already exists, [...] the put MUST fail if the
    /// sequence number does not match" (301), and a `seq` "lower than or equal to" the stored
    /// one is rejected (302), except "a put with the same sequence number and value" which
    /// refreshes the item. An equal `seq` with a different value is refused with 302, as the
    /// BEP says (libtorrent accepts it silently and keeps the old value).
    pub fn put_mutable(
        &mut self,
        target: NodeId,
        signed: Signed,
        value: &[u8],
        cas: Option<i64>,
        source: IpAddr,
        now: Instant,
    ) -> Result<(), PutRefused> {
        let lifetime = self.limits.lifetime;
        if let Some(item) = self.items.get_mut(&target).filter(|i| now < i.refreshed + lifetime) {
            let stored_seq = item.signed.map_or(i64::MIN, |s| s.seq);
            if cas.is_some_and(|cas| cas != stored_seq) {
                return Err(PutRefused::CasMismatch);
            }
            if signed.seq < stored_seq || (signed.seq == stored_seq && item.value != value) {
                return Err(PutRefused::SeqTooLow);
            }
            let grow = value.len().saturating_sub(item.value.len());
            if grow == 0 {
                self.bytes = self.bytes + value.len() - item.value.len();
                item.value.clear();
                item.value.extend_from_slice(value);
                item.signed = Some(signed);
                item.refreshed = now;
                return Ok(());
            }
            // A larger value may need room: take the old one out and insert anew.
            let source = item.source;
            self.remove(&target);
            return self.insert(
                target,
                StoredItem { value: value.to_vec(), signed: Some(signed), source, refreshed: now },
                now,
            );
        }
        // An expired item is no current value: `cas` is ignored ("If there is no current value,
        // cas SHOULD be ignored").
        self.remove(&target);
        self.insert(target, StoredItem { value: value.to_vec(), signed: Some(signed), source, refreshed: now }, now)
    }

    fn insert(&mut self, target: NodeId, item: StoredItem, now: Instant) -> Result<(), PutRefused> {
        let size = item.bytes();
        if size > self.limits.max_bytes {
            return Err(PutRefused::TooLarge);
        }
        let ip = canonical_ip(item.source);
        let limited = !is_exempt(ip);
        if limited && self.per_ip.get(&ip).is_some_and(|&n| n as usize >= self.limits.max_items_per_ip) {
            return Err(PutRefused::SourceQuota);
        }
        self.expire(now);
        while self.items.len() >= self.limits.max_items || self.bytes + size > self.limits.max_bytes {
            // Least recently refreshed first; ties by target, for determinism.
            let Some(oldest) = self.items.iter().min_by_key(|(t, i)| (i.refreshed, *t)).map(|(t, _)| *t) else { break };
            self.remove(&oldest);
        }
        if limited {
            *self.per_ip.entry(ip).or_insert(0) += 1;
        }
        self.bytes += size;
        self.items.insert(target, StoredItem { source: ip, ..item });
        Ok(())
    }

    fn remove(&mut self, target: &NodeId) {
        let Some(item) = self.items.remove(target) else { return };
        self.bytes -= item.bytes();
        if let Some(n) = self.per_ip.get_mut(&item.source) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&item.source);
            }
        }
    }

    /// Drops the items whose lifetime passed.
    pub fn expire(&mut self, now: Instant) {
        let lifetime = self.limits.lifetime;
        let dead: Vec<NodeId> =
            self.items.iter().filter(|(_, i)| now >= i.refreshed + lifetime).map(|(t, _)| *t).collect();
        for t in dead {
            self.remove(&t);
        }
        // An emptied `BTreeMap` keeps its root node (11 items); free it with the last item.
        if self.items.is_empty() {
            self.items = BTreeMap::new();
        }
        if self.per_ip.is_empty() {
            self.per_ip = BTreeMap::new();
        }
    }

    /// Approximate heap bytes held.
    pub fn memory_footprint(&self) -> usize {
        self.bytes + self.items.len() * 64 + self.per_ip.len() * 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));

    fn t(n: u32) -> NodeId {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&n.to_be_bytes());
        NodeId::from_array(b)
    }

    fn signed(seq: i64) -> Signed {
        Signed { key: [1; 32], signature: [2; 64], seq }
    }

    fn public(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n))
    }

    #[test]
    fn cas_and_seq_rules() {
        let mut s = ItemStore::new(ItemStoreLimits::default());
        let now = Instant::ZERO;
        s.put_mutable(t(1), signed(5), b"1:a", Some(99), PUBLIC, now).expect("cas ignored without a value");
        assert_eq!(s.put_mutable(t(1), signed(6), b"1:b", Some(4), PUBLIC, now), Err(PutRefused::CasMismatch));
        assert_eq!(s.put_mutable(t(1), signed(4), b"1:b", None, PUBLIC, now), Err(PutRefused::SeqTooLow));
        assert_eq!(s.put_mutable(t(1), signed(5), b"1:b", None, PUBLIC, now), Err(PutRefused::SeqTooLow));
        assert_eq!(s.put_mutable(t(1), signed(5), b"1:a", None, PUBLIC, now), Ok(()), "same seq, same value");
        assert_eq!(s.put_mutable(t(1), signed(6), b"2:bb", Some(5), PUBLIC, now), Ok(()));
        let item = s.get(&t(1), now).unwrap();
        assert_eq!((item.value.as_slice(), item.signed.unwrap().seq), (&b"2:bb"[..], 6));
        assert_eq!(s.bytes(), 4 + ITEM_OVERHEAD);
        assert_eq!(PutRefused::CasMismatch.code(), 301);
        assert_eq!(PutRefused::SeqTooLow.code(), 302);
    }

    #[test]
    fn items_expire_after_their_lifetime_unless_stored_again() {
        let mut s = ItemStore::new(ItemStoreLimits::default());
        let start = Instant::ZERO;
        s.put_immutable(t(1), b"1:a", PUBLIC, start).unwrap();
        s.put_immutable(t(2), b"1:b", PUBLIC, start).unwrap();
        let hour = Duration::from_secs(3600);
        s.put_immutable(t(2), b"1:b", PUBLIC, start + hour).unwrap();
        let later = start + 2 * hour;
        assert!(s.get(&t(1), later).is_none());
        assert!(s.get(&t(2), later).is_some(), "refreshed an hour in");
        s.expire(later);
        assert_eq!(s.len(), 1);
        assert_eq!(s.sources(), 1);
    }

    #[test]
    fn a_full_store_evicts_the_least_recently_refreshed() {
        let limits = ItemStoreLimits { max_items: 3, ..ItemStoreLimits::default() };
        let mut s = ItemStore::new(limits);
        let at = |secs| Instant::ZERO + Duration::from_secs(secs);
        for n in 0..3 {
            s.put_immutable(t(n), b"1:a", public(n), at(u64::from(n))).unwrap();
        }
        s.put_immutable(t(0), b"1:a", public(0), at(10)).unwrap();
        s.put_immutable(t(9), b"1:a", public(9), at(11)).unwrap();
        assert_eq!(s.len(), 3);
        assert!(s.get(&t(1), at(11)).is_none(), "the oldest store went");
        assert!(s.get(&t(0), at(11)).is_some(), "refreshed, so kept");
        assert_eq!(s.sources(), 3);
    }

    #[test]
    fn the_byte_cap_holds() {
        let limits = ItemStoreLimits { max_bytes: 3 * (100 + ITEM_OVERHEAD), ..ItemStoreLimits::default() };
        let mut s = ItemStore::new(limits);
        let v = [b'x'; 100];
        for n in 0..10 {
            s.put_immutable(t(n), &v, public(n), Instant::ZERO).unwrap();
            assert!(s.bytes() <= limits.max_bytes);
        }
        assert_eq!(s.len(), 3);
        let tiny = ItemStoreLimits { max_bytes: 10, ..ItemStoreLimits::default() };
        assert_eq!(ItemStore::new(tiny).put_immutable(t(0), &v, PUBLIC, Instant::ZERO), Err(PutRefused::TooLarge));
    }

    #[test]
    fn one_public_address_has_a_quota_but_may_update_its_items() {
        let limits = ItemStoreLimits { max_items_per_ip: 2, ..ItemStoreLimits::default() };
        let mut s = ItemStore::new(limits);
        let now = Instant::ZERO;
        s.put_mutable(t(1), signed(1), b"1:a", None, PUBLIC, now).unwrap();
        s.put_immutable(t(2), b"1:a", PUBLIC, now).unwrap();
        assert_eq!(s.put_immutable(t(3), b"1:a", PUBLIC, now), Err(PutRefused::SourceQuota));
        assert_eq!(s.put_mutable(t(1), signed(2), b"3:abc", None, PUBLIC, now), Ok(()), "an update is no new item");
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for n in 10..20 {
            s.put_immutable(t(n), b"1:a", local, now).unwrap();
        }
        assert_eq!(s.sources(), 1, "loopback is not tracked");
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_puts() {
        let limits = ItemStoreLimits::default();
        let mut s = ItemStore::new(limits);
        let v = [b'y'; 1000];
        let mut peak = 0;
        for n in 0..20_000u32 {
            let now = Instant::ZERO + Duration::from_millis(u64::from(n));
            let _ = s.put_mutable(t(n), signed(i64::from(n)), &v, None, public(n % 5000), now);
            peak = peak.max(s.memory_footprint());
            assert!(s.len() <= limits.max_items && s.bytes() <= limits.max_bytes);
            assert!(s.sources() <= limits.max_items);
        }
        assert!(peak <= limits.max_bytes + limits.max_items * (64 + 48), "peak {peak}");
    }
}

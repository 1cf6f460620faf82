//! The two routing tables of BEP 32: IPv4 contacts (IPv4-mapped IPv6 addresses included) and
//! IPv6 contacts, both keyed on our one node id.
//!
//! BEP 32: "a separate routing table" for IPv6, so that neither family's nodes crowd the
//! other's out of a bucket. This part owns both tables; every other part reads them through
//! it and changes them only through its methods.

use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::routing::{Contact, RoutingTable};
use crate::wire::canonical_ip;
use crate::{Instant, NodeId, NodeInfo};

/// Whether `addr` is an IPv6 node (not an IPv4-mapped one).
pub(crate) fn is_v6(addr: &SocketAddr) -> bool {
    canonical_ip(addr.ip()).is_ipv6()
}

/// Both routing tables.
#[derive(Debug)]
pub(crate) struct Tables {
    v4: RoutingTable,
    v6: RoutingTable,
}

impl Tables {
    /// Empty tables around `id`, every bucket counted as refreshed at `now`, with `wide` of
    /// their farthest buckets widened (`Config::wide_buckets`).
    pub(crate) fn new(id: NodeId, k: usize, wide: u8, now: Instant) -> Tables {
        let mut v4 = RoutingTable::new(id, k).with_wide_buckets(wide);
        for bucket in 0..v4.bucket_count() {
            v4.mark_bucket_refreshed(bucket, now);
        }
        let v6 = v4.clone();
        Tables { v4, v6 }
    }

    pub(crate) fn v4(&self) -> &RoutingTable {
        &self.v4
    }

    pub(crate) fn v6(&self) -> &RoutingTable {
        &self.v6
    }

    /// The table of one family: IPv6 when `v6`.
    pub(crate) fn family(&self, v6: bool) -> &RoutingTable {
        if v6 { &self.v6 } else { &self.v4 }
    }

    pub(crate) fn family_mut(&mut self, v6: bool) -> &mut RoutingTable {
        if v6 { &mut self.v6 } else { &mut self.v4 }
    }

    /// The table a node at `addr` belongs in.
    pub(crate) fn of(&self, addr: &SocketAddr) -> &RoutingTable {
        self.family(is_v6(addr))
    }

    pub(crate) fn of_mut(&mut self, addr: &SocketAddr) -> &mut RoutingTable {
        self.family_mut(is_v6(addr))
    }

    /// Both empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Removes `id` from both tables (a dual-stack node may be in each); the entries removed.
    pub(crate) fn remove(&mut self, id: &NodeId) -> impl Iterator<Item = Contact> {
        [self.v4.remove(id), self.v6.remove(id)].into_iter().flatten()
    }

    /// The `k` closest nodes of each family to `target`, IPv4 first: the seeds of a lookup
    /// (BEP 32 lets one lookup use `nodes` and `nodes6`).
    pub(crate) fn lookup_seeds(&self, target: &NodeId, k: usize) -> Vec<NodeInfo> {
        let mut seeds = self.v4.closest(target, k).to_vec();
        seeds.extend(self.v6.closest(target, k));
        seeds
    }

    /// Both tables rebuilt around a new id (BEP 42: our id changed), keeping every contact
    /// that still fits.
    pub(crate) fn rebuild(&mut self, id: NodeId, k: usize, now: Instant) {
        let rebuild = |old: &RoutingTable| {
            let mut table = RoutingTable::new(id, k).with_wide_buckets(old.wide_buckets());
            for contact in old.iter() {
                let _ = table.insert_verified(contact.node, now);
            }
            table
        };
        self.v4 = rebuild(&self.v4);
        self.v6 = rebuild(&self.v6);
    }

    /// Heap bytes of both tables' buckets, for memory accounting.
    pub(crate) fn memory_footprint(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8, addr: &str) -> NodeInfo {
        NodeInfo::new(NodeId::from_array([b; 20]), addr.parse().unwrap())
    }

    #[test]
    fn each_family_goes_to_its_own_table_and_removal_covers_both() {
        let mut t = Tables::new(NodeId::from_array([0; 20]), 8, 0, Instant::ZERO);
        let v4 = node(0x80, "10.0.0.1:1");
        let mapped = node(0x81, "[::ffff:10.0.0.2]:1");
        let v6 = node(0x80, "[2001:db8::1]:1");
        for n in [v4, mapped, v6] {
            let _ = t.of_mut(&n.addr).insert_verified(n, Instant::ZERO);
        }
        assert_eq!(t.v4().len(), 2, "an IPv4-mapped address is an IPv4 node");
        assert_eq!(t.v6().len(), 1);
        assert_eq!(t.lookup_seeds(&v4.id, 8).len(), 3);
        assert_eq!(t.remove(&v4.id).count(), 2, "the dual-stack node leaves both tables");
        assert!(!t.is_empty());
    }
}

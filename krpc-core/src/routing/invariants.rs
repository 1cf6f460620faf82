//! The routing table's structural invariants, checked in one place for the unit tests, the
//! fuzzers (`krpc_core::fuzzing`) and the simulator (`krpc-tests`).

use core::fmt;

use super::RoutingTable;
use crate::NodeId;

/// A structural promise of a [`RoutingTable`] that does not hold, as found by
/// [`RoutingTable::check_invariants`]. Each variant names the bucket (by index, farthest
/// first) and the contact concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvariantViolation {
    /// There must be at least one bucket and at most one per bit of the id.
    BucketCount {
        /// The number of buckets.
        buckets: usize,
        /// The id length in bits.
        id_bits: usize,
    },
    /// A bucket holds more contacts than its capacity (k, or more for a wide bucket:
    /// [`RoutingTable::capacity`]).
    Overfull {
        /// The bucket.
        bucket: usize,
        /// How many contacts it holds.
        len: usize,
        /// How many it may hold.
        capacity: usize,
    },
    /// The table's record storage (one allocation for all buckets) is not exactly its
    /// buckets' contacts as whole packed records, so the memory bound ("Memory bound" in
    /// [`crate::routing`]) no longer holds. Reported against the last bucket, whose records
    /// end the storage.
    Capacity {
        /// The bucket (the last).
        bucket: usize,
        /// The bytes the table's records take.
        capacity: usize,
        /// The bytes of one contact ([`RoutingTable::entry_bytes`]).
        k: usize,
    },
    /// A contact's id is not as long as the local id.
    IdLength {
        /// The bucket.
        bucket: usize,
        /// The contact's id.
        id: NodeId,
        /// The local id's length in bytes.
        expected: usize,
    },
    /// The local id is in the table.
    OwnId {
        /// The bucket holding it.
        bucket: usize,
    },
    /// A contact is in a bucket whose range does not cover its id: every bucket `i` but the
    /// last holds exactly the ids sharing `i` leading bits with the local id, the last one
    /// those sharing at least as many bits as its index.
    WrongBucket {
        /// The bucket holding it.
        bucket: usize,
        /// The contact's id.
        id: NodeId,
        /// The number of leading bits it shares with the local id.
        common_prefix: usize,
    },
    /// The last bucket's range does not contain the local id (only that bucket may split).
    LastBucketRange {
        /// The last bucket.
        bucket: usize,
    },
    /// [`RoutingTable::buckets`] describes a bucket differently from its contacts: another
    /// length, or a range that does not cover one of them.
    BucketView {
        /// The bucket.
        bucket: usize,
    },
    /// An id is stored twice.
    Duplicate {
        /// The bucket holding both copies.
        bucket: usize,
        /// The id.
        id: NodeId,
    },
    /// [`RoutingTable::len`] is not the number of contacts in the buckets.
    Count {
        /// What `len()` says.
        len: usize,
        /// How many contacts the buckets hold.
        counted: usize,
    },
}

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvariantViolation::BucketCount { buckets, id_bits } => {
                write!(f, "{buckets} buckets for {id_bits}-bit ids (1 to {id_bits} allowed)")
            }
            InvariantViolation::Overfull { bucket, len, capacity } => {
                write!(f, "bucket {bucket} holds {len} > {capacity}")
            }
            InvariantViolation::Capacity { bucket, capacity, k } => {
                write!(f, "the records up to bucket {bucket} take {capacity} bytes, not the buckets' {k}-byte contacts")
            }
            InvariantViolation::IdLength { bucket, id, expected } => {
                write!(f, "bucket {bucket} holds {id:?} of {} bytes, not {expected}", id.len())
            }
            InvariantViolation::OwnId { bucket } => write!(f, "bucket {bucket} holds the local id"),
            InvariantViolation::WrongBucket { bucket, id, common_prefix } => {
                write!(f, "bucket {bucket} holds {id:?}, which shares {common_prefix} leading bits with the local id")
            }
            InvariantViolation::LastBucketRange { bucket } => {
                write!(f, "the last bucket ({bucket}) does not cover the local id")
            }
            InvariantViolation::BucketView { bucket } => {
                write!(f, "buckets() describes bucket {bucket} differently from its contacts")
            }
            InvariantViolation::Duplicate { bucket, id } => write!(f, "bucket {bucket} holds {id:?} twice"),
            InvariantViolation::Count { len, counted } => {
                write!(f, "len() is {len} but the buckets hold {counted} contacts")
            }
        }
    }
}

impl core::error::Error for InvariantViolation {}

impl RoutingTable {
    /// Checks every structural promise of the table and returns the first one broken: at
    /// least one and at most `bits` buckets; at most k contacts per bucket, stored as whole
    /// packed records; every id as long as the local id, never the local id, in the bucket
    /// whose range covers it and stored once; [`buckets`](Self::buckets) and
    /// [`bucket_for`](Self::bucket_for) agreeing with the contacts; the last bucket covering
    /// the local id; [`len`](Self::len) counting the contacts.
    ///
    /// Costs O(contacts × k) and never allocates. The table keeps these promises whatever its
    /// callers and peers do, so a violation is a bug in the table: the unit tests, the fuzzers
    /// and the simulator call this after the operations they drive.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let local = &self.local_id;
        let id_bits = local.len() * 8;
        let buckets = self.buckets.count();
        if buckets == 0 || buckets > id_bits {
            return Err(InvariantViolation::BucketCount { buckets, id_bits });
        }
        let last = buckets - 1;
        let l = self.layout;
        // The buckets share one allocation, so a record cut short shows in the total; it is
        // reported against the last bucket, whose records end the allocation.
        if !self.buckets.is_whole(l) {
            return Err(InvariantViolation::Capacity {
                bucket: last,
                capacity: self.buckets.record_bytes(),
                k: l.stride(),
            });
        }
        let mut counted = 0;
        for (view, bucket) in self.buckets().zip(self.buckets.iter(l)) {
            let index = view.index;
            let len = bucket.len(l);
            if len > self.capacity(index) {
                return Err(InvariantViolation::Overfull { bucket: index, len, capacity: self.capacity(index) });
            }
            if view.len != len {
                return Err(InvariantViolation::BucketView { bucket: index });
            }
            for (i, c) in bucket.contacts(l).enumerate() {
                let id = &c.node.id;
                if id.len() != local.len() {
                    return Err(InvariantViolation::IdLength { bucket: index, id: *id, expected: local.len() });
                }
                if id == local {
                    return Err(InvariantViolation::OwnId { bucket: index });
                }
                let common_prefix = local.common_prefix_len(id);
                let placed = if index < last { common_prefix == index } else { common_prefix >= last };
                if !placed {
                    return Err(InvariantViolation::WrongBucket { bucket: index, id: *id, common_prefix });
                }
                if !view.covers(id) || self.bucket_for(id) != Some(index) {
                    return Err(InvariantViolation::BucketView { bucket: index });
                }
                // Every id sits in the one bucket its prefix selects (checked just above), so
                // a second copy can only be in the same bucket: comparing within buckets finds
                // every duplicate without a set.
                if bucket.ids(l).take(i).any(|other| other == id.as_bytes()) {
                    return Err(InvariantViolation::Duplicate { bucket: index, id: *id });
                }
            }
            if index == last && !view.covers(local) {
                return Err(InvariantViolation::LastBucketRange { bucket: index });
            }
            counted += len;
        }
        if self.len() != counted || self.iter().count() != counted {
            return Err(InvariantViolation::Count { len: self.len(), counted });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use core::net::SocketAddr;

    use super::super::contact::Contact;
    use super::*;
    use crate::{Instant, NodeInfo};

    fn id(bytes: &[u8]) -> NodeId {
        NodeId::from_bytes(bytes).unwrap()
    }

    fn contact(bytes: &[u8]) -> Contact {
        let addr = SocketAddr::from(([10, 0, 0, bytes[0]], 6881));
        Contact::verified(NodeInfo::new(id(bytes), addr), Instant::ZERO)
    }

    /// A table for `[0, 0]` with k = 2, split once: bucket 0 holds `[0x80, 0]`, the last
    /// bucket (1) holds `[0x40, 0]` and `[0x00, 1]`. Its invariants hold.
    fn table() -> RoutingTable {
        let mut table = RoutingTable::new(id(&[0, 0]), 2);
        for bytes in [[0x80, 0], [0x40, 0], [0x00, 1]] {
            let c = contact(&bytes);
            let _ = table.insert_verified(c.node, Instant::ZERO);
        }
        assert_eq!(table.bucket_count(), 2);
        assert_eq!(table.len(), 3);
        assert_eq!(table.check_invariants(), Ok(()));
        table
    }

    /// Stores `c` in `bucket` behind the table's back, counting it.
    fn smuggle(table: &mut RoutingTable, bucket: usize, c: Contact) {
        let l = table.layout;
        table.buckets.push(l, bucket, &c);
        table.len += 1;
    }

    /// Replaces `bucket` with one holding `contacts`, behind the table's back.
    fn replace(table: &mut RoutingTable, bucket: usize, contacts: &[Contact]) {
        let l = table.layout;
        table.buckets.replace_all(l, bucket, contacts);
    }

    #[test]
    fn a_table_built_by_its_own_methods_passes() {
        let mut table = table();
        let _ = table.remove(&id(&[0x40, 0]));
        assert_eq!(table.check_invariants(), Ok(()));
        assert_eq!(RoutingTable::new(id(&[7; 20]), 8).check_invariants(), Ok(()));
    }

    #[test]
    fn a_clone_passes_and_holds_the_same_contacts() {
        for original in [RoutingTable::new(id(&[0, 0]), 2), table()] {
            let clone = original.clone();
            assert_eq!(clone.check_invariants(), Ok(()));
            assert!(clone.iter().eq(original.iter()));
            assert_eq!(clone.heap_bytes(), original.heap_bytes());
        }
    }

    #[test]
    fn the_local_id_is_found() {
        let mut table = table();
        replace(&mut table, 1, &[contact(&[0, 0])]);
        table.len = 2;
        assert_eq!(table.check_invariants(), Err(InvariantViolation::OwnId { bucket: 1 }));
    }

    #[test]
    fn a_contact_in_the_wrong_bucket_is_found() {
        let mut table = table();
        replace(&mut table, 0, &[contact(&[0x80, 0]), contact(&[0x20, 0])]);
        table.len += 1;
        let violation = InvariantViolation::WrongBucket { bucket: 0, id: id(&[0x20, 0]), common_prefix: 2 };
        assert_eq!(table.check_invariants(), Err(violation));
    }

    #[test]
    fn a_far_contact_in_the_last_bucket_is_found() {
        let mut table = table();
        replace(&mut table, 1, &[contact(&[0xc0, 0])]);
        table.len -= 1;
        let violation = InvariantViolation::WrongBucket { bucket: 1, id: id(&[0xc0, 0]), common_prefix: 0 };
        assert_eq!(table.check_invariants(), Err(violation));
    }

    #[test]
    fn a_duplicate_is_found() {
        let mut table = table();
        replace(&mut table, 1, &[contact(&[0x40, 0]), contact(&[0x40, 0])]);
        assert_eq!(table.check_invariants(), Err(InvariantViolation::Duplicate { bucket: 1, id: id(&[0x40, 0]) }));
    }

    #[test]
    fn an_overfull_bucket_and_a_grown_one_are_found() {
        let mut table = table();
        smuggle(&mut table, 1, contact(&[0x20, 0]));
        assert_eq!(table.check_invariants(), Err(InvariantViolation::Overfull { bucket: 1, len: 3, capacity: 2 }));

        // A record cut short: the storage is no whole number of contacts.
        let mut table = self::table();
        let l = table.layout;
        table.buckets.replace_all(l, 1, &[contact(&[0x40, 0]), contact(&[0x00, 1])]);
        let capacity = l.stride() * 3 - 1;
        table.buckets.truncate_bytes(capacity);
        assert_eq!(table.check_invariants(), Err(InvariantViolation::Capacity { bucket: 1, capacity, k: l.stride() }));
    }

    #[test]
    fn a_wrong_count_and_a_wrong_bucket_count_are_found() {
        let mut table = table();
        table.len = 4;
        assert_eq!(table.check_invariants(), Err(InvariantViolation::Count { len: 4, counted: 3 }));

        let mut table = RoutingTable::new(id(&[0]), 2);
        table.buckets.set_count(0);
        assert_eq!(table.check_invariants(), Err(InvariantViolation::BucketCount { buckets: 0, id_bits: 8 }));
        table.buckets.set_count(9);
        assert_eq!(table.check_invariants(), Err(InvariantViolation::BucketCount { buckets: 9, id_bits: 8 }));
    }

    #[test]
    fn violations_describe_themselves() {
        let violation = InvariantViolation::Overfull { bucket: 3, len: 9, capacity: 8 };
        assert_eq!(alloc::format!("{violation}"), "bucket 3 holds 9 > 8");
    }
}

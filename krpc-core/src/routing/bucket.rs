//! One k-bucket: at most k contacts, least recently seen first.

use alloc::vec::Vec;

use super::contact::{Contact, NodeState, NodeStatePolicy};
use crate::{Instant, NodeId};

/// A bucket's contacts in least-recently-seen-first order (the head is the oldest), and the
/// time BEP 5 asks us to keep: "Each bucket should maintain a 'last changed' property to indicate
/// how 'fresh' the contents are."
#[derive(Debug)]
pub(super) struct Bucket {
    contacts: Vec<Contact>,
    pub(super) last_changed: Instant,
}

/// A clone reserves the same k slots as the original. (A derived clone would reserve only
/// the contacts present, then grow by doubling past k: the endpoint builds its IPv6 table as
/// a clone of the empty IPv4 one, whose buckets had room for none.)
impl Clone for Bucket {
    fn clone(&self) -> Bucket {
        let mut contacts = Vec::with_capacity(self.contacts.capacity());
        contacts.extend_from_slice(&self.contacts);
        Bucket { contacts, last_changed: self.last_changed }
    }
}

impl Bucket {
    /// An empty bucket that can take `k` contacts without allocating again.
    pub(super) fn new(k: usize, last_changed: Instant) -> Bucket {
        Bucket { contacts: Vec::with_capacity(k), last_changed }
    }

    pub(super) fn contacts(&self) -> &[Contact] {
        &self.contacts
    }

    pub(super) fn capacity(&self) -> usize {
        self.contacts.capacity()
    }

    pub(super) fn len(&self) -> usize {
        self.contacts.len()
    }

    pub(super) fn position(&self, id: &NodeId) -> Option<usize> {
        self.contacts.iter().position(|c| c.node.id == *id)
    }

    pub(super) fn get(&self, id: &NodeId) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.node.id == *id)
    }

    pub(super) fn get_mut(&mut self, id: &NodeId) -> Option<&mut Contact> {
        self.contacts.iter_mut().find(|c| c.node.id == *id)
    }

    /// Moves the contact at `pos` to the tail (most recently seen), keeping the others' order.
    pub(super) fn move_to_tail(&mut self, pos: usize) -> Option<&mut Contact> {
        let tail = self.contacts.get_mut(pos..)?;
        tail.rotate_left(1);
        self.contacts.last_mut()
    }

    /// Appends a contact. The caller checks the bucket has room, so the reserved capacity is
    /// never exceeded.
    pub(super) fn push(&mut self, contact: Contact) {
        self.contacts.push(contact);
    }

    pub(super) fn remove(&mut self, pos: usize) -> Option<Contact> {
        (pos < self.contacts.len()).then(|| self.contacts.remove(pos))
    }

    /// The bad contact to evict first: the one with the most failures, then the least recently
    /// seen, then the one nearest the head.
    pub(super) fn worst_bad(&self, now: Instant, policy: &NodeStatePolicy) -> Option<usize> {
        let mut worst: Option<(usize, &Contact)> = None;
        for (i, c) in self.contacts.iter().enumerate() {
            if c.state(now, policy) != NodeState::Bad {
                continue;
            }
            let worse = match worst {
                None => true,
                Some((_, w)) => (c.failures, w.last_seen) > (w.failures, c.last_seen),
            };
            if worse {
                worst = Some((i, c));
            }
        }
        worst.map(|(i, _)| i)
    }

    /// Splits this bucket, which covers every id sharing at least `depth` leading bits with
    /// `local`: the contacts sharing more than `depth` bits move to the returned bucket and the
    /// ones sharing exactly `depth` stay. Both keep their relative order, and the new bucket
    /// inherits `last_changed` because a split is not news about any node.
    pub(super) fn split_off_near(&mut self, local: &NodeId, depth: usize, k: usize) -> Bucket {
        let mut near = Bucket::new(k, self.last_changed);
        self.contacts.retain(|c| {
            let moves = local.common_prefix_len(&c.node.id) > depth;
            if moves {
                near.contacts.push(*c);
            }
            !moves
        });
        near
    }
}

/// A read-only summary of one bucket, from [`RoutingTable::buckets`](super::RoutingTable::buckets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketView {
    /// The bucket's index: for every bucket but the last, the number of leading bits its
    /// contacts share with the local id.
    pub index: usize,
    /// How many contacts it holds.
    pub len: usize,
    /// The last reply from, addition to or replacement in this bucket (BEP 5's "last changed").
    pub last_changed: Instant,
    /// The ids the bucket covers start with the first [`prefix_bits`](Self::prefix_bits) bits of
    /// this id; its remaining bits are zero.
    pub prefix: NodeId,
    /// The length of the prefix in bits: `index + 1` for a far bucket (the shared bits, then the
    /// first differing one), `index` for the last bucket.
    pub prefix_bits: usize,
}

impl BucketView {
    /// Whether `id` falls in this bucket's range.
    pub fn covers(&self, id: &NodeId) -> bool {
        id.len() == self.prefix.len() && id.common_prefix_len(&self.prefix) >= self.prefix_bits
    }
}

//! The simulator's event queues: a calendar of time buckets in front of a binary heap.
//!
//! A million nodes keep about a million engine deadlines and tens of thousands of datagrams in
//! flight. In one binary heap of that size each pop walks about twenty levels, most of them
//! cache misses, and on several threads ([`super::parallel`]) those pops are the main thread's
//! largest serial cost. Here an entry due within the calendar's horizon goes into the bucket of
//! its time slice (an append); only the current slice is a heap, small enough to stay in cache;
//! entries beyond the horizon wait in a heap of their own and move into the calendar as it
//! advances. Entries come out in exactly the order of one binary heap (smallest first, by the
//! entry's full order), so the simulation's trace does not depend on which queue holds them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// An entry of a [`Calendar`]: ordered, with its due time in nanoseconds.
pub(super) trait Timed: Ord + Copy {
    /// When it is due.
    fn due(&self) -> u64;
}

impl Timed for (u64, u32) {
    fn due(&self) -> u64 {
        self.0
    }
}

/// A priority queue of [`Timed`] entries, smallest first (see the module).
pub(super) struct Calendar<T> {
    /// A slice is `2^shift` nanoseconds.
    shift: u32,
    /// The buckets, a ring: slice `s` lives at `s % buckets.len()` while it is within the
    /// horizon `[current, current + buckets.len())`.
    buckets: Vec<Vec<T>>,
    /// The slice whose entries are in `now`.
    current: u64,
    /// The current slice's entries (and any entry pushed for an earlier time), as a heap.
    now: BinaryHeap<Reverse<T>>,
    /// Entries beyond the horizon.
    far: BinaryHeap<Reverse<T>>,
    /// Entries in `buckets`.
    in_buckets: usize,
    /// Room (entries) an emptied bucket keeps.
    keep: usize,
}

impl<T: Timed> Calendar<T> {
    /// A calendar of `2^slots` slices of `2^shift` ns each, whose buckets keep room for `keep`
    /// entries once emptied.
    pub(super) fn new(shift: u32, slots: u32, keep: usize) -> Self {
        Calendar {
            shift,
            buckets: (0..1usize << slots).map(|_| Vec::new()).collect(),
            current: 0,
            now: BinaryHeap::new(),
            far: BinaryHeap::new(),
            in_buckets: 0,
            keep,
        }
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.now.len() + self.far.len() + self.in_buckets
    }

    /// Bytes held by the queue's allocations (capacities), for the memory report.
    pub(super) fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<T>();
        self.buckets.capacity() * std::mem::size_of::<Vec<T>>()
            + self.buckets.iter().map(Vec::capacity).sum::<usize>() * entry
            + (self.now.capacity() + self.far.capacity()) * entry
    }

    fn horizon(&self) -> u64 {
        self.current + self.buckets.len() as u64
    }

    fn slot(&self, slice: u64) -> usize {
        (slice % self.buckets.len() as u64) as usize
    }

    /// Adds an entry.
    pub(super) fn push(&mut self, entry: T) {
        let slice = entry.due() >> self.shift;
        if slice <= self.current {
            self.now.push(Reverse(entry));
        } else if slice < self.horizon() {
            let slot = self.slot(slice);
            self.buckets[slot].push(entry);
            self.in_buckets += 1;
        } else {
            self.far.push(Reverse(entry));
        }
    }

    /// The smallest entry.
    pub(super) fn peek(&mut self) -> Option<&T> {
        self.settle();
        self.now.peek().map(|Reverse(e)| e)
    }

    /// Takes the smallest entry.
    pub(super) fn pop(&mut self) -> Option<T> {
        self.settle();
        self.now.pop().map(|Reverse(e)| e)
    }

    /// Moves the calendar forward until `now` holds the smallest entry (or nothing is left).
    fn settle(&mut self) {
        while self.now.is_empty() {
            if self.in_buckets == 0 {
                // Nothing within the horizon: jump to the first far entry's slice.
                let Some(Reverse(first)) = self.far.peek() else { return };
                self.current = first.due() >> self.shift;
            } else {
                self.current += 1;
            }
            let slot = self.slot(self.current);
            let mut bucket = std::mem::take(&mut self.buckets[slot]);
            self.in_buckets -= bucket.len();
            let mut heap = std::mem::take(&mut self.now).into_vec();
            heap.extend(bucket.drain(..).map(Reverse));
            self.now = BinaryHeap::from(heap);
            // The bucket keeps some room for the slice that comes round next: grown again from
            // nothing each time, the buckets slowed the build (`docs/simulation.md`, "Million
            // nodes"). Not all of it: each slot would hold the room of its busiest moment.
            bucket.shrink_to(self.keep);
            self.buckets[slot] = bucket;
            // Far entries now within the horizon move in.
            let horizon = self.horizon();
            while let Some(Reverse(e)) = self.far.peek().copied() {
                if e.due() >> self.shift >= horizon {
                    break;
                }
                self.far.pop();
                self.push(e);
            }
        }
    }

    /// Removes every entry (the buckets keep their room).
    pub(super) fn clear(&mut self) {
        self.now.clear();
        self.far.clear();
        for b in &mut self.buckets {
            b.clear();
        }
        self.in_buckets = 0;
    }

    /// Gives back room held far beyond what is queued (after a burst).
    pub(super) fn give_back_room(&mut self) {
        super::give_back_room(&mut self.now);
        super::give_back_room(&mut self.far);
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn entries_come_out_in_the_order_of_one_binary_heap() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Tiny slices and a short horizon, so that entries go to all three places.
        let mut calendar = Calendar::new(4, 6, 2);
        let mut heap = BinaryHeap::new();
        let mut now = 0u64;
        for round in 0..20_000u32 {
            // Pushes at or after the last pop (as the simulation does), some far beyond the
            // horizon, some at the same instant, and now and then one in the past.
            for _ in 0..(rng.next_u32() % 3) {
                let ahead = match rng.next_u32() % 10 {
                    0 => 5_000 + u64::from(rng.next_u32() % 100_000),
                    1 => 0,
                    _ => u64::from(rng.next_u32() % 900),
                };
                let at = if round % 997 == 0 { now.saturating_sub(3) } else { now + ahead };
                let entry = (at, rng.next_u32() % 5);
                calendar.push(entry);
                heap.push(Reverse(entry));
            }
            assert_eq!(calendar.len(), heap.len());
            if rng.next_u32() % 2 == 0 {
                assert_eq!(calendar.peek().copied(), heap.peek().map(|Reverse(e)| *e));
                let got = calendar.pop();
                assert_eq!(got, heap.pop().map(|Reverse(e)| e));
                if let Some((at, _)) = got {
                    now = now.max(at);
                }
            }
        }
        while let Some(Reverse(e)) = heap.pop() {
            assert_eq!(calendar.pop(), Some(e));
        }
        assert_eq!(calendar.pop(), None);
        assert_eq!(calendar.len(), 0);
    }
}

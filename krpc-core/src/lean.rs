//! Queues and lists whose first allocation is one slot.
//!
//! `Vec` and `VecDeque` allocate room for four elements on their first push (Rust's minimum
//! for elements up to 1 KiB). An engine that handles one datagram at a time, most of a large
//! network's engines most of the time, never uses the other three, and at a million engines
//! they were several hundred bytes each (docs/simulation.md, "One slot first"). These start at
//! one slot; a burst then grows them as usual.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Appends to a queue, allocating one slot if it has none.
pub(crate) fn push_back<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.capacity() == 0 {
        queue.reserve_exact(1);
    }
    queue.push_back(item);
}

/// Appends to a list, allocating one slot if it has none.
pub(crate) fn push<T>(list: &mut Vec<T>, item: T) {
    if list.capacity() == 0 {
        list.reserve_exact(1);
    }
    list.push(item);
}

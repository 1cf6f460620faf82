//! The engine's one timer table: a deadline per kind of timer, each set and cleared by the part
//! that owns it, and [`TimerTable::next`] as the single minimum behind `poll_timeout`.
//!
//! Per-query deadlines stay in the transaction part (one FIFO there serves thousands of
//! queries); that part reports its earliest deadline here as [`Timer::QueryTimeout`], so the
//! table holds one entry per kind, not one per query.

use crate::Instant;

/// The kinds of deadline the engine keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The earliest query deadline (owner: the RPC part).
    QueryTimeout = 0,
    /// The earliest soft deadline of a lookup query, which frees its α slot (owner: the RPC
    /// part, on behalf of lookups).
    SoftTimeout = 1,
    /// Bucket refresh and re-bootstrap (owner: upkeep).
    Maintenance = 2,
    /// Write-token rotation and peer-store expiry (owner: the node layer).
    NodeLayer = 3,
    /// The next query a crawl's rate cap allows, or the end of the soonest interval it waits
    /// for (owner: the crawls in the operations part).
    Crawl = 4,
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 5],
}

impl TimerTable {
    /// Arms `timer` for `at`, or clears it with `None`.
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.deadlines[timer as usize] = at;
    }

    /// Whether `timer` is armed for `now` or earlier.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.deadlines[timer as usize].is_some_and(|at| at <= now)
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_minimum_of_the_armed_timers() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Maintenance, Some(Instant::from_millis(60_000)));
        t.set(Timer::QueryTimeout, Some(Instant::from_millis(2_000)));
        assert_eq!(t.next(), Some(Instant::from_millis(2_000)));
        assert!(t.is_due(Timer::QueryTimeout, Instant::from_millis(2_000)));
        assert!(!t.is_due(Timer::Maintenance, Instant::from_millis(2_000)));
        assert!(!t.is_due(Timer::SoftTimeout, Instant::from_millis(u64::MAX / 2)), "unarmed is never due");
        t.set(Timer::QueryTimeout, None);
        assert_eq!(t.next(), Some(Instant::from_millis(60_000)));
    }
}

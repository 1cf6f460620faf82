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

/// One optional deadline per [`Timer`]: the instants, and a bit per timer saying which are
/// armed. (`[Option<Instant>; 5]` would take 80 bytes, since every `u64` of an `Instant` is a
/// valid time and leaves no niche for `None`; this takes 48, and a simulator holds millions.)
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Instant; 5],
    armed: u8,
}

impl TimerTable {
    /// Arms `timer` for `at`, or clears it with `None`.
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        let bit = 1u8 << timer as usize;
        match at {
            Some(at) => {
                self.deadlines[timer as usize] = at;
                self.armed |= bit;
            }
            None => self.armed &= !bit,
        }
    }

    fn get(&self, index: usize) -> Option<Instant> {
        (self.armed & (1 << index) != 0).then(|| self.deadlines[index])
    }

    /// Whether `timer` is armed for `now` or earlier.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer as usize).is_some_and(|at| at <= now)
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        (0..self.deadlines.len()).filter_map(|i| self.get(i)).min()
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
        // The largest instant is a deadline like any other (saturated clocks reach it).
        t.set(Timer::Crawl, Some(Instant::MAX));
        t.set(Timer::Maintenance, None);
        assert_eq!(t.next(), Some(Instant::MAX));
        assert!(t.is_due(Timer::Crawl, Instant::MAX));
        t.set(Timer::Crawl, None);
        assert_eq!(t.next(), None);
        assert!(core::mem::size_of::<TimerTable>() <= 48);
    }
}

//! The engine's notion of time.
//!
//! krpc-core never reads a clock: every input carries `now`. [`Instant`] is a monotonic point
//! on an arbitrary time line chosen by the driver (the tokio and std drivers count from the
//! moment they were created; a simulator counts from zero). Only differences between instants
//! mean anything, so two engines may use unrelated time lines.

use core::ops::{Add, AddAssign, Sub};
use core::time::Duration;

/// A point in time, measured from an origin chosen by whoever drives the engine.
///
/// Stored as whole nanoseconds in a `u64` (eight bytes, enough for 584 years), because routing
/// entries carry several of them and the simulator holds millions of entries.
///
/// ```
/// use core::time::Duration;
/// use krpc_core::Instant;
///
/// let start = Instant::ZERO;
/// let later = start + Duration::from_secs(2);
/// assert_eq!(later.saturating_duration_since(start), Duration::from_secs(2));
/// assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the time line.
    pub const ZERO: Instant = Instant(0);

    /// The latest representable instant; used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `elapsed` after the origin (saturating at [`Instant::MAX`]).
    pub const fn from_duration(elapsed: Duration) -> Self {
        let nanos = elapsed.as_nanos();
        Instant(if nanos > u64::MAX as u128 { u64::MAX } else { nanos as u64 })
    }

    /// The instant `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms.saturating_mul(1_000_000))
    }

    /// The instant `ns` nanoseconds after the origin.
    pub const fn from_nanos(ns: u64) -> Self {
        Instant(ns)
    }

    /// Time elapsed since the origin.
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this instant is, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`] instead of panicking.
    pub const fn saturating_add(self, d: Duration) -> Instant {
        let add = Instant::from_duration(d).0;
        Instant(self.0.saturating_add(add))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub const fn saturating_sub(self, d: Duration) -> Instant {
        let sub = Instant::from_duration(d).0;
        Instant(self.0.saturating_sub(sub))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

//! The driver's clock: [`krpc_core::Instant`]s counted from the moment the driver was built.

use krpc_core::Instant;

/// Reads the monotonic clock of the OS; the engine only ever sees differences from `start`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: std::time::Instant,
}

impl Clock {
    #[allow(clippy::disallowed_methods)] // the driver, not the engine, owns the clock
    pub(crate) fn start() -> Clock {
        Clock { start: std::time::Instant::now() }
    }

    #[allow(clippy::disallowed_methods)] // the driver, not the engine, owns the clock
    pub(crate) fn now(&self) -> Instant {
        Instant::from_duration(std::time::Instant::now().saturating_duration_since(self.start))
    }
}

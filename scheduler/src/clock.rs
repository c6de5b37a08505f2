//! Where "now" comes from: the one place simian reads the wall clock, so tests can drive any round on
//! tokio's paused clock.

use chrono::{DateTime, TimeDelta, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// The current wall-clock instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        #[allow(clippy::disallowed_methods)] // the one sanctioned read of the wall clock
        Utc::now()
    }
}

/// Wall time that moves with tokio's clock from an anchor, so tests can pause and advance it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    anchor: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `anchor` now.
    pub fn starting_at(anchor: DateTime<Utc>) -> TokioClock {
        TokioClock { anchor, start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.anchor + TimeDelta::from_std(self.start.elapsed()).unwrap_or_default()
    }
}

/// `at + d`, saturating at chrono's limits instead of panicking (policy durations are bounded, but no
/// date arithmetic may panic whatever it is given).
pub fn add(at: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d).ok().and_then(|d| at.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at - d`, saturating like [`add`].
pub fn sub(at: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    at.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

//! The clock the timestamp checks read, injectable for tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A source of the current Unix time, in whole seconds.
///
/// The layers read the time through this trait so that tests (yours and ours) can pin it.
/// [`SystemClock`] is the default; [`ManualClock`] is set by hand.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Seconds since the Unix epoch. A clock before 1970 reads as `0`.
    fn now_unix_secs(&self) -> u64;
}

/// The system's wall clock, [`SystemTime::now`](std::time::SystemTime::now).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_secs(&self) -> u64 {
        use std::time::{SystemTime, UNIX_EPOCH};
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_700_000_000);
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(shared.now_unix_secs(), 1_700_000_030);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    secs: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `unix_secs` until changed.
    #[must_use]
    pub fn new(unix_secs: u64) -> Self {
        Self {
            secs: Arc::new(AtomicU64::new(unix_secs)),
        }
    }

    /// Sets the time.
    pub fn set(&self, unix_secs: u64) {
        self.secs.store(unix_secs, Ordering::Relaxed);
    }

    /// Moves the time forward (saturating at `u64::MAX`).
    pub fn advance(&self, by: Duration) {
        let by = by.as_secs();
        let _ = self
            .secs
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_unix_secs(&self) -> u64 {
        self.secs.load(Ordering::Relaxed)
    }
}

/// A shared clock handle, as the layers hold it.
pub(crate) type SharedClock = Arc<dyn Clock>;

pub(crate) fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    fn precise_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn system_clock_reads_the_wall_time() {
        for _ in 0..1_000 {
            let before = precise_secs();
            let now = SystemClock.now_unix_secs();
            let after = precise_secs();
            assert!(
                before <= now && now <= after,
                "{before} <= {now} <= {after}"
            );
        }
        assert!(SystemClock.now_unix_secs() > 1_577_836_800);
    }

    #[test]
    fn manual_clock_saturates() {
        let c = ManualClock::new(u64::MAX - 1);
        c.advance(Duration::from_secs(10));
        assert_eq!(c.now_unix_secs(), u64::MAX);
    }
}

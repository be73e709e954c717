//! Wall-clock time as an injected dependency, so expiry, skew, cache lifetimes and refetch
//! rate limits can be tested by moving time instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Something that tells the time since the Unix epoch.
pub trait TimeSource: Send + Sync + 'static {
    /// Time elapsed since 1970-01-01T00:00:00Z.
    fn since_epoch(&self) -> Duration;
}

/// The verifier's clock: cheap to clone, shared by every cache and check.
#[derive(Clone)]
pub struct Clock {
    source: Arc<dyn TimeSource>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock").field("now", &self.now()).finish()
    }
}

struct SystemSource;

impl TimeSource for SystemSource {
    fn since_epoch(&self) -> Duration {
        // A clock before 1970 is a broken host; treating it as the epoch makes every token
        // look not-yet-valid rather than panicking.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

impl Clock {
    /// The host's real-time clock.
    pub fn system() -> Self {
        Self {
            source: Arc::new(SystemSource),
        }
    }

    /// A clock driven by any [`TimeSource`].
    pub fn from_source(source: Arc<dyn TimeSource>) -> Self {
        Self { source }
    }

    /// Time since the Unix epoch.
    pub fn now(&self) -> Duration {
        self.source.since_epoch()
    }

    /// Whole seconds since the Unix epoch, the unit JWT time claims use.
    pub fn unix_secs(&self) -> u64 {
        self.now().as_secs()
    }
}

/// A clock that only moves when told to; for tests and benchmarks.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    /// A manual clock starting at `unix_secs`.
    pub fn new(unix_secs: u64) -> Arc<Self> {
        Arc::new(Self {
            millis: AtomicU64::new(unix_secs.saturating_mul(1000)),
        })
    }

    /// A [`Clock`] reading this source.
    pub fn clock(self: &Arc<Self>) -> Clock {
        Clock::from_source(self.clone())
    }

    /// Move time forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    /// Jump to an absolute time.
    pub fn set_unix_secs(&self, unix_secs: u64) {
        self.millis
            .store(unix_secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl TimeSource for ManualClock {
    fn since_epoch(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let m = ManualClock::new(1_000);
        let c = m.clock();
        assert_eq!(c.unix_secs(), 1_000);
        m.advance(Duration::from_millis(2_500));
        assert_eq!(c.unix_secs(), 1_002);
        m.set_unix_secs(5);
        assert_eq!(c.now(), Duration::from_secs(5));
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(Clock::system().unix_secs() > 1_577_836_800);
    }
}

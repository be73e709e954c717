//! Counters the metrics endpoint exports; plain atomics so the request path never locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since start-up.
#[derive(Debug, Default)]
pub struct Stats {
    allowed: AtomicU64,
    rejected: AtomicU64,
    unavailable: AtomicU64,
    fallbacks: AtomicU64,
    redis_errors: AtomicU64,
    redis_down: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests a rule applied to and admitted.
    pub allowed: u64,
    /// Requests refused with 429.
    pub rejected: u64,
    /// Requests refused with 503 (Redis down, `fault_tolerant: false`).
    pub unavailable: u64,
    /// Answers the local fallback gave because Redis was unreachable.
    pub fallbacks: u64,
    /// Redis round trips that failed or timed out.
    pub redis_errors: u64,
    /// 1 while the limiter considers Redis unreachable, else 0 (a gauge).
    pub redis_down: u64,
}

impl Stats {
    pub(crate) fn inc_allowed(&self) {
        self.allowed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn inc_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn inc_unavailable(&self) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn inc_fallbacks(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn inc_redis_errors(&self) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn set_redis_down(&self, down: bool) {
        self.redis_down.store(u64::from(down), Ordering::Relaxed);
    }

    /// Read every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            allowed: self.allowed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            redis_errors: self.redis_errors.load(Ordering::Relaxed),
            redis_down: self.redis_down.load(Ordering::Relaxed),
        }
    }
}

//! The Generic Cell Rate Algorithm, as pure arithmetic on microseconds.
//!
//! `per_minute: N` means: N requests may arrive at once, after that one request every
//! 60 s / N, and the full quota is back after a minute without traffic. Fixed windows let a
//! client send N at 0:59 and N more at 1:00; GCRA never lets a burst exceed N, because the
//! state is a single "theoretical arrival time" (TAT) that slides with the clock instead of
//! a counter that resets at a boundary. The Redis Lua script mirrors [`check_windows`] line
//! for line so the local and the shared limiter answer the same.

use std::time::Duration;

/// The window a limit is expressed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
}

impl Window {
    /// All windows, shortest first.
    pub const ALL: [Window; 4] = [Window::Second, Window::Minute, Window::Hour, Window::Day];

    /// Length of the window.
    pub const fn duration(self) -> Duration {
        Duration::from_secs(self.seconds())
    }

    /// Length of the window in seconds.
    pub const fn seconds(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        }
    }

    pub(crate) const fn micros(self) -> u64 {
        self.seconds() * 1_000_000
    }

    /// The suffix Kong uses in `X-RateLimit-Limit-<Window>`.
    pub const fn header_suffix(self) -> &'static str {
        match self {
            Window::Second => "Second",
            Window::Minute => "Minute",
            Window::Hour => "Hour",
            Window::Day => "Day",
        }
    }

    /// Field name in the shared store; keyed by window so reordering the config is harmless.
    pub(crate) const fn field(self) -> &'static str {
        match self {
            Window::Second => "s",
            Window::Minute => "m",
            Window::Hour => "h",
            Window::Day => "d",
        }
    }

    /// The config key that sets this window's limit.
    pub const fn config_key(self) -> &'static str {
        match self {
            Window::Second => "per_second",
            Window::Minute => "per_minute",
            Window::Hour => "per_hour",
            Window::Day => "per_day",
        }
    }
}

/// One validated limit: `limit` units per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub window: Window,
    pub limit: u64,
    /// Emission interval T: the time one unit of quota takes to come back.
    pub(crate) interval_us: u64,
}

impl Limit {
    /// `None` when the limit is zero or finer than one unit per microsecond.
    pub fn new(window: Window, limit: u64) -> Option<Self> {
        if limit == 0 || limit > window.micros() {
            return None;
        }
        Some(Self {
            window,
            limit,
            interval_us: window.micros() / limit,
        })
    }

    /// The burst capacity N·T (≤ the window; integer division rounds T down by < 1 µs).
    pub(crate) fn capacity_us(&self) -> u64 {
        self.limit.saturating_mul(self.interval_us)
    }
}

/// One window's arithmetic for one request, before the request is committed or refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowCheck {
    pub limit: Limit,
    /// Stored TAT clamped to now.
    pub tat: u64,
    /// TAT if the request is admitted.
    pub new_tat: u64,
    /// How long until this window would admit the request; 0 when it admits it now.
    pub retry_us: u64,
}

/// What a window looks like after the decision; what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowReport {
    pub limit: Limit,
    /// Whole units of quota left.
    pub remaining: u64,
    /// Time until the full quota is back.
    pub reset_us: u64,
    /// Time until this window admits the refused request; 0 when it did not block.
    pub retry_us: u64,
}

/// Check `cost` units against every window of one key. `stored` holds the stored TATs in the
/// same order as `limits` (0 or anything ≤ now means "fresh").
pub(crate) fn check_windows(
    now: u64,
    cost: u64,
    limits: &[Limit],
    stored: &[u64],
) -> Vec<WindowCheck> {
    limits
        .iter()
        .enumerate()
        .map(|(i, limit)| {
            let tat = stored.get(i).copied().unwrap_or(0).max(now);
            let new_tat = tat.saturating_add(cost.saturating_mul(limit.interval_us));
            let retry_us = (new_tat - now).saturating_sub(limit.capacity_us());
            WindowCheck {
                limit: *limit,
                tat,
                new_tat,
                retry_us,
            }
        })
        .collect()
}

impl WindowCheck {
    /// The window as the client sees it, `committed` saying whether the request was admitted.
    pub(crate) fn report(&self, now: u64, committed: bool) -> WindowReport {
        let tat = if committed { self.new_tat } else { self.tat };
        let used = tat.saturating_sub(now);
        let remaining =
            self.limit.capacity_us().saturating_sub(used) / self.limit.interval_us.max(1);
        WindowReport {
            limit: self.limit,
            remaining,
            reset_us: used,
            retry_us: self.retry_us,
        }
    }

    /// The TAT to store when the request is admitted.
    pub(crate) fn committed_tat(&self) -> u64 {
        self.new_tat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    fn run(limit: Limit, times: &[u64], cost: u64) -> Vec<bool> {
        let mut tat = 0;
        times
            .iter()
            .map(|&now| {
                let checks = check_windows(now, cost, &[limit], &[tat]);
                let ok = checks.iter().all(|c| c.retry_us == 0);
                if ok {
                    tat = checks[0].committed_tat();
                }
                ok
            })
            .collect()
    }

    #[test]
    fn burst_of_n_then_one_per_interval() {
        let limit = Limit::new(Window::Second, 4).unwrap();
        let admitted = run(limit, &[0; 6], 1);
        assert_eq!(admitted, [true, true, true, true, false, false]);
        // 250 ms later exactly one unit has come back.
        let mut tat = 4 * 250_000;
        let c = check_windows(SEC / 4, 1, &[limit], &[tat]);
        assert_eq!(c[0].retry_us, 0);
        tat = c[0].committed_tat();
        let c = check_windows(SEC / 4, 1, &[limit], &[tat]);
        assert_eq!(c[0].retry_us, 250_000);
    }

    #[test]
    fn report_counts_remaining_and_reset() {
        let limit = Limit::new(Window::Minute, 60).unwrap();
        let c = check_windows(10 * SEC, 1, &[limit], &[0]);
        let r = c[0].report(10 * SEC, true);
        assert_eq!(r.remaining, 59);
        assert_eq!(r.reset_us, SEC);
        let r = c[0].report(10 * SEC, false);
        assert_eq!(r.remaining, 60);
        assert_eq!(r.reset_us, 0);
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        assert!(Limit::new(Window::Second, 0).is_none());
        assert!(Limit::new(Window::Second, 1_000_001).is_none());
        assert!(Limit::new(Window::Day, u64::MAX).is_none());
    }
}

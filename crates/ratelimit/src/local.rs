//! The in-process limiter: the `local` backend, and the fallback while Redis is unreachable.
//!
//! One TAT per (rule, key, window) in a moka cache with a size cap and an idle TTL, so a flood
//! of distinct keys (spoofed headers, many IPs) costs bounded memory. LRU rather than moka's
//! default TinyLFU admission: with TinyLFU a brand-new key may be refused a slot, and a key
//! without a slot would get a fresh quota on every request.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::clock::Clock;
use crate::gcra::{WindowReport, check_windows};
use crate::limiter::Item;

type Tats = Arc<Mutex<[u64; 4]>>;

#[derive(Debug)]
pub(crate) struct LocalLimiter {
    tats: Cache<String, Tats>,
    clock: Arc<dyn Clock>,
}

/// The decision for every applicable rule at once.
pub(crate) struct Outcome {
    pub allowed: bool,
    /// Per item, its windows as reported to the client.
    pub reports: Vec<Vec<WindowReport>>,
}

impl LocalLimiter {
    /// `idle_ttl` is the longest window of any rule: a key idle that long has its full quota
    /// again, so forgetting it changes nothing.
    pub(crate) fn new(max_keys: u64, idle_ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        let tats = Cache::builder()
            .max_capacity(max_keys)
            .time_to_idle(idle_ttl)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { tats, clock }
    }

    /// Check all items and commit them only if every one admits the request, so a request
    /// refused by one rule does not use up another rule's quota.
    pub(crate) fn check(&self, items: &[Item<'_>]) -> Outcome {
        let cells: Vec<Tats> = items
            .iter()
            .map(|item| self.tats.get_with_by_ref(item.key.as_str(), Tats::default))
            .collect();
        // Items come in rule order and each rule yields one key, so every request locks in
        // the same global order and two requests cannot deadlock.
        let mut guards: Vec<MutexGuard<'_, [u64; 4]>> = cells
            .iter()
            .map(|c| c.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .collect();
        let now = self.clock.now_micros();
        let checks: Vec<_> = items
            .iter()
            .zip(guards.iter())
            .map(|(item, tats)| check_windows(now, item.cost, &item.rule.limits, &tats[..]))
            .collect();
        let allowed = checks.iter().flatten().all(|c| c.retry_us == 0);
        if allowed {
            for (guard, windows) in guards.iter_mut().zip(&checks) {
                for (slot, check) in guard.iter_mut().zip(windows) {
                    *slot = check.committed_tat();
                }
            }
        }
        let reports = checks
            .iter()
            .map(|ws| ws.iter().map(|c| c.report(now, allowed)).collect())
            .collect();
        Outcome { allowed, reports }
    }

    /// Keys currently remembered (after pending evictions are applied).
    pub(crate) fn key_count(&self) -> u64 {
        self.tats.run_pending_tasks();
        self.tats.entry_count()
    }
}

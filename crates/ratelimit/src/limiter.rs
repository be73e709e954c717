//! [`RateLimiter`]: picks the rules that apply to a request and asks the backend.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock};
use crate::config::{Backend, RateLimitConfig, Rule};
use crate::key::RequestKeyInput;
use crate::local::{LocalLimiter, Outcome};
use crate::redis_backend::{RedisBackend, RedisFailure};
use crate::stats::Stats;
use crate::verdict::{Verdict, summarize};

/// One applicable rule for one request.
#[derive(Debug)]
pub(crate) struct Item<'r> {
    pub rule: &'r Rule,
    pub key: String,
    pub cost: u64,
}

/// The throttle phase's limiter. Cheap to share behind an `Arc`; `check` takes `&self`.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    /// The `local` backend, or the fallback of the `redis` backend.
    local: LocalLimiter,
    redis: Option<Arc<RedisBackend>>,
    stats: Arc<Stats>,
}

impl RateLimiter {
    /// A limiter on the real monotonic clock. Connects to Redis lazily, on the first check,
    /// so start-up does not depend on Redis being up.
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_clock(config, Arc::new(MonotonicClock::new()))
    }

    /// A limiter whose local limiter reads `clock` (tests inject [`crate::ManualClock`]).
    /// The Redis backend always uses the Redis server's clock.
    pub fn with_clock(config: RateLimitConfig, clock: Arc<dyn Clock>) -> Self {
        let longest = config
            .rules
            .iter()
            .flat_map(|r| r.limits.iter().map(|l| l.window.duration()))
            .max()
            .unwrap_or(Duration::from_secs(1));
        let local = LocalLimiter::new(config.local_max_keys, longest, clock);
        let redis = match &config.backend {
            Backend::Local => None,
            Backend::Redis(settings) => Some(Arc::new(RedisBackend::new(settings.clone()))),
        };
        Self {
            config,
            local,
            redis,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Counters for the metrics endpoint.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Keys the local limiter currently remembers (bounded by `local.max_keys`).
    pub fn local_key_count(&self) -> u64 {
        self.local.key_count()
    }

    /// Decide one request. Never fails: with Redis unreachable the answer comes from the
    /// local limiter (`fault_tolerant: true`, flagged in the verdict) or is
    /// [`Verdict::Unavailable`]. Costs at most one Redis round trip, bounded by its timeout.
    pub async fn check(&self, request: &RequestKeyInput<'_>) -> Verdict {
        let items = self.applicable(request);
        if items.is_empty() {
            return Verdict::Unlimited;
        }
        let (outcome, from_fallback) = match &self.redis {
            None => (self.local.check(&items), false),
            // Boxed so that the local limiter's callers do not carry the Redis future's space.
            Some(redis) => match Box::pin(redis.check(&items, &self.stats)).await {
                Ok(outcome) => (outcome, false),
                Err(err) => {
                    if !matches!(err, RedisFailure::CircuitOpen(_)) {
                        tracing::debug!(error = %err, "rate-limit round trip failed");
                    }
                    if !self.config.fault_tolerant {
                        self.stats.inc_unavailable();
                        let retry_after = match err {
                            RedisFailure::CircuitOpen(left) => left,
                            _ => redis.retry_interval(),
                        };
                        return Verdict::Unavailable { retry_after };
                    }
                    self.stats.inc_fallbacks();
                    (self.local.check(&items), true)
                }
            },
        };
        self.finish(&items, outcome, from_fallback)
    }

    fn applicable<'r>(&'r self, request: &RequestKeyInput<'_>) -> Vec<Item<'r>> {
        self.config
            .rules
            .iter()
            .filter(|rule| rule.matches(request))
            .filter_map(|rule| {
                let key = rule.key(request)?;
                Some(Item {
                    rule,
                    key,
                    cost: rule.cost(request),
                })
            })
            .collect()
    }

    fn finish(&self, items: &[Item<'_>], outcome: Outcome, from_fallback: bool) -> Verdict {
        if outcome.allowed {
            self.stats.inc_allowed();
        } else {
            self.stats.inc_rejected();
        }
        let reports: Vec<_> = items
            .iter()
            .zip(outcome.reports)
            .map(|(item, windows)| (Arc::clone(&item.rule.name), windows))
            .collect();
        summarize(
            &reports,
            outcome.allowed,
            from_fallback,
            self.config.headers,
        )
    }
}

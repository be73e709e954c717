//! The shared limiter: one Lua script per request on Redis, behind a circuit breaker.
//!
//! Every call is bounded by `timeout`. After a failure the breaker opens: requests go
//! straight to the fallback instead of each paying the timeout, and a background task probes
//! Redis (reconnect + PING) at most once per `retry_interval`, closing the breaker when Redis
//! answers. So during an outage no request waits on Redis at all; only requests already in
//! flight when it fails pay up to `timeout` once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::clock::{Clock, MonotonicClock};
use crate::config::RedisSettings;
use crate::gcra::{Limit, WindowReport};
use crate::limiter::Item;
use crate::local::Outcome;
use crate::stats::Stats;

const SCRIPT: &str = include_str!("gcra.lua");

/// Why the shared backend did not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisFailure {
    #[error("redis marked unreachable; next attempt in {0:?}")]
    CircuitOpen(Duration),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("no connection configured")]
    NoConnection,
    #[error("unexpected reply from the rate-limit script ({0} values)")]
    BadReply(usize),
}

pub(crate) struct RedisBackend {
    settings: RedisSettings,
    script: redis::Script,
    pool: RwLock<Vec<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    next: AtomicUsize,
    /// Microseconds on `clock` until which Redis is not tried; 0 = closed breaker.
    open_until: AtomicU64,
    down: AtomicBool,
    /// Bumped on every failure, so requests queued behind a failed connect give up at once
    /// instead of each waiting out its own connect timeout.
    failures: AtomicU64,
    clock: MonotonicClock,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("settings", &self.settings)
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    pub(crate) fn new(settings: RedisSettings) -> Self {
        Self {
            settings,
            script: redis::Script::new(SCRIPT),
            pool: RwLock::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
            next: AtomicUsize::new(0),
            open_until: AtomicU64::new(0),
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            clock: MonotonicClock::new(),
        }
    }

    pub(crate) fn retry_interval(&self) -> Duration {
        self.settings.retry_interval
    }

    pub(crate) async fn check(
        self: &Arc<Self>,
        items: &[Item<'_>],
        stats: &Arc<Stats>,
    ) -> Result<Outcome, RedisFailure> {
        let open_until = self.open_until.load(Ordering::Acquire);
        if open_until != 0 {
            let now = self.clock.now_micros();
            if now >= open_until {
                // Whoever moves the deadline starts the one probe for this interval.
                let next = now.saturating_add(micros(self.settings.retry_interval));
                if self
                    .open_until
                    .compare_exchange(open_until, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.spawn_probe(stats);
                }
            }
            let left = open_until.saturating_sub(now).max(1);
            return Err(RedisFailure::CircuitOpen(Duration::from_micros(left)));
        }
        let result = self.round_trip(items).await;
        self.settle(result.as_ref().err(), stats);
        result
    }

    fn spawn_probe(self: &Arc<Self>, stats: &Arc<Stats>) {
        let (this, stats) = (Arc::clone(self), Arc::clone(stats));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Not on tokio (the connection needs it anyway): leave the breaker open.
            return;
        };
        runtime.spawn(async move {
            let result = this.probe().await;
            this.settle(result.as_ref().err(), &stats);
        });
    }

    async fn probe(&self) -> Result<(), RedisFailure> {
        let mut conn = self.connection().await?;
        let timeout = self.settings.timeout;
        tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map_err(|_| RedisFailure::Timeout(timeout))??;
        Ok(())
    }

    /// Close the breaker after a success, open it after a failure; log the transitions.
    fn settle(&self, failure: Option<&RedisFailure>, stats: &Stats) {
        match failure {
            None => {
                self.open_until.store(0, Ordering::Release);
                if self.down.swap(false, Ordering::AcqRel) {
                    stats.set_redis_down(false);
                    tracing::warn!(
                        redis = %self.settings.url_redacted,
                        "redis reachable again; shared rate limits resumed"
                    );
                }
            }
            Some(RedisFailure::CircuitOpen(_)) => {}
            Some(err) => {
                stats.inc_redis_errors();
                self.trip(err, stats);
            }
        }
    }

    fn trip(&self, err: &RedisFailure, stats: &Stats) {
        self.failures.fetch_add(1, Ordering::AcqRel);
        let until = self
            .clock
            .now_micros()
            .saturating_add(micros(self.settings.retry_interval));
        self.open_until.store(until.max(1), Ordering::Release);
        // A fresh connection on the next probe: a manager stuck reconnecting with its own
        // back-off would otherwise keep the probe waiting.
        if let Ok(mut pool) = self.pool.write() {
            pool.clear();
        }
        if !self.down.swap(true, Ordering::AcqRel) {
            stats.set_redis_down(true);
            tracing::warn!(
                redis = %self.settings.url_redacted,
                error = %err,
                retry_in = ?self.settings.retry_interval,
                "redis unreachable; rate limiting falls back"
            );
        }
    }

    async fn round_trip(&self, items: &[Item<'_>]) -> Result<Outcome, RedisFailure> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for item in items {
            invocation.key(format!("{}{}", self.settings.key_prefix, item.key));
            invocation.arg(item.cost).arg(item.rule.limits.len());
            for limit in &item.rule.limits {
                invocation
                    .arg(limit.window.field())
                    .arg(limit.interval_us)
                    .arg(limit.capacity_us());
            }
        }
        let timeout = self.settings.timeout;
        let reply: Vec<i64> = tokio::time::timeout(timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| RedisFailure::Timeout(timeout))??;
        parse_reply(&reply, items)
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisFailure> {
        if let Some(conn) = self.pick() {
            return Ok(conn);
        }
        let failures = self.failures.load(Ordering::Acquire);
        let _single_flight = self.connecting.lock().await;
        if let Some(conn) = self.pick() {
            return Ok(conn);
        }
        if self.failures.load(Ordering::Acquire) != failures {
            return Err(RedisFailure::CircuitOpen(self.settings.retry_interval));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.settings.connect_timeout)
            .set_response_timeout(self.settings.timeout)
            .set_number_of_retries(1)
            .set_max_delay(
                self.settings
                    .retry_interval
                    .as_millis()
                    .try_into()
                    .unwrap_or(u64::MAX),
            );
        let mut fresh = Vec::with_capacity(self.settings.pool_size);
        for _ in 0..self.settings.pool_size {
            let connect =
                ConnectionManager::new_with_config(self.settings.client.clone(), config.clone());
            let conn = match tokio::time::timeout(self.settings.connect_timeout, connect).await {
                Ok(Ok(conn)) => conn,
                failed => {
                    // Counted while still holding the lock, so the waiters behind us see it.
                    self.failures.fetch_add(1, Ordering::AcqRel);
                    return Err(match failed {
                        Ok(Err(e)) => RedisFailure::Redis(e),
                        _ => RedisFailure::Timeout(self.settings.connect_timeout),
                    });
                }
            };
            fresh.push(conn);
        }
        let first = fresh.first().cloned();
        if let Ok(mut pool) = self.pool.write() {
            *pool = fresh;
        }
        first.ok_or(RedisFailure::NoConnection)
    }

    fn pick(&self) -> Option<ConnectionManager> {
        let pool = self.pool.read().ok()?;
        if pool.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % pool.len();
        pool.get(i).cloned()
    }
}

fn parse_reply(reply: &[i64], items: &[Item<'_>]) -> Result<Outcome, RedisFailure> {
    let expected = 1 + 3 * items.iter().map(|i| i.rule.limits.len()).sum::<usize>();
    let (Some(allowed), true) = (reply.first(), reply.len() == expected) else {
        return Err(RedisFailure::BadReply(reply.len()));
    };
    let mut values = reply.iter().skip(1).map(|v| u64::try_from(*v).unwrap_or(0));
    let mut next = || values.next().unwrap_or(0);
    let reports = items
        .iter()
        .map(|item| {
            item.rule
                .limits
                .iter()
                .map(|limit: &Limit| WindowReport {
                    limit: *limit,
                    remaining: next(),
                    reset_us: next(),
                    retry_us: next(),
                })
                .collect()
        })
        .collect();
    Ok(Outcome {
        allowed: *allowed == 1,
        reports,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

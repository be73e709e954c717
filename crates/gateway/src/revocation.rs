//! Revocation notices (`auth.revocation`): token ids an authorization server has revoked,
//! shared through Redis, so every replica refuses a revoked JWT within a second although it
//! verifies JWTs locally and caches them for `token_cache_ttl`.
//!
//! The authorization server (`fhirgate auth serve --redis-url`) writes each ended access token
//! as `ZADD {channel}:revoked exp jti` and `PUBLISH {channel} {"jti":..,"exp":..}`. Here one
//! background task subscribes to the channel, then loads the sorted set (subscribe first, so a
//! notice sent in between is not missed), and keeps both in one in-memory set. The request
//! path only reads that set: one atomic load and one hash lookup, after token verification
//! (so a verified-token cache hit is refused too).
//!
//! Redis down: a log line and `fhirgate_revocation_redis_up 0`; the gateway keeps serving
//! with what it knows (tokens revoked meanwhile stay usable until they leave the token cache
//! and expire: the per-replica window documented in docs/security.md), and the task
//! reconnects with backoff and reloads the set.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use futures_util::{FutureExt, StreamExt};

/// Entries are kept this long past `exp`, because verification allows clock skew.
const KEEP_AFTER_EXP: u64 = 300;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Notices applied per swap of the set, so a burst costs one copy, not one per notice.
const BATCH: usize = 1024;

/// `auth.revocation` in the config file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RevocationConfig {
    /// `redis://host:port/db`, `rediss://...` or `redis+unix:///path`.
    pub redis_url: String,
    /// The channel the authorization server publishes on; the set is `{channel}:revoked`.
    pub channel: String,
    /// Most token ids held; beyond it the soonest-expiring are dropped (with a metric).
    pub max_entries: usize,
    /// Bound for connecting and for every Redis command.
    pub timeout: Duration,
    /// How often the set is reloaded and the connection checked while subscribed.
    pub resync_interval: Duration,
}

/// A Redis URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid revocation redis_url: {0}")]
pub struct RevocationConfigError(String);

impl RevocationConfig {
    pub const DEFAULT_CHANNEL: &'static str = "fhirgate:revocations";

    /// Defaults for everything but the URL, which is checked here (no I/O).
    pub fn new(redis_url: impl Into<String>) -> Result<Self, RevocationConfigError> {
        let redis_url = redis_url.into();
        redis::Client::open(redis_url.as_str())
            .map_err(|e| RevocationConfigError(e.to_string()))?;
        Ok(RevocationConfig {
            redis_url,
            channel: Self::DEFAULT_CHANNEL.to_owned(),
            max_entries: 100_000,
            timeout: Duration::from_secs(2),
            resync_interval: Duration::from_secs(10),
        })
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) notices: AtomicU64,
    pub(crate) refusals: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) redis_up: AtomicBool,
}

struct Shared {
    /// token id → `exp`. Replaced whole on change: readers never wait for a writer.
    revoked: ArcSwap<HashMap<Box<str>, u64>>,
    stats: Stats,
    max_entries: usize,
}

/// The replica's view of revoked tokens; dropping it stops the subscriber.
pub(crate) struct Revocations {
    shared: Arc<Shared>,
    task: Option<tokio::task::AbortHandle>,
}

impl Drop for Revocations {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Revocations {
    /// Starts the subscriber on the current tokio runtime. Without one (never the case in
    /// `fhirgate serve`) the set stays empty and an error is logged.
    pub(crate) fn start(config: &RevocationConfig) -> Self {
        let shared = Arc::new(Shared {
            revoked: ArcSwap::from_pointee(HashMap::new()),
            stats: Stats::default(),
            max_entries: config.max_entries.max(1),
        });
        let task = match (
            tokio::runtime::Handle::try_current(),
            redis::Client::open(config.redis_url.as_str()),
        ) {
            (Ok(runtime), Ok(client)) => Some(
                runtime
                    .spawn(subscribe_forever(
                        client,
                        config.clone(),
                        Arc::clone(&shared),
                    ))
                    .abort_handle(),
            ),
            (Err(_), _) => {
                tracing::error!("revocation notices: no async runtime; notices are not received");
                None
            }
            (_, Err(e)) => {
                tracing::error!(error = %e, "revocation notices: bad redis_url; notices are not received");
                None
            }
        };
        Revocations { shared, task }
    }

    /// The hot-path check: is this token id known as revoked?
    pub(crate) fn is_revoked(&self, token_id: Option<&str>) -> bool {
        let Some(id) = token_id else { return false };
        let hit = self.shared.revoked.load().contains_key(id);
        if hit {
            self.shared.stats.refusals.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub(crate) fn len(&self) -> usize {
        self.shared.revoked.load().len()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shared {
    /// Adds entries (dropping expired ones) and publishes the new set.
    fn merge(&self, entries: impl IntoIterator<Item = (String, u64)>) {
        let now = now();
        let mut next: HashMap<Box<str>, u64> = HashMap::clone(&self.revoked.load());
        next.retain(|_, exp| *exp + KEEP_AFTER_EXP > now);
        for (jti, exp) in entries {
            if exp + KEEP_AFTER_EXP > now {
                next.insert(jti.into_boxed_str(), exp);
            }
        }
        if next.len() > self.max_entries {
            // The soonest-expiring go first: they are the least useful to keep refusing.
            let mut by_exp: Vec<(u64, Box<str>)> =
                next.iter().map(|(k, v)| (*v, k.clone())).collect();
            by_exp.sort_unstable();
            let excess = next.len() - self.max_entries;
            for (_, k) in by_exp.into_iter().take(excess) {
                next.remove(&k);
            }
            self.stats
                .evicted
                .fetch_add(excess as u64, Ordering::Relaxed);
            tracing::error!(
                dropped = excess,
                max_entries = self.max_entries,
                "revocation notices: set full; soonest-expiring revoked tokens forgotten"
            );
        }
        self.revoked.store(Arc::new(next));
    }
}

fn parse_notice(payload: &[u8]) -> Option<(String, u64)> {
    #[derive(serde::Deserialize)]
    struct Notice {
        jti: String,
        exp: u64,
    }
    let n: Notice = serde_json::from_slice(payload).ok()?;
    (!n.jti.is_empty() && n.jti.len() <= 256).then_some((n.jti, n.exp))
}

async fn subscribe_forever(client: redis::Client, config: RevocationConfig, shared: Arc<Shared>) {
    let mut backoff = BACKOFF_START;
    loop {
        let err = session(&client, &config, &shared, &mut backoff).await;
        shared.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
        if shared.stats.redis_up.swap(false, Ordering::Relaxed) || backoff == BACKOFF_START {
            tracing::warn!(
                error = %err,
                "revocation notices: Redis unavailable; serving with the revoked tokens known so far, reconnecting"
            );
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn bounded<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())
}

/// One connection's life: subscribe, load, then apply notices until something fails.
async fn session(
    client: &redis::Client,
    config: &RevocationConfig,
    shared: &Shared,
    backoff: &mut Duration,
) -> String {
    let pubsub = match bounded(config.timeout, client.get_async_pubsub()).await {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (mut sink, mut stream) = pubsub.split();
    if let Err(e) = bounded(config.timeout, sink.subscribe(&config.channel)).await {
        return e;
    }
    let mut conn = match bounded(config.timeout, client.get_multiplexed_async_connection()).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let key = format!("{}:revoked", config.channel);
    let loaded = match load(&mut conn, &key, config).await {
        Ok(n) => n,
        Err(e) => return e,
    };
    let count = loaded.len();
    shared.merge(loaded);
    shared.stats.redis_up.store(true, Ordering::Relaxed);
    *backoff = BACKOFF_START;
    tracing::info!(
        channel = %config.channel,
        loaded = count,
        "revocation notices: subscribed"
    );
    let mut resync = tokio::time::interval(config.resync_interval);
    resync.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return "subscription closed".to_owned() };
                let mut batch: Vec<(String, u64)> = parse_notice(msg.get_payload_bytes()).into_iter().collect();
                let mut received = 1u64;
                while batch.len() < BATCH {
                    match stream.next().now_or_never() {
                        Some(Some(m)) => {
                            received += 1;
                            batch.extend(parse_notice(m.get_payload_bytes()));
                        }
                        Some(None) => return "subscription closed".to_owned(),
                        None => break,
                    }
                }
                shared.stats.notices.fetch_add(received, Ordering::Relaxed);
                shared.merge(batch);
            }
            _ = resync.tick() => {
                if let Err(e) = bounded(config.timeout, sink.ping::<redis::Value>()).await {
                    return e;
                }
                match load(&mut conn, &key, config).await {
                    Ok(loaded) => shared.merge(loaded),
                    Err(e) => return e,
                }
            }
        }
    }
}

/// The unexpired members of the sorted set, latest-expiring first (so a cut keeps those).
async fn load(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    config: &RevocationConfig,
) -> Result<Vec<(String, u64)>, String> {
    let from = now().saturating_sub(KEEP_AFTER_EXP);
    let cmd = redis::cmd("ZREVRANGEBYSCORE")
        .arg(key)
        .arg("+inf")
        .arg(from)
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(0)
        .arg(config.max_entries)
        .clone();
    let rows: Vec<(String, f64)> = bounded(config.timeout, cmd.query_async(conn)).await?;
    Ok(rows
        .into_iter()
        .filter(|(_, exp)| exp.is_finite() && *exp >= 0.0)
        .map(|(jti, exp)| (jti, exp as u64))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max: usize) -> Shared {
        Shared {
            revoked: ArcSwap::from_pointee(HashMap::new()),
            stats: Stats::default(),
            max_entries: max,
        }
    }

    #[test]
    fn notices_parse_and_garbage_is_ignored() {
        assert_eq!(
            parse_notice(br#"{"jti":"abc","exp":42}"#),
            Some(("abc".to_owned(), 42))
        );
        assert_eq!(parse_notice(b"not json"), None);
        assert_eq!(parse_notice(br#"{"jti":"","exp":42}"#), None);
        assert_eq!(parse_notice(br#"{"jti":"x"}"#), None);
    }

    #[test]
    fn expired_entries_are_dropped_and_live_ones_kept() {
        let s = shared(10);
        let t = now();
        s.merge([
            ("live".to_owned(), t + 60),
            ("old".to_owned(), t - KEEP_AFTER_EXP - 1),
        ]);
        let set = s.revoked.load();
        assert!(set.contains_key("live"));
        assert!(!set.contains_key("old"));
    }

    #[test]
    fn the_set_is_bounded_and_keeps_the_latest_expiring() {
        let s = shared(2);
        let t = now();
        s.merge([
            ("a".to_owned(), t + 10),
            ("b".to_owned(), t + 20),
            ("c".to_owned(), t + 30),
        ]);
        let set = s.revoked.load();
        assert_eq!(set.len(), 2);
        assert!(!set.contains_key("a"));
        assert!(set.contains_key("c"));
        assert_eq!(s.stats.evicted.load(Ordering::Relaxed), 1);
    }
}

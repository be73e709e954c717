//! Revocation notices for gateway replicas that verify our JWTs locally.
//!
//! A gateway checks a JWT's signature and expiry without asking us, so a revoked token would
//! keep working until it expires (or leaves the gateway's token cache). When a Redis URL is
//! configured, every access token we end (revocation endpoint, refresh-token reuse, code
//! replay, client removal) is announced twice: `ZADD {channel}:revoked exp jti`, so a replica
//! that (re)connects loads what it missed, and `PUBLISH {channel} {"jti":..,"exp":..}`, so a
//! connected replica learns it at once. Gateways subscribe with `auth.revocation`
//! (`fhirgate_gateway::revocation`).
//!
//! Publishing never blocks a token request: notices go through a bounded queue to one
//! background task that retries while Redis is down (the notices wait in memory, bounded).

use std::collections::VecDeque;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::error::{AuthError, Result};

/// Notices waiting for Redis beyond this are dropped (oldest first) with an error log.
const PENDING_MAX: usize = 100_000;
const QUEUE: usize = 4096;
const TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Sorted-set members are kept this long past their `exp` (gateways allow clock skew).
pub const KEEP_AFTER_EXP: u64 = 300;

/// Where revocation notices go (`fhirgate auth serve --redis-url`).
#[derive(Debug, Clone)]
pub struct RevocationNotices {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`).
    pub redis_url: String,
    /// The PUBLISH channel; the sorted set is `{channel}:revoked`.
    pub channel: String,
}

impl RevocationNotices {
    pub const DEFAULT_CHANNEL: &'static str = "fhirgate:revocations";

    pub fn new(redis_url: impl Into<String>) -> Self {
        RevocationNotices {
            redis_url: redis_url.into(),
            channel: Self::DEFAULT_CHANNEL.to_owned(),
        }
    }
}

/// The sorted set holding `jti`s scored by `exp`, next to the channel.
pub fn set_key(channel: &str) -> String {
    format!("{channel}:revoked")
}

/// One ended access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub jti: String,
    pub exp: u64,
}

/// The sending half; the task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    tx: mpsc::Sender<Notice>,
}

impl Publisher {
    /// Starts the publishing task on the current tokio runtime.
    pub(crate) fn start(config: &RevocationNotices) -> Result<Self> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| AuthError::Config(format!("revocation redis_url: {e}")))?;
        if config.channel.is_empty() {
            return Err(AuthError::Config(
                "revocation channel must not be empty".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            AuthError::Config("revocation notices need a tokio runtime to run on".into())
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(run(client, config.channel.clone(), rx));
        Ok(Publisher { tx })
    }

    /// Queues notices for the tokens in `ended` that have not expired yet.
    pub(crate) fn publish(&self, ended: Vec<(String, u64)>, now: u64) {
        for (jti, exp) in ended {
            if exp + KEEP_AFTER_EXP <= now {
                continue;
            }
            if self.tx.try_send(Notice { jti, exp }).is_err() {
                tracing::error!(
                    "revocation notice queue full or closed; a revoked token stays usable on gateways until it leaves their token cache"
                );
            }
        }
    }
}

async fn run(client: redis::Client, channel: String, mut rx: mpsc::Receiver<Notice>) {
    let key = set_key(&channel);
    let mut pending: VecDeque<Notice> = VecDeque::new();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(100);
    let mut down = false;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(n) => pending.push_back(n),
                None => return,
            }
        }
        while let Ok(n) = rx.try_recv() {
            pending.push_back(n);
        }
        while pending.len() > PENDING_MAX {
            pending.pop_front();
            tracing::error!("revocation notices: backlog over {PENDING_MAX}; oldest dropped");
        }
        match send(&client, &mut conn, &key, &channel, &pending).await {
            Ok(()) => {
                if down {
                    tracing::info!(
                        sent = pending.len(),
                        "revocation notices: Redis reachable again, backlog sent"
                    );
                    down = false;
                }
                pending.clear();
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                conn = None;
                if !down {
                    tracing::warn!(
                        error = %e,
                        waiting = pending.len(),
                        "revocation notices: Redis unavailable; notices kept and retried"
                    );
                    down = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn send(
    client: &redis::Client,
    conn: &mut Option<MultiplexedConnection>,
    key: &str,
    channel: &str,
    notices: &VecDeque<Notice>,
) -> std::result::Result<(), String> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // The set first: a replica that misses the PUBLISH (reconnecting) still finds it there.
    let mut pipe = redis::pipe();
    for n in notices {
        pipe.zadd(key, &n.jti, n.exp).ignore();
    }
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(key)
        .arg("-inf")
        .arg(now.saturating_sub(KEEP_AFTER_EXP))
        .ignore();
    for n in notices {
        let payload = serde_json::json!({"jti": n.jti, "exp": n.exp}).to_string();
        pipe.publish(channel, payload).ignore();
    }
    tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(&mut c))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    *conn = Some(c);
    Ok(())
}

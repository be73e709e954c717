//! One issuer's verification keys: discovery, the JWKS snapshot, and refetching.
//!
//! Requests read the current key set from an `ArcSwap` snapshot and never wait on the
//! network, except (a) before the first successful fetch and (b) for an unknown `kid`, which
//! triggers one single-flight refetch. Refetches are rate-limited per issuer, so a flood of
//! random `kid`s costs one fetch per interval. A failed fetch never discards keys we have.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Client;
use serde_json::Value;
use url::Url;

use crate::clock::Clock;
use crate::config::IssuerSettings;
use crate::error::{Reason, TokenError};
use crate::fetch::{self, FetchError};
use crate::json::parse_object;
use crate::jwks::{KeySet, Selection};

/// Without `Cache-Control`, keys are considered fresh this long (then clamped to bounds).
const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);

struct Snapshot {
    keys: KeySet,
    fresh_until: Duration,
}

/// Why keys are being fetched; the rate limits differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// No keys yet, or the snapshot is past its freshness.
    Load,
    /// A token named a `kid` we do not have.
    UnknownKid,
}

/// What a refetch attempt amounted to.
enum Attempt {
    /// A fetch finished (by us or by whoever held the lock); `ok` says whether it worked.
    Done { ok: bool },
    /// Too soon after the last attempt.
    RateLimited {
        last_ok: bool,
        retry_after: Duration,
    },
    /// Someone else is refreshing and we chose not to wait.
    Busy,
}

pub(crate) struct KeyStore {
    settings: Arc<IssuerSettings>,
    clock: Clock,
    http: Client,
    current: ArcSwapOption<Snapshot>,
    /// Held while fetching; stores the discovered `jwks_uri`.
    refresh: tokio::sync::Mutex<Option<Url>>,
    /// Bumped after every completed attempt, so waiters can tell a fetch happened.
    generation: AtomicU64,
    /// Clock time (ms since epoch) of the last attempt; 0 = never.
    last_attempt_ms: AtomicU64,
    /// Clock time (ms) of the last refetch caused by an unknown `kid`; 0 = never.
    last_kid_refetch_ms: AtomicU64,
    last_ok: AtomicBool,
    fetches: AtomicU64,
}

impl KeyStore {
    pub(crate) fn new(settings: Arc<IssuerSettings>, clock: Clock, http: Client) -> Self {
        Self {
            settings,
            clock,
            http,
            current: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            last_attempt_ms: AtomicU64::new(0),
            last_kid_refetch_ms: AtomicU64::new(0),
            last_ok: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
        }
    }

    /// JWKS fetch attempts so far (for metrics).
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetch keys now if we have none yet; true when a key set is available.
    pub(crate) async fn ensure_loaded(&self) -> bool {
        if self.current.load().is_some() {
            return true;
        }
        let seen = self.generation.load(Ordering::SeqCst);
        let _ = self.refetch(seen, Trigger::Load, true).await;
        self.current.load().is_some()
    }

    /// The key that must verify a token with this `kid` and `alg`.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, TokenError> {
        let seen = self.generation.load(Ordering::SeqCst);
        let snap = match self.current.load_full() {
            Some(s) => {
                if self.clock.now() >= s.fresh_until {
                    // Stale keys still verify while one request refreshes in the background of
                    // its own call; nobody queues behind it.
                    if let Attempt::Done { ok: true } =
                        self.refetch(seen, Trigger::Load, false).await
                    {
                        self.current.load_full().unwrap_or(s)
                    } else {
                        s
                    }
                } else {
                    s
                }
            }
            None => match self.refetch(seen, Trigger::Load, true).await {
                Attempt::Done { ok: true } | Attempt::RateLimited { last_ok: true, .. } => {
                    self.current.load_full().ok_or_else(|| self.unavailable())?
                }
                Attempt::RateLimited { retry_after, .. } => return Err(unavailable(retry_after)),
                Attempt::Done { ok: false } | Attempt::Busy => return Err(self.unavailable()),
            },
        };
        match snap.keys.select(kid, alg) {
            Selection::Found(k) => return Ok(k),
            Selection::Mismatch => return Err(Reason::KeyMismatch.into()),
            Selection::UnknownKid => {}
        }
        match self.refetch(seen, Trigger::UnknownKid, true).await {
            Attempt::Done { ok: true } | Attempt::RateLimited { last_ok: true, .. } => {
                let snap = self.current.load_full().ok_or_else(|| self.unavailable())?;
                match snap.keys.select(kid, alg) {
                    Selection::Found(k) => Ok(k),
                    Selection::Mismatch => Err(Reason::KeyMismatch.into()),
                    Selection::UnknownKid => Err(Reason::UnknownKey.into()),
                }
            }
            Attempt::RateLimited { retry_after, .. } => Err(unavailable(retry_after)),
            Attempt::Done { ok: false } | Attempt::Busy => Err(self.unavailable()),
        }
    }

    fn unavailable(&self) -> TokenError {
        unavailable(self.settings.jwks_refetch_interval)
    }

    /// Single-flight, rate-limited fetch. `seen` is the generation the caller observed before
    /// deciding it needs fresh keys: if it moved while we waited, that fetch answers us too.
    ///
    /// Any attempt blocks further `Load` attempts for one interval, and a failed attempt
    /// blocks everything for one interval (a down IdP is not hammered). Unknown-kid
    /// refetches are limited to one per interval on their own clock, so a key rotated in
    /// right after a scheduled fetch is still found at once.
    async fn refetch(&self, seen: u64, trigger: Trigger, wait: bool) -> Attempt {
        let mut guard = if wait {
            self.refresh.lock().await
        } else {
            match self.refresh.try_lock() {
                Ok(g) => g,
                Err(_) => return Attempt::Busy,
            }
        };
        if self.generation.load(Ordering::SeqCst) != seen {
            return Attempt::Done {
                ok: self.last_ok.load(Ordering::SeqCst),
            };
        }
        let now = self.clock.now();
        let interval = self.settings.jwks_refetch_interval;
        let after = |ms: &AtomicU64| match ms.load(Ordering::SeqCst) {
            0 => Duration::ZERO,
            ms => Duration::from_millis(ms) + interval,
        };
        let last_ok = self.last_ok.load(Ordering::SeqCst);
        let next_allowed = match (trigger, last_ok) {
            (Trigger::UnknownKid, true) => after(&self.last_kid_refetch_ms),
            (Trigger::UnknownKid, false) => {
                after(&self.last_kid_refetch_ms).max(after(&self.last_attempt_ms))
            }
            (Trigger::Load, _) => after(&self.last_attempt_ms),
        };
        if now < next_allowed {
            return Attempt::RateLimited {
                last_ok,
                retry_after: next_allowed - now,
            };
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_keys(&mut guard).await;
        let ok = match result {
            Ok((keys, max_age)) => {
                let s = &self.settings;
                let fresh = max_age
                    .unwrap_or(DEFAULT_FRESHNESS)
                    .clamp(s.jwks_refresh_min, s.jwks_refresh_max);
                tracing::info!(issuer = %s.issuer, keys = keys.len(), "JWKS refreshed");
                self.current.store(Some(Arc::new(Snapshot {
                    keys,
                    fresh_until: now + fresh,
                })));
                true
            }
            Err(e) => {
                tracing::warn!(issuer = %self.settings.issuer, error = %e, "JWKS refresh failed");
                // Rediscover next time: the IdP may have moved its JWKS.
                *guard = None;
                false
            }
        };
        let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX).max(1);
        self.last_attempt_ms.store(ms, Ordering::SeqCst);
        if trigger == Trigger::UnknownKid {
            self.last_kid_refetch_ms.store(ms, Ordering::SeqCst);
        }
        self.last_ok.store(ok, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Attempt::Done { ok }
    }

    async fn fetch_keys(
        &self,
        jwks_uri: &mut Option<Url>,
    ) -> Result<(KeySet, Option<Duration>), FetchError> {
        let s = &self.settings;
        let uri = match (&s.jwks_uri, jwks_uri.as_ref()) {
            (Some(u), _) | (None, Some(u)) => u.clone(),
            (None, None) => {
                let u = self.discover().await?;
                *jwks_uri = Some(u.clone());
                u
            }
        };
        let req = self.http.get(uri).header(
            reqwest::header::ACCEPT,
            "application/jwk-set+json, application/json",
        );
        let f = fetch::send(req, s.fetch_timeout, s.fetch_max_bytes).await?;
        let keys = KeySet::parse(&f.body).map_err(|_| FetchError::Invalid("JWKS"))?;
        Ok((keys, f.max_age))
    }

    /// OIDC discovery, then RFC 8414; the document's `issuer` must equal ours exactly.
    async fn discover(&self) -> Result<Url, FetchError> {
        let s = &self.settings;
        let mut last = FetchError::Invalid("no discovery document");
        for url in discovery_urls(&s.issuer) {
            let req = self
                .http
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json");
            match fetch::send(req, s.fetch_timeout, s.fetch_max_bytes).await {
                Ok(f) => return jwks_uri_from(&f.body, s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn unavailable(retry_after: Duration) -> TokenError {
    TokenError::Unavailable {
        retry_after: retry_after.max(Duration::from_secs(1)),
        detail: "JWKS unavailable",
    }
}

fn discovery_urls(issuer: &str) -> Vec<Url> {
    let mut out = Vec::new();
    let trimmed = issuer.trim_end_matches('/');
    if let Ok(u) = Url::parse(&format!("{trimmed}/.well-known/openid-configuration")) {
        out.push(u);
    }
    // RFC 8414 §3: the well-known segment goes between host and path.
    if let Ok(mut u) = Url::parse(issuer) {
        let path = u.path().trim_end_matches('/').to_owned();
        u.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
        u.set_query(None);
        out.push(u);
    }
    out
}

fn jwks_uri_from(body: &[u8], s: &IssuerSettings) -> Result<Url, FetchError> {
    let doc = parse_object(body).map_err(|_| FetchError::Invalid("discovery document"))?;
    match doc.get("issuer") {
        Some(Value::String(i)) if *i == s.issuer => {}
        _ => return Err(FetchError::Invalid("discovery issuer mismatch")),
    }
    let Some(Value::String(u)) = doc.get("jwks_uri") else {
        return Err(FetchError::Invalid("discovery without jwks_uri"));
    };
    let url = Url::parse(u).map_err(|_| FetchError::Invalid("jwks_uri"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => Ok(url),
        "http" if s.allow_http || loopback => Ok(url),
        _ => Err(FetchError::Invalid("jwks_uri scheme")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_locations() {
        let u: Vec<String> = discovery_urls("https://idp.example/realms/a")
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            u,
            vec![
                "https://idp.example/realms/a/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/realms/a",
            ]
        );
        let u: Vec<String> = discovery_urls("https://idp.example")
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            u[1],
            "https://idp.example/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn discovery_issuer_must_match_exactly() {
        let s = IssuerSettings::new("https://idp", "a");
        let ok = br#"{"issuer":"https://idp","jwks_uri":"https://idp/jwks"}"#;
        assert!(jwks_uri_from(ok, &s).is_ok());
        for bad in [
            &br#"{"issuer":"https://idp/","jwks_uri":"https://idp/jwks"}"#[..],
            br#"{"issuer":"https://idp","jwks_uri":"http://evil.example/jwks"}"#,
            br#"{"issuer":"https://idp"}"#,
            br#"{"issuer":"https://idp","issuer":"https://idp","jwks_uri":"https://idp/jwks"}"#,
        ] {
            assert!(jwks_uri_from(bad, &s).is_err());
        }
    }
}

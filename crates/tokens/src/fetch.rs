//! Bounded HTTP calls to an issuer: every call has a deadline covering the whole body, a
//! size cap enforced while reading, and no redirects.

use std::time::Duration;

use reqwest::{Client, RequestBuilder, StatusCode};

/// Why a call to the issuer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("timed out")]
    Timeout,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("response larger than the configured cap")]
    TooLarge,
    #[error("transport error")]
    Transport,
    #[error("unexpected response: {0}")]
    Invalid(&'static str),
}

/// A response body plus the freshness the server declared.
#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub max_age: Option<Duration>,
}

/// The shared HTTP client: no redirects (a redirect is a way to reach somewhere we did not
/// configure), bounded connect time.
pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("fhirgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| Client::new())
}

/// Send `req`, expecting 200, and read at most `max_bytes` within `timeout`.
pub async fn send(
    req: RequestBuilder,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Fetched, FetchError> {
    match tokio::time::timeout(timeout, send_inner(req.timeout(timeout), max_bytes)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout),
    }
}

async fn send_inner(req: RequestBuilder, max_bytes: usize) -> Result<Fetched, FetchError> {
    let mut resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            FetchError::Timeout
        } else {
            FetchError::Transport
        }
    })?;
    if resp.status() != StatusCode::OK {
        return Err(FetchError::Status(resp.status().as_u16()));
    }
    if resp.content_length().is_some_and(|l| l > max_bytes as u64) {
        return Err(FetchError::TooLarge);
    }
    let max_age = resp
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(cache_max_age);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        if e.is_timeout() {
            FetchError::Timeout
        } else {
            FetchError::Transport
        }
    })? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { body, max_age })
}

/// Freshness from `Cache-Control`: `max-age=N`; `no-cache`/`no-store` mean zero (the caller
/// clamps to its minimum).
pub fn cache_max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for d in value.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_parsing() {
        assert_eq!(
            cache_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(cache_max_age("Max-Age=\"5\""), Some(Duration::from_secs(5)));
        assert_eq!(cache_max_age("max-age=600, no-store"), Some(Duration::ZERO));
        assert_eq!(cache_max_age("public"), None);
        assert_eq!(cache_max_age("max-age=-1"), None);
    }
}

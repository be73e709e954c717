//! The limiter's answer and the response headers it implies.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::config::HeadersConfig;
use crate::gcra::{Window, WindowReport};

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// No rule applies: forward, no rate-limit headers.
    Unlimited,
    /// Within every applicable limit: forward, add [`Verdict::headers`].
    Allowed(Quota),
    /// Over a limit: answer 429 `throttled` with [`Verdict::headers`] (incl. `Retry-After`).
    Rejected(Quota),
    /// Redis is unreachable and `fault_tolerant: false`: answer 503 `transient`.
    Unavailable { retry_after: Duration },
}

/// The quota figures behind a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The rule whose window is reported in `RateLimit-*` (the most restrictive one).
    pub rule: Arc<str>,
    pub window: Window,
    pub limit: u64,
    pub remaining: u64,
    /// Until the reported window's full quota is back.
    pub reset: Duration,
    /// Set on rejections: until the request would be admitted.
    pub retry_after: Option<Duration>,
    /// Per window length, the most restrictive figures across applicable rules (shortest
    /// window first), for `X-RateLimit-*-<Window>`.
    pub windows: Vec<WindowQuota>,
    /// The shared backend was unreachable and the local limiter answered.
    pub from_fallback: bool,
    pub(crate) headers: HeadersConfig,
}

/// One window's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowQuota {
    pub window: Window,
    pub limit: u64,
    pub remaining: u64,
}

/// `RateLimit-Limit` etc. from the IETF httpapi draft, as Kong sends them.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

impl Verdict {
    /// Whether the request may go on (also true for `Unlimited`).
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Unlimited | Verdict::Allowed(_))
    }

    /// Whether the local fallback answered because the shared backend was unreachable.
    pub fn from_fallback(&self) -> bool {
        match self {
            Verdict::Allowed(q) | Verdict::Rejected(q) => q.from_fallback,
            Verdict::Unlimited | Verdict::Unavailable { .. } => false,
        }
    }

    /// The quota figures, when a rule applied.
    pub fn quota(&self) -> Option<&Quota> {
        match self {
            Verdict::Allowed(q) | Verdict::Rejected(q) => Some(q),
            Verdict::Unlimited | Verdict::Unavailable { .. } => None,
        }
    }

    /// `Retry-After` for 429 and 503 answers.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Verdict::Rejected(q) => q.retry_after,
            Verdict::Unavailable { retry_after } => Some(*retry_after),
            Verdict::Unlimited | Verdict::Allowed(_) => None,
        }
    }

    /// Headers to add to the response. `Retry-After` is always sent on 429 and 503;
    /// `RateLimit-*` unless `headers.hide`; `X-RateLimit-*-<Window>` when
    /// `headers.x_ratelimit`. Seconds are rounded up so a client that waits as told succeeds.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        if let Some(retry) = self.retry_after() {
            out.push((
                http::header::RETRY_AFTER,
                HeaderValue::from(ceil_secs(retry).max(1)),
            ));
        }
        let Some(q) = self.quota() else {
            return out;
        };
        if q.headers.hide {
            return out;
        }
        out.push((RATELIMIT_LIMIT.clone(), HeaderValue::from(q.limit)));
        out.push((RATELIMIT_REMAINING.clone(), HeaderValue::from(q.remaining)));
        out.push((
            RATELIMIT_RESET.clone(),
            HeaderValue::from(ceil_secs(q.reset)),
        ));
        if q.headers.x_ratelimit {
            for w in &q.windows {
                let suffix = w.window.header_suffix();
                for (prefix, value) in [
                    ("x-ratelimit-limit-", w.limit),
                    ("x-ratelimit-remaining-", w.remaining),
                ] {
                    if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes())
                    {
                        out.push((name, HeaderValue::from(value)));
                    }
                }
            }
        }
        out
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Build the verdict from every applicable rule's window reports.
pub(crate) fn summarize(
    reports: &[(Arc<str>, Vec<WindowReport>)],
    allowed: bool,
    from_fallback: bool,
    headers: HeadersConfig,
) -> Verdict {
    let all = reports
        .iter()
        .flat_map(|(rule, ws)| ws.iter().map(move |w| (rule, w)));
    let chosen = if allowed {
        // Most restrictive = fewest units left; a shorter window wins a tie.
        all.min_by_key(|(_, w)| (w.remaining, w.limit.window))
    } else {
        all.max_by_key(|(_, w)| (w.retry_us, std::cmp::Reverse(w.limit.window)))
    };
    let Some((rule, w)) = chosen else {
        return Verdict::Unlimited;
    };
    let mut windows: Vec<WindowQuota> = Vec::new();
    for (_, r) in reports
        .iter()
        .flat_map(|(rule, ws)| ws.iter().map(move |w| (rule, w)))
    {
        match windows.iter_mut().find(|q| q.window == r.limit.window) {
            Some(q) if r.remaining < q.remaining => {
                q.limit = r.limit.limit;
                q.remaining = r.remaining;
            }
            Some(_) => {}
            None => windows.push(WindowQuota {
                window: r.limit.window,
                limit: r.limit.limit,
                remaining: r.remaining,
            }),
        }
    }
    windows.sort_by_key(|q| q.window);
    let quota = Quota {
        rule: rule.clone(),
        window: w.limit.window,
        limit: w.limit.limit,
        remaining: w.remaining,
        reset: Duration::from_micros(w.reset_us),
        retry_after: (!allowed).then(|| Duration::from_micros(w.retry_us)),
        windows,
        from_fallback,
        headers,
    };
    if allowed {
        Verdict::Allowed(quota)
    } else {
        Verdict::Rejected(quota)
    }
}

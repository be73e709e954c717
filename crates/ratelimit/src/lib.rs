//! Rate limiting for the gateway's throttle phase (DESIGN.md §3 step 4), after
//! authentication and authorization and before the cache and the upstream call.
//!
//! The gateway builds a [`RequestKeyInput`] from the verified principal and the classified
//! request and calls [`RateLimiter::check`]. The limiter picks the configured rules that
//! match, derives each rule's key (client, user, patient, IP, header or a combination) and
//! cost (per-interaction weights), and checks every window of every rule at once with GCRA,
//! either in process or on Redis with one atomic Lua script, so several gateway replicas
//! share one limit. The [`Verdict`] says allow, 429 or 503 and carries the `RateLimit-*`,
//! `Retry-After` and optional `X-RateLimit-*` headers. Rate limiting fails open: with Redis
//! unreachable it answers from the local limiter (or 503 when `fault_tolerant: false`), with a
//! log line and a counter in [`Stats`].
//!
//! ```
//! use fhirgate_ratelimit::{RateLimiter, RawRateLimitConfig, RequestKeyInput, Verdict};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let raw: RawRateLimitConfig =
//!     serde_yaml_ng::from_str("rules: [{name: per-client, key: client_id, per_second: 1}]").unwrap();
//! let limiter = RateLimiter::new(raw.validate().unwrap());
//! let request = RequestKeyInput {
//!     client_id: Some("growth-chart-app"),
//!     interaction: "read",
//!     resource_type: Some("Observation"),
//!     path: "/Observation/42",
//!     ..RequestKeyInput::default()
//! };
//! assert!(matches!(limiter.check(&request).await, Verdict::Allowed(_)));
//! let verdict = limiter.check(&request).await;
//! assert!(matches!(verdict, Verdict::Rejected(_))); // → 429 `throttled` with these headers:
//! let names: Vec<_> = verdict.headers().into_iter().map(|(name, _)| name).collect();
//! assert_eq!(names[0], http::header::RETRY_AFTER);
//! # }
//! ```
//!
//! # Semantics
//!
//! `per_minute: N` allows a burst of N, then one unit every 60 s / N; a key idle for a
//! minute has its full quota again. Unlike fixed windows, N requests at 0:59 and N at 1:00 is
//! impossible: any interval of length L admits at most N + L·N/60 s units. A request passes
//! only if every window of every applicable rule has room for its cost, and a refused request
//! spends nothing. A rule applies when its `match` holds and every part of its `key` is
//! present in the request (`ip` counts IPv6 clients per /64). `RateLimit-*` report the most
//! restrictive window; `RateLimit-Reset` is the time until its quota is full again.
//!
//! With Redis unreachable and `fault_tolerant: true`, each replica enforces the full limits
//! on its own (so a cluster of R replicas admits up to R times the limit until Redis is
//! back); the breaker retries Redis at most every `retry_interval`.
//!
//! # Configuration
//!
//! ```yaml
#![doc = include_str!("../rate-limit.example.yaml")]
//! ```

mod clock;
mod config;
mod gcra;
mod key;
mod limiter;
mod local;
mod redis_backend;
mod stats;
mod verdict;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{
    ConfigError, HeadersConfig, INTERACTIONS, OneOrMany, RateLimitConfig, RawBackend, RawLocal,
    RawMatch, RawRateLimitConfig, RawRedis, RawRule,
};
pub use gcra::{Limit, Window};
pub use key::RequestKeyInput;
pub use limiter::RateLimiter;
pub use stats::{Stats, StatsSnapshot};
pub use verdict::{
    Quota, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET, Verdict, WindowQuota,
};

//! Typed, already-validated gateway configuration.
//!
//! The binary reads YAML, validates it and builds these values; tests build them directly with
//! [`GatewayConfig::new`] and adjust fields. Nothing here parses text, so every value is known
//! to be usable by the time the gateway starts.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

/// Everything the gateway needs to serve.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Where the listener binds.
    pub listen: SocketAddr,
    /// The FHIR base URL clients see (e.g. `https://fhir.example.org/fhir`). Its path is where
    /// the FHIR API is served, and upstream URLs in responses are rewritten to it.
    pub public_base_url: Url,
    pub upstream: UpstreamConfig,
    pub limits: Limits,
    pub shutdown: ShutdownConfig,
    /// Token verification; see [`crate::security_config`].
    pub auth: crate::AuthConfig,
    pub authorization: crate::AuthorizationConfig,
    /// The SMART discovery document served at `{base}/.well-known/smart-configuration`.
    pub smart_configuration: Option<serde_json::Value>,
    /// Rate limits (phase 4); `None` = no limits.
    pub rate_limit: Option<fhirgate_ratelimit::RateLimitConfig>,
    /// Audit trail (phase 8); `None` = no records.
    pub audit: Option<fhirgate_audit::AuditConfig>,
    pub metrics: crate::MetricsConfig,
    /// Which browser origins may call the FHIR API; discovery is open to all.
    pub cors: crate::CorsConfig,
    /// Response cache (phase 5); `None` = nothing cached.
    pub cache: Option<crate::CacheConfig>,
    /// OpenTelemetry export of the phase spans (installed by the binary); `None` = off.
    pub tracing: Option<crate::TracingConfig>,
}

/// The FHIR server requests are forwarded to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// Upstream FHIR base URL (`http://` or `https://`); the first target when `targets` is set.
    pub url: Url,
    /// Several interchangeable servers with the same FHIR base path; empty = just `url`.
    pub targets: Vec<Url>,
    pub balance: Balance,
    pub retries: RetryConfig,
    pub health: HealthConfig,
    /// Limit for establishing a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Limit from sending the request until the upstream's response headers arrive.
    pub response_timeout: Duration,
    /// Idle keep-alive connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

/// Sizes and counts that bound what one client can make the gateway hold.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Request body bytes (413 beyond).
    pub max_body_size: u64,
    /// Total bytes of request header names and values (431 beyond).
    pub max_header_size: usize,
    /// Bytes of the request target, path plus query (414 beyond).
    pub max_uri_length: usize,
    /// Requests handled at once; more are shed with 503 `transient`.
    pub max_concurrent_requests: usize,
    /// Largest Bundle body buffered to rewrite upstream URLs; larger ones stream unmodified.
    pub bundle_rewrite_max: usize,
    /// Largest `POST _search` form body read for classification.
    pub max_form_body_size: usize,
    /// Time a client gets to send a complete request head (slowloris bound). On HTTP/1.1
    /// hyper starts this clock when a keep-alive connection goes idle too.
    pub header_read_timeout: Duration,
    /// Longest pause between two frames of a request body; a stalled upload loses its
    /// connection.
    pub body_read_timeout: Duration,
    /// A connection on which no byte moves for this long is closed (after its current
    /// request, if any).
    pub idle_timeout: Duration,
    /// Client connections open at once; further ones wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// Request header fields (431 beyond).
    pub max_header_count: usize,
}

/// Graceful shutdown.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish once shutdown starts.
    pub drain_time: Duration,
}

impl GatewayConfig {
    /// A configuration with the documented defaults (see `docs/configuration.md`).
    pub fn new(public_base_url: Url, upstream_url: Url) -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url,
            upstream: UpstreamConfig::new(upstream_url),
            limits: Limits::default(),
            shutdown: ShutdownConfig::default(),
            auth: crate::AuthConfig::default(),
            authorization: crate::AuthorizationConfig::default(),
            smart_configuration: None,
            rate_limit: None,
            audit: None,
            metrics: crate::MetricsConfig::default(),
            cors: crate::CorsConfig::default(),
            cache: None,
            tracing: None,
        }
    }
}

impl UpstreamConfig {
    pub fn new(url: Url) -> Self {
        UpstreamConfig {
            url,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 128,
            pool_idle_timeout: Duration::from_secs(90),
            targets: Vec::new(),
            balance: Balance::RoundRobin,
            retries: RetryConfig::default(),
            health: HealthConfig::default(),
        }
    }

    /// Every target: `targets`, or `url` alone.
    pub fn target_urls(&self) -> &[Url] {
        if self.targets.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            &self.targets
        }
    }
}

/// How requests are spread over several upstream targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// Each target in turn.
    RoundRobin,
    /// The target with the fewest requests in flight (ties in turn).
    LeastRequests,
}

/// When a failed upstream request is sent again (to another target when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Resends per request; 0 disables retries.
    pub max: u32,
    /// Retries allowed as a share of recent requests (plus a small reserve of 10).
    pub budget_percent: u32,
    /// Retry when the connection could not be made (nothing was sent): any method.
    pub on_connect: bool,
    /// Retry GET/HEAD/PUT/DELETE without a body when the connection broke before the response
    /// headers. A POST or PATCH that was sent is never retried.
    pub on_idempotent: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max: 1,
            budget_percent: 20,
            on_connect: true,
            on_idempotent: true,
        }
    }
}

/// Passive health checking: targets that keep failing are left alone for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Consecutive failures (connect error, reset, timeout, 5xx) that eject a target.
    pub failures_to_eject: u32,
    /// How long an ejected target gets no traffic (unless every target is ejected).
    pub eject_for: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failures_to_eject: 5,
            eject_for: Duration::from_secs(30),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_size: 16 * 1024 * 1024,
            max_header_size: 32 * 1024,
            max_uri_length: 8 * 1024,
            max_concurrent_requests: 1024,
            bundle_rewrite_max: 8 * 1024 * 1024,
            max_form_body_size: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 25_000,
            max_header_count: 100,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_time: Duration::from_secs(30),
        }
    }
}

/// A URL's path without a trailing slash: `""` for a root base, `/fhir` otherwise.
pub(crate) fn base_path(url: &Url) -> String {
    url.path().trim_end_matches('/').to_owned()
}

/// A URL as a string without a trailing slash, the form used for prefix matching.
pub(crate) fn base_string(url: &Url) -> String {
    let mut s = url.as_str().to_owned();
    if let Some(q) = s.find(['?', '#']) {
        s.truncate(q);
    }
    while s.ends_with('/') {
        s.pop();
    }
    s
}

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
}

/// The FHIR server requests are forwarded to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// Upstream FHIR base URL (`http://` or `https://`).
    pub url: Url,
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

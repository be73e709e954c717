//! The upstream FHIR server(s): the client every forwarded request goes through (our own
//! connection pool over hyper's HTTP/1.1 and HTTP/2 connections, with balancing, retries and
//! passive health per target), and the cached readiness probe behind `/readyz`.

mod body;
mod client;
mod connect;
mod pool;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderValue, Request, header};
use tokio::sync::Mutex;

use crate::config::{GatewayConfig, base_string};

pub(crate) use body::{BodyError, UpstreamBody};
pub(crate) use client::Client;

/// Why the gateway could not be built from a (valid) configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("TLS client set-up failed: {0}")]
    Tls(#[from] rustls::Error),
    /// Tokens are required but no issuer is trusted: every request would be refused, and
    /// quietly forwarding them instead would be a security hole.
    #[error(
        "no token issuer configured: list `auth.issuers`, or set `auth.mode: disabled` to run without authentication"
    )]
    NoIssuers,
    /// The audit directory cannot be opened or its chain cannot be continued.
    #[error("audit trail: {0}")]
    Audit(#[from] fhirgate_audit::AuditError),
    /// An upstream target URL the client cannot connect to (no host or port).
    #[error("unusable upstream target: {0}")]
    Target(String),
}

/// Why an upstream request failed. Messages name the target for the log; the client only
/// ever sees the OperationOutcome of the [`crate::GatewayError`] it maps to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connecting to {target} failed")]
    Connect {
        target: Arc<str>,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {target} timed out after {}", humantime::format_duration(*.after))]
    ConnectTimeout { target: Arc<str>, after: Duration },
    #[error("HTTP handshake with {target} failed")]
    Handshake {
        target: Arc<str>,
        #[source]
        source: hyper::Error,
    },
    #[error("request to {target} failed")]
    Request {
        target: Arc<str>,
        #[source]
        source: hyper::Error,
    },
    #[error("no response headers from {target} within {}", humantime::format_duration(*.after))]
    Timeout { target: Arc<str>, after: Duration },
    #[error("the request could not be resent")]
    NotRetried,
}

/// How long a readiness answer is reused, so probes never load the upstream.
const READINESS_TTL: Duration = Duration::from_secs(1);

pub(crate) struct Upstream {
    pub(crate) client: Client,
    /// Base of the first target without a trailing slash, e.g. `http://10.0.0.5:8080/fhir`.
    /// Requests may be built under it: the client keeps only their path and query.
    pub(crate) base: String,
    /// Public base without a trailing slash, what upstream URLs are rewritten to.
    pub(crate) public_base: String,
    /// `X-Forwarded-Proto`: the scheme clients used, taken from the public base URL because
    /// TLS, if any, is terminated in front of the gateway.
    pub(crate) forwarded_proto: HeaderValue,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    readiness: Mutex<Option<(Instant, bool)>>,
}

/// One target's figures for the metrics.
pub(crate) struct TargetSnapshot {
    pub(crate) target: String,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) connects: u64,
    pub(crate) connect_errors: u64,
    pub(crate) reused: u64,
    pub(crate) retries: u64,
    pub(crate) ejections: u64,
    pub(crate) ejected: bool,
    pub(crate) idle: usize,
    pub(crate) in_flight: usize,
}

impl Upstream {
    pub(crate) fn new(config: &GatewayConfig) -> Result<Self, BuildError> {
        let up = &config.upstream;
        let client = Client::new(up)?;
        let forwarded_proto = HeaderValue::from_str(config.public_base_url.scheme())
            .unwrap_or(HeaderValue::from_static("https"));
        Ok(Upstream {
            client,
            base: base_string(&up.url),
            public_base: base_string(&config.public_base_url),
            forwarded_proto,
            connect_timeout: up.connect_timeout,
            response_timeout: up.response_timeout,
            readiness: Mutex::new(None),
        })
    }

    pub(crate) fn snapshot(&self) -> Vec<TargetSnapshot> {
        self.client
            .targets()
            .iter()
            .map(|t| {
                let s = &t.stats;
                TargetSnapshot {
                    target: t.address.label.to_string(),
                    requests: s.requests.load(Ordering::Relaxed),
                    failures: s.failures.load(Ordering::Relaxed),
                    connects: s.connects.load(Ordering::Relaxed),
                    connect_errors: s.connect_errors.load(Ordering::Relaxed),
                    reused: s.reused.load(Ordering::Relaxed),
                    retries: s.retries.load(Ordering::Relaxed),
                    ejections: s.ejections.load(Ordering::Relaxed),
                    ejected: t.is_ejected(),
                    idle: t.idle_count(),
                    in_flight: t.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Whether the upstream answers HTTP at all (any status below 500 counts). The answer is
    /// cached for a second and concurrent probes share one check.
    pub(crate) async fn is_ready(&self) -> bool {
        let mut cached = self.readiness.lock().await;
        if let Some((at, ready)) = *cached
            && at.elapsed() < READINESS_TTL
        {
            return ready;
        }
        let ready = self.probe().await;
        *cached = Some((Instant::now(), ready));
        ready
    }

    async fn probe(&self) -> bool {
        let uri = format!("{}/metadata", self.base);
        let Ok(request) = Request::get(uri)
            .header(header::ACCEPT, "application/fhir+json")
            .body(Body::empty())
        else {
            return false;
        };
        let limit = self.connect_timeout + self.response_timeout;
        match tokio::time::timeout(limit, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let ok = !response.status().is_server_error();
                if !ok {
                    tracing::warn!(status = %response.status(), "upstream readiness probe failed");
                }
                ok
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %crate::error::error_chain(&err), "upstream unreachable");
                false
            }
            Err(_) => {
                tracing::warn!("upstream readiness probe timed out");
                false
            }
        }
    }
}

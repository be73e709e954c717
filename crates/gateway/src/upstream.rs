//! The pooled client to the upstream FHIR server, and the cached readiness probe behind
//! `/readyz`.

use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderValue, Request, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Mutex;

use crate::config::{GatewayConfig, base_string};

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

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
}

/// How long a readiness answer is reused, so probes never load the upstream.
const READINESS_TTL: Duration = Duration::from_secs(1);

pub(crate) struct Upstream {
    pub(crate) client: HttpClient,
    /// Upstream base without a trailing slash, e.g. `http://10.0.0.5:8080/fhir`.
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

impl Upstream {
    pub(crate) fn new(config: &GatewayConfig) -> Result<Self, BuildError> {
        let up = &config.upstream;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(up.connect_timeout));
        // An explicit provider: `ClientConfig::builder()` would panic if several crypto
        // providers end up linked into the binary.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(up.pool_max_idle_per_host)
            .pool_idle_timeout(up.pool_idle_timeout)
            .build(https);
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

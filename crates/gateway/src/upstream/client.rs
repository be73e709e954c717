//! The client every upstream request goes through: picks a target (round-robin or least
//! requests, skipping ejected ones), checks a connection out, sends, and retries where that is
//! safe: after a connect failure (nothing was sent), when the connection was found closed before
//! the request went out, and (for GET/HEAD/PUT/DELETE without a body) after a reset before the
//! response headers. A POST that reached the upstream is never sent twice. Retries are bounded
//! by a count per request and by a budget shared by all requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version, header};
use tokio_rustls::TlsConnector;

use super::UpstreamError;
use super::body::UpstreamBody;
use super::connect::{self, Address};
use super::pool::{Conn, Lease, PoolSettings, Target};
use crate::config::{Balance, RetryConfig, UpstreamConfig, base_string};

/// Retries a full budget holds, so that the first failures after a quiet spell can be retried.
const BUDGET_RESERVE: i64 = 10 * TOKEN;
/// One retry, in budget units.
const TOKEN: i64 = 1000;

pub(crate) struct Client {
    targets: Vec<Arc<Target>>,
    balance: Balance,
    next: AtomicUsize,
    retries: RetryConfig,
    /// Retry budget in thousandths of a retry: each request deposits `budget_percent * 10`,
    /// each retry withdraws 1000.
    budget: AtomicI64,
    tls: TlsConnector,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Client {
    pub(crate) fn new(config: &UpstreamConfig) -> Result<Self, super::BuildError> {
        let settings = PoolSettings {
            max_idle: config.pool_max_idle_per_host,
            idle_timeout: config.pool_idle_timeout,
            failures_to_eject: config.health.failures_to_eject.max(1),
            eject_for: config.health.eject_for,
        };
        let epoch = Instant::now();
        let mut targets = Vec::new();
        for url in config.target_urls() {
            let address = address(url)?;
            let host_header = host_header(url)?;
            targets.push(Arc::new(Target::new(
                address,
                base_string(url),
                host_header,
                settings,
                epoch,
            )));
        }
        if targets.is_empty() {
            return Err(super::BuildError::Target("no upstream target".to_owned()));
        }
        Ok(Client {
            targets,
            balance: config.balance,
            next: AtomicUsize::new(0),
            retries: config.retries.clone(),
            budget: AtomicI64::new(BUDGET_RESERVE),
            tls: connect::tls_connector()?,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
        })
    }

    pub(crate) fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    /// Send `request` (whose URI may name any target or none: only its path and query are
    /// used) to a target, retrying where safe. The body knows which target answered
    /// ([`UpstreamBody::answered_by`]).
    pub(crate) async fn request(
        &self,
        request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        self.deposit();
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // A copy for a resend after a reset is only kept where such a resend is allowed.
        let replayable = self.retries.on_idempotent
            && matches!(
                parts.method,
                Method::GET | Method::HEAD | Method::PUT | Method::DELETE
            )
            && http_body::Body::is_end_stream(&body);
        let spare = replayable.then(|| (parts.method.clone(), parts.headers.clone()));
        let mut pending = Some(Request::from_parts(parts, body));
        let mut tried: u64 = 0;
        let mut attempt: u32 = 0;
        loop {
            let (index, target) = self.pick(tried);
            let target = Arc::clone(target);
            if index < 64 {
                tried |= 1u64 << index;
            }
            let mut lease = Lease::new(Arc::clone(&target));
            target.stats.requests.fetch_add(1, Ordering::Relaxed);
            let conn = match self.checkout(&target).await {
                Ok(conn) => conn,
                Err(err) => {
                    target.record_failure();
                    if self.retries.on_connect && self.may_retry(attempt, &target) {
                        attempt += 1;
                        continue;
                    }
                    return Err(err);
                }
            };
            let Some(request) = pending.take().or_else(|| {
                spare
                    .as_ref()
                    .map(|(m, h)| rebuild(m.clone(), h.clone(), path.clone()))
            }) else {
                // Unreachable: a retry is only started with a request in hand.
                return Err(UpstreamError::NotRetried);
            };
            let outcome = self.send(&target, conn, request, path.clone(), &mut lease);
            match tokio::time::timeout(self.response_timeout, outcome).await {
                Ok(Ok(response)) => {
                    if response.status().is_server_error() {
                        target.record_failure();
                    } else {
                        target.record_success();
                    }
                    // The header limit also bounds each wait for more of the body.
                    let idle_limit = self.response_timeout;
                    let base = Arc::clone(&target.base);
                    return Ok(
                        response.map(|body| UpstreamBody::new(body, lease, base, idle_limit))
                    );
                }
                Ok(Err(failure)) => {
                    // The request body failing (over its limit, client gone) is not the
                    // target's fault.
                    if !failure.error.is_user() {
                        target.record_failure();
                    }
                    // Nothing reached the upstream (a pooled connection found closed): like a
                    // connect failure, any method may go again.
                    let unsent = failure.unsent.is_some() && self.retries.on_connect;
                    pending = failure.unsent;
                    let resend = unsent || spare.is_some();
                    if resend && self.may_retry(attempt, &target) {
                        attempt += 1;
                        continue;
                    }
                    return Err(UpstreamError::Request {
                        target: Arc::clone(&target.address.label),
                        source: failure.error,
                    });
                }
                Err(_) => {
                    target.record_failure();
                    return Err(UpstreamError::Timeout {
                        target: Arc::clone(&target.address.label),
                        after: self.response_timeout,
                    });
                }
            }
        }
    }

    async fn checkout(&self, target: &Target) -> Result<Conn, UpstreamError> {
        if let Some(conn) = target.pooled().await {
            target.stats.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(conn);
        }
        target.stats.connects.fetch_add(1, Ordering::Relaxed);
        // Boxed: the connect future (TLS, handshakes) is several KB, and every request's future
        // would otherwise carry, and copy, that space for a step most requests skip.
        let conn = Box::pin(connect::connect(
            &target.address,
            &self.tls,
            self.connect_timeout,
        ))
        .await;
        match &conn {
            Ok(Conn::Http2(sender)) => target.share_h2(sender),
            Ok(Conn::Http1 { .. }) => {}
            Err(_) => {
                target.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        conn
    }

    async fn send(
        &self,
        target: &Target,
        conn: Conn,
        mut request: Request<Body>,
        path: PathAndQuery,
        lease: &mut Lease,
    ) -> Result<Response<hyper::body::Incoming>, SendFailure> {
        match conn {
            Conn::Http1 { mut sender, reused } => {
                *request.uri_mut() = Uri::from(path);
                *request.version_mut() = Version::HTTP_11;
                request
                    .headers_mut()
                    .insert(header::HOST, target.host_header.clone());
                let response = sender.try_send_request(request).await;
                match response {
                    Ok(response) => {
                        lease.hold(sender);
                        Ok(response)
                    }
                    Err(mut err) => {
                        let unsent = err.take_message();
                        if !reused {
                            tracing::debug!(upstream = %target.address.label, "fresh upstream connection failed");
                        }
                        Err(SendFailure {
                            unsent,
                            error: err.into_error(),
                        })
                    }
                }
            }
            Conn::Http2(mut sender) => {
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(Scheme::HTTPS);
                parts.authority = Authority::try_from(target.host_header.as_bytes()).ok();
                parts.path_and_query = Some(path);
                if let Ok(uri) = Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
                *request.version_mut() = Version::HTTP_2;
                request.headers_mut().remove(header::HOST);
                match sender.try_send_request(request).await {
                    Ok(response) => Ok(response),
                    Err(mut err) => Err(SendFailure {
                        unsent: err.take_message(),
                        error: err.into_error(),
                    }),
                }
            }
        }
    }

    /// The next target: by the balancing rule among those neither ejected nor already tried
    /// for this request; when every target is ejected, one is tried anyway rather than
    /// failing everything.
    fn pick(&self, tried: u64) -> (usize, &Arc<Target>) {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let untried = |i: usize| i >= 64 || tried & (1u64 << i) == 0;
        let healthy = |i: usize| untried(i) && !self.targets.get(i).is_some_and(|t| t.is_ejected());
        let chosen = self
            .choose(start, &healthy)
            .or_else(|| self.choose(start, &untried))
            .unwrap_or(start % n);
        // `targets` is never empty (checked in `new`), so the index is in range.
        (chosen, &self.targets[chosen])
    }

    fn choose(&self, start: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.targets.len();
        let order = (0..n).map(|k| (start + k) % n).filter(|&i| eligible(i));
        match self.balance {
            Balance::RoundRobin => order.into_iter().next(),
            Balance::LeastRequests => order.min_by_key(|&i| {
                self.targets
                    .get(i)
                    .map_or(usize::MAX, |t| t.in_flight.load(Ordering::Relaxed))
            }),
        }
    }

    fn deposit(&self) {
        let per_request = i64::from(self.retries.budget_percent) * TOKEN / 100;
        if per_request == 0 || self.budget.load(Ordering::Relaxed) >= BUDGET_RESERVE {
            return;
        }
        self.budget.fetch_add(per_request, Ordering::Relaxed);
    }

    fn may_retry(&self, attempt: u32, target: &Target) -> bool {
        if attempt >= self.retries.max {
            return false;
        }
        if self.budget.fetch_sub(TOKEN, Ordering::Relaxed) < TOKEN {
            self.budget.fetch_add(TOKEN, Ordering::Relaxed);
            tracing::debug!("upstream retry budget exhausted");
            return false;
        }
        target.stats.retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

struct SendFailure {
    unsent: Option<Request<Body>>,
    error: hyper::Error,
}

fn rebuild(method: Method, headers: HeaderMap, path: PathAndQuery) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = Uri::from(path);
    *request.headers_mut() = headers;
    request
}

fn address(url: &url::Url) -> Result<Address, super::BuildError> {
    let host = url
        .host_str()
        .ok_or_else(|| super::BuildError::Target(url.to_string()))?;
    // `Url` keeps IPv6 literals bracketed; the socket address wants them bare.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| super::BuildError::Target(url.to_string()))?;
    let tls = match url.scheme() {
        "https" => Some(
            rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| super::BuildError::Target(url.to_string()))?,
        ),
        _ => None,
    };
    Ok(Address {
        label: Arc::from(format!(
            "{}://{}:{port}",
            url.scheme(),
            url.host_str().unwrap_or("")
        )),
        host,
        port,
        tls,
    })
}

fn host_header(url: &url::Url) -> Result<HeaderValue, super::BuildError> {
    let host = url.host_str().unwrap_or("");
    let text = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&text).map_err(|_| super::BuildError::Target(url.to_string()))
}

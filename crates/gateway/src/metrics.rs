//! Prometheus metrics for the FHIR pipeline (DESIGN.md §7), rendered at `metrics.path`.
//!
//! The recorder is owned by the gateway instead of being installed globally, so several
//! gateways in one process (tests, embedding) never mix their figures. Per-request values are
//! recorded when the response completes; totals kept elsewhere (rate limiter, audit sink,
//! JWKS cache) are copied in at scrape time, so the request path pays for none of them.
//! Every name is documented in `docs/metrics.md`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::error::GatewayError;

/// The `metrics:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Where the Prometheus text is served on the main listener (`/metrics`).
    pub path: String,
    /// Distinct `client` label values before further clients are counted as `other`.
    pub max_client_labels: usize,
    /// Serve the metrics (and the probes) on this address instead of the main listener.
    pub admin_listen: Option<std::net::SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            path: "/metrics".to_owned(),
            max_client_labels: 50,
            admin_listen: None,
        }
    }
}

static METADATA: Metadata<'static> = Metadata::new("fhirgate", Level::INFO, Some(module_path!()));

/// Seconds; from a fast cached read to a slow `$everything`.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histogram samples are folded into buckets on scrape or upkeep; without a scraper they
/// would pile up, so upkeep also runs every this many requests.
const UPKEEP_EVERY: u64 = 4096;

const OTHER_CLIENT: &str = "other";

pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub(crate) path: String,
    /// Served by the admin listener only, not on the main one.
    pub(crate) on_admin_listener: bool,
    clients: Mutex<HashSet<String>>,
    max_clients: usize,
    since_upkeep: AtomicU64,
    /// Registered once: a lookup by name on every request was a measurable share of the
    /// metrics' cost.
    request_duration: metrics::Histogram,
    upstream_duration: metrics::Histogram,
    gateway_duration: metrics::Histogram,
}

/// One finished request, as the metrics need it.
pub(crate) struct Observation<'a> {
    pub(crate) status: u16,
    pub(crate) interaction: &'static str,
    pub(crate) resource_type: Option<&'static str>,
    pub(crate) client: Option<&'a str>,
    pub(crate) total: Duration,
    pub(crate) upstream: Option<Duration>,
}

/// Totals owned by other parts, copied in at scrape time.
#[derive(Default)]
pub(crate) struct Scraped {
    pub(crate) ratelimit: Option<fhirgate_ratelimit::StatsSnapshot>,
    pub(crate) audit_queue_depth: Option<usize>,
    pub(crate) audit_write_errors: Option<u64>,
    pub(crate) audit_healthy: Option<bool>,
    pub(crate) jwks_fetches: Vec<(String, u64)>,
    /// The response cache's figures (`cache:` configured).
    pub(crate) cache: Option<crate::cache::CacheStats>,
    pub(crate) upstream: Vec<crate::upstream::TargetSnapshot>,
    /// Revocation notices (`auth.revocation`): counters and the set's size.
    pub(crate) revocation: Option<RevocationFigures>,
}

pub(crate) struct RevocationFigures {
    pub(crate) entries: usize,
    pub(crate) notices: u64,
    pub(crate) refusals: u64,
    pub(crate) redis_errors: u64,
    pub(crate) evicted: u64,
    pub(crate) redis_up: bool,
}

impl Metrics {
    pub(crate) fn new(config: &MetricsConfig) -> Option<Metrics> {
        if !config.enabled {
            return None;
        }
        // `set_buckets` only fails for an empty list, which BUCKETS is not.
        let builder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let histogram = |name: &'static str| {
            recorder.register_histogram(&Key::from_static_name(name), &METADATA)
        };
        let request_duration = histogram("fhirgate_request_duration_seconds");
        let upstream_duration = histogram("fhirgate_upstream_duration_seconds");
        let gateway_duration = histogram("fhirgate_gateway_duration_seconds");
        let metrics = Metrics {
            recorder,
            handle,
            path: config.path.clone(),
            on_admin_listener: config.admin_listen.is_some(),
            clients: Mutex::new(HashSet::new()),
            max_clients: config.max_client_labels,
            since_upkeep: AtomicU64::new(0),
            request_duration,
            upstream_duration,
            gateway_duration,
        };
        metrics.gauge(
            "fhirgate_build_info",
            vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        Some(metrics)
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> metrics::Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>, value: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
            .set(value);
    }

    /// The `client` label: the first `max_client_labels` distinct clients by name, the rest
    /// folded into `other` so a flood of client ids cannot grow the series without bound.
    fn client_label(&self, client: Option<&str>) -> String {
        let Some(client) = client else {
            return "none".to_owned();
        };
        let Ok(mut known) = self.clients.lock() else {
            return OTHER_CLIENT.to_owned();
        };
        if known.contains(client) {
            return client.to_owned();
        }
        if known.len() < self.max_clients {
            known.insert(client.to_owned());
            return client.to_owned();
        }
        OTHER_CLIENT.to_owned()
    }

    pub(crate) fn observe(&self, o: &Observation<'_>) {
        let class = match o.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.counter(
            "fhirgate_http_requests_total",
            vec![
                Label::new("status_class", class),
                Label::new("interaction", o.interaction),
                Label::new("resource_type", o.resource_type.unwrap_or("none")),
                Label::new("client", self.client_label(o.client)),
            ],
        )
        .increment(1);
        self.request_duration.record(o.total.as_secs_f64());
        if let Some(upstream) = o.upstream {
            self.upstream_duration.record(upstream.as_secs_f64());
        }
        self.gateway_duration.record(
            o.total
                .saturating_sub(o.upstream.unwrap_or_default())
                .as_secs_f64(),
        );
        if self.since_upkeep.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }

    /// Refusals counted by their reason.
    pub(crate) fn observe_error(&self, err: &GatewayError) {
        match err {
            GatewayError::Authentication { error, .. } => self
                .counter(
                    "fhirgate_token_failures_total",
                    vec![Label::new("reason", error.metric_label())],
                )
                .increment(1),
            GatewayError::Denied { reason, .. } => self
                .counter(
                    "fhirgate_authz_denials_total",
                    vec![Label::new("reason", deny_label(reason.kind))],
                )
                .increment(1),
            GatewayError::Throttled { rule, .. } => self
                .counter(
                    "fhirgate_ratelimit_rejections_total",
                    vec![Label::new("rule", rule.to_string())],
                )
                .increment(1),
            _ => {}
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, scraped: &Scraped) -> Response<Body> {
        if let Some(rl) = scraped.ratelimit {
            for (outcome, value) in [
                ("allowed", rl.allowed),
                ("rejected", rl.rejected),
                ("unavailable", rl.unavailable),
            ] {
                self.counter(
                    "fhirgate_ratelimit_decisions_total",
                    vec![Label::new("outcome", outcome)],
                )
                .absolute(value);
            }
            self.counter("fhirgate_ratelimit_fallbacks_total", Vec::new())
                .absolute(rl.fallbacks);
            self.counter("fhirgate_ratelimit_redis_errors_total", Vec::new())
                .absolute(rl.redis_errors);
            self.gauge(
                "fhirgate_ratelimit_redis_down",
                Vec::new(),
                rl.redis_down as f64,
            );
        }
        if let Some(depth) = scraped.audit_queue_depth {
            self.gauge("fhirgate_audit_queue_depth", Vec::new(), depth as f64);
        }
        if let Some(errors) = scraped.audit_write_errors {
            self.counter("fhirgate_audit_write_errors_total", Vec::new())
                .absolute(errors);
        }
        if let Some(healthy) = scraped.audit_healthy {
            self.gauge(
                "fhirgate_audit_healthy",
                Vec::new(),
                f64::from(u8::from(healthy)),
            );
        }
        for (issuer, fetches) in &scraped.jwks_fetches {
            self.counter(
                "fhirgate_jwks_fetches_total",
                vec![Label::new("issuer", issuer.clone())],
            )
            .absolute(*fetches);
        }
        self.render_upstream(&scraped.upstream);
        if let Some(r) = &scraped.revocation {
            self.gauge("fhirgate_revocation_entries", Vec::new(), r.entries as f64);
            self.gauge(
                "fhirgate_revocation_redis_up",
                Vec::new(),
                f64::from(u8::from(r.redis_up)),
            );
            for (name, value) in [
                ("fhirgate_revocation_notices_total", r.notices),
                ("fhirgate_revocation_refusals_total", r.refusals),
                ("fhirgate_revocation_redis_errors_total", r.redis_errors),
                ("fhirgate_revocation_evicted_total", r.evicted),
            ] {
                self.counter(name, Vec::new()).absolute(value);
            }
        }
        if let Some(cache) = scraped.cache {
            self.render_cache(cache);
        }
        let mut response = Response::new(Body::from(self.handle.render()));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl Metrics {
    fn render_upstream(&self, targets: &[crate::upstream::TargetSnapshot]) {
        for t in targets {
            let label = || vec![Label::new("target", t.target.clone())];
            for (name, value) in [
                ("fhirgate_upstream_requests_total", t.requests),
                ("fhirgate_upstream_failures_total", t.failures),
                ("fhirgate_upstream_connects_total", t.connects),
                ("fhirgate_upstream_connect_errors_total", t.connect_errors),
                ("fhirgate_upstream_connections_reused_total", t.reused),
                ("fhirgate_upstream_retries_total", t.retries),
                ("fhirgate_upstream_ejections_total", t.ejections),
            ] {
                self.counter(name, label()).absolute(value);
            }
            self.gauge(
                "fhirgate_upstream_ejected",
                label(),
                f64::from(u8::from(t.ejected)),
            );
            self.gauge("fhirgate_upstream_idle_connections", label(), t.idle as f64);
            self.gauge("fhirgate_upstream_in_flight", label(), t.in_flight as f64);
        }
    }
}

impl Metrics {
    fn render_cache(&self, c: crate::cache::CacheStats) {
        for (result, value) in [("hit", c.hits), ("miss", c.misses), ("bypass", c.bypasses)] {
            self.counter(
                "fhirgate_cache_requests_total",
                vec![Label::new("result", result)],
            )
            .absolute(value);
        }
        for (reason, value) in [("size", c.evicted_size), ("expired", c.evicted_expired)] {
            self.counter(
                "fhirgate_cache_evictions_total",
                vec![Label::new("reason", reason)],
            )
            .absolute(value);
        }
        self.counter("fhirgate_cache_invalidations_total", Vec::new())
            .absolute(c.invalidations);
        self.gauge("fhirgate_cache_bytes", Vec::new(), c.bytes as f64);
        self.gauge("fhirgate_cache_entries", Vec::new(), c.entries as f64);
    }
}

/// `GET {metrics.path}`: the current figures, with the totals owned by other parts copied in.
pub(crate) fn scrape(pipeline: &crate::pipeline::Pipeline) -> Option<Response<Body>> {
    let metrics = pipeline.metrics.as_ref()?;
    let mut scraped = Scraped {
        ratelimit: pipeline.throttle.as_ref().map(|t| t.stats().snapshot()),
        upstream: pipeline.upstream.snapshot(),
        cache: pipeline.cache.as_ref().map(crate::cache::Cache::stats),
        ..Scraped::default()
    };
    if let Some(audit) = &pipeline.audit {
        scraped.audit_queue_depth = Some(audit.sink.queue_depth());
        scraped.audit_write_errors = Some(audit.sink.write_errors());
        scraped.audit_healthy = Some(audit.sink.is_healthy());
    }
    if let Some(r) = &pipeline.security.revocations {
        use std::sync::atomic::Ordering::Relaxed;
        let s = r.stats();
        scraped.revocation = Some(RevocationFigures {
            entries: r.len(),
            notices: s.notices.load(Relaxed),
            refusals: s.refusals.load(Relaxed),
            redis_errors: s.redis_errors.load(Relaxed),
            evicted: s.evicted.load(Relaxed),
            redis_up: s.redis_up.load(Relaxed),
        });
    }
    if let Some(verifier) = &pipeline.security.verifier {
        scraped.jwks_fetches = verifier
            .issuers()
            .filter_map(|issuer| Some((issuer.to_owned(), verifier.jwks_fetches(issuer)?)))
            .collect();
    }
    Some(metrics.render(&scraped))
}

fn deny_label(kind: fhirgate_smart::DenyKind) -> &'static str {
    use fhirgate_smart::DenyKind;
    match kind {
        DenyKind::InsufficientScope => "insufficient_scope",
        DenyKind::OtherPatient => "other_patient",
        DenyKind::Hidden => "hidden",
        DenyKind::Forbidden => "forbidden",
        DenyKind::NotSupported => "not_supported",
        DenyKind::Invalid => "invalid",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_beyond_the_limit_are_folded_into_other() {
        let config = MetricsConfig {
            max_client_labels: 2,
            ..MetricsConfig::default()
        };
        let m = Metrics::new(&config).unwrap();
        assert_eq!(m.client_label(Some("a")), "a");
        assert_eq!(m.client_label(Some("b")), "b");
        assert_eq!(m.client_label(Some("c")), "other");
        assert_eq!(m.client_label(Some("a")), "a");
        assert_eq!(m.client_label(None), "none");
    }
}

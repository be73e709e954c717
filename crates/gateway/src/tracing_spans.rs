//! OpenTelemetry spans for the request phases (issue #8 item 6).
//!
//! The gateway only creates `tracing` spans: one `request` span per FHIR request with one child
//! per phase (`classify`, `authenticate`, `authorize`, `throttle`, `cache`, `forward`,
//! `verify`, `audit`). They are `TRACE` spans on their own target, [`TARGET`], which no log
//! filter enables by default; the binary turns them on only when it installs an OTLP exporter
//! (`tracing:` in the config). Switched off, each call site costs one atomic load and the
//! upstream sees the client's `traceparent` unchanged.
//!
//! Switched on, the request span continues the client's W3C `traceparent` (when it sent one)
//! and the upstream receives a `traceparent` naming the gateway's `forward` span, so the FHIR
//! server's own spans hang below the gateway's.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Url;

/// The `tracing` target of every span exported to OpenTelemetry.
pub const TARGET: &str = "fhirgate::otel";

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The `tracing:` section: where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TracingConfig {
    /// OTLP/HTTP traces URL (`http://collector:4318/v1/traces`).
    pub otlp_endpoint: Url,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Share of new traces sampled (0.0–1.0); a sampled client `traceparent` is always followed.
    pub sample_ratio: f64,
    pub protocol: OtlpProtocol,
    /// Limit on each export request.
    pub timeout: Duration,
}

impl TracingConfig {
    pub fn new(otlp_endpoint: Url) -> Self {
        TracingConfig {
            otlp_endpoint,
            service_name: "fhirgate".to_owned(),
            sample_ratio: 1.0,
            protocol: OtlpProtocol::HttpProtobuf,
            timeout: Duration::from_secs(10),
        }
    }
}

/// OTLP/HTTP payload encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `application/x-protobuf` (the OTLP default).
    HttpProtobuf,
    /// `application/json`.
    HttpJson,
}

/// The span of one FHIR request; every phase span is created inside it.
pub(crate) fn request_span(method: &http::Method, headers: &HeaderMap) -> Span {
    let span = tracing::trace_span!(
        target: TARGET,
        "request",
        otel.kind = "server",
        http.request.method = %method,
        request_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        span.record("request_id", id);
    }
    if let Some(parent) = headers.get(&TRACEPARENT).and_then(parse_traceparent) {
        let cx = opentelemetry::Context::new().with_remote_span_context(parent);
        // Fails only when the span was already started, which cannot be the case here.
        let _ = span.set_parent(cx);
    }
    span
}

/// Record the final status on the request span.
pub(crate) fn record_status(span: &Span, status: u16) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// A phase span, child of the current span.
macro_rules! phase_span {
    ($name:literal) => {
        tracing::trace_span!(target: $crate::tracing_spans::TARGET, $name)
    };
}
pub(crate) use phase_span;

/// Point the upstream's `traceparent` at `forward` (the gateway's forward span). Without an
/// exporter the span is disabled and the client's header passes unchanged.
pub(crate) fn set_upstream_traceparent(forward: &Span, headers: &mut HeaderMap) {
    if forward.is_disabled() {
        return;
    }
    let cx = forward.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return;
    }
    let value = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(TRACEPARENT, value);
    }
}

/// W3C Trace Context `traceparent` (version 00, or a later version read as 00).
fn parse_traceparent(value: &HeaderValue) -> Option<SpanContext> {
    let text = value.to_str().ok()?.trim();
    let mut parts = text.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    let well_formed = version.len() == 2
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && trace_id.len() == 32
        && span_id.len() == 16
        && flags.len() == 2
        && [version, trace_id, span_id, flags].iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if !well_formed {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<SpanContext> {
        parse_traceparent(&HeaderValue::from_str(text).unwrap())
    }

    #[test]
    fn a_valid_traceparent_is_read_and_malformed_ones_are_ignored() {
        let sc = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        assert!(sc.is_remote());
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "not a traceparent",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_spans_are_off_and_the_header_is_untouched() {
        let span = phase_span!("forward");
        assert!(span.is_disabled());
        let mut headers = HeaderMap::new();
        let client =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        headers.insert(TRACEPARENT, client.clone());
        set_upstream_traceparent(&span, &mut headers);
        assert_eq!(headers.get(TRACEPARENT), Some(&client));
    }
}

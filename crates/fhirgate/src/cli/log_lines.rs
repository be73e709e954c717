//! Log lines written inside a request name the request (method, path, request id), as if
//! they sat in a `request` span: `request{method=GET path=/fhir/Patient/1 request_id=…}:`
//! after the level in the terminal format, and `"span":{"name":"request",…}` (plus the
//! same object first in `"spans"`) in the JSON format. The request comes from the
//! gateway's task local ([`with_current_request`]), not from a real span, which would cost
//! every request the subscriber's span bookkeeping (see `fhirgate_gateway::log_context`).
//!
//! Lines outside a request are written by the wrapped format directly. Inside one, the line
//! is first written to a string and the request spliced in; such a line loses its terminal
//! colours (the wrapped format only colours lines written to the terminal's own writer).

use std::fmt::{self, Write as _};

use fhirgate_gateway::{RequestTag, with_current_request};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `tracing_subscriber`'s full format: `<time> <LEVEL> <spans>: <target>: <fields>`.
    Terminal,
    /// Its JSON format: one object per line.
    Json,
}

/// Wraps an event format and adds the current request to lines written inside one.
pub struct WithRequest<F> {
    inner: F,
    shape: Shape,
}

impl<F> WithRequest<F> {
    pub fn new(inner: F, shape: Shape) -> Self {
        WithRequest { inner, shape }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithRequest<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(request) = with_current_request(RequestTag::clone) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let level = event.metadata().level().as_str();
        let spliced = match self.shape {
            Shape::Terminal => splice_terminal(&line, level, &request),
            Shape::Json => splice_json(&line, &request),
        };
        writer.write_str(spliced.as_deref().unwrap_or(&line))
    }
}

/// The request's span text right after the level, where the full format puts the
/// outermost span.
fn splice_terminal(line: &str, level: &str, request: &RequestTag) -> Option<String> {
    // The timestamp before the level has no letters of a level name in it.
    let after_level = line.find(level)? + level.len();
    let insert_at = after_level + line.get(after_level..)?.find(' ')? + 1;
    let mut out = String::with_capacity(line.len() + 96);
    out.push_str(line.get(..insert_at)?);
    let _ = write!(
        out,
        "request{{method={} path={} request_id={}}}: ",
        request.method(),
        request.path(),
        request.request_id()
    );
    out.push_str(line.get(insert_at..)?);
    Some(out)
}

/// `"span"` and `"spans"` members as the JSON format writes them for a span: the request
/// is the current span, or, when the line already names spans of its own (a `trace` log
/// level shows the gateway's phase spans), the outermost of them.
fn splice_json(line: &str, request: &RequestTag) -> Option<String> {
    let span = serde_json::json!({
        "name": "request",
        "method": request.method(),
        "path": request.path(),
        "request_id": request.request_id(),
    })
    .to_string();
    // A `"` inside a JSON string is escaped, so this is a member name, not text.
    const SPANS: &str = "\"spans\":[";
    if let Some(at) = line.find(SPANS) {
        let at = at + SPANS.len();
        let mut out = String::with_capacity(line.len() + span.len() + 1);
        out.push_str(line.get(..at)?);
        out.push_str(&span);
        if !line.get(at..)?.starts_with(']') {
            out.push(',');
        }
        out.push_str(line.get(at..)?);
        return Some(out);
    }
    let body = line.trim_end();
    let inner = body.strip_suffix('}')?;
    let mut out = String::with_capacity(line.len() + 2 * span.len() + 24);
    out.push_str(inner);
    if !inner.trim_end().ends_with('{') {
        out.push(',');
    }
    let _ = write!(out, "\"span\":{span},\"spans\":[{span}]}}");
    out.push_str(line.get(body.len()..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_request<R>(f: impl FnOnce(&RequestTag) -> R) -> R {
        f(&RequestTag::new(
            http::Method::GET,
            http::Uri::from_static("/fhir/Patient/1?x=1"),
            http::HeaderValue::from_static("id-7"),
        ))
    }

    #[test]
    fn the_terminal_line_gets_the_request_after_its_level() {
        let line = "2026-12-07T18:00:00.000001Z  WARN fhirgate_gateway::forward: too big limit=1\n";
        let out = with_request(|r| splice_terminal(line, "WARN", r));
        assert_eq!(
            out.as_deref(),
            Some(
                "2026-12-07T18:00:00.000001Z  WARN request{method=GET path=/fhir/Patient/1 \
                 request_id=id-7}: fhirgate_gateway::forward: too big limit=1\n"
            )
        );
    }

    #[test]
    fn the_json_line_gets_the_request_as_its_span() {
        let line = "{\"timestamp\":\"t\",\"level\":\"WARN\",\"message\":\"m\"}\n";
        let out = with_request(|r| splice_json(line, r)).unwrap_or_default();
        assert!(out.ends_with("}\n"), "{out}");
        let value: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(value["message"], "m", "{out}");
        assert_eq!(value["span"]["name"], "request", "{out}");
        assert_eq!(value["span"]["request_id"], "id-7", "{out}");
        assert_eq!(value["span"]["path"], "/fhir/Patient/1", "{out}");
        assert_eq!(value["spans"][0], value["span"], "{out}");
    }

    #[test]
    fn a_json_line_with_spans_gets_the_request_as_the_outermost() {
        let line = "{\"level\":\"TRACE\",\"span\":{\"name\":\"forward\"},\"spans\":[{\"name\":\"forward\"}]}\n";
        let out = with_request(|r| splice_json(line, r)).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(value["span"]["name"], "forward", "{out}");
        assert_eq!(value["spans"][0]["name"], "request", "{out}");
        assert_eq!(value["spans"][0]["method"], "GET", "{out}");
        assert_eq!(value["spans"][1]["name"], "forward", "{out}");
    }
}

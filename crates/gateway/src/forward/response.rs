//! Turning the upstream's response into the client's: headers cleaned and rewritten,
//! non-FHIR error bodies replaced, Bundles rewritten; every other body streams untouched.

use std::sync::Arc;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use fhirgate_fhir::Interaction;
use futures_util::StreamExt;
use http::{HeaderValue, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};

use super::headers::{rewrite_locations, strip_hop_by_hop};
use crate::error::GatewayError;
use crate::upstream::{BodyError, Upstream, UpstreamBody};

pub(crate) async fn finish(
    upstream: &Upstream,
    may_be_bundle: bool,
    response: Response<UpstreamBody>,
    bundle_rewrite_max: usize,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, body) = response.into_parts();
    let answered_by = Arc::clone(body.answered_by());
    let base: &str = &answered_by;
    strip_hop_by_hop(&mut parts.headers);
    rewrite_locations(&mut parts.headers, base, &upstream.public_base);
    // The client may speak another HTTP version than the upstream connection.
    parts.version = http::Version::default();

    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let status = parts.status;
    if (status.is_client_error() || status.is_server_error())
        && (!is_fhir_media_type(content_type) || declares_empty_body(&parts.headers))
    {
        // The body (an HTML page from a load balancer, or nothing) means nothing to a FHIR
        // client; answer with an OperationOutcome that keeps the status.
        return Err(GatewayError::UpstreamStatus(status));
    }
    if may_be_bundle && status.is_success() && is_fhir_json(content_type) {
        let length = content_length(&parts.headers);
        let body = rewrite_bundle_body(
            base,
            &upstream.public_base,
            body,
            length,
            bundle_rewrite_max,
        )
        .await?;
        if let Some(len) = body.1 {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        return Ok(Response::from_parts(parts, body.0));
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Buffer the body (up to `max`) and rewrite it; returns the body and its new length if it was
/// buffered. Bodies over the limit stream unmodified.
async fn rewrite_bundle_body(
    from: &str,
    to: &str,
    mut body: UpstreamBody,
    length: Option<u64>,
    max: usize,
) -> Result<(Body, Option<usize>), GatewayError> {
    if length.is_some_and(|len| len > max as u64) {
        tracing::warn!(
            length,
            limit = max,
            "Bundle larger than limits.bundle_rewrite_max streamed without URL rewriting"
        );
        return Ok((Body::new(body), None));
    }
    let capacity = length.map_or(16 * 1024, |len| len as usize);
    let mut gathered = Gathered::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| super::body_read_error(Box::new(err)))?;
        // Trailers are not used by FHIR servers; only data frames are kept.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        gathered.push(data, capacity);
        if gathered.len() > max {
            tracing::warn!(
                limit = max,
                "Bundle larger than limits.bundle_rewrite_max streamed without URL rewriting"
            );
            let head = gathered.into_bytes();
            let head =
                futures_util::stream::once(async move { Ok::<_, BodyError>(Frame::data(head)) });
            let rest = head.chain(BodyStream::new(body));
            return Ok((Body::new(StreamBody::new(rest)), None));
        }
    }
    let bytes = gathered.into_bytes();
    let bytes = match super::bundle::rewrite_bundle(&bytes, from, to) {
        Some(rewritten) => Bytes::from(rewritten),
        None => bytes,
    };
    let len = bytes.len();
    Ok((Body::from(bytes), Some(len)))
}

/// A body's data frames put together. The upstream's answer mostly arrives in one read,
/// and hyper hands it over as one frame: that frame is kept as it is, and only a second
/// frame makes a copy.
#[derive(Default)]
struct Gathered {
    first: Bytes,
    more: Option<BytesMut>,
}

impl Gathered {
    fn push(&mut self, data: Bytes, capacity: usize) {
        if let Some(more) = &mut self.more {
            more.extend_from_slice(&data);
        } else if self.first.is_empty() {
            self.first = data;
        } else {
            let mut more = BytesMut::with_capacity(capacity.max(self.first.len() + data.len()));
            more.extend_from_slice(&self.first);
            more.extend_from_slice(&data);
            self.more = Some(more);
        }
    }

    fn len(&self) -> usize {
        self.more.as_ref().map_or(self.first.len(), BytesMut::len)
    }

    fn into_bytes(self) -> Bytes {
        self.more.map_or(self.first, BytesMut::freeze)
    }
}

/// Interactions whose successful answer is a Bundle.
pub(super) fn returns_bundle(interaction: &Interaction) -> bool {
    matches!(
        interaction,
        Interaction::SearchType { .. }
            | Interaction::SearchSystem
            | Interaction::SearchCompartment { .. }
            | Interaction::HistoryInstance { .. }
            | Interaction::HistoryType { .. }
            | Interaction::HistorySystem
            | Interaction::BatchOrTransaction
            | Interaction::Operation { .. }
    )
}

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn is_fhir_json(content_type: &str) -> bool {
    let e = essence(content_type);
    e.eq_ignore_ascii_case("application/fhir+json") || e.eq_ignore_ascii_case("application/json")
}

/// Media types a FHIR server answers errors in (an OperationOutcome in JSON or XML).
fn is_fhir_media_type(content_type: &str) -> bool {
    let e = essence(content_type);
    is_fhir_json(content_type)
        || e.eq_ignore_ascii_case("application/fhir+xml")
        || e.eq_ignore_ascii_case("application/xml")
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn declares_empty_body(headers: &http::HeaderMap) -> bool {
    content_length(headers) == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_put_together_in_order_and_one_frame_is_kept_as_it_is() {
        let frame = Bytes::from_static(b"{\"resourceType\":\"Bundle\"}");
        let mut one = Gathered::default();
        one.push(frame.clone(), 0);
        assert_eq!(one.len(), frame.len());
        let kept = one.into_bytes();
        assert_eq!(
            kept.as_ptr(),
            frame.as_ptr(),
            "a single frame is not copied"
        );

        let mut three = Gathered::default();
        for part in ["{\"a\":", "", "[1,", "2]}"] {
            three.push(Bytes::from(part), 4);
        }
        assert_eq!(three.len(), 11);
        assert_eq!(three.into_bytes(), Bytes::from_static(b"{\"a\":[1,2]}"));
        assert!(Gathered::default().into_bytes().is_empty());
    }

    #[test]
    fn media_types() {
        assert!(is_fhir_json("application/fhir+json; charset=utf-8"));
        assert!(is_fhir_json("Application/JSON"));
        assert!(!is_fhir_json("text/html"));
        assert!(is_fhir_media_type("application/fhir+xml;fhirVersion=4.0"));
        assert!(!is_fhir_media_type(""));
    }
}

//! Request bodies the decision must see, and the stored resource a write by id would change.
//!
//! A checked JSON body is forwarded re-serialised from the value that was checked, never as
//! the original bytes: with duplicate members (`"subject"` twice) the gateway and the upstream
//! could otherwise read two different resources out of the same text.

use axum::body::Body;
use bytes::Bytes;
use fhirgate_fhir::FhirRequest;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::context::CONTEXT_HEADER_NAMES;
use crate::classify::Classified;
use crate::error::{BoxError, GatewayError};
use crate::upstream::Upstream;

/// The body as JSON, or `None` when its media type is not JSON (it cannot be checked).
/// The body is consumed; the caller puts a checked value back with [`replace_json`].
pub(crate) async fn read_json(
    classified: &mut Classified,
    max: u64,
) -> Result<Option<Value>, GatewayError> {
    let media_type = classified
        .parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media_type.as_deref().is_some_and(|m| !is_json(m)) {
        return Ok(None);
    }
    let body = std::mem::replace(&mut classified.body, Body::empty());
    let bytes = collect(body, max)
        .await
        .map_err(|e| e.into_gateway_error(max))?;
    let value = serde_json::from_slice(&bytes).map_err(|e| GatewayError::BodyRead(e.into()))?;
    Ok(Some(value))
}

/// Forward `value` as the request body.
pub(crate) fn replace_json(classified: &mut Classified, value: &Value) -> Result<(), GatewayError> {
    let bytes = serde_json::to_vec(value).map_err(|_| GatewayError::Internal)?;
    classified
        .parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    classified.body = Body::from(bytes);
    Ok(())
}

fn is_json(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/fhir+json" | "application/json" | "application/json-patch+json"
    )
}

pub(crate) struct Current {
    pub(crate) resource: Option<Value>,
    /// The version to pin the write to (`ETag`, or `W/"meta.versionId"`).
    pub(crate) etag: Option<HeaderValue>,
}

/// GET the resource at the request's path from the upstream, as the caller.
pub(crate) async fn fetch_current(
    upstream: &Upstream,
    fhir: &FhirRequest,
    request_headers: &HeaderMap,
    max: usize,
) -> Result<Current, GatewayError> {
    let uri = format!("{}{}", upstream.base, fhir.path);
    let mut builder = Request::get(uri).header(header::ACCEPT, "application/fhir+json");
    for name in std::iter::once(&header::AUTHORIZATION).chain(CONTEXT_HEADER_NAMES.iter()) {
        if let Some(value) = request_headers.get(name) {
            builder = builder.header(name, value);
        }
    }
    let request = builder
        .body(Body::empty())
        .map_err(|_| GatewayError::Internal)?;
    let sent = tokio::time::timeout(upstream.response_timeout, upstream.client.request(request));
    let response = match sent.await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return Err(GatewayError::UpstreamUnavailable(BoxError::from(err))),
        Err(_) => return Err(GatewayError::UpstreamTimeout(upstream.response_timeout)),
    };
    let status = response.status();
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Ok(Current {
            resource: None,
            etag: None,
        });
    }
    if !status.is_success() {
        return Err(GatewayError::UpstreamStatus(status));
    }
    let etag = response.headers().get(header::ETAG).cloned();
    let bytes = collect(Body::new(response.into_body()), max as u64)
        .await
        .map_err(|e| match e {
            CollectError::TooLarge => GatewayError::VerifyTooLarge { limit: max },
            CollectError::Read(err) => crate::forward::body_read_error(err),
        })?;
    let resource: Value =
        serde_json::from_slice(&bytes).map_err(|e| GatewayError::Unverifiable(e.into()))?;
    let etag = etag.or_else(|| {
        resource
            .pointer("/meta/versionId")
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(&format!("W/\"{v}\"")).ok())
    });
    Ok(Current {
        resource: Some(resource),
        etag,
    })
}

pub(crate) enum CollectError {
    TooLarge,
    Read(BoxError),
}

impl CollectError {
    fn into_gateway_error(self, limit: u64) -> GatewayError {
        match self {
            CollectError::TooLarge => GatewayError::BodyTooLarge { limit },
            CollectError::Read(err) => GatewayError::BodyRead(err),
        }
    }
}

/// The whole body, or an error as soon as it passes `max` bytes.
pub(crate) async fn collect(body: Body, max: u64) -> Result<Bytes, CollectError> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*err);
            while let Some(cause) = source {
                if cause.is::<LengthLimitError>() {
                    return Err(CollectError::TooLarge);
                }
                source = cause.source();
            }
            Err(CollectError::Read(err))
        }
    }
}

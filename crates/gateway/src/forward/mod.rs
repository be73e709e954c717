//! Phase 6, forward: send the classified request to the upstream FHIR server and shape its
//! answer for the client.
//!
//! The upstream receives exactly the classified path plus the re-serialised parameters under
//! its own base, never the raw client target. Bodies stream both ways; only Bundles are
//! buffered, and only to rewrite URLs (see `bundle`).

mod bundle;
mod headers;
mod response;

use std::time::Instant;

use axum::body::Body;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::LengthLimitError;

use crate::classify::Classified;
use crate::ctx::RequestCtx;
use crate::error::{BoxError, GatewayError};
use crate::upstream::{BodyError, Upstream, UpstreamError};
use fhirgate_fhir::ClassifyError;

pub(crate) async fn forward(
    upstream: &Upstream,
    ctx: &mut RequestCtx,
    classified: Classified,
    max_body_size: u64,
    bundle_rewrite_max: usize,
) -> Result<Response<Body>, GatewayError> {
    let Classified {
        parts,
        body,
        params_in_body,
    } = classified;
    let Some(fhir) = ctx.fhir.as_ref() else {
        tracing::error!("forward phase reached without a classified request");
        return Err(GatewayError::Internal);
    };
    let request = upstream_request(upstream, ctx, fhir, parts, body, params_in_body)?;

    let started = Instant::now();
    // The client bounds the wait for response headers itself, per attempt.
    let response = match upstream.client.request(request).await {
        Ok(response) => response,
        Err(err) => return Err(client_error(err, max_body_size)),
    };
    ctx.timings.upstream_headers = Some(started.elapsed());

    // A HEAD answer has no body to rewrite.
    let may_rewrite = ctx
        .fhir
        .as_ref()
        .is_some_and(|f| f.method != Method::HEAD && response::returns_bundle(&f.interaction));
    response::finish(upstream, may_rewrite, response, bundle_rewrite_max).await
}

fn upstream_request(
    upstream: &Upstream,
    ctx: &RequestCtx,
    fhir: &fhirgate_fhir::FhirRequest,
    parts: Parts,
    body: Body,
    params_in_body: bool,
) -> Result<Request<Body>, GatewayError> {
    let query = fhir.params.to_query_string();
    let mut target = String::with_capacity(upstream.base.len() + fhir.path.len() + query.len() + 1);
    target.push_str(&upstream.base);
    target.push_str(&fhir.path);
    if !params_in_body && !query.is_empty() {
        target.push('?');
        target.push_str(&query);
    }
    let uri = Uri::try_from(target).map_err(|_| {
        GatewayError::Classify(ClassifyError::InvalidPath(
            "the request target cannot be forwarded".to_owned(),
        ))
    })?;

    let Parts {
        method,
        uri: client_uri,
        mut headers,
        extensions: _,
        ..
    } = parts;
    headers::prepare_request(
        &mut headers,
        // Written once per connection; formatted here only without one (in-process tests).
        ctx.client_ip_text
            .clone()
            .or_else(|| crate::ctx::ip_header(ctx.client_addr.ip())),
        &upstream.forwarded_proto,
        response::returns_bundle(&fhir.interaction),
    );
    if let Some(authority) = client_uri.authority() {
        headers::set_forwarded_host_from_authority(&mut headers, authority.as_str());
    }
    let body = if params_in_body {
        // `POST _search`: the classified parameters are the body, so the upstream searches on
        // exactly what was classified.
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(query.len()));
        Body::from(query)
    } else {
        body
    };

    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Map a client failure: the request body hitting its limit is the client's fault (413);
/// a connect or response timeout is a timeout (504); anything else means the upstream is
/// unusable (502).
fn client_error(err: UpstreamError, max_body_size: u64) -> GatewayError {
    match err {
        UpstreamError::ConnectTimeout { after, .. } | UpstreamError::Timeout { after, .. } => {
            return GatewayError::UpstreamTimeout(after);
        }
        _ => {}
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if cause.is::<LengthLimitError>() {
            return GatewayError::BodyTooLarge {
                limit: max_body_size,
            };
        }
        source = cause.source();
    }
    GatewayError::UpstreamUnavailable(BoxError::from(err))
}

/// Map a failure reading an upstream response body that had not yet been sent on (it was
/// being buffered to verify or rewrite): a stall is a timeout (504), anything else makes the
/// upstream unusable (502).
pub(crate) fn body_read_error(err: BoxError) -> GatewayError {
    match BodyError::stalled_in(&*err) {
        Some(after) => GatewayError::UpstreamTimeout(after),
        None => GatewayError::UpstreamUnavailable(err),
    }
}

/// Methods the gateway may forward at all; anything else is refused before classification.
pub(crate) fn is_forwardable(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS
    )
}

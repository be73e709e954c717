//! Phase 1, classify: turn the HTTP request into a [`fhirgate_fhir::FhirRequest`] or a 400.
//!
//! The only body ever read here is the form body of `POST _search` (bounded by
//! `limits.max_form_body_size`), because its parameters are part of the search and must be
//! classified (and later authorized) like query parameters.

use axum::body::Body;
use http::request::Parts;
use http::{Method, Request, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::ctx::RequestCtx;
use crate::error::GatewayError;

/// The request after classification, ready for the later phases. The classified
/// [`fhirgate_fhir::FhirRequest`] itself is in [`RequestCtx::fhir`].
pub(crate) struct Classified {
    pub(crate) parts: Parts,
    /// The body still to be forwarded (empty when it was consumed as search parameters).
    pub(crate) body: Body,
    /// `POST _search`: the parameters travel as the form body, not in the URL.
    pub(crate) params_in_body: bool,
}

pub(crate) async fn classify(
    ctx: &mut RequestCtx,
    request: Request<Body>,
    base_path_len: usize,
    max_form_body_size: usize,
) -> Result<Classified, GatewayError> {
    let (parts, body) = request.into_parts();
    if !crate::forward::is_forwardable(&parts.method) {
        return Err(GatewayError::MethodNotSupported(parts.method));
    }
    let full_path = parts.uri.path();
    let path = match full_path.get(base_path_len..) {
        Some("") | None => "/",
        Some(rest) => rest,
    };
    let query = parts.uri.query();

    if is_form_search(&parts, path) {
        let form = read_form(body, max_form_body_size).await?;
        let fhir =
            fhirgate_fhir::classify(&parts.method, path, query, &parts.headers, Some(&form))?;
        ctx.fhir = Some(fhir);
        return Ok(Classified {
            parts,
            body: Body::empty(),
            params_in_body: true,
        });
    }
    let fhir = fhirgate_fhir::classify(&parts.method, path, query, &parts.headers, None)?;
    ctx.fhir = Some(fhir);
    Ok(Classified {
        parts,
        body,
        params_in_body: false,
    })
}

fn is_form_search(parts: &Parts, path: &str) -> bool {
    parts.method == Method::POST
        && (path == "/_search" || path.ends_with("/_search"))
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
}

async fn read_form(body: Body, limit: usize) -> Result<bytes::Bytes, GatewayError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*err);
            while let Some(cause) = source {
                if cause.is::<LengthLimitError>() {
                    return Err(GatewayError::BodyTooLarge {
                        limit: limit as u64,
                    });
                }
                source = cause.source();
            }
            Err(GatewayError::BodyRead(err))
        }
    }
}

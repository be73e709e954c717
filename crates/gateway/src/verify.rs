//! Phase 7, verify: under a constrained grant, the upstream's successful answer is read
//! whole and checked before any byte of it leaves (DESIGN.md §3 step 7, the backstop).
//!
//! Searchsets lose the entries the grant does not cover; a single resource the grant does not
//! cover turns the whole answer into 403 (or 404 under `hide_existence`). A body that cannot
//! be checked (over `verify_buffer_max`, compressed, not JSON) is refused with 502, never
//! passed through or cut. Bundles arrive here already base-URL-rewritten by the forward
//! phase's byte scanner. The check first runs on the bytes
//! ([`fhirgate_smart::verify_response_bytes`], which reads only the members it checks):
//! when nothing needs removing the body leaves unchanged; only otherwise is it parsed into
//! a tree, filtered and re-serialised.

use axum::body::Body;
use fhirgate_smart::{
    BundlePlan, FilterOutcome, RawVerdict, ResponseCheck, verify_response, verify_response_bytes,
};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use crate::authorize::body::{CollectError, collect};
use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::security::Security;

/// How phase 7 checks the response, decided in phase 3.
pub(crate) enum Verification {
    None,
    Resource(Box<ResponseCheck>),
    Bundle(Box<BundlePlan>),
}

pub(crate) struct VerifyPlan {
    pub(crate) verification: Verification,
    /// The client asked HEAD; the upstream was asked GET so there is a body to check.
    pub(crate) head: bool,
}

impl VerifyPlan {
    pub(crate) fn none() -> Self {
        VerifyPlan {
            verification: Verification::None,
            head: false,
        }
    }
}

pub(crate) async fn verify(
    security: &Security,
    ctx: &mut RequestCtx,
    plan: VerifyPlan,
    response: Response<Body>,
) -> Result<Response<Body>, GatewayError> {
    let head = plan.head;
    let response = check(security, ctx, plan.verification, response).await?;
    if !head {
        return Ok(response);
    }
    let (parts, _) = response.into_parts();
    Ok(Response::from_parts(parts, Body::empty()))
}

async fn check(
    security: &Security,
    ctx: &mut RequestCtx,
    verification: Verification,
    response: Response<Body>,
) -> Result<Response<Body>, GatewayError> {
    if matches!(verification, Verification::None) || !response.status().is_success() {
        // Errors carry an OperationOutcome (non-FHIR ones were replaced by forward).
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let encoded = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(GatewayError::Unverifiable("compressed response".into()));
    }
    let max = security.settings.verify_buffer_max;
    let bytes = collect(body, max as u64).await.map_err(|e| match e {
        CollectError::TooLarge => GatewayError::VerifyTooLarge { limit: max },
        CollectError::Read(err) => crate::forward::body_read_error(err),
    })?;
    if bytes.is_empty() || parts.status == StatusCode::NO_CONTENT {
        // `Prefer: return=minimal` writes and deletes: nothing leaves.
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    let rewrite = memchr::memmem::find(&bytes, security.upstream_base.as_bytes()).is_some();
    if let Verification::Resource(check) = &verification
        && !rewrite
    {
        // The common case: nothing to remove, so the body leaves as the upstream sent it.
        match verify_response_bytes(check, &bytes) {
            Ok(RawVerdict::Unchanged(outcome)) => {
                ctx.returned_patients = Some(outcome.patients);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                return Ok(Response::from_parts(parts, Body::from(bytes)));
            }
            Ok(RawVerdict::Filtered { body, outcome }) => {
                ctx.returned_patients = Some(outcome.patients);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                return Ok(Response::from_parts(parts, Body::from(body)));
            }
            Ok(RawVerdict::NeedsTree) => {}
            Err(reason) => {
                return Err(GatewayError::Denied {
                    reason,
                    realm: security.realm.clone(),
                });
            }
        }
    }
    let mut value: Value =
        serde_json::from_slice(&bytes).map_err(|e| GatewayError::Unverifiable(e.into()))?;
    let outcome = match &verification {
        Verification::Resource(check) => {
            verify_response(check, &mut value).map_err(|reason| GatewayError::Denied {
                reason,
                realm: security.realm.clone(),
            })?
        }
        Verification::Bundle(plan) => plan.finish_response(&mut value),
        Verification::None => FilterOutcome::default(),
    };
    if outcome.removed_match > 0 {
        // After patient injection no match should need removing: the upstream ignored it.
        tracing::warn!(
            request_id = ctx.request_id_str(),
            removed = outcome.removed_match,
            "upstream returned search matches outside the grant; removed"
        );
    }
    ctx.returned_patients = Some(outcome.patients);
    if rewrite {
        rewrite_bundle_urls(&mut value, &security.upstream_base, &security.realm);
    }
    let out = serde_json::to_vec(&value).map_err(|_| GatewayError::Internal)?;
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Response::from_parts(parts, Body::from(out)))
}

/// Bundles too large for the forward phase's rewrite arrive here with upstream URLs; they
/// are parsed anyway, so fix `link[].url` and `entry[].fullUrl` on the value.
fn rewrite_bundle_urls(bundle: &mut Value, from: &str, to: &str) {
    let lists = [("link", "url"), ("entry", "fullUrl")];
    for (list, field) in lists {
        let Some(items) = bundle.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for item in items {
            let Some(url) = item.get_mut(field) else {
                continue;
            };
            let rewritten = url.as_str().and_then(|u| {
                let rest = u.strip_prefix(from)?;
                matches!(rest.as_bytes().first(), None | Some(b'/' | b'?' | b'#'))
                    .then(|| format!("{to}{rest}"))
            });
            if let Some(new) = rewritten {
                *url = Value::String(new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::rewrite_bundle_urls;

    #[test]
    fn unrewritten_bundle_urls_are_fixed_on_whole_segments_only() {
        let mut b = json!({"resourceType": "Bundle",
            "link": [{"relation": "self", "url": "http://up/fhir/Observation?patient=P1"}],
            "entry": [{"fullUrl": "http://up/fhir/Observation/o1"}, {"fullUrl": "http://up/fhirx/O/2"}]});
        rewrite_bundle_urls(&mut b, "http://up/fhir", "https://gw/fhir");
        assert_eq!(
            b["link"][0]["url"],
            "https://gw/fhir/Observation?patient=P1"
        );
        assert_eq!(b["entry"][0]["fullUrl"], "https://gw/fhir/Observation/o1");
        assert_eq!(b["entry"][1]["fullUrl"], "http://up/fhirx/O/2");
    }
}

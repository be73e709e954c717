//! Phase 3, authorize: the token's grant against the classified request, through the pure
//! decision of `fhirgate-smart`, then everything the decision asks for before forwarding.
//!
//! * Deny: 403/404/400 from the [`fhirgate_smart::DenyReason`]; nothing reaches the upstream.
//! * Allow within a grant: search mutations go into the classified parameters (which the
//!   forward phase sends, as the query or as the `POST _search` form body); write bodies are
//!   buffered and checked; updates, patches and deletes by id first read the stored resource
//!   (`fetch_current`) and pin its version with `If-Match`; batch and transaction Bundles are
//!   decided entry by entry. The returned [`Verification`] tells phase 7 how to check the
//!   response.
//!
//! The grant is rebuilt per request: parsing a handful of scopes costs about as much as a
//! cache lookup would, and keeps the grant exactly in step with the verified principal.

pub(crate) mod body;
mod context;

use fhirgate_fhir::FhirRequest;
use fhirgate_smart::{Decision, DenyReason, Grant, Mutation, RequestBodyCheck};
use http::{HeaderName, HeaderValue, Method, header};

use crate::classify::Classified;
use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::security::Security;
use crate::upstream::Upstream;
use crate::verify::{Verification, VerifyPlan};

pub(crate) use context::strip_client_context;

const IF_NONE_EXIST: HeaderName = HeaderName::from_static("if-none-exist");

pub(crate) async fn authorize(
    security: &Security,
    upstream: &Upstream,
    ctx: &mut RequestCtx,
    classified: &mut Classified,
    max_body_size: u64,
) -> Result<VerifyPlan, GatewayError> {
    let Some(principal) = ctx.principal.clone() else {
        // Disabled authentication, or an exempt interaction (`/metadata`).
        return Ok(VerifyPlan::none());
    };
    context::set_upstream_context(
        &security.settings,
        &principal,
        &mut classified.parts.headers,
    );
    let Some(fhir) = ctx.fhir.as_mut() else {
        return Err(GatewayError::Internal);
    };
    let grant = Grant::new(
        &principal.scopes.join(" "),
        principal.patient.as_deref(),
        principal.fhir_user.as_deref(),
    );
    let denied = |reason: DenyReason| GatewayError::Denied {
        reason,
        realm: security.realm.clone(),
    };
    let within = match fhirgate_smart::authorize(&grant, fhir, &security.policy) {
        Decision::Allow => return Ok(VerifyPlan::none()),
        Decision::Deny(reason) => return Err(denied(reason)),
        Decision::AllowWithin(within) => within,
    };
    if !json_response_requested(fhir, &classified.parts.headers) {
        return Err(denied(DenyReason::new(
            fhirgate_smart::DenyKind::NotSupported,
            "under this grant responses are checked and must be JSON; ask for _format=json",
        )));
    }
    apply_mutations(&within.mutations, fhir, &mut classified.parts.headers)?;
    // Bodies must arrive uncompressed for the response check to read them.
    classified.parts.headers.remove(header::ACCEPT_ENCODING);

    // The body reads and the upstream fetch below are boxed: their futures are several KB,
    // and unboxed they would enlarge (and be copied with) every request's future, also for
    // the reads and searches that never take these paths.
    let verification = match &within.body {
        Some(RequestBodyCheck::Bundle) => {
            let value = Box::pin(body::read_json(classified, max_body_size)).await?;
            let mut value = value.ok_or_else(|| {
                denied(DenyReason::new(
                    fhirgate_smart::DenyKind::Invalid,
                    "a batch or transaction needs a JSON Bundle body",
                ))
            })?;
            let plan = fhirgate_smart::authorize_bundle(&grant, &value, &security.policy)
                .map_err(denied)?;
            plan.rewrite(&mut value);
            body::replace_json(classified, &value)?;
            Verification::Bundle(Box::new(plan))
        }
        check => {
            let current = if within.fetch_current {
                let fetched = Box::pin(body::fetch_current(
                    upstream,
                    fhir,
                    &classified.parts.headers,
                    security.settings.verify_buffer_max,
                ))
                .await?;
                within
                    .check_current(fetched.resource.as_ref())
                    .map_err(denied)?;
                if let Some(etag) = fetched.etag {
                    // Closes the race between this check and the write: a resource changed
                    // (perhaps moved to another patient) since it was read makes the write fail.
                    classified.parts.headers.insert(header::IF_MATCH, etag);
                }
                fetched.resource
            } else {
                None
            };
            if check.is_some() {
                let value = Box::pin(body::read_json(classified, max_body_size))
                    .await?
                    .ok_or_else(|| {
                        denied(DenyReason::new(
                            fhirgate_smart::DenyKind::NotSupported,
                            "under this grant the request body must be JSON so that it can be checked",
                        ))
                    })?;
                within
                    .check_body(&value, current.as_ref())
                    .map_err(denied)?;
                body::replace_json(classified, &value)?;
            }
            Verification::Resource(Box::new(within.check.clone()))
        }
    };
    // A HEAD answer has no body to verify: ask for the GET and drop the body afterwards.
    let head = classified.parts.method == Method::HEAD;
    if head {
        classified.parts.method = Method::GET;
    }
    Ok(VerifyPlan { verification, head })
}

fn apply_mutations(
    mutations: &[Mutation],
    fhir: &mut FhirRequest,
    headers: &mut http::HeaderMap,
) -> Result<(), GatewayError> {
    for mutation in mutations {
        match mutation {
            Mutation::SetIfNoneExist(query) => {
                let value = HeaderValue::from_str(query).map_err(|_| GatewayError::Internal)?;
                headers.insert(IF_NONE_EXIST, value);
            }
            other => other.apply_to(&mut fhir.params),
        }
    }
    Ok(())
}

/// Whether the client accepts a JSON answer: anything else would be refused only after the
/// upstream did the work, since the response check reads JSON.
fn json_response_requested(fhir: &FhirRequest, headers: &http::HeaderMap) -> bool {
    let json_or_any = |v: &str| {
        let v = v.to_ascii_lowercase();
        v.contains("json") || v.contains("*/*") || v.contains("application/*")
    };
    if let Some(format) = fhir.params.first_value("_format") {
        return json_or_any(format) || format.eq_ignore_ascii_case("json");
    }
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .fold(None, |seen: Option<bool>, v| {
            Some(seen.unwrap_or(false) || json_or_any(v))
        })
        .unwrap_or(true)
}

//! Phase 4, throttle: the configured rate limits (`fhirgate-ratelimit`) keyed on the verified
//! principal, the client address and the classified interaction (DESIGN.md §3 step 4).
//!
//! Running after authorize means only requests that would otherwise be served spend quota,
//! and keys come from the token, never from what the client claims. Over a limit: 429
//! `throttled`; the shared backend down with `fault_tolerant: false`: 503 `transient`. An
//! admitted request's `RateLimit-*` headers are kept for the response.

use std::sync::Arc;

use fhirgate_fhir::Interaction;
use fhirgate_ratelimit::{RateLimitConfig, RateLimiter, RequestKeyInput, Stats, Verdict};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::ctx::RequestCtx;
use crate::error::GatewayError;

pub(crate) struct Throttle {
    limiter: RateLimiter,
}

/// Headers an admitted request's response carries.
pub(crate) type QuotaHeaders = Vec<(HeaderName, HeaderValue)>;

impl Throttle {
    pub(crate) fn new(config: Option<&RateLimitConfig>) -> Option<Throttle> {
        let config = config?;
        Some(Throttle {
            limiter: RateLimiter::new(config.clone()),
        })
    }

    pub(crate) fn stats(&self) -> Arc<Stats> {
        self.limiter.stats()
    }

    pub(crate) async fn check(
        &self,
        ctx: &RequestCtx,
        headers: &HeaderMap,
    ) -> Result<QuotaHeaders, GatewayError> {
        let Some(fhir) = ctx.fhir.as_ref() else {
            return Err(GatewayError::Internal);
        };
        let principal = ctx.principal.as_deref();
        let operation = match &fhir.interaction {
            Interaction::Operation { name, .. } => Some(format!("${name}")),
            _ => None,
        };
        let resource_type = fhir.interaction.resource_type();
        let input = RequestKeyInput {
            client_id: principal.and_then(|p| p.client_id.as_deref()),
            sub: principal.and_then(|p| p.subject.as_deref()),
            patient: principal.and_then(|p| p.patient.as_deref()),
            ip: Some(ctx.client_addr.ip()),
            headers: Some(headers),
            interaction: interaction_code(&fhir.interaction),
            operation: operation.as_deref(),
            resource_type: resource_type.as_ref().map(|t| t.as_str()),
            path: &fhir.path,
        };
        let verdict = self.limiter.check(&input).await;
        match verdict {
            Verdict::Unlimited => Ok(Vec::new()),
            Verdict::Allowed(_) => Ok(verdict.headers()),
            Verdict::Rejected(ref quota) => Err(GatewayError::Throttled {
                rule: quota.rule.clone(),
                headers: verdict.headers(),
            }),
            Verdict::Unavailable { .. } => Err(GatewayError::ThrottleUnavailable {
                headers: verdict.headers(),
            }),
            _ => Ok(Vec::new()),
        }
    }
}

/// The limiter's interaction vocabulary ([`fhirgate_ratelimit::INTERACTIONS`]): conditional
/// writes count as their plain forms; batch and transaction are told apart only by the body,
/// which rate limiting does not read, so both count as `batch`.
pub(crate) fn interaction_code(interaction: &Interaction) -> &'static str {
    match interaction {
        Interaction::ConditionalUpdate { .. } => "update",
        Interaction::ConditionalPatch { .. } => "patch",
        Interaction::ConditionalDelete { .. } => "delete",
        Interaction::BatchOrTransaction => "batch",
        other => other.label(),
    }
}

/// Add the admitted request's quota headers to its response.
pub(crate) fn add_headers(response_headers: &mut HeaderMap, quota: QuotaHeaders) {
    for (name, value) in quota {
        response_headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interaction_maps_to_a_code_the_limiter_knows() {
        use fhirgate_fhir::ResourceType;
        let t = ResourceType::Observation;
        let all = [
            Interaction::Capabilities,
            Interaction::ConditionalUpdate { resource_type: t },
            Interaction::ConditionalPatch { resource_type: t },
            Interaction::ConditionalDelete { resource_type: t },
            Interaction::SearchType { resource_type: t },
            Interaction::SearchSystem,
            Interaction::HistorySystem,
            Interaction::BatchOrTransaction,
            Interaction::Read {
                resource_type: t,
                id: "1".into(),
            },
        ];
        for i in &all {
            assert!(
                fhirgate_ratelimit::INTERACTIONS.contains(&interaction_code(i)),
                "{i:?}"
            );
        }
    }
}

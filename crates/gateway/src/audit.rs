//! Phase 8, audit: one tamper-evident record per FHIR request, allowed or refused
//! (DESIGN.md §3 step 8, §7), written through `fhirgate-audit`.
//!
//! This module decides what goes into the record; [`crate::completion`] decides when it is
//! written (before the response's last byte). Patients are, in order of trust: those the
//! response check (phase 7) saw in the answer; those the request names by path (the target
//! of a refused read is recorded too, as an attempt); those found in an unverified response
//! body of at most [`MAX_SCANNED_BODY`] bytes; and, when none of these names anyone, the
//! token's patient context.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::SystemTime;

use fhirgate_audit::{
    AuditConfig, AuditInput, AuditPrincipal, AuditSink, Interaction as AuditInteraction, OnFailure,
    Outcome,
};
use fhirgate_fhir::{Interaction, OperationLevel, ResourceType};
use serde_json::Value;

use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::upstream::BuildError;

/// Unverified response bodies up to this size are read for the patients they name.
pub(crate) const MAX_SCANNED_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub(crate) struct Audit {
    pub(crate) sink: AuditSink,
    /// Base URLs under which a reference names one of our Patients (public and upstream).
    bases: std::sync::Arc<[String]>,
}

impl Audit {
    pub(crate) fn new(
        config: Option<&AuditConfig>,
        bases: Vec<String>,
    ) -> Result<Option<Audit>, BuildError> {
        let Some(config) = config else {
            return Ok(None);
        };
        Ok(Some(Audit {
            sink: AuditSink::open(config)?,
            bases: bases.into(),
        }))
    }

    /// With `on_failure: refuse`, PHI is not served while the trail cannot be written; the
    /// refusal itself is still recorded (and that attempt is what lets the sink recover).
    pub(crate) fn check_writable(&self, ctx: &RequestCtx) -> Result<(), GatewayError> {
        if is_phi(ctx) && self.sink.on_failure() == OnFailure::Refuse && !self.sink.is_healthy() {
            return Err(GatewayError::AuditUnavailable);
        }
        Ok(())
    }

    pub(crate) fn refuses_on_failure(&self) -> bool {
        self.sink.on_failure() == OnFailure::Refuse
    }
}

/// Everything but the CapabilityStatement may carry protected health information.
pub(crate) fn is_phi(ctx: &RequestCtx) -> bool {
    ctx.fhir
        .as_ref()
        .is_none_or(|f| f.interaction != Interaction::Capabilities)
}

/// What the record needs that the context does not hold.
pub(crate) struct RequestFacts {
    pub(crate) method: String,
    /// Query as received, `access_token` removed.
    pub(crate) query: Option<String>,
    pub(crate) status: u16,
    /// `issue.code` and diagnostics of the gateway's own error answer.
    pub(crate) failure: Option<(&'static str, String)>,
}

pub(crate) fn build_input(
    audit: &Audit,
    ctx: &RequestCtx,
    facts: &RequestFacts,
    body: Option<&[u8]>,
    aborted: bool,
) -> AuditInput {
    let interaction = ctx
        .fhir
        .as_ref()
        .map_or(AuditInteraction::Unclassified, |f| {
            audit_interaction(&f.interaction)
        });
    let mut input = AuditInput::new(
        SystemTime::now(),
        ctx.request_id_str(),
        facts.method.clone(),
        interaction,
        facts.status,
    );
    input.client_address = Some(client_ip(ctx));
    if let Some(fhir) = &ctx.fhir {
        let i = &fhir.interaction;
        input.resource_type = match i {
            Interaction::SearchCompartment { target, .. } => target.map(|t| t.as_str().to_owned()),
            other => other.resource_type().map(|t| t.as_str().to_owned()),
        };
        input.resource_id = match i {
            Interaction::SearchCompartment { .. } => None,
            other => other.id().map(str::to_owned),
        };
        if let Interaction::Operation { name, .. } = i {
            input.operation = Some(name.clone());
        }
    }
    input.query = facts.query.clone();
    if let Some((code, description)) = &facts.failure {
        input.outcome = Outcome::new(facts.status).with_issue(*code, description.clone());
    }
    input.principal = ctx.principal.as_deref().map(|p| {
        let mut who = AuditPrincipal::new(p.subject.clone(), p.client_id.clone());
        who.fhir_user = p.fhir_user.clone();
        who.issuer = Some(p.issuer.clone());
        who.token_id = p.token_id.clone();
        who
    });
    input.patients = patients(ctx, body, &audit.bases);
    input.aborted = aborted;
    input
}

fn client_ip(ctx: &RequestCtx) -> IpAddr {
    ctx.client_addr.ip()
}

/// The audit crate's interaction vocabulary (see its docs for the mapping rules).
fn audit_interaction(i: &Interaction) -> AuditInteraction {
    match i {
        Interaction::Capabilities => AuditInteraction::Capabilities,
        Interaction::Read { .. } => AuditInteraction::Read,
        Interaction::Vread { .. } => AuditInteraction::Vread,
        Interaction::Update { .. } | Interaction::ConditionalUpdate { .. } => {
            AuditInteraction::Update
        }
        Interaction::Patch { .. } | Interaction::ConditionalPatch { .. } => AuditInteraction::Patch,
        Interaction::Delete { .. } | Interaction::ConditionalDelete { .. } => {
            AuditInteraction::Delete
        }
        Interaction::Create { .. } => AuditInteraction::Create,
        Interaction::SearchType { .. } | Interaction::SearchCompartment { .. } => {
            AuditInteraction::SearchType
        }
        Interaction::SearchSystem => AuditInteraction::SearchSystem,
        Interaction::HistoryInstance { .. } => AuditInteraction::HistoryInstance,
        Interaction::HistoryType { .. } => AuditInteraction::HistoryType,
        Interaction::HistorySystem => AuditInteraction::HistorySystem,
        // The body decides batch or transaction; the classification only knows `POST /`.
        Interaction::BatchOrTransaction => AuditInteraction::Batch,
        Interaction::Operation { .. } => AuditInteraction::Operation,
        _ => AuditInteraction::Unclassified,
    }
}

fn patients(ctx: &RequestCtx, body: Option<&[u8]>, bases: &[String]) -> Vec<String> {
    if let Some(verified) = &ctx.returned_patients {
        return verified.iter().cloned().collect();
    }
    let mut out = BTreeSet::new();
    if let Some(id) = ctx
        .fhir
        .as_ref()
        .and_then(|f| named_patient(&f.interaction))
    {
        out.insert(id.to_owned());
    }
    if let Some(value) = body.and_then(|b| serde_json::from_slice::<Value>(b).ok()) {
        let entries = value.get("entry").and_then(Value::as_array);
        let resources: Vec<&Value> = match entries {
            Some(list) if value.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
                list.iter().filter_map(|e| e.get("resource")).collect()
            }
            _ => vec![&value],
        };
        for resource in resources {
            out.extend(fhirgate_fhir::references::patient_links(resource, bases).primary);
        }
    }
    if out.is_empty()
        && let Some(patient) = ctx.principal.as_ref().and_then(|p| p.patient.clone())
    {
        out.insert(patient);
    }
    out.into_iter().collect()
}

/// The Patient a request addresses by path (`/Patient/1`, `/Patient/1/Observation`, ...).
fn named_patient(i: &Interaction) -> Option<&str> {
    match i {
        Interaction::Read { resource_type, id }
        | Interaction::Vread {
            resource_type, id, ..
        }
        | Interaction::Update { resource_type, id }
        | Interaction::Patch { resource_type, id }
        | Interaction::Delete { resource_type, id }
        | Interaction::HistoryInstance { resource_type, id }
        | Interaction::SearchCompartment {
            compartment: resource_type,
            id,
            ..
        }
        | Interaction::Operation {
            level: OperationLevel::Instance(resource_type, id),
            ..
        } if *resource_type == ResourceType::Patient => Some(id),
        _ => None,
    }
}

/// Whether the response body is worth reading for patients: a successful, uncompressed
/// answer the response check did not already account for.
pub(crate) fn wants_body(ctx: &RequestCtx, status: u16, headers: &http::HeaderMap) -> bool {
    let encoded = headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    ctx.returned_patients.is_none()
        && (200..300).contains(&status)
        && !encoded
        && ctx
            .fhir
            .as_ref()
            .is_some_and(|f| f.interaction != Interaction::Capabilities)
}

/// The query string for the record: as received, but never an `access_token`.
pub(crate) fn audit_query(raw: Option<&str>) -> Option<String> {
    let raw = raw?;
    let kept: Vec<&str> = raw
        .split('&')
        .filter(|pair| {
            // Decoded, so `access%5Ftoken` is caught as well.
            let name = url::form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(name, _)| name.into_owned())
                .unwrap_or_default();
            !name.is_empty() && !name.eq_ignore_ascii_case("access_token")
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_never_reach_the_record() {
        assert_eq!(
            audit_query(Some("code=x&access_token=abc&_count=5")).as_deref(),
            Some("code=x&_count=5")
        );
        assert_eq!(audit_query(Some("access_token=abc")), None);
        assert_eq!(
            audit_query(Some("access%5Ftoken=abc&a=1")).as_deref(),
            Some("a=1")
        );
        assert_eq!(audit_query(None), None);
    }
}

//! The property the `bundle` fuzz target checks, shared with the corpus replay test
//! (`crates/fhirgate/tests/faults/fuzz_corpus.rs` includes this file with `#[path]`), so a
//! seed is held to exactly what the fuzzer holds it to.
//!
//! Input: arbitrary bytes, read as JSON. Both directions a Bundle crosses the gateway:
//! - a request body posted to the base (batch/transaction): every entry the gateway
//!   classifies must be as safe to forward as the same request sent on its own, and a
//!   transaction is either refused whole or has no denied entry;
//! - a response under a patient scope: after filtering, nothing of another patient remains
//!   and filtering again removes nothing (the first pass left only visible data).

use fhirgate_fhir::bundle::classify_entries;
use fhirgate_fhir::fuzzing::{check_accepted, classify_input};
use fhirgate_smart::{Decision, Grant, Policy, authorize, authorize_bundle, verify_response};
use serde_json::Value;

/// The gateway's public base in every check.
pub const BASE: &str = "https://gw.example/fhir";
/// The patient in context.
pub const PATIENT: &str = "P1";
const SCOPES: &str =
    "launch/patient patient/Observation.rs patient/Patient.r patient/Encounter.cruds";

/// `Err` describes the first violated property; inputs that are not JSON pass.
pub fn check_bundle_bytes(data: &[u8]) -> Result<(), String> {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return Ok(());
    };
    check_request_bundle(&value)?;
    check_response_bundle(value)
}

fn policy() -> Policy {
    Policy::default().with_bases([BASE])
}

fn check_request_bundle(value: &Value) -> Result<(), String> {
    if let Ok(entries) = classify_entries(value, Some(BASE)) {
        for entry in entries {
            if let Ok(request) = &entry.request {
                check_accepted(request).map_err(|e| format!("batch entry {}: {e}", entry.url))?;
            }
        }
    }
    let grant = Grant::new(SCOPES, Some(PATIENT), None);
    let Ok(plan) = authorize_bundle(&grant, value, &policy()) else {
        return Ok(());
    };
    if plan.transaction && plan.entries.iter().any(|e| !e.decision.is_allowed()) {
        return Err("a transaction was accepted with a denied entry".into());
    }
    let mut forwarded = value.clone();
    plan.rewrite(&mut forwarded);
    if !plan.transaction {
        let allowed = plan
            .entries
            .iter()
            .filter(|e| e.decision.is_allowed())
            .count();
        let kept = forwarded
            .get("entry")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if kept > allowed {
            return Err(format!(
                "batch forwards {kept} entries but only {allowed} were allowed"
            ));
        }
    }
    // The upstream may answer anything; verifying it must not panic.
    let mut answer = value.clone();
    let _ = plan.finish_response(&mut answer);
    Ok(())
}

fn check_response_bundle(mut value: Value) -> Result<(), String> {
    let grant = Grant::new(SCOPES, Some(PATIENT), None);
    let Some(Ok(request)) = classify_input(b"GET\n/Observation\npatient=P1") else {
        return Err("the fixed search does not classify".into());
    };
    let Decision::AllowWithin(within) = authorize(&grant, &request, &policy()) else {
        return Err("the fixed search under a patient scope is not allow-within".into());
    };
    let Ok(first) = verify_response(&within.check, &mut value) else {
        return Ok(());
    };
    if let Some(other) = first.patients.iter().find(|p| p.as_str() != PATIENT) {
        return Err(format!("response passed with data of patient {other:?}"));
    }
    match verify_response(&within.check, &mut value) {
        Ok(second) if second.removed() == 0 => Ok(()),
        Ok(second) => Err(format!(
            "filtering again removed {} more entries",
            second.removed()
        )),
        Err(reason) => Err(format!("filtered response no longer verifies: {reason:?}")),
    }
}

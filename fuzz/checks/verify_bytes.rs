//! The property the `verify_bytes` fuzz target checks, shared with the corpus replay test
//! (`crates/smart/tests/it/corpus.rs` includes this file with `#[path]`), so a seed is held
//! to exactly what the fuzzer holds it to.
//!
//! Input: arbitrary bytes as a 2xx response body, checked under a patient-scoped search, a
//! restricted search and single reads. The byte-level check (`verify_response_bytes`)
//! must give exactly the verdict of its multi-pass reference, and that verdict must agree
//! with the tree check: a body passed unchanged is one the tree check leaves alone, a
//! filtered body is what the tree check makes of it, a refusal is the tree's refusal. A
//! body passed on is always well-formed JSON, even where serde_json cannot build it as a
//! `Value` (a value the check skips may be `1e400` or hold a lone surrogate).

use std::sync::LazyLock;

use fhirgate_fhir::fuzzing::classify_input;
use fhirgate_smart::fuzzing::verify_response_bytes_multi_pass;
use fhirgate_smart::{
    Decision, Grant, Policy, RawVerdict, ResponseCheck, authorize, verify_response,
    verify_response_bytes,
};
use serde::de::IgnoredAny;
use serde_json::Value;

/// The patient in context.
pub const PATIENT: &str = "p1";

/// `(scopes, request as classify_input reads it)`.
const CHECKS: &[(&str, &[u8])] = &[
    (
        "launch/patient patient/*.rs",
        b"GET\n/Observation\npatient=p1",
    ),
    (
        "launch/patient patient/Observation.rs?category=laboratory patient/Patient.rs",
        b"GET\n/Observation\npatient=p1",
    ),
    ("launch/patient patient/*.rs", b"GET\n/Observation/o1"),
    ("launch/patient patient/*.rs", b"GET\n/Patient/p1"),
];

static RESPONSE_CHECKS: LazyLock<Result<Vec<ResponseCheck>, String>> = LazyLock::new(|| {
    let policy = Policy::default().with_bases(["https://gw.example/fhir"]);
    CHECKS
        .iter()
        .map(|(scopes, input)| {
            let grant = Grant::new(scopes, Some(PATIENT), None);
            let Some(Ok(request)) = classify_input(input) else {
                return Err(format!("{input:?} does not classify"));
            };
            match authorize(&grant, &request, &policy) {
                Decision::AllowWithin(within) => Ok(within.check),
                other => Err(format!("{input:?} under {scopes}: {other:?}")),
            }
        })
        .collect()
});

/// `Err` describes the first violated property.
pub fn check_verify_bytes(data: &[u8]) -> Result<(), String> {
    let checks = RESPONSE_CHECKS.as_ref().map_err(Clone::clone)?;
    for check in checks {
        let fast = verify_response_bytes(check, data);
        let reference = verify_response_bytes_multi_pass(check, data);
        if fast != reference {
            return Err(format!("single pass {fast:?} but multi-pass {reference:?}"));
        }
        agrees_with_tree(check, data, fast)?;
    }
    Ok(())
}

fn agrees_with_tree(
    check: &ResponseCheck,
    data: &[u8],
    verdict: Result<RawVerdict, fhirgate_smart::DenyReason>,
) -> Result<(), String> {
    if matches!(verdict, Ok(RawVerdict::NeedsTree)) {
        return Ok(());
    }
    if serde_json::from_slice::<IgnoredAny>(data).is_err() {
        return Err(format!("{verdict:?} for a body that is not JSON"));
    }
    let Ok(mut tree) = serde_json::from_slice::<Value>(data) else {
        // Well-formed, but serde_json builds no `Value` of it: nothing to compare with.
        return Ok(());
    };
    let untouched = tree.clone();
    let tree_verdict = verify_response(check, &mut tree);
    match (verdict, tree_verdict) {
        (Ok(RawVerdict::Unchanged(outcome)), Ok(tree_outcome)) => {
            if outcome != tree_outcome || tree != untouched {
                return Err(format!(
                    "passed unchanged ({outcome:?}) but the tree check gives {tree_outcome:?}"
                ));
            }
        }
        (Ok(RawVerdict::Filtered { body, outcome }), Ok(tree_outcome)) => {
            let spliced: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the filtered body is not JSON: {e}"))?;
            if outcome != tree_outcome || spliced != tree {
                return Err(format!(
                    "filtered to {spliced} ({outcome:?}) but the tree check gives {tree} \
                     ({tree_outcome:?})"
                ));
            }
        }
        (Err(reason), Err(tree_reason)) if reason == tree_reason => {}
        (verdict, tree_verdict) => {
            return Err(format!(
                "byte-level verdict {verdict:?} but tree verdict {tree_verdict:?}"
            ));
        }
    }
    Ok(())
}

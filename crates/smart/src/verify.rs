//! Response verification, the backstop (DESIGN.md §3 step 7): whatever the upstream
//! returns, nothing leaves the gateway that the grant does not cover.
//!
//! A resource is visible when at least one granted scope covers it: the scope names its
//! type (or `*`), has a letter the response needs, its restriction (if any) matches the
//! resource, and — for `patient/` scopes and Patient-compartment types — the resource is
//! anchored to the token's patient and nobody else ([`PatientLinks::belongs_only_to`]).
//! Types outside the compartment are visible to `patient/` scopes that name them.

use std::collections::BTreeSet;
use std::sync::Arc;

use fhirgate_fhir::bundle::append_outcome_entry;
use fhirgate_fhir::references::{PatientLinks, ReferenceTarget, parse_reference, patient_links};
use fhirgate_fhir::{IssueSeverity, IssueType, OperationOutcome, ResourceType};
use serde_json::Value;

use crate::decision::{DenyKind, DenyReason};
use crate::scope::{Permissions, ScopeContext, ScopeSet};

/// How deep Bundles nested in Bundles are verified; deeper ones are refused.
const MAX_BUNDLE_DEPTH: usize = 4;

/// What a response must satisfy. Cheap to clone (shared parts are `Arc`s).
#[derive(Debug, Clone)]
pub struct ResponseCheck {
    pub(crate) scopes: Arc<ScopeSet>,
    pub(crate) patient: Option<Arc<str>>,
    pub(crate) bases: Arc<[String]>,
    pub(crate) hide_existence: bool,
    /// Letters that make a resource visible in this response (read/search for reads;
    /// the write letter for the echo of a create or update).
    pub(crate) letters: Permissions,
}

/// What [`filter_searchset`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterOutcome {
    /// Entries with `search.mode = match` (or no mode) that were removed. After patient
    /// injection this should be 0; a non-zero count means the upstream ignored the
    /// constraint, and the gateway should log it and raise a metric.
    pub removed_match: usize,
    /// `include` entries (from `_include`/`_revinclude`/`$everything`) removed.
    pub removed_included: usize,
    /// Patients whose data remains in the response (for the audit record).
    pub patients: BTreeSet<String>,
}

impl FilterOutcome {
    pub fn removed(&self) -> usize {
        self.removed_match + self.removed_included
    }
}

enum Verdict {
    Visible(Option<PatientLinks>),
    Hidden(DenyReason),
}

impl ResponseCheck {
    /// Whether a granted scope carries a v2 restriction, so that the elements behind it
    /// must be read from each resource.
    pub(crate) fn reads_restrictions(&self) -> bool {
        self.scopes
            .resources
            .iter()
            .any(|s| s.restriction.is_some())
    }

    /// The patient the check anchors `patient/` scopes to.
    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    fn verdict(&self, resource: &Value) -> Verdict {
        let Some(rt) = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(ResourceType::from_name)
        else {
            return Verdict::Hidden(DenyReason::new(
                DenyKind::Forbidden,
                "response contains a resource without an R4 resourceType",
            ));
        };
        if rt == ResourceType::OperationOutcome {
            return Verdict::Visible(None);
        }
        let links = patient_links(resource, &self.bases);
        let mut type_granted = false;
        let mut other_patient = false;
        for scope in &self.scopes.resources {
            if !scope.resource.matches(rt) || !scope.permissions.intersects(self.letters) {
                continue;
            }
            type_granted = true;
            if scope.context == ScopeContext::Patient && links.member {
                let ours = self
                    .patient
                    .as_deref()
                    .is_some_and(|p| links.belongs_only_to(p));
                if !ours {
                    other_patient = true;
                    continue;
                }
            }
            if scope.context == ScopeContext::Patient
                && rt == ResourceType::Binary
                && !self.binary_may_be_ours(resource)
            {
                other_patient = true;
                continue;
            }
            if scope
                .restriction
                .as_ref()
                .is_some_and(|r| !r.matches_resource(resource))
            {
                continue;
            }
            return Verdict::Visible(links.member.then_some(links));
        }
        let reason = if other_patient {
            DenyReason::other_patient(
                self.hide_existence,
                format!("the {rt} is not in the compartment of the token's patient"),
            )
        } else if type_granted {
            DenyReason::new(
                DenyKind::InsufficientScope,
                format!("scope restrictions do not allow this {rt}"),
            )
        } else {
            DenyReason::new(
                DenyKind::InsufficientScope,
                format!("scope does not allow read on {rt}"),
            )
        };
        Verdict::Hidden(reason)
    }
}

impl ResponseCheck {
    /// Binary sits outside the compartment, but its `securityContext` may name the patient
    /// it belongs to: a Binary whose context is another (or a foreign) Patient is hidden.
    fn binary_may_be_ours(&self, binary: &Value) -> bool {
        let Some(reference) = binary
            .get("securityContext")
            .and_then(|c| c.get("reference"))
            .and_then(Value::as_str)
        else {
            return true;
        };
        match parse_reference(reference, &self.bases) {
            ReferenceTarget::Local {
                resource_type: ResourceType::Patient,
                id,
                ..
            } => self.patient.as_deref() == Some(id.as_str()),
            ReferenceTarget::Foreign {
                resource_type: Some(ResourceType::Patient),
                ..
            } => false,
            _ => true,
        }
    }
}

/// Verify a single returned resource (read, vread, create/update echo, a document
/// Bundle). A Bundle is verified entry by entry; any hidden entry refuses the whole.
/// Returns the patients whose data it holds.
pub fn verify_resource(
    check: &ResponseCheck,
    resource: &Value,
) -> Result<BTreeSet<String>, DenyReason> {
    let mut patients = BTreeSet::new();
    verify_into(check, resource, 0, &mut patients)?;
    Ok(patients)
}

fn verify_into(
    check: &ResponseCheck,
    resource: &Value,
    depth: usize,
    patients: &mut BTreeSet<String>,
) -> Result<(), DenyReason> {
    match check.verdict(resource) {
        Verdict::Hidden(reason) => return Err(reason),
        Verdict::Visible(links) => patients.extend(links.into_iter().flat_map(|l| l.primary)),
    }
    if resource.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        if depth >= MAX_BUNDLE_DEPTH {
            return Err(DenyReason::new(
                DenyKind::Forbidden,
                "Bundles nested too deeply to verify",
            ));
        }
        for inner in entries(resource).filter_map(|e| e.get("resource")) {
            verify_into(check, inner, depth + 1, patients)?;
        }
    }
    Ok(())
}

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Remove every entry of a searchset or history Bundle the grant does not cover.
///
/// Removed `include` entries are expected (`_include`, `_revinclude`, `$everything`).
/// Removed `match` entries should not happen after patient injection; they are removed
/// just the same, counted in [`FilterOutcome::removed_match`], and `Bundle.total` is
/// dropped because it would count them. Whenever anything was removed, an
/// OperationOutcome entry (`search.mode = outcome`, code `suppressed`) is appended to a
/// searchset. Outcome entries and entries without a resource in a history (deletions)
/// are kept; resource-less entries of other Bundles are removed. A body that is not a
/// Bundle is checked with [`verify_resource`].
pub fn filter_searchset(
    check: &ResponseCheck,
    bundle: &mut Value,
) -> Result<FilterOutcome, DenyReason> {
    let mut outcome = FilterOutcome::default();
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        outcome.patients = verify_resource(check, bundle)?;
        return Ok(outcome);
    }
    // History entries without a resource record deletions; in any other Bundle an entry
    // without a resource carries nothing the check can vouch for (its fullUrl included).
    let history = bundle.get("type").and_then(Value::as_str) == Some("history");
    let Some(list) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
        return Ok(outcome);
    };
    list.retain(|entry| {
        let mode = entry
            .get("search")
            .and_then(|s| s.get("mode"))
            .and_then(Value::as_str);
        let Some(resource) = entry.get("resource") else {
            if !history {
                outcome.removed_match += 1;
            }
            return history;
        };
        if mode == Some("outcome") {
            return resource.get("resourceType").and_then(Value::as_str)
                == Some("OperationOutcome");
        }
        match verify_resource(check, resource) {
            Ok(patients) => {
                outcome.patients.extend(patients);
                true
            }
            Err(_) => {
                if mode == Some("include") {
                    outcome.removed_included += 1;
                } else {
                    outcome.removed_match += 1;
                }
                false
            }
        }
    });
    if outcome.removed_match > 0
        && let Some(obj) = bundle.as_object_mut()
    {
        obj.remove("total");
    }
    if outcome.removed() > 0 {
        let oo = suppressed_outcome(outcome.removed());
        // Only searchsets carry outcome entries; a history Bundle just loses the entries.
        let _ = append_outcome_entry(bundle, &oo);
    }
    Ok(outcome)
}

/// The OperationOutcome a searchset gets when entries were removed.
pub(crate) fn suppressed_outcome(removed: usize) -> OperationOutcome {
    OperationOutcome::single(
        IssueSeverity::Warning,
        IssueType::Suppressed,
        format!("{removed} entries were removed because the access token does not allow them"),
    )
}

/// Verify any successful (2xx) JSON response body under a check: Bundles of type
/// `searchset` or `history` are filtered, anything else must be visible as a whole.
pub fn verify_response(
    check: &ResponseCheck,
    body: &mut Value,
) -> Result<FilterOutcome, DenyReason> {
    let is_list = body.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && matches!(
            body.get("type").and_then(Value::as_str),
            Some("searchset" | "history")
        );
    if is_list {
        filter_searchset(check, body)
    } else {
        Ok(FilterOutcome {
            patients: verify_resource(check, body)?,
            ..FilterOutcome::default()
        })
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;

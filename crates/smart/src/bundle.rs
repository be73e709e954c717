//! Batch and transaction Bundles: every entry is classified and decided on its own.
//!
//! A `batch` answers each entry: denied entries are taken out of the Bundle sent upstream
//! and put back into the `batch-response` as 403/404/400 entries at their original
//! position. A `transaction` is all-or-nothing: one denied entry refuses the whole Bundle.
//! Inside a Bundle there is no round trip for `fetch_current`, so updates, patches and
//! deletes by id that would need one are refused (conditional forms carry the patient).

use fhirgate_fhir::bundle::{BundleType, bundle_type, classify_entries};
use fhirgate_fhir::{FhirRequest, SearchParams};
use serde_json::{Value, json};

use crate::authorize::authorize;
use crate::body::RequestBodyCheck;
use crate::decision::{Decision, DenyKind, DenyReason, Grant, Mutation, Policy};
use crate::verify::{FilterOutcome, verify_response};

/// The decision for one entry.
#[derive(Debug, Clone)]
pub struct EntryPlan {
    /// Position in the original `Bundle.entry`.
    pub index: usize,
    pub request: Option<FhirRequest>,
    pub decision: Decision,
}

/// The decisions for a whole batch or transaction.
#[derive(Debug, Clone)]
pub struct BundlePlan {
    pub transaction: bool,
    pub entries: Vec<EntryPlan>,
}

/// Decide every entry of a batch/transaction body. `Err` refuses the whole request: the
/// body is not a batch or transaction, or a transaction has a denied entry.
pub fn authorize_bundle(
    grant: &Grant,
    bundle: &Value,
    policy: &Policy,
) -> Result<BundlePlan, DenyReason> {
    let invalid = |e: &dyn std::fmt::Display| DenyReason::new(DenyKind::Invalid, e.to_string());
    let transaction = match bundle_type(bundle).map_err(|e| invalid(&e))? {
        BundleType::Transaction => true,
        BundleType::Batch => false,
        other => {
            return Err(DenyReason::new(
                DenyKind::Invalid,
                format!(
                    "a Bundle of type '{}' cannot be posted to the base",
                    other.as_str()
                ),
            ));
        }
    };
    let base = policy.fhir_bases.first().map(String::as_str);
    let classified = classify_entries(bundle, base).map_err(|e| invalid(&e))?;
    let raw_entries = bundle.get("entry").and_then(Value::as_array);
    let mut entries = Vec::with_capacity(classified.len());
    for entry in classified {
        let resource = raw_entries
            .and_then(|e| e.get(entry.index))
            .and_then(|e| e.get("resource"));
        let (request, decision) = match entry.request {
            Err(e) => (None, Decision::Deny(invalid(&e))),
            Ok(req) => {
                let d = entry_decision(grant, &req, policy, resource);
                (Some(req), d)
            }
        };
        if transaction && let Decision::Deny(reason) = &decision {
            return Err(DenyReason::new(
                reason.kind,
                format!("Bundle.entry[{}]: {}", entry.index, reason.diagnostic),
            ));
        }
        entries.push(EntryPlan {
            index: entry.index,
            request,
            decision,
        });
    }
    Ok(BundlePlan {
        transaction,
        entries,
    })
}

fn entry_decision(
    grant: &Grant,
    req: &FhirRequest,
    policy: &Policy,
    resource: Option<&Value>,
) -> Decision {
    let decision = authorize(grant, req, policy);
    let Decision::AllowWithin(within) = &decision else {
        return decision;
    };
    if within.fetch_current {
        return Decision::Deny(DenyReason::new(
            DenyKind::NotSupported,
            "inside a Bundle, update, patch and delete by id are not supported for this grant; \
             send them on their own or as conditional requests",
        ));
    }
    match &within.body {
        None => decision,
        Some(RequestBodyCheck::Resource { .. }) => {
            let empty = Value::Null;
            match within.check_body(resource.unwrap_or(&empty), None) {
                Ok(()) => decision,
                Err(reason) => Decision::Deny(reason),
            }
        }
        Some(_) => Decision::Deny(DenyReason::new(
            DenyKind::NotSupported,
            "this kind of entry is not supported inside a Bundle for this grant",
        )),
    }
}

impl BundlePlan {
    /// Rewrite the Bundle to forward: mutations applied to entry URLs and `ifNoneExist`;
    /// for a batch, denied entries removed.
    pub fn rewrite(&self, bundle: &mut Value) {
        let Some(list) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
            return;
        };
        for plan in &self.entries {
            let (Decision::AllowWithin(within), Some(req)) = (&plan.decision, &plan.request) else {
                continue;
            };
            if within.mutations.is_empty() {
                continue;
            }
            let Some(request) = list
                .get_mut(plan.index)
                .and_then(|e| e.get_mut("request"))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let mut params: SearchParams = req.params.clone();
            for m in &within.mutations {
                match m {
                    Mutation::AddParam { .. } | Mutation::SetParam { .. } => {
                        m.apply_to(&mut params)
                    }
                    Mutation::SetIfNoneExist(q) => {
                        request.insert("ifNoneExist".into(), Value::from(q.as_str()));
                    }
                }
            }
            let path = req.path.trim_start_matches('/');
            let url = if params.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", params.to_query_string())
            };
            request.insert("url".into(), Value::from(url));
        }
        if !self.transaction {
            let mut i = 0usize;
            list.retain(|_| {
                let keep = self
                    .entries
                    .iter()
                    .find(|p| p.index == i)
                    .is_some_and(|p| p.decision.is_allowed());
                i += 1;
                keep
            });
        }
    }

    /// Verify the upstream's batch-/transaction-response: each entry's resource is checked
    /// with its entry's response check (searchsets filtered), refused ones are replaced by
    /// an error entry, and for a batch the denied entries are put back in place.
    pub fn finish_response(&self, response: &mut Value) -> FilterOutcome {
        let mut total = FilterOutcome::default();
        let Some(list) = response.get_mut("entry").and_then(Value::as_array_mut) else {
            return total;
        };
        let forwarded = self.entries.iter().filter(|p| p.decision.is_allowed());
        for (entry, plan) in list.iter_mut().zip(forwarded) {
            let Decision::AllowWithin(within) = &plan.decision else {
                continue;
            };
            let Some(resource) = entry.get_mut("resource") else {
                continue;
            };
            match verify_response(&within.check, resource) {
                Ok(o) => {
                    total.removed_match += o.removed_match;
                    total.removed_included += o.removed_included;
                    total.patients.extend(o.patients);
                }
                Err(reason) => *entry = error_entry(&reason),
            }
        }
        if !self.transaction {
            for plan in &self.entries {
                if let Decision::Deny(reason) = &plan.decision {
                    let at = plan.index.min(list.len());
                    list.insert(at, error_entry(reason));
                }
            }
        }
        total
    }
}

fn error_entry(reason: &DenyReason) -> Value {
    let status = match reason.http_status() {
        404 => "404 Not Found",
        400 => "400 Bad Request",
        _ => "403 Forbidden",
    };
    json!({ "response": { "status": status, "outcome": reason.to_outcome().to_json() } })
}

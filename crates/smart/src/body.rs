//! Request-side checks for writes: the body of a create, update or patch must leave the
//! resource inside the grant (the patient's compartment, the granular restriction), and an
//! update, patch or delete by id must not touch a resource outside it.

use fhirgate_fhir::ResourceType;
use fhirgate_fhir::compartment::patient_compartment;
use serde_json::Value;

use crate::decision::{AllowWithin, DenyKind, DenyReason};
use crate::restriction::element_for;
use crate::verify::verify_resource;

/// What the gateway must check in the request body before forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBodyCheck {
    /// The body is a resource of this type (with this id for an update) that the grant
    /// covers (create, update, conditional update).
    Resource {
        resource_type: ResourceType,
        id: Option<String>,
    },
    /// The body is a JSON Patch; applied to the current resource (fetched because
    /// `fetch_current` is set) the result must pass as [`RequestBodyCheck::Resource`].
    JsonPatch {
        resource_type: ResourceType,
        id: String,
    },
    /// A conditional JSON Patch: there is no single current resource, so the patch must
    /// not touch the elements that decide compartment or restriction membership.
    ConditionalJsonPatch { resource_type: ResourceType },
    /// A batch or transaction: authorize it with [`crate::authorize_bundle`].
    Bundle,
}

impl AllowWithin {
    /// Check the resource currently stored at the request's path (`fetch_current`). `None`
    /// when the upstream has none (404/410): nothing to protect.
    pub fn check_current(&self, current: Option<&Value>) -> Result<(), DenyReason> {
        match current {
            None => Ok(()),
            Some(resource) => verify_resource(&self.check, resource).map(|_| ()),
        }
    }

    /// Check a request body against [`AllowWithin::body`]. `current` is the resource
    /// fetched for `fetch_current` (needed for [`RequestBodyCheck::JsonPatch`]).
    pub fn check_body(&self, body: &Value, current: Option<&Value>) -> Result<(), DenyReason> {
        match &self.body {
            None => Ok(()),
            Some(RequestBodyCheck::Resource { resource_type, id }) => {
                self.check_resource(*resource_type, id.as_deref(), body)
            }
            Some(RequestBodyCheck::JsonPatch { resource_type, id }) => {
                let ops = as_patch(body)?;
                // The patch applies to what exists; with nothing stored the upstream
                // answers 404 and there is nothing to move.
                let Some(current) = current else {
                    return Ok(());
                };
                let mut patched = current.clone();
                // `patch_unsafe`: `patch` panics when it cannot undo a failed patch (a move
                // into what it just moved); the copy is thrown away on error anyway.
                json_patch::patch_unsafe(&mut patched, &ops).map_err(|e| {
                    DenyReason::new(DenyKind::Invalid, format!("JSON Patch does not apply: {e}"))
                })?;
                self.check_resource(*resource_type, Some(id), &patched)
            }
            Some(RequestBodyCheck::ConditionalJsonPatch { resource_type }) => {
                let ops = as_patch(body)?;
                let guarded = guarded_elements(*resource_type, self);
                for op in ops.iter() {
                    let paths = op_paths(op);
                    for path in paths {
                        let top = path.trim_start_matches('/').split('/').next().unwrap_or("");
                        if top.is_empty() || guarded.contains(&top) {
                            return Err(DenyReason::new(
                                DenyKind::NotSupported,
                                format!(
                                    "a conditional patch may not change '{top}'; patch the {resource_type} by id instead"
                                ),
                            ));
                        }
                    }
                }
                Ok(())
            }
            Some(RequestBodyCheck::Bundle) => Err(DenyReason::new(
                DenyKind::Invalid,
                "batch and transaction bodies are checked with authorize_bundle",
            )),
        }
    }

    fn check_resource(
        &self,
        resource_type: ResourceType,
        id: Option<&str>,
        body: &Value,
    ) -> Result<(), DenyReason> {
        if body.get("resourceType").and_then(Value::as_str) != Some(resource_type.as_str()) {
            return Err(DenyReason::new(
                DenyKind::Invalid,
                format!("body must be a {resource_type} resource"),
            ));
        }
        if let Some(id) = id
            && body.get("id").and_then(Value::as_str) != Some(id)
        {
            return Err(DenyReason::new(
                DenyKind::Invalid,
                "resource id in the body must match the id in the URL",
            ));
        }
        verify_resource(&self.check, body).map(|_| ()).map_err(|e| {
            if e.kind == DenyKind::Hidden {
                // Hiding existence is about stored data; a body the client wrote is theirs.
                DenyReason::new(
                    DenyKind::OtherPatient,
                    format!("the {resource_type} would not be in the token patient's compartment"),
                )
            } else {
                e
            }
        })
    }
}

fn as_patch(body: &Value) -> Result<json_patch::Patch, DenyReason> {
    if !body.is_array() {
        return Err(DenyReason::new(
            DenyKind::NotSupported,
            "only JSON Patch (application/json-patch+json) can be checked; FHIRPath Patch is not supported here",
        ));
    }
    serde_json::from_value(body.clone())
        .map_err(|e| DenyReason::new(DenyKind::Invalid, format!("malformed JSON Patch: {e}")))
}

fn op_paths(op: &json_patch::PatchOperation) -> Vec<String> {
    use json_patch::PatchOperation as Op;
    match op {
        Op::Add(o) => vec![o.path.to_string()],
        Op::Remove(o) => vec![o.path.to_string()],
        Op::Replace(o) => vec![o.path.to_string()],
        Op::Move(o) => vec![o.path.to_string(), o.from.to_string()],
        Op::Copy(o) => vec![o.path.to_string()],
        Op::Test(_) => Vec::new(),
    }
}

/// Top-level elements that decide membership: compartment anchors, restriction elements,
/// and the identity fields.
fn guarded_elements(rt: ResourceType, allow: &AllowWithin) -> Vec<&'static str> {
    let mut out = vec!["resourceType", "id", "contained"];
    if let Some(m) = patient_compartment(rt) {
        for path in m.all_paths() {
            if let Some(top) = path.split('.').next() {
                out.push(top);
            }
        }
    }
    for scope in &allow.check.scopes.resources {
        if let Some(r) = &scope.restriction {
            out.extend(r.params.iter().filter_map(|(n, _)| element_for(n)));
        }
    }
    out
}

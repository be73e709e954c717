//! Reference extraction from raw FHIR JSON, without a FHIR model.
//!
//! The response check and the write check need one question answered for any resource
//! the upstream returns or a client sends: *whose data is this?* [`patient_links`] walks
//! the Patient-compartment element paths of [`crate::compartment`] and parses each
//! `Reference.reference` it finds. Only references that point at a Patient on *our*
//! server count as links; anything that cannot be resolved to one of our Patients (an
//! absolute URL under a foreign base, a contained patient, a logical identifier-only
//! reference, a `urn:uuid:`) is reported as unresolved, so callers can fail closed.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::ResourceType;
use crate::compartment::patient_compartment;
use crate::resource_type::is_valid_id;

/// How deep [`collect_references`] descends into a JSON document. FHIR resources are far
/// shallower; the cap keeps hostile input from costing stack or time.
pub const MAX_DEPTH: usize = 64;

/// Where a `Reference.reference` (or a reference-typed search value) points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceTarget {
    /// A resource on our server: `Patient/x`, `Patient/x/_history/2`, or an absolute URL
    /// under one of our FHIR bases.
    Local {
        resource_type: ResourceType,
        id: String,
        version: Option<String>,
    },
    /// `#id`: a resource contained in the referencing resource.
    Contained(String),
    /// `urn:uuid:` / `urn:oid:` (bundle-local identities).
    Urn(String),
    /// An absolute URL that is not under our bases; `resource_type` if its tail looks
    /// like `Type/id`.
    Foreign {
        url: String,
        resource_type: Option<ResourceType>,
    },
    /// Anything else (empty, malformed id, unknown type, query strings, ...).
    Invalid,
}

impl ReferenceTarget {
    /// The id if this is a local reference to a resource of `resource_type`.
    pub fn local_id(&self, resource_type: ResourceType) -> Option<&str> {
        match self {
            ReferenceTarget::Local {
                resource_type: rt,
                id,
                ..
            } if *rt == resource_type => Some(id),
            _ => None,
        }
    }
}

/// Parse a `Reference.reference` value. `bases` are the absolute FHIR base URLs that
/// count as this server (public base, and upstream base if bodies are not rewritten).
pub fn parse_reference<S: AsRef<str>>(reference: &str, bases: &[S]) -> ReferenceTarget {
    if let Some(id) = reference.strip_prefix('#') {
        return ReferenceTarget::Contained(id.to_owned());
    }
    if reference.starts_with("urn:") {
        return ReferenceTarget::Urn(reference.to_owned());
    }
    if has_scheme_separator(reference) {
        for base in bases {
            let base = base.as_ref().trim_end_matches('/');
            if base.is_empty() {
                continue;
            }
            if let Some(rest) = reference
                .strip_prefix(base)
                .and_then(|r| r.strip_prefix('/'))
            {
                return parse_relative(rest);
            }
        }
        let tail_type = foreign_type(reference);
        return ReferenceTarget::Foreign {
            url: reference.to_owned(),
            resource_type: tail_type,
        };
    }
    parse_relative(reference)
}

/// Parse a reference-typed search value such as `patient=123`, `subject=Patient/123` or
/// an absolute URL; a bare id is taken as `bare_type` when given.
pub fn parse_search_reference<S: AsRef<str>>(
    value: &str,
    bare_type: Option<ResourceType>,
    bases: &[S],
) -> ReferenceTarget {
    if !value.contains('/') && !value.starts_with('#') && !value.starts_with("urn:") {
        return match bare_type {
            Some(resource_type) if is_valid_id(value) => ReferenceTarget::Local {
                resource_type,
                id: value.to_owned(),
                version: None,
            },
            _ => ReferenceTarget::Invalid,
        };
    }
    parse_reference(value, bases)
}

/// `reference.contains("://")`, without the substring search's set-up: the response check
/// asks this of every reference in every resource, and they are short.
fn has_scheme_separator(reference: &str) -> bool {
    reference
        .as_bytes()
        .windows(3)
        .any(|w| matches!(w, [b':', b'/', b'/']))
}

/// `s.split_once(byte)` for an ASCII `byte`. A `char` pattern sets up a memchr search,
/// which costs more than the short references and paths the response check splits for
/// every resource take to walk.
fn split_at_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == byte)?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// `Type/id` or `Type/id/_history/version`.
fn parse_relative(reference: &str) -> ReferenceTarget {
    let Some((rt, rest)) = split_at_byte(reference, b'/') else {
        return ReferenceTarget::Invalid;
    };
    let (id, version) = match split_at_byte(rest, b'/') {
        None => (rest, None),
        Some((id, tail)) => match split_at_byte(tail, b'/') {
            Some(("_history", v)) if is_valid_id(v) => (id, Some(v.to_owned())),
            _ => return ReferenceTarget::Invalid,
        },
    };
    match ResourceType::from_name(rt) {
        Some(resource_type) if is_valid_id(id) => ReferenceTarget::Local {
            resource_type,
            id: id.to_owned(),
            version,
        },
        _ => ReferenceTarget::Invalid,
    }
}

fn foreign_type(url: &str) -> Option<ResourceType> {
    let segments: Vec<&str> = url.trim_end_matches('/').split('/').collect();
    // `.../Type/id` or `.../Type/id/_history/v`
    let n = segments.len();
    let type_index = if n >= 4 && segments.get(n - 2) == Some(&"_history") {
        n.checked_sub(4)?
    } else {
        n.checked_sub(2)?
    };
    segments
        .get(type_index)
        .and_then(|s| ResourceType::from_name(s))
}

/// Values found by walking a dotted element path (`participant.actor`) from `value`,
/// descending through arrays at every step.
pub fn elements_at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut found = Vec::new();
    for_each_element_at(value, path, &mut |element| found.push(element));
    found
}

/// [`elements_at`] without collecting, in the same order: the response check walks a few
/// paths of every resource in a response, and the vectors were a good part of its cost.
/// Recurses once per segment of `path` that `value` has, so never deeper than `value`
/// nests.
fn for_each_element_at<'a>(value: &'a Value, path: &str, f: &mut impl FnMut(&'a Value)) {
    let (segment, rest) = match split_at_byte(path, b'.') {
        Some((segment, rest)) => (segment, Some(rest)),
        None => (path, None),
    };
    let found = match value.get(segment) {
        Some(Value::Array(items)) => items.as_slice(),
        Some(other) => std::slice::from_ref(other),
        None => &[],
    };
    for element in found {
        match rest {
            Some(rest) => for_each_element_at(element, rest, f),
            None => f(element),
        }
    }
}

/// Whose data a resource is, as far as the Patient compartment says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientLinks {
    /// The resource's `resourceType`, if it is an R4 type.
    pub resource_type: Option<ResourceType>,
    /// Whether that type is a member of the Patient compartment.
    pub member: bool,
    /// Our Patients the resource is anchored to (the Patient's own id; `subject`,
    /// `patient`, `beneficiary`, ... for the other members).
    pub primary: BTreeSet<String>,
    /// Our Patients named in secondary compartment elements (performer, author, ...,
    /// and `Patient.link`).
    pub secondary: BTreeSet<String>,
    /// Primary references that look like a Patient but cannot be resolved to one of ours
    /// (foreign base, contained, urn, identifier-only). A check must not treat such a
    /// resource as belonging to a known patient.
    pub unresolved_primary: usize,
}

impl PatientLinks {
    /// True when the resource belongs to exactly this patient and nobody else: the
    /// condition for returning a compartment resource under a `patient/` scope.
    pub fn belongs_only_to(&self, patient: &str) -> bool {
        self.member
            && self.unresolved_primary == 0
            && self.primary.len() == 1
            && self.primary.contains(patient)
    }
}

/// Find the Patients a resource belongs to through the compartment paths. `bases` as in
/// [`parse_reference`].
pub fn patient_links<S: AsRef<str>>(resource: &Value, bases: &[S]) -> PatientLinks {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(ResourceType::from_name);
    let mut links = PatientLinks {
        resource_type,
        ..PatientLinks::default()
    };
    let Some(membership) = resource_type.and_then(patient_compartment) else {
        return links;
    };
    links.member = true;
    if resource_type == Some(ResourceType::Patient) {
        match resource.get("id").and_then(Value::as_str) {
            Some(id) if is_valid_id(id) => {
                links.primary.insert(id.to_owned());
            }
            _ => links.unresolved_primary += 1,
        }
    }
    // Parameters share paths (Observation `subject` and `patient`), so walk each path once.
    let paths = membership
        .anchor_paths
        .iter()
        .map(|p| (*p, true))
        .chain(membership.other_paths.iter().map(|p| (*p, false)));
    for (path, primary) in paths {
        for_each_element_at(resource, path, &mut |element| {
            let link = patient_of(element, resource, bases);
            match link {
                Link::Patient(id) if primary => {
                    links.primary.insert(id);
                }
                Link::Patient(id) => {
                    links.secondary.insert(id);
                }
                Link::Unresolved if primary => links.unresolved_primary += 1,
                Link::Unresolved | Link::NotPatient => {}
            }
        });
    }
    links
}

enum Link {
    Patient(String),
    NotPatient,
    Unresolved,
}

fn patient_of<S: AsRef<str>>(reference: &Value, container: &Value, bases: &[S]) -> Link {
    let declared_patient = reference.get("type").and_then(Value::as_str) == Some("Patient");
    let Some(literal) = reference.get("reference").and_then(Value::as_str) else {
        return if declared_patient {
            Link::Unresolved
        } else {
            Link::NotPatient
        };
    };
    match parse_reference(literal, bases) {
        ReferenceTarget::Local {
            resource_type: ResourceType::Patient,
            id,
            ..
        } => Link::Patient(id),
        ReferenceTarget::Local { .. } => Link::NotPatient,
        ReferenceTarget::Foreign {
            resource_type: Some(rt),
            ..
        } if rt != ResourceType::Patient && !declared_patient => Link::NotPatient,
        ReferenceTarget::Contained(id) => {
            let contained_type = container
                .get("contained")
                .and_then(Value::as_array)
                .and_then(|items| {
                    items
                        .iter()
                        .find(|c| c.get("id").and_then(Value::as_str) == Some(id.as_str()))
                })
                .and_then(|c| c.get("resourceType"))
                .and_then(Value::as_str);
            if contained_type == Some("Patient") || declared_patient {
                Link::Unresolved
            } else {
                Link::NotPatient
            }
        }
        // Foreign patients, urn:uuid (not yet created) and malformed references can not
        // be shown to be ours.
        _ => Link::Unresolved,
    }
}

/// Every `reference` string in a document, including inside `contained` resources,
/// descending at most [`MAX_DEPTH`] levels.
pub fn collect_references(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(value, 0, &mut out);
    out
}

fn collect(value: &Value, depth: usize, out: &mut Vec<String>) {
    if depth >= MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("reference", Value::String(s)) => out.push(s.clone()),
                    _ => collect(v, depth + 1, out),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect(v, depth + 1, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "references_tests.rs"]
mod tests;

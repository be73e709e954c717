//! Search-side rules: what a search may carry under a `patient/` scope, how it is confined
//! to the patient, and how granular restrictions are carried or added.

use fhirgate_fhir::compartment::patient_compartment;
use fhirgate_fhir::references::{ReferenceTarget, parse_reference, parse_search_reference};
use fhirgate_fhir::{ResourceType, SearchParams};

use crate::decision::{DenyKind, DenyReason, Mutation, Policy};
use crate::restriction::{Restriction, search_value_within};

/// Parameters that select across resources in ways the gateway cannot see from the
/// request: refused under `patient/` scopes (DESIGN.md "Decided behaviours").
const UNPROVABLE: &[&str] = &["_filter", "_query", "_contained", "_containedType", "_list"];

/// Refuse chains, reverse chains and free-form query parameters.
pub(crate) fn refuse_unprovable(params: &SearchParams) -> Result<(), DenyReason> {
    for p in params {
        if p.name == "_has" {
            return Err(DenyReason::new(
                DenyKind::NotSupported,
                "_has (reverse chaining) is not supported under patient/ scopes",
            ));
        }
        if p.chain.is_some() {
            return Err(DenyReason::new(
                DenyKind::NotSupported,
                format!(
                    "chained search parameter '{}' is not supported under patient/ scopes",
                    p.full_name()
                ),
            ));
        }
        if UNPROVABLE.contains(&p.name.as_str()) {
            return Err(DenyReason::new(
                DenyKind::NotSupported,
                format!("{} is not supported under patient/ scopes", p.name),
            ));
        }
    }
    Ok(())
}

fn conflict(name: &str) -> DenyReason {
    DenyReason::new(
        DenyKind::OtherPatient,
        format!("search parameter '{name}' names a patient other than the token's patient"),
    )
}

/// Check that nothing in `params` names another patient and tell whether the search is
/// already confined to `patient`. `rt` is the searched type (`None` for system level).
pub(crate) fn confined_to_patient(
    rt: Option<ResourceType>,
    params: &SearchParams,
    patient: &str,
    policy: &Policy,
) -> Result<bool, DenyReason> {
    let bases = &policy.fhir_bases;
    let membership = rt.and_then(patient_compartment);
    let mut confined = false;
    for p in params {
        if rt == Some(ResourceType::Patient) && p.name == "_id" {
            if p.modifier.is_some() || p.values.iter().any(|v| v != patient) {
                return Err(conflict("_id"));
            }
            confined |= !p.values.is_empty();
            continue;
        }
        // `patient` names a Patient on every type that defines it (Device, ...), members of
        // the compartment or not.
        let typed_patient = p.modifier.as_deref() == Some("Patient") || p.name == "patient";
        let comp_param = membership.and_then(|m| m.param(&p.name));
        if comp_param.is_none() && !typed_patient {
            // Any other parameter: a literal reference to another Patient is a conflict.
            for v in &p.values {
                if v.contains("Patient/") {
                    match parse_reference(v, bases) {
                        ReferenceTarget::Local {
                            resource_type: ResourceType::Patient,
                            id,
                            ..
                        } if id != patient => return Err(conflict(&p.name)),
                        ReferenceTarget::Foreign {
                            resource_type: Some(ResourceType::Patient),
                            ..
                        } => return Err(conflict(&p.name)),
                        _ => {}
                    }
                }
            }
            continue;
        }
        if p.modifier.as_deref().is_some_and(|m| m != "Patient") {
            return Err(DenyReason::new(
                DenyKind::NotSupported,
                format!(
                    "modifier on '{}' is not supported under patient/ scopes",
                    p.full_name()
                ),
            ));
        }
        let primary = comp_param.is_some_and(|c| c.primary);
        let bare =
            (primary || typed_patient || p.name == "patient").then_some(ResourceType::Patient);
        let mut all_ours = !p.values.is_empty();
        for v in &p.values {
            match parse_search_reference(v, bare, bases) {
                ReferenceTarget::Local {
                    resource_type: ResourceType::Patient,
                    id,
                    ..
                } => {
                    if id != patient {
                        return Err(conflict(&p.name));
                    }
                }
                ReferenceTarget::Local { .. } => all_ours = false,
                ReferenceTarget::Foreign { resource_type, .. } => {
                    if matches!(resource_type, None | Some(ResourceType::Patient)) {
                        return Err(conflict(&p.name));
                    }
                    all_ours = false;
                }
                // A secondary parameter's bare id need not be a patient (performer=123).
                ReferenceTarget::Invalid if bare.is_none() => all_ours = false,
                _ => {
                    return Err(DenyReason::new(
                        DenyKind::OtherPatient,
                        format!("cannot tell which patient '{}' names", p.name),
                    ));
                }
            }
        }
        confined |= primary && all_ours;
    }
    Ok(confined)
}

/// The mutation that confines a search on a compartment type to `patient`.
pub(crate) fn patient_mutation(rt: ResourceType, patient: &str) -> Option<Mutation> {
    let m = patient_compartment(rt)?;
    let value = match m.inject_param {
        "patient" | "_id" => patient.to_owned(),
        _ => format!("Patient/{patient}"),
    };
    Some(Mutation::AddParam {
        name: m.inject_param.to_owned(),
        value,
    })
}

fn carries(params: &SearchParams, r: &Restriction) -> bool {
    r.params.iter().all(|(name, value)| {
        params.named(name).any(|p| {
            p.modifier.is_none()
                && p.chain.is_none()
                && !p.values.is_empty()
                && p.values.iter().all(|sv| search_value_within(sv, value))
        })
    })
}

fn code_of(token: &str) -> &str {
    token.split_once('|').map_or(token, |(_, c)| c)
}

/// Granular restrictions on a search: fine if the search carries one of them; otherwise
/// add it, or refuse when the search asks for something the restrictions exclude.
pub(crate) fn granular_search(
    rt: Option<ResourceType>,
    restrictions: Option<&[&Restriction]>,
    params: &SearchParams,
) -> Result<Vec<Mutation>, DenyReason> {
    let Some(rs) = restrictions else {
        return Ok(Vec::new());
    };
    if rs.iter().any(|r| carries(params, r)) {
        return Ok(Vec::new());
    }
    let what = rt.map_or("this search", ResourceType::as_str);
    let granted = rs
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    // A search value whose code no restriction allows can only be asking for excluded data.
    let mut names: Vec<&str> = rs
        .iter()
        .flat_map(|r| r.params.iter().map(|(n, _)| n.as_str()))
        .collect();
    names.dedup();
    for name in names {
        let allowed: Vec<&str> = rs
            .iter()
            .flat_map(|r| r.params.iter())
            .filter(|(n, _)| n == name)
            .map(|(_, v)| code_of(v))
            .collect();
        if allowed.iter().any(|c| c.is_empty()) {
            continue;
        }
        let disjoint = params
            .named(name)
            .any(|p| p.values.iter().all(|sv| !allowed.contains(&code_of(sv))));
        if disjoint {
            return Err(DenyReason::new(
                DenyKind::InsufficientScope,
                format!("scope allows search on {what} only with {granted}"),
            ));
        }
    }
    let first_name = rs
        .first()
        .and_then(|r| r.params.first())
        .map(|(n, _)| n.as_str());
    let single_same = rs
        .iter()
        .all(|r| r.params.len() == 1 && r.params.first().map(|(n, _)| n.as_str()) == first_name);
    match (single_same, first_name, rs) {
        (true, Some(name), _) => {
            let values: Vec<&str> = rs
                .iter()
                .filter_map(|r| r.params.first().map(|(_, v)| v.as_str()))
                .collect();
            Ok(vec![Mutation::AddParam {
                name: name.to_owned(),
                value: values.join(","),
            }])
        }
        (_, _, [only]) => Ok(only
            .params
            .iter()
            .map(|(n, v)| Mutation::AddParam {
                name: n.clone(),
                value: v.clone(),
            })
            .collect()),
        _ => Err(DenyReason::new(
            DenyKind::InsufficientScope,
            format!("scope allows search on {what} only with {granted}; add one to the search"),
        )),
    }
}

/// `_elements` and `_summary` can strip the elements the response check anchors on; the
/// check would then remove every entry. Keep the anchors (and restriction elements) in an
/// `_elements` list, and refuse `_summary=text`, which cannot keep them.
pub(crate) fn keep_anchor_elements(
    rt: Option<ResourceType>,
    params: &SearchParams,
    restrictions: Option<&[&Restriction]>,
) -> Result<Option<Mutation>, DenyReason> {
    if params.values_of("_summary").any(|v| v == "text") {
        return Err(DenyReason::new(
            DenyKind::NotSupported,
            "_summary=text is not supported under patient/ or restricted scopes",
        ));
    }
    if !params.contains("_elements") {
        return Ok(None);
    }
    let mut elements: Vec<String> = params.values_of("_elements").map(str::to_owned).collect();
    let mut needed: Vec<&str> = Vec::new();
    if let Some(m) = rt.and_then(patient_compartment) {
        needed.extend(m.primary_paths().iter().filter_map(|p| p.split('.').next()));
    }
    for r in restrictions.into_iter().flatten() {
        needed.extend(
            r.params
                .iter()
                .filter_map(|(n, _)| crate::restriction::element_for(n)),
        );
    }
    let before = elements.len();
    for n in needed {
        if !elements.iter().any(|e| e == n) {
            elements.push(n.to_owned());
        }
    }
    Ok((elements.len() != before).then(|| Mutation::SetParam {
        name: "_elements".to_owned(),
        value: elements.join(","),
    }))
}

//! The cache key: who may share an answer (the partition) and which request it answers.
//!
//! The partition is the security boundary. An entry is only ever served to a request with
//! the same partition, and the partition is derived after authorization from the verified
//! principal, so what a hit hands out is exactly what that requester would have received
//! from the upstream through phases 6 and 7:
//!
//! * `anonymous`: there is no principal (`auth.mode: disabled`, or `/metadata`). Everyone
//!   without a principal gets the unchecked upstream answer anyway.
//! * `shared`: the answer needed no response check and holds no Patient-compartment data
//!   (the type, the compartment and the search target all lie outside the compartment, and
//!   no `_include`/`_revinclude` could pull compartment resources in).
//! * `grant`: no compartment data either, but phase 7 checks the answer under the grant
//!   (`patient/` or granular scopes). For types outside the compartment that check depends
//!   on the scopes only, never on the patient, so every principal with the same grant
//!   shares the entry; an answer in which the check found any patient's data is not stored
//!   (see [`super::Cache`]), so nothing patient-specific can be shared this way.
//! * `patient`: compartment data, for principals bound to one patient.
//!
//! `grant` and `patient` keys hold the whole grant (issuer, sorted scopes, `fhirUser`)
//! verbatim rather than a hash, so two grants that could filter an answer differently never
//! collide. Anything else (compartment data for a user- or system-level token) is not cached
//! at all.
//!
//! Every component is length-prefixed, so no value can be crafted to read as two.

use std::fmt::Write as _;

use fhirgate_fhir::compartment::is_patient_compartment_type;
use fhirgate_fhir::{FhirRequest, Interaction, ResourceType};
use fhirgate_tokens::Principal;
use http::{HeaderMap, HeaderName, header};

use super::config::CacheInteraction;

/// The forwarded request headers that are part of the key; an upstream `Vary` naming any
/// other header makes the answer uncacheable. The `x-fhirgate-*` identity headers are only
/// present with `authorization.context_headers`, whose upstream may answer per principal:
/// then the key holds who asked.
pub(crate) const KEY_HEADERS: [HeaderName; 7] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    HeaderName::from_static("prefer"),
    HeaderName::from_static("x-fhirgate-sub"),
    HeaderName::from_static("x-fhirgate-client-id"),
    HeaderName::from_static("x-fhirgate-patient"),
    HeaderName::from_static("x-fhirgate-scopes"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Partition {
    Anonymous,
    Shared,
    Grant { grant: String },
    Patient { patient: String, grant: String },
}

impl Partition {
    /// Whether upstream `Cache-Control: private` answers may be kept: only where one
    /// patient's grant sees them.
    pub(crate) fn is_private(&self) -> bool {
        matches!(self, Partition::Patient { .. })
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            Partition::Anonymous => "anonymous",
            Partition::Shared => "shared",
            Partition::Grant { .. } => "grant",
            Partition::Patient { .. } => "patient",
        }
    }
}

/// What kind of cacheable read `interaction` is, and the types its answer is made of (for
/// invalidation). `None` for interactions never cached.
pub(crate) fn cacheable(
    interaction: &Interaction,
) -> Option<(CacheInteraction, Option<ResourceType>, Vec<ResourceType>)> {
    Some(match interaction {
        Interaction::Capabilities => (CacheInteraction::Capabilities, None, Vec::new()),
        Interaction::Read { resource_type, .. } => (
            CacheInteraction::Read,
            Some(*resource_type),
            vec![*resource_type],
        ),
        Interaction::Vread { resource_type, .. } => (
            CacheInteraction::Vread,
            Some(*resource_type),
            vec![*resource_type],
        ),
        Interaction::SearchType { resource_type } => (
            CacheInteraction::Search,
            Some(*resource_type),
            vec![*resource_type],
        ),
        Interaction::SearchCompartment {
            compartment,
            target: Some(target),
            ..
        } => (
            CacheInteraction::Search,
            Some(*target),
            vec![*target, *compartment],
        ),
        _ => return None,
    })
}

/// Whether the answer may hold or depend on resources of types other than the ones it is
/// filed under (`_include`, `_revinclude`, `_has`, chained parameters): then a write to any
/// type drops it.
pub(crate) fn reaches_other_types(fhir: &FhirRequest) -> bool {
    fhir.params.iter().any(|p| {
        matches!(p.name.as_str(), "_include" | "_revinclude" | "_has") || p.chain.is_some()
    })
}

/// The partition this request's answer belongs to, or `None` when it must not be cached.
/// `checked`: phase 7 verifies (and may filter) the answer under this grant.
pub(crate) fn partition(
    principal: Option<&Principal>,
    fhir: &FhirRequest,
    types: &[ResourceType],
    checked: bool,
) -> Option<Partition> {
    let Some(principal) = principal else {
        return Some(Partition::Anonymous);
    };
    let includes = fhir.params.contains("_include") || fhir.params.contains("_revinclude");
    let compartment_data = includes || types.iter().any(|t| is_patient_compartment_type(*t));
    if !compartment_data {
        return Some(if checked {
            Partition::Grant {
                grant: grant_text(principal),
            }
        } else {
            Partition::Shared
        });
    }
    let patient = principal.patient.clone()?;
    Some(Partition::Patient {
        grant: grant_text(principal),
        patient,
    })
}

/// Everything the authorization decision and the response check read from the principal.
fn grant_text(principal: &Principal) -> String {
    let mut scopes: Vec<&str> = principal
        .scopes
        .iter()
        .flat_map(|s| s.split_ascii_whitespace())
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let mut out = String::new();
    push(&mut out, &principal.issuer);
    push(&mut out, &scopes.join(" "));
    push(&mut out, principal.fhir_user.as_deref().unwrap_or(""));
    out
}

/// The full key: partition, method (HEAD shares GET's entries), path, sorted parameters as
/// forwarded (after authorization added its constraints), and the key headers as forwarded.
pub(crate) fn build(partition: &Partition, fhir: &FhirRequest, headers: &HeaderMap) -> String {
    let mut key = String::with_capacity(128);
    push(&mut key, partition.label());
    match partition {
        Partition::Patient { patient, grant } => {
            push(&mut key, patient);
            push(&mut key, grant);
        }
        Partition::Grant { grant } => push(&mut key, grant),
        Partition::Anonymous | Partition::Shared => {}
    }
    push(&mut key, "GET");
    push(&mut key, &fhir.path);
    let mut params: Vec<(&str, &str)> = fhir
        .params
        .iter()
        .map(|p| (p.raw_name.as_str(), p.raw_value.as_str()))
        .collect();
    params.sort_unstable();
    let _ = write!(key, "{}:", params.len());
    for (name, value) in params {
        push(&mut key, name);
        push(&mut key, value);
    }
    for name in &KEY_HEADERS {
        let values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        push(&mut key, &String::from_utf8_lossy(&values.join(&b", "[..])));
    }
    key
}

fn push(out: &mut String, value: &str) {
    let _ = write!(out, "{}:{value}", value.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str) -> FhirRequest {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        fhirgate_fhir::classify(
            &http::Method::GET,
            path,
            Some(query).filter(|q| !q.is_empty()),
            &HeaderMap::new(),
            None,
        )
        .unwrap()
    }

    fn principal(patient: Option<&str>, scope: &str) -> Principal {
        Principal {
            issuer: "https://issuer".into(),
            subject: Some("user-1".into()),
            client_id: Some("app-1".into()),
            scopes: vec![scope.into()],
            patient: patient.map(str::to_owned),
            encounter: None,
            fhir_user: None,
            expires_at: 0,
            token_id: None,
        }
    }

    fn types(fhir: &FhirRequest) -> Vec<ResourceType> {
        cacheable(&fhir.interaction).unwrap().2
    }

    #[test]
    fn partitions_follow_the_compartment_and_the_check() {
        let p1 = principal(Some("P1"), "patient/*.rs");
        let user = principal(None, "user/*.rs");
        let practitioner = request("/Practitioner/1");
        let observation = request("/Observation/1");
        let with_include = request("/Practitioner?_revinclude=Observation:performer");
        let t = types(&practitioner);
        assert_eq!(
            partition(Some(&p1), &practitioner, &t, false),
            Some(Partition::Shared)
        );
        assert_eq!(
            partition(Some(&user), &practitioner, &t, false),
            Some(Partition::Shared)
        );
        // Checked answers outside the compartment are per grant, not per patient.
        let p2 = principal(Some("P2"), "patient/*.rs");
        let p1_grant = partition(Some(&p1), &practitioner, &t, true);
        assert!(matches!(p1_grant, Some(Partition::Grant { .. })));
        assert_eq!(partition(Some(&p2), &practitioner, &t, true), p1_grant);
        let narrow = principal(Some("P1"), "patient/Practitioner.rs");
        assert_ne!(partition(Some(&narrow), &practitioner, &t, true), p1_grant);
        assert!(matches!(
            partition(Some(&user), &practitioner, &t, true),
            Some(Partition::Grant { .. })
        ));
        // Compartment data is per patient, or not cached at all.
        assert!(matches!(
            partition(Some(&p1), &with_include, &types(&with_include), true),
            Some(Partition::Patient { .. })
        ));
        let t = types(&observation);
        assert!(matches!(
            partition(Some(&p1), &observation, &t, false),
            Some(Partition::Patient { .. })
        ));
        assert_eq!(partition(Some(&user), &observation, &t, false), None);
        let t = types(&with_include);
        assert_eq!(partition(Some(&user), &with_include, &t, false), None);
        assert_eq!(
            partition(None, &observation, &types(&observation), false),
            Some(Partition::Anonymous)
        );
    }

    #[test]
    fn keys_separate_patients_grants_and_headers_but_not_parameter_order() {
        let a = request("/Observation?patient=P1&code=x");
        let b = request("/Observation?code=x&patient=P1");
        let t = types(&a);
        let p1 = partition(Some(&principal(Some("P1"), "patient/*.rs")), &a, &t, true).unwrap();
        let p1_narrow = partition(
            Some(&principal(
                Some("P1"),
                "patient/Observation.rs?category=laboratory",
            )),
            &a,
            &t,
            true,
        )
        .unwrap();
        let p2 = partition(Some(&principal(Some("P2"), "patient/*.rs")), &a, &t, true).unwrap();
        let headers = HeaderMap::new();
        let mut json = HeaderMap::new();
        json.insert(header::ACCEPT, "application/fhir+json".parse().unwrap());
        assert_eq!(build(&p1, &a, &headers), build(&p1, &b, &headers));
        assert_ne!(build(&p1, &a, &headers), build(&p2, &a, &headers));
        assert_ne!(build(&p1, &a, &headers), build(&p1_narrow, &a, &headers));
        assert_ne!(build(&p1, &a, &headers), build(&p1, &a, &json));
        // Scope order and duplicates do not matter; the set does.
        let reordered = partition(
            Some(&principal(Some("P1"), "patient/*.rs  patient/*.rs")),
            &a,
            &t,
            true,
        )
        .unwrap();
        assert_eq!(build(&p1, &a, &headers), build(&reordered, &a, &headers));
    }
}

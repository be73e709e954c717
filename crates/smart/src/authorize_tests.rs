//! Table-driven decisions: scopes × request × patient context. Rows come in pairs where it
//! matters: every allow sits next to the deny that differs from it by one thing.

use fhirgate_fhir::{FhirRequest, classify};

use super::*;
use crate::decision::{DenyKind, Mutation};

const T1: &str = "launch/patient patient/*.rs";
const T1V1: &str = "launch/patient patient/*.read";
const OBS: &str = "patient/Observation.rs";
const LAB: &str = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
const LABV: &str =
    "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs";
const PW: &str = "patient/*.cruds";
const USER: &str = "user/*.rs";
const SYS: &str = "system/*.rs";
const P1: Option<&str> = Some("p1");

#[derive(Debug, Clone, Copy)]
enum E {
    /// Plain allow.
    A,
    /// Allow within, with exactly these mutations (`name=value` or `If-None-Exist: q`).
    W(&'static [&'static str]),
    /// Deny with this kind.
    D(DenyKind),
}
use E::*;

const FORBID: E = D(DenyKind::Forbidden);
const SCOPE: E = D(DenyKind::InsufficientScope);
const OTHER: E = D(DenyKind::OtherPatient);
const NS: E = D(DenyKind::NotSupported);
const NONE: E = W(&[]);

type Row = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    E,
);

pub(crate) fn request(
    method: &str,
    url: &str,
    form: Option<&str>,
    ine: Option<&str>,
) -> FhirRequest {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let mut headers = http::HeaderMap::new();
    if let Some(v) = ine {
        headers.insert("if-none-exist", http::HeaderValue::from_str(v).unwrap());
    }
    let method = http::Method::from_bytes(method.as_bytes()).unwrap();
    classify(&method, path, query, &headers, form.map(str::as_bytes))
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn render(m: &Mutation) -> String {
    match m {
        Mutation::AddParam { name, value } => format!("{name}={value}"),
        Mutation::SetParam { name, value } => format!("set {name}={value}"),
        Mutation::SetIfNoneExist(q) => format!("If-None-Exist: {q}"),
    }
}

fn check(rows: &[Row]) -> usize {
    let policy = Policy::default().with_bases(["https://gw.example/fhir"]);
    for (scopes, patient, method, url, expect) in rows {
        let grant = Grant::new(scopes, *patient, None);
        let (url, form) = match url.split_once(" BODY ") {
            Some((u, f)) => (u, Some(f)),
            None => (*url, None),
        };
        let (url, ine) = match url.split_once(" INE ") {
            Some((u, i)) => (u, Some(i)),
            None => (url, None),
        };
        let req = request(method, url, form, ine);
        let got = authorize(&grant, &req, &policy);
        let ctx = format!("[{scopes}] {patient:?} {method} {url}: got {got:?}");
        match (expect, &got) {
            (A, Decision::Allow) => {}
            (W(muts), Decision::AllowWithin(w)) => {
                let rendered: Vec<String> = w.mutations.iter().map(render).collect();
                assert_eq!(rendered, muts.to_vec(), "{ctx}");
            }
            (D(kind), Decision::Deny(reason)) => {
                assert_eq!(reason.kind, *kind, "{ctx}");
                assert!(!reason.diagnostic.contains("p2"), "diagnostic leaks: {ctx}");
            }
            _ => panic!("expected {expect:?}: {ctx}"),
        }
    }
    rows.len()
}

#[test]
fn reads_under_patient_scopes() {
    check(&[
        // F1: Patient read only for the own id.
        (T1, P1, "GET", "/Patient/p1", NONE),
        (T1, P1, "GET", "/Patient/p2", OTHER),
        (T1V1, P1, "GET", "/Patient/p1", NONE),
        (T1V1, P1, "GET", "/Patient/p2", OTHER),
        (T1, P1, "HEAD", "/Patient/p1", NONE),
        (T1, P1, "HEAD", "/Patient/p2", OTHER),
        // Other compartment types: allowed, the response is verified.
        (T1, P1, "GET", "/Observation/o1", NONE),
        (T1, None, "GET", "/Observation/o1", FORBID),
        (T1, P1, "GET", "/Observation/o1/_history/2", NONE),
        (
            "patient/Observation.s",
            P1,
            "GET",
            "/Observation/o1/_history/2",
            SCOPE,
        ),
        (T1, P1, "GET", "/Observation/o1/_history", NONE),
        (T1, P1, "GET", "/Patient/p2/_history", OTHER),
        // F22: type not granted.
        (OBS, P1, "GET", "/Observation/o1", NONE),
        (OBS, P1, "GET", "/Condition/c1", SCOPE),
        // Non-compartment types readable when named or `*`.
        (T1, P1, "GET", "/Practitioner/d1", NONE),
        (OBS, P1, "GET", "/Practitioner/d1", SCOPE),
        ("patient/Medication.rs", P1, "GET", "/Medication/m1", NONE),
        (
            "patient/Medication.rs",
            P1,
            "GET",
            "/Organization/org1",
            SCOPE,
        ),
        ("patient/Observation.s", P1, "GET", "/Observation/o1", SCOPE),
        ("patient/Observation.r", P1, "GET", "/Observation/o1", NONE),
        // Write never implies read.
        ("patient/*.write", P1, "GET", "/Observation/o1", SCOPE),
        ("patient/*.cud", P1, "GET", "/Patient/p1", SCOPE),
        // Granular: reads allowed, response checked.
        (LAB, P1, "GET", "/Observation/o1", NONE),
        (LAB, P1, "GET", "/Condition/c1", SCOPE),
        // Capabilities need no scope.
        ("", None, "GET", "/metadata", A),
        ("openid fhirUser", None, "GET", "/Patient/p1", SCOPE),
    ]);
}

#[test]
fn searches_under_patient_scopes() {
    check(&[
        // F2: patient added when absent.
        (T1, P1, "GET", "/Observation?code=x", W(&["patient=p1"])),
        (T1, None, "GET", "/Observation?code=x", FORBID),
        (T1, P1, "GET", "/Observation?patient=p1", NONE),
        (T1, P1, "GET", "/Observation?patient=p2", OTHER),
        (T1, P1, "GET", "/Observation?subject=Patient/p1", NONE),
        (T1, P1, "GET", "/Observation?subject=Patient/p2", OTHER),
        (T1, P1, "GET", "/Observation?subject:Patient=p1", NONE),
        (T1, P1, "GET", "/Observation?subject:Patient=p2", OTHER),
        (
            T1,
            P1,
            "GET",
            "/Observation?patient=https://gw.example/fhir/Patient/p1",
            NONE,
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation?patient=https://gw.example/fhir/Patient/p2",
            OTHER,
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation?patient=https://evil.example/fhir/Patient/p1",
            OTHER,
        ),
        (T1, P1, "GET", "/Observation?patient=p1,p1", NONE),
        (T1, P1, "GET", "/Observation?patient=p1,p2", OTHER),
        // F4: repeats.
        (T1, P1, "GET", "/Observation?patient=p1&patient=p1", NONE),
        (T1, P1, "GET", "/Observation?patient=p1&patient=p2", OTHER),
        (T1, P1, "GET", "/Observation?subject=p1", NONE),
        (T1, P1, "GET", "/Observation?subject=p2", OTHER),
        // Secondary parameters: a patient there is a conflict, other ids are not.
        (
            T1,
            P1,
            "GET",
            "/Observation?performer=Practitioner/d1",
            W(&["patient=p1"]),
        ),
        (T1, P1, "GET", "/Observation?performer=Patient/p2", OTHER),
        (T1, P1, "GET", "/Observation?focus=Patient/p2", OTHER),
        (
            T1,
            P1,
            "GET",
            "/Observation?focus=Patient/p1",
            W(&["patient=p1"]),
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation?subject=Group/g1",
            W(&["patient=p1"]),
        ),
        (T1, P1, "GET", "/Observation?subject=urn:uuid:1", OTHER),
        // Modifiers we cannot prove.
        (T1, P1, "GET", "/Observation?patient:missing=true", NS),
        (
            T1,
            P1,
            "GET",
            "/Observation?patient:identifier=http://mrn|1",
            NS,
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation?code:text=x",
            W(&["patient=p1"]),
        ),
        // F5 chains, F7 _has, _filter, _query.
        (T1, P1, "GET", "/Observation?subject:Patient.name=Smith", NS),
        (T1, P1, "GET", "/Observation?patient.identifier=x", NS),
        (T1, P1, "GET", "/Observation?patient._id=p2", NS),
        (T1, P1, "GET", "/Patient?link:Patient.identifier=x", NS),
        (
            T1,
            P1,
            "GET",
            "/Patient?_has:Observation:patient:code=x",
            NS,
        ),
        (T1, P1, "GET", "/Observation?_filter=subject%20eq%20p2", NS),
        (T1, P1, "GET", "/Observation?_query=custom", NS),
        (
            USER,
            None,
            "GET",
            "/Observation?subject:Patient.name=Smith",
            A,
        ),
        (
            USER,
            None,
            "GET",
            "/Patient?_has:Observation:patient:code=x",
            A,
        ),
        // F7: Patient search forced to the own id.
        (T1, P1, "GET", "/Patient?name=smith", W(&["_id=p1"])),
        (T1, P1, "GET", "/Patient?_id=p1", NONE),
        (T1, P1, "GET", "/Patient?_id=p2", OTHER),
        (T1, P1, "GET", "/Patient?_id=p1,p2", OTHER),
        (T1, P1, "GET", "/Patient?link=Patient/p2", OTHER),
        // F6: includes allowed, the response is filtered.
        (
            T1,
            P1,
            "GET",
            "/Observation?_include=Observation:performer",
            W(&["patient=p1"]),
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation?_revinclude=Provenance:target&patient=p1",
            NONE,
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation?_include:iterate=*&patient=p1",
            NONE,
        ),
        // F10: POST _search body counts.
        (T1, P1, "POST", "/Observation/_search BODY patient=p1", NONE),
        (
            T1,
            P1,
            "POST",
            "/Observation/_search BODY patient=p2",
            OTHER,
        ),
        (
            T1,
            P1,
            "POST",
            "/Observation/_search?patient=p1 BODY patient=p2",
            OTHER,
        ),
        (
            T1,
            P1,
            "POST",
            "/Observation/_search BODY code=x",
            W(&["patient=p1"]),
        ),
        // Other member types inject their parameter.
        (T1, P1, "GET", "/Condition", W(&["patient=p1"])),
        (
            T1,
            P1,
            "GET",
            "/Encounter?status=finished",
            W(&["patient=p1"]),
        ),
        (T1, P1, "GET", "/Coverage", W(&["patient=p1"])),
        (T1, P1, "GET", "/Group", W(&["member=Patient/p1"])),
        (T1, P1, "GET", "/Group?member=p2", OTHER),
        (T1, P1, "GET", "/AdverseEvent", W(&["subject=Patient/p1"])),
        (T1, P1, "GET", "/AdverseEvent?subject=p2", OTHER),
        (T1, P1, "GET", "/RelatedPerson", W(&["patient=p1"])),
        (T1, P1, "GET", "/Schedule", W(&["actor=Patient/p1"])),
        // Non-compartment types: no injection, still no other patient named.
        (T1, P1, "GET", "/Practitioner?name=x", NONE),
        (
            T1,
            P1,
            "GET",
            "/Practitioner?_has:Observation:performer:subject=p2",
            NS,
        ),
        (OBS, P1, "GET", "/Practitioner?name=x", SCOPE),
        (T1, P1, "GET", "/Device?patient=p1", NONE),
        (T1, P1, "GET", "/Device?patient=Patient/p2", OTHER),
        (T1, P1, "GET", "/Device?patient=p2", OTHER),
        (T1, P1, "GET", "/Device?patient:missing=true", NS),
        // F22.
        (OBS, P1, "GET", "/Observation?patient=p1", NONE),
        (OBS, P1, "GET", "/Condition?patient=p1", SCOPE),
        (
            "patient/Observation.r",
            P1,
            "GET",
            "/Observation?patient=p1",
            SCOPE,
        ),
        (
            "patient/Observation.s",
            P1,
            "GET",
            "/Observation?patient=p1",
            NONE,
        ),
        // F13: system search and history cannot be confined.
        (T1, P1, "GET", "/?_type=Observation", FORBID),
        (USER, None, "GET", "/?_type=Observation", NONE),
        // Server paging links are answered through the response check.
        (
            T1,
            P1,
            "GET",
            "/?_getpages=abc&_getpagesoffset=20&_count=10",
            NONE,
        ),
        (T1, P1, "GET", "/?_getpages=abc&patient=p2", FORBID),
        ("patient/*.r", P1, "GET", "/?_getpages=abc", SCOPE),
        (T1, P1, "GET", "/_history", FORBID),
        (USER, None, "GET", "/_history", A),
        (T1, P1, "GET", "/Observation/_history", FORBID),
        (USER, None, "GET", "/Observation/_history", A),
        (
            "user/Observation.rs",
            None,
            "GET",
            "/Condition/_history",
            SCOPE,
        ),
    ]);
}

#[test]
fn elements_and_summary_keep_the_anchors() {
    check(&[
        (
            T1,
            P1,
            "GET",
            "/Observation?patient=p1&_elements=code",
            W(&["set _elements=code,subject"]),
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation?patient=p1&_elements=code,subject",
            NONE,
        ),
        (
            T1,
            P1,
            "GET",
            "/Observation/o1?_elements=code",
            W(&["set _elements=code,subject"]),
        ),
        (
            LAB,
            P1,
            "GET",
            "/Observation?_elements=code",
            W(&[
                "patient=p1",
                "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                "set _elements=code,subject,category",
            ]),
        ),
        (T1, P1, "GET", "/Observation?patient=p1&_summary=true", NONE),
        (T1, P1, "GET", "/Observation?patient=p1&_summary=text", NS),
        (USER, None, "GET", "/Observation?_summary=text", A),
        (T1, P1, "GET", "/Patient/p1?_elements=name", NONE),
    ]);
}

#[test]
fn patient_context_must_be_an_id() {
    for bad in ["p1,p2", "p1&patient=p2", "", "p1/x"] {
        let grant = Grant::new(T1, Some(bad), None);
        assert_eq!(grant.patient(), None);
        let d = authorize(
            &grant,
            &request("GET", "/Observation", None, None),
            &Policy::default(),
        );
        assert_eq!(
            d.deny_reason().map(|r| r.kind),
            Some(DenyKind::Forbidden),
            "{bad}"
        );
    }
}

#[test]
fn injection_switch() {
    let grant = Grant::new(T1, P1, None);
    let policy = Policy {
        inject_patient: false,
        ..Policy::default()
    };
    let with = request("GET", "/Observation?patient=p1", None, None);
    assert!(matches!(
        authorize(&grant, &with, &policy),
        Decision::AllowWithin(_)
    ));
    let without = request("GET", "/Observation?code=x", None, None);
    let d = authorize(&grant, &without, &policy);
    assert_eq!(d.deny_reason().map(|r| r.kind), Some(DenyKind::Forbidden));
}

#[test]
fn hide_existence_switch() {
    let grant = Grant::new(T1, P1, None);
    let hide = Policy {
        hide_existence: true,
        ..Policy::default()
    };
    let other = request("GET", "/Patient/p2", None, None);
    let d = authorize(&grant, &other, &hide);
    let reason = d.deny_reason().cloned();
    assert_eq!(reason.as_ref().map(|r| r.http_status()), Some(404));
    assert_eq!(
        reason.map(|r| r.issue_type()),
        Some(fhirgate_fhir::IssueType::NotFound)
    );
    let own = request("GET", "/Patient/p1", None, None);
    assert!(authorize(&grant, &own, &hide).is_allowed());
}

#[test]
fn compartment_search_and_everything() {
    check(&[
        // F8.
        (T1, P1, "GET", "/Patient/p1/Observation", NONE),
        (T1, P1, "GET", "/Patient/p2/Observation", OTHER),
        (T1, P1, "GET", "/Patient/p1/*", NONE),
        (T1, P1, "GET", "/Patient/p2/*", OTHER),
        (OBS, P1, "GET", "/Patient/p1/Observation", NONE),
        (OBS, P1, "GET", "/Patient/p1/Condition", SCOPE),
        (OBS, P1, "GET", "/Patient/p1/*", SCOPE),
        (
            T1,
            P1,
            "GET",
            "/Patient/p1/Observation?subject=Patient/p2",
            OTHER,
        ),
        (T1, P1, "GET", "/Patient/p1/Observation?code.text=x", NS),
        (
            LAB,
            P1,
            "GET",
            "/Patient/p1/Observation",
            W(&["category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"]),
        ),
        (T1, P1, "GET", "/Encounter/e1/Observation", FORBID),
        (USER, None, "GET", "/Encounter/e1/Observation", A),
        (USER, None, "GET", "/Patient/p2/Observation", A),
        (
            "user/Condition.rs",
            None,
            "GET",
            "/Patient/p2/Observation",
            SCOPE,
        ),
        // F11.
        (T1, P1, "GET", "/Patient/p1/$everything", NONE),
        (T1, P1, "GET", "/Patient/p2/$everything", OTHER),
        (T1, P1, "GET", "/Patient/$everything", FORBID),
        (USER, None, "GET", "/Patient/$everything", A),
        (OBS, P1, "GET", "/Patient/p1/$everything", SCOPE),
        (
            "patient/Patient.r",
            P1,
            "GET",
            "/Patient/p1/$everything",
            NONE,
        ),
        (T1, P1, "GET", "/Encounter/e1/$everything", NONE),
        (
            T1,
            P1,
            "GET",
            "/Patient/p1/$everything?_type=Patient/p2",
            OTHER,
        ),
    ]);
}

#[test]
fn batch_endpoint_requires_the_bundle_check() {
    let grant = Grant::new(T1, P1, None);
    let req = request("POST", "/", None, None);
    let d = authorize(&grant, &req, &Policy::default());
    assert!(matches!(
        d.allow_within().and_then(|w| w.body.clone()),
        Some(crate::body::RequestBodyCheck::Bundle)
    ));
}

#[test]
fn every_compartment_type_is_confined_and_conflicts_are_refused() {
    let grant = Grant::new(T1, P1, None);
    let policy = Policy::default();
    let mut decisions = 0;
    for m in fhirgate_fhir::compartment::MEMBERS {
        let rt = m.resource_type;
        let search = authorize(
            &grant,
            &request("GET", &format!("/{rt}"), None, None),
            &policy,
        );
        let muts: Vec<String> = search
            .allow_within()
            .map(|w| w.mutations.iter().map(render).collect())
            .unwrap_or_default();
        assert_eq!(muts.len(), 1, "{rt}: {search:?}");
        assert!(
            muts.iter()
                .all(|s| s.starts_with(m.inject_param) && s.ends_with("p1")),
            "{rt}"
        );

        let value = if m.inject_param == "_id" {
            "p2"
        } else {
            "Patient/p2"
        };
        let url = format!("/{rt}?{}={value}", m.inject_param);
        let conflict = authorize(&grant, &request("GET", &url, None, None), &policy);
        assert_eq!(
            conflict.deny_reason().map(|r| r.kind),
            Some(DenyKind::OtherPatient),
            "{url}"
        );

        for p in m.params {
            let url = format!("/{rt}?{}=Patient/p2", p.name);
            let d = authorize(&grant, &request("GET", &url, None, None), &policy);
            assert_eq!(
                d.deny_reason().map(|r| r.kind),
                Some(DenyKind::OtherPatient),
                "{url}"
            );
            decisions += 1;
        }
        decisions += 2;
    }
    assert!(decisions > 250);
}

#[path = "authorize_tests_more.rs"]
mod more;

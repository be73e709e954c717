//! Property: whatever the request and whatever the upstream answers, a `patient/` grant
//! never lets another patient's resource out of the gateway.

use fhirgate_fhir::ResourceType;
use fhirgate_fhir::compartment::is_patient_compartment_type;
use fhirgate_fhir::references::patient_links;
use fhirgate_smart::{Decision, Grant, Policy, authorize, verify_response};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::request;

const BASE: &str = "https://gw.example/fhir";

fn scopes() -> impl Strategy<Value = String> {
    let pool = vec![
        "patient/*.rs",
        "patient/*.read",
        "patient/Observation.rs",
        "patient/Observation.rs?category=laboratory",
        "patient/Condition.rs",
        "patient/Patient.r",
        "patient/Practitioner.rs",
        "patient/*.cruds",
        "patient/Encounter.s",
        "launch/patient",
        "openid",
        "bogus/scope",
    ];
    prop::sample::subsequence(pool, 1..5).prop_map(|v| v.join(" "))
}

fn pid() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["p1", "p2", "p3"])
}

fn param() -> impl Strategy<Value = String> {
    (pid(), pid(), 0usize..16).prop_map(|(a, b, k)| match k {
        0 => format!("patient={a}"),
        1 => format!("subject=Patient/{a}"),
        2 => format!("subject={a}"),
        3 => format!("patient={a},{b}"),
        4 => format!("_id={a}"),
        5 => format!("performer=Patient/{a}"),
        6 => format!("subject:Patient={a}"),
        7 => "_include=Observation:subject".to_owned(),
        8 => "_revinclude=Provenance:target".to_owned(),
        9 => "category=laboratory".to_owned(),
        10 => "code=x".to_owned(),
        11 => format!("patient={BASE}/Patient/{a}"),
        12 => "_include=*".to_owned(),
        13 => format!("_type=Observation,Patient&x={b}"),
        14 => format!("subject.name={a}"),
        _ => format!("patient=https://evil.example/fhir/Patient/{a}"),
    })
}

fn path() -> impl Strategy<Value = String> {
    (pid(), 0usize..12).prop_map(|(a, k)| match k {
        0 => "/Observation".to_owned(),
        1 => "/Condition".to_owned(),
        2 => "/Patient".to_owned(),
        3 => "/Practitioner".to_owned(),
        4 => format!("/Patient/{a}"),
        5 => "/Observation/o1".to_owned(),
        6 => format!("/Patient/{a}/Observation"),
        7 => format!("/Patient/{a}/$everything"),
        8 => "/Encounter".to_owned(),
        9 => format!("/Patient/{a}/*"),
        10 => "/Observation/o1/_history".to_owned(),
        _ => "/Observation/$lastn".to_owned(),
    })
}

fn url() -> impl Strategy<Value = String> {
    (path(), prop::collection::vec(param(), 0..4)).prop_map(|(p, ps)| {
        if ps.is_empty() {
            p
        } else {
            format!("{p}?{}", ps.join("&"))
        }
    })
}

/// A resource the (hostile) upstream may return, anchored to anyone.
fn resource() -> impl Strategy<Value = Value> {
    let anchor = prop::sample::select(vec![
        "Patient/p1",
        "Patient/p2",
        "Patient/p3",
        "https://gw.example/fhir/Patient/p1",
        "https://evil.example/fhir/Patient/p1",
        "Group/p1",
        "#c",
        "",
    ]);
    let category = prop::sample::select(vec!["laboratory", "vital-signs"]);
    (0usize..7, anchor, category, pid()).prop_map(|(k, anchor, cat, p)| {
        let subject = if anchor.is_empty() {
            json!({})
        } else {
            json!({"reference": anchor})
        };
        match k {
            0 | 1 => json!({"resourceType": "Observation", "id": "o", "subject": subject,
                "category": [{"coding": [{"code": cat}]}],
                "contained": [{"resourceType": "Patient", "id": "c"}]}),
            2 => json!({"resourceType": "Condition", "id": "c", "subject": subject}),
            3 => json!({"resourceType": "Patient", "id": p}),
            4 => json!({"resourceType": "Practitioner", "id": "d"}),
            5 => json!({"resourceType": "Encounter", "id": "e", "subject": subject}),
            _ => json!({"resourceType": "Provenance", "id": "v", "target": [subject]}),
        }
    })
}

fn body() -> impl Strategy<Value = Value> {
    let entries = prop::collection::vec(
        (resource(), prop::sample::select(vec!["match", "include"])),
        0..8,
    );
    prop_oneof![
        resource(),
        entries.prop_map(|es| {
            let entry: Vec<Value> = es
                .into_iter()
                .map(|(r, m)| json!({"resource": r, "search": {"mode": m}}))
                .collect();
            json!({"resourceType": "Bundle", "type": "searchset", "entry": entry})
        }),
    ]
}

fn unrestricted_observations(scopes: &str) -> bool {
    scopes.split(' ').any(|s| {
        matches!(
            s,
            "patient/*.rs" | "patient/*.read" | "patient/*.cruds" | "patient/Observation.rs"
        )
    })
}

fn returned(body: &Value) -> Vec<&Value> {
    if body.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        body.get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("resource"))
            .collect()
    } else {
        vec![body]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn no_other_patients_data_leaves(scopes in scopes(), url in url(), mut upstream in body()) {
        let Some(req) = request("GET", &url) else { return Ok(()) };
        let grant = Grant::new(&scopes, Some("p1"), None);
        let policy = Policy::default().with_bases([BASE]);
        match authorize(&grant, &req, &policy) {
            Decision::Deny(reason) => {
                prop_assert!(!reason.diagnostic.contains("p2") && !reason.diagnostic.contains("p3"));
            }
            // Plain allow under patient/ scopes is only for data-free requests.
            Decision::Allow => prop_assert!(false, "plain allow for {url} with {scopes}"),
            Decision::AllowWithin(within) => {
                // Mutations only ever name the token's patient.
                for m in &within.mutations {
                    let text = format!("{m:?}");
                    prop_assert!(!text.contains("p2") && !text.contains("p3"), "{text}");
                }
                let Ok(outcome) = verify_response(&within.check, &mut upstream) else {
                    return Ok(());
                };
                prop_assert!(outcome.patients.iter().all(|p| p == "p1"));
                for r in returned(&upstream) {
                    let links = patient_links(r, &[BASE]);
                    let rt = links.resource_type;
                    if rt == Some(ResourceType::OperationOutcome) {
                        continue;
                    }
                    prop_assert!(rt.is_some());
                    if rt.is_some_and(is_patient_compartment_type) {
                        prop_assert!(links.belongs_only_to("p1"), "leaked {r} for {url} with {scopes}");
                    }
                    if rt == Some(ResourceType::Observation) && !unrestricted_observations(&scopes) {
                        // Only the granular Observation scope can have let it through.
                        prop_assert!(r.to_string().contains("laboratory"), "{r}");
                    }
                }
            }
        }
    }
}

fn scope_like() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "patient/",
        "user/",
        "system/",
        "Observation",
        "Patient",
        "*",
        ".",
        "read",
        "write",
        "c",
        "r",
        "u",
        "d",
        "s",
        "?",
        "category",
        "code",
        "status",
        "=",
        "&",
        "|",
        "%26",
        "%3D",
        "%",
        "http://x",
        ",",
        " ",
        "launch",
        "/",
        ":in",
        "laboratory",
        "openid",
    ]);
    prop::collection::vec(piece, 0..14).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Printing an accepted scope and parsing it again gives the same grant, so echoing
    /// scopes back (token response, introspection) can never widen them.
    #[test]
    fn accepted_scopes_round_trip(text in scope_like()) {
        let set = fhirgate_smart::ScopeSet::parse(&text);
        for scope in &set.resources {
            let printed = scope.to_string();
            let again = fhirgate_smart::ScopeSet::parse(&printed);
            let back = again.resources.first();
            prop_assert!(back.is_some(), "{printed} from {text}");
            if let Some(back) = back {
                prop_assert_eq!(back.context, scope.context);
                prop_assert_eq!(back.resource, scope.resource);
                prop_assert_eq!(back.permissions, scope.permissions);
                prop_assert_eq!(&back.restriction, &scope.restriction);
            }
        }
    }
}

fn anchor() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({"reference": "Patient/p1"}),
        json!({"reference": "Patient/p2"}),
        json!({"reference": "https://gw.example/fhir/Patient/p1"}),
        json!({"reference": "https://evil.example/fhir/Patient/p1"}),
        json!({"reference": "Group/g"}),
        json!({"reference": "urn:uuid:1"}),
        json!({"type": "Patient"}),
        json!("Patient/p1"),
    ])
}

fn patch_op() -> impl Strategy<Value = Value> {
    let path = prop::sample::select(vec![
        "/subject",
        "/subject/reference",
        "/status",
        "/performer",
        "/performer/0",
        "/id",
        "/resourceType",
        "/note",
    ]);
    let op = prop::sample::select(vec!["add", "replace", "remove", "copy", "move", "test"]);
    (
        op,
        path,
        anchor(),
        prop::sample::select(vec!["/subject", "/status", "/performer"]),
    )
        .prop_map(|(op, path, value, from)| match op {
            "remove" => json!({"op": op, "path": path}),
            "copy" | "move" => json!({"op": op, "path": path, "from": from}),
            _ => json!({"op": op, "path": path, "value": value}),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever a client writes, a body the check accepts is the token patient's alone.
    #[test]
    fn accepted_writes_stay_in_the_compartment(
        subject in anchor(),
        performer in anchor(),
        ops in prop::collection::vec(patch_op(), 0..4),
    ) {
        let grant = Grant::new("patient/*.cruds", Some("p1"), None);
        let policy = Policy::default().with_bases([BASE]);
        let create = request("POST", "/Observation").and_then(|r| authorize(&grant, &r, &policy).allow_within().cloned());
        let body = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "subject": subject, "performer": [performer]});
        if let Some(w) = create
            && w.check_body(&body, None).is_ok()
        {
            prop_assert!(patient_links(&body, &[BASE]).belongs_only_to("p1"), "{body}");
        }
        let patch = request("PATCH", "/Observation/o1").and_then(|r| authorize(&grant, &r, &policy).allow_within().cloned());
        let current = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "subject": {"reference": "Patient/p1"}, "performer": [performer]});
        let ops = Value::Array(ops);
        if let Some(w) = patch
            && w.check_current(Some(&current)).is_ok()
            && w.check_body(&ops, Some(&current)).is_ok()
        {
            let mut patched = current.clone();
            let parsed: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
            json_patch::patch_unsafe(&mut patched, &parsed).unwrap();
            prop_assert!(patient_links(&patched, &[BASE]).belongs_only_to("p1"), "{patched}");
        }
        let cond = request("PATCH", "/Observation?identifier=x").and_then(|r| authorize(&grant, &r, &policy).allow_within().cloned());
        if let Some(w) = cond
            && w.check_body(&ops, None).is_ok()
        {
            // Allowed conditional patches leave anchors alone, so a p1 resource stays p1's.
            let mut patched = current.clone();
            let parsed: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
            if json_patch::patch_unsafe(&mut patched, &parsed).is_ok() {
                prop_assert!(patient_links(&patched, &[BASE]).belongs_only_to("p1"), "{patched}");
            }
        }
    }
}

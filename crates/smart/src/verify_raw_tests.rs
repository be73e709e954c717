use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::authorize::tests::request;
use crate::decision::{Decision, Grant, Policy};
use crate::{authorize, verify_response};

fn check(scopes: &str, method: &str, url: &str) -> ResponseCheck {
    let grant = Grant::new(scopes, Some("p1"), None);
    let policy = Policy::default().with_bases(["https://gw.example/fhir"]);
    match authorize(&grant, &request(method, url, None, None), &policy) {
        Decision::AllowWithin(w) => w.check,
        other => panic!("{url}: {other:?}"),
    }
}

fn search_check() -> ResponseCheck {
    check("patient/*.rs", "GET", "/Observation?patient=p1")
}

fn obs(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "performer": [{"reference": "Practitioner/d1"}],
        "valueQuantity": {"value": 72, "unit": "/min"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">72</div>"}})
}

fn searchset(resources: Vec<Value>, mode: &str) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| json!({"fullUrl": "https://gw.example/fhir/Observation/x", "resource": r, "search": {"mode": mode}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries})
}

/// The fast path never disagrees with the tree check: `Unchanged` only where the tree
/// check removes nothing (with the same patients), the same refusal where it refuses.
fn assert_agrees(check: &ResponseCheck, text: &str) -> RawVerdict {
    let fast = verify_response_bytes(check, text.as_bytes());
    let tree = serde_json::from_str::<Value>(text).map(|mut v| {
        let before = v.clone();
        let result = verify_response(check, &mut v);
        (result, before == v)
    });
    match (&fast, tree) {
        (Ok(RawVerdict::Unchanged(outcome)), Ok((Ok(tree_outcome), untouched))) => {
            assert_eq!(outcome, &tree_outcome, "{text}");
            assert_eq!(tree_outcome.removed(), 0, "{text}");
            assert!(
                untouched,
                "tree check changed a body the fast path passes: {text}"
            );
        }
        (Ok(RawVerdict::Filtered { body, outcome }), Ok((Ok(tree_outcome), _))) => {
            assert_eq!(outcome, &tree_outcome, "{text}");
            let mut tree: Value = serde_json::from_str(text).unwrap();
            verify_response(check, &mut tree).unwrap();
            let spliced: Value = serde_json::from_slice(body).expect("spliced body is JSON");
            assert_eq!(spliced, tree, "{text}");
        }
        (Ok(RawVerdict::Unchanged(_) | RawVerdict::Filtered { .. }), other) => {
            panic!("fast path passes what the tree check gives {other:?}: {text}")
        }
        (Err(reason), Ok((Err(tree_reason), _))) => assert_eq!(reason, &tree_reason),
        (Err(reason), other) => panic!("fast refusal {reason:?} but tree {other:?}"),
        (Ok(RawVerdict::NeedsTree), _) => {}
    }
    fast.unwrap_or(RawVerdict::NeedsTree)
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn own_searchset_passes_unchanged_with_its_patients() {
    let body = searchset(
        (0..30).map(|i| obs(&format!("o{i}"), "p1")).collect(),
        "match",
    );
    match assert_agrees(&search_check(), &text(&body)) {
        RawVerdict::Unchanged(o) => {
            assert_eq!(o.patients.iter().collect::<Vec<_>>(), ["p1"]);
            assert_eq!(o.removed(), 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_other_patients_entry_of_thirty_goes_to_the_tree_and_is_removed() {
    let mut resources: Vec<Value> = (0..30).map(|i| obs(&format!("o{i}"), "p1")).collect();
    resources[17] = obs("o17", "p2");
    let body = text(&searchset(resources, "match"));
    assert_eq!(assert_agrees(&search_check(), &body), RawVerdict::NeedsTree);
    let mut tree: Value = serde_json::from_str(&body).unwrap();
    let outcome = verify_response(&search_check(), &mut tree).unwrap();
    assert_eq!(outcome.removed_match, 1);
    assert!(!text(&tree).contains("Patient/p2"));
}

#[test]
fn other_patients_include_is_not_passed_through() {
    let mut body = searchset(vec![obs("o1", "p1")], "match");
    body["entry"].as_array_mut().unwrap().push(
        json!({"resource": {"resourceType": "Condition", "id": "c9", "subject": {"reference": "Patient/p2"}},
               "search": {"mode": "include"}}),
    );
    let verdict = assert_agrees(&search_check(), &text(&body));
    assert!(
        matches!(verdict, RawVerdict::Filtered { .. }),
        "{verdict:?}"
    );
}

#[test]
fn other_patients_includes_are_cut_out_and_the_rest_kept_byte_for_byte() {
    let mut body = searchset(
        (0..30).map(|i| obs(&format!("o{i}"), "p1")).collect(),
        "match",
    );
    for (i, patient) in [(3, "p2"), (12, "p3")] {
        body["entry"][i] = json!({"resource": {"resourceType": "Condition", "id": format!("c{i}"),
            "subject": {"reference": format!("Patient/{patient}")}}, "search": {"mode": "include"}});
    }
    let pretty = serde_json::to_string_pretty(&body).unwrap();
    let RawVerdict::Filtered { body: out, outcome } = assert_agrees(&search_check(), &pretty)
    else {
        panic!("includes of other patients are spliced out");
    };
    assert_eq!(outcome.removed_included, 2);
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("Patient/p2") && !out.contains("Patient/p3"));
    assert!(out.contains("suppressed"));
    // Kept entries are the upstream's own text.
    let kept = serde_json::to_string_pretty(&body["entry"][4]).unwrap();
    assert!(out.contains(&kept.replace('\n', "\n    ")));
    // History Bundles lose the entries without an outcome entry.
    body["type"] = json!("history");
    let RawVerdict::Filtered { body: out, .. } = assert_agrees(&search_check(), &text(&body))
    else {
        panic!("history includes are spliced out");
    };
    assert!(!String::from_utf8(out).unwrap().contains("suppressed"));
    // Every entry removed: only the outcome entry remains.
    let only = searchset(
        vec![json!({"resourceType": "Condition", "id": "c1",
        "subject": {"reference": "Patient/p2"}})],
        "include",
    );
    assert!(matches!(
        assert_agrees(&search_check(), &text(&only)),
        RawVerdict::Filtered { .. }
    ));
}

#[test]
fn repeated_members_the_check_reads_are_never_passed_through() {
    let c = search_check();
    let own = r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}"#;
    let cases = [
        // The client may read the first subject, serde_json keeps the last.
        r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p2"},"subject":{"reference":"Patient/p1"}}"#,
        r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p2","reference":"Patient/p1"}}"#,
        r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p2"},"sub\u006aect":{"reference":"Patient/p1"}}"#,
        r#"{"resourceType":"Patient","resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}"#,
    ];
    for resource in cases {
        let body = format!(
            r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own}}},{{"resource":{resource}}}]}}"#
        );
        assert_eq!(
            assert_agrees(&c, &body),
            RawVerdict::NeedsTree,
            "{resource}"
        );
        // The same as a single read.
        assert_ne!(
            verify_response_bytes(
                &check("patient/*.rs", "GET", "/Observation/o1"),
                resource.as_bytes()
            ),
            Ok(RawVerdict::Unchanged(FilterOutcome {
                patients: ["p1".to_owned()].into(),
                ..FilterOutcome::default()
            })),
            "{resource}"
        );
    }
    let twice_entry = format!(
        r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own}}}],"entry":[]}}"#
    );
    assert_eq!(assert_agrees(&c, &twice_entry), RawVerdict::NeedsTree);
    let twice_resource = format!(
        r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own},"resource":{own}}}]}}"#
    );
    assert_eq!(assert_agrees(&c, &twice_resource), RawVerdict::NeedsTree);
    // Repeats in members the check does not read do not matter.
    let skipped = r#"{"resourceType":"Observation","id":"o1","valueString":"a","valueString":"b","subject":{"reference":"Patient/p1"}}"#;
    assert!(matches!(
        assert_agrees(&check("patient/*.rs", "GET", "/Observation/o1"), skipped),
        RawVerdict::Unchanged(_)
    ));
}

#[test]
fn single_reads_allow_own_and_refuse_other_like_the_tree() {
    let c = check("patient/*.rs", "GET", "/Observation/o1");
    assert!(matches!(
        assert_agrees(&c, &text(&obs("o1", "p1"))),
        RawVerdict::Unchanged(_)
    ));
    let refused = verify_response_bytes(&c, text(&obs("o1", "p2")).as_bytes());
    assert!(refused.is_err());
    assert_agrees(&c, &text(&obs("o1", "p2")));
    let patient = check("patient/*.rs", "GET", "/Patient/p1");
    let own = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "A"}]});
    assert!(matches!(
        assert_agrees(&patient, &text(&own)),
        RawVerdict::Unchanged(_)
    ));
    let other = json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "B"}]});
    assert!(verify_response_bytes(&patient, text(&other).as_bytes()).is_err());
    assert_agrees(&patient, &text(&other));
}

#[test]
fn restrictions_contained_and_binary_agree_with_the_tree() {
    let lab = check(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        "GET",
        "/Observation?patient=p1",
    );
    // Vital signs under a laboratory-only scope: removed, so not passed through.
    let body = searchset(vec![obs("o1", "p1")], "match");
    assert_eq!(assert_agrees(&lab, &text(&body)), RawVerdict::NeedsTree);
    let mut lab_obs = obs("o2", "p1");
    lab_obs["category"][0]["coding"][0]["code"] = json!("laboratory");
    assert!(matches!(
        assert_agrees(&lab, &text(&searchset(vec![lab_obs], "match"))),
        RawVerdict::Unchanged(_)
    ));
    let c = check("patient/*.rs", "GET", "/Observation/o1");
    for target in ["Patient", "Practitioner"] {
        let contained = json!({"resourceType": "Observation", "id": "o1",
            "contained": [{"resourceType": target, "id": "x"}],
            "subject": {"reference": "#x"}});
        assert_agrees(&c, &text(&contained));
    }
    let binary = check("patient/*.rs", "GET", "/Binary/b1");
    for owner in ["Patient/p1", "Patient/p2", "Practitioner/d1"] {
        let b = json!({"resourceType": "Binary", "id": "b1", "contentType": "text/plain",
            "securityContext": {"reference": owner}, "data": "aGk="});
        assert_agrees(&binary, &text(&b));
    }
}

#[test]
fn entry_shapes_follow_the_searchset_rules() {
    let c = search_check();
    let own = text(&obs("o1", "p1"));
    let oo = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}"#;
    let cases = [
        (
            format!(
                r#"{{"resourceType":"Bundle","type":"history","entry":[{{"request":{{"method":"DELETE","url":"Observation/o9"}}}},{{"resource":{own}}}]}}"#
            ),
            true,
        ),
        (
            format!(
                r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"fullUrl":"x"}},{{"resource":{own}}}]}}"#
            ),
            false,
        ),
        (
            r#"{"resourceType":"Bundle","type":"history","entry":[{"resource":null}]}"#.to_owned(),
            false,
        ),
        (
            format!(
                r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own}}},{{"resource":{oo},"search":{{"mode":"outcome"}}}}]}}"#
            ),
            true,
        ),
        (
            format!(
                r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own},"search":{{"mode":"outcome"}}}}]}}"#
            ),
            false,
        ),
        (
            r#"{"resourceType":"Bundle","type":"searchset","total":0}"#.to_owned(),
            true,
        ),
        (
            r#"{"resourceType":"Bundle","type":"searchset","entry":{}}"#.to_owned(),
            false,
        ),
        (
            format!(
                r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own},"search":{{"mode":7}}}}]}}"#
            ),
            false,
        ),
        (
            format!(
                r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own}}}]}} trailing"#
            ),
            false,
        ),
        ("not json".to_owned(), false),
    ];
    for (body, passes) in cases {
        let verdict = assert_agrees(&c, &body);
        assert_eq!(
            matches!(verdict, RawVerdict::Unchanged(_)),
            passes,
            "{body}"
        );
    }
    assert_eq!(
        verify_response_bytes(
            &c,
            b"{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"x\":\"\xff\"}"
        ),
        Ok(RawVerdict::NeedsTree)
    );
}

#[test]
fn documents_and_nested_bundles_are_checked_whole() {
    let c = check("patient/*.rs", "GET", "/Bundle/d1");
    for patient in ["p1", "p2"] {
        let doc = json!({"resourceType": "Bundle", "id": "d1", "type": "document",
            "entry": [{"resource": obs("o1", "p1")}, {"resource": obs("o2", patient)}]});
        assert_agrees(&c, &text(&doc));
    }
    let s = search_check();
    let nested = searchset(
        vec![json!({"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": obs("o2", "p2")}]})],
        "match",
    );
    assert_eq!(assert_agrees(&s, &text(&nested)), RawVerdict::NeedsTree);
}

#[test]
fn checked_members_cover_compartment_and_restriction_elements() {
    for key in [
        "resourceType",
        "id",
        "subject",
        "patient",
        "participant",
        "performer",
        "beneficiary",
        "category",
        "code",
        "status",
        "clinicalStatus",
        "securityContext",
        "contained",
        "link",
    ] {
        assert!(is_checked(key), "{key}");
    }
    assert!(!is_checked("valueQuantity"));
    assert!(!is_checked("text"));
}

fn resource_strategy() -> impl Strategy<Value = Value> {
    let types = prop_oneof![
        Just("Observation"),
        Just("Condition"),
        Just("Encounter"),
        Just("Patient"),
        Just("Practitioner"),
        Just("Binary"),
    ];
    let refs = prop_oneof![
        Just("Patient/p1".to_owned()),
        Just("Patient/p2".to_owned()),
        Just("https://gw.example/fhir/Patient/p1".to_owned()),
        Just("https://other.example/fhir/Patient/p1".to_owned()),
        Just("#c1".to_owned()),
        Just("Group/g1".to_owned()),
    ];
    let ids = prop_oneof![Just("p1"), Just("p2"), Just("o1")];
    (
        types,
        proptest::option::of(refs.clone()),
        ids,
        any::<bool>(),
        proptest::option::of(refs),
    )
        .prop_map(|(rt, subject, id, lab, performer)| {
            let mut r = json!({"resourceType": rt, "id": id, "status": "final",
                "note": [{"text": "skipped"}]});
            if let Some(s) = subject {
                r["subject"] = json!({"reference": s});
                r["patient"] = json!({"reference": s});
                r["securityContext"] = json!({"reference": s});
            }
            if let Some(p) = performer {
                r["performer"] = json!([{"reference": p}]);
            }
            if lab {
                r["category"] = json!([{"coding": [{"code": "laboratory"}]}]);
            }
            r
        })
}

proptest! {
    #[test]
    fn fast_path_agrees_with_the_tree_check(
        resources in proptest::collection::vec(resource_strategy(), 0..8),
        modes in proptest::collection::vec(prop_oneof![Just("match"), Just("include"), Just("outcome")], 8),
        scope in prop_oneof![
            Just("patient/*.rs"),
            Just("patient/Observation.rs patient/Patient.rs"),
            Just("patient/Observation.rs?category=laboratory"),
        ],
        history in any::<bool>(),
    ) {
        let c = check(scope, "GET", "/Observation?patient=p1");
        let entries: Vec<Value> = resources.iter().zip(&modes)
            .map(|(r, m)| json!({"resource": r, "search": {"mode": m}}))
            .collect();
        let kind = if history { "history" } else { "searchset" };
        let body = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
        assert_agrees(&c, &text(&body));
        for r in &resources {
            assert_agrees(&c, &text(r));
        }
    }
}

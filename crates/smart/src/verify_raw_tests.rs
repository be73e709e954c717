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

/// The single pass keeps a resource's verdict for the next one while the members the check
/// reads repeat. Each case is a run of `include` entries (the single pass settles those
/// itself) after one own match; the entries marked `false` must be cut out.
#[test]
fn a_kept_verdict_follows_every_change_the_check_reads() {
    let patient = |id: &str| json!({"resourceType": "Patient", "id": id, "active": true});
    let without_subject = |id: &str| {
        let mut o = obs(id, "p1");
        o.as_object_mut().unwrap().remove("subject");
        o
    };
    let cases: Vec<(&str, Vec<(Value, bool)>)> = vec![
        // Only the id differs: an Observation keeps its verdict, a Patient does not.
        (
            "observation ids",
            vec![(obs("o2", "p1"), true), (obs("o3", "p1"), true)],
        ),
        (
            "patient ids",
            vec![
                (patient("p1"), true),
                (patient("p2"), false),
                (patient("p1"), true),
            ],
        ),
        (
            "subject",
            vec![
                (obs("o2", "p2"), false),
                (obs("o3", "p1"), true),
                (obs("o4", "p2"), false),
            ],
        ),
        // A member the check reads goes away, then comes back.
        (
            "member",
            vec![(without_subject("o2"), false), (obs("o3", "p1"), true)],
        ),
    ];
    for (name, entries) in cases {
        let mut body = searchset(vec![obs("o1", "p1")], "match");
        let list = body["entry"].as_array_mut().unwrap();
        for (resource, _) in &entries {
            list.push(json!({"resource": resource, "search": {"mode": "include"}}));
        }
        let verdict = assert_agrees(&search_check(), &text(&body));
        let cut = entries.iter().filter(|(_, kept)| !kept).count();
        match verdict {
            RawVerdict::Unchanged(outcome) if cut == 0 => {
                assert_eq!(
                    outcome.patients.iter().collect::<Vec<_>>(),
                    ["p1"],
                    "{name}"
                );
            }
            RawVerdict::Filtered {
                body: filtered,
                outcome,
            } => {
                assert_eq!(outcome.removed_included, cut, "{name}");
                let filtered: Value = serde_json::from_slice(&filtered).unwrap();
                let kept: Vec<&Value> =
                    entries.iter().filter(|(_, k)| *k).map(|(r, _)| r).collect();
                let left: Vec<&Value> = filtered["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .skip(1)
                    .filter(|e| e["search"]["mode"] == "include")
                    .map(|e| &e["resource"])
                    .collect();
                assert_eq!(left, kept, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
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

/// An unchecked member whose text repeats the previous resource's is passed by comparison;
/// one that only starts the same, or differs by a byte that breaks it, is still validated.
#[test]
fn a_repeated_unchecked_member_is_the_same_valid_value_and_nothing_more() {
    let c = search_check();
    let with = |category: &str| {
        format!(
            r#"{{"resourceType":"Observation","id":"o1","category":{category},"subject":{{"reference":"Patient/p1"}}}}"#
        )
    };
    let category = r#"[{"coding":[{"system":"http://example.org/c","code":"laboratory"}]}]"#;
    let searchset = |third: &str| {
        let own = with(category);
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own}}},{{"resource":{own}}},{{"resource":{third}}}]}}"#
        )
    };
    // Allowed: the same bytes again.
    assert!(matches!(
        assert_agrees(&c, &searchset(&with(category))),
        RawVerdict::Unchanged(outcome) if outcome.patients == ["p1".to_owned()].into()
    ));
    // Denied to the single pass (the multi-pass check decides): the same bytes followed by
    // a stray bracket, and a value of the same length and brackets with a raw tab in it.
    let stray = with(&format!("{category}]"));
    assert_eq!(assert_agrees(&c, &searchset(&stray)), RawVerdict::NeedsTree);
    let raw_tab = with(&category.replace("laboratory", "labora\ttor"));
    assert_eq!(
        assert_agrees(&c, &searchset(&raw_tab)),
        RawVerdict::NeedsTree
    );
}

/// A member name is taken as what the last resource had at the same place only when it is
/// the same name: a checked member where the last resource had an unchecked one is read.
#[test]
fn member_names_in_another_order_are_read_by_name() {
    let c = search_check();
    let note = r#""note":[{"text":"a note long enough to be remembered between resources"}]"#;
    let subject = r#""subject":{"reference":"Patient/p1"}"#;
    let performer = r#""performer":[{"reference":"Patient/p2"}]"#;
    let searchset = |second: &str| {
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{{"resourceType":"Observation","id":"o1",{note},{subject}}}}},{{"resource":{{"resourceType":"Observation","id":"o2",{second}}}}}]}}"#
        )
    };
    // The subject where the note stood, and the note where the subject stood: read by name,
    // the subject is found and the one pass settles the body (taken by place, the subject
    // would be skipped as the note was, and the body left to the multi-pass check for a
    // resource without one). Other orders, and another patient's performer where the note
    // stood, are settled as the multi-pass check settles them.
    for second in [
        format!("{subject},{note}"),
        format!("{note},{subject}"),
        format!("{performer},{subject}"),
    ] {
        let body = searchset(&second);
        let single = crate::verify_single::single_pass(&c, &body);
        assert_eq!(
            single,
            Some(verify_response_bytes_multi_pass(&c, body.as_bytes())),
            "{body}"
        );
        match assert_agrees(&c, &body) {
            RawVerdict::Unchanged(outcome) => {
                assert_eq!(outcome.patients, ["p1".to_owned()].into(), "{second}");
            }
            other => panic!("{second}: {other:?}"),
        }
    }
    // Another patient's subject where the own one stood before is still refused.
    let other = subject.replace("p1", "p2");
    assert_eq!(
        assert_agrees(&c, &searchset(&format!("{note},{other}"))),
        RawVerdict::NeedsTree
    );
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
        "securityContext",
        "contained",
        "link",
        // Tells a searchset from other Bundles, and is a restriction element too.
        "type",
    ] {
        assert!(is_checked(key, false), "{key}");
        assert!(is_checked(key, true), "{key}");
    }
    // Restriction elements: read only for a scope with a restriction.
    for key in ["category", "code", "status", "clinicalStatus"] {
        assert!(is_checked(key, true), "{key}");
        assert!(!is_checked(key, false), "{key}");
    }
    for restrictions in [false, true] {
        assert!(!is_checked("valueQuantity", restrictions));
        assert!(!is_checked("text", restrictions));
    }
    // The hashed index answers exactly as the sorted list: every member, and every member
    // with a byte changed, a byte added or the last one cut.
    for key in CHECKED_MEMBERS.iter() {
        assert!(is_checked(key, true), "{key}");
        for near in [
            format!("{key}x"),
            key[..key.len() - 1].to_owned(),
            format!("{}Z", &key[..key.len() - 1]),
        ] {
            assert_eq!(
                is_checked(&near, true),
                CHECKED_MEMBERS.binary_search(&near.as_str()).is_ok(),
                "{near}"
            );
        }
    }
    assert!(!is_checked("", true));
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

// The single pass against the multi-pass check it replaces on the hot path. Bodies are
// built as text so that repeated members, escaped names, member order and broken bytes
// can be generated; the verdicts must be identical, not merely compatible.

/// Resources as text. The own patient's (under the search check) and another patient's
/// make the ordinary verdicts; the odd ones land on the edges of the entry rules.
const OWN: &[&str] = &[
    r#"{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},"valueString":"x"}"#,
    r#"{"resourceType":"Observation","id":"o3","category":[{"coding":[{"code":"laboratory"}]}],"subject":{"reference":"https://gw.example/fhir/Patient/p1"},"performer":[{"reference":"Practitioner/d1"}]}"#,
    r#"{"resourceType":"Patient","id":"p1","name":[{"family":"A"}]}"#,
    r#"{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}"#,
    r#"{"resourceType":"Observation","id":"o8","valueString":"a","valueString":"b","subject":{"reference":"Patient/p1"}}"#,
    r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","id":"n1","subject":{"reference":"Patient/p1"}}}]}"#,
    // Checked members that are numbers (one the prefix of the other), escaped, spaced.
    r#"{"resourceType":"Observation","id":"o13","status":1,"subject":{"reference":"Patient/p1"}}"#,
    r#"{"resourceType":"Observation","id":"o14","status":12,"subject":{"reference":"Patient/p1"}}"#,
    r#"{"resourceType":"Observation","id":"o15","status":"fin\u0061l","subject":{"reference":"Patient/\u00701"}}"#,
    "{ \"resourceType\" : \"Observation\" ,\n \"id\":\"o16\", \"subject\" : {\"reference\" : \"Patient/p1\"} }",
];

const FOREIGN: &[&str] = &[
    r#"{"id":"o2","subject":{"reference":"Patient/p2"},"resourceType":"Observation"}"#,
    r#"{"resourceType":"Condition","id":"c9","subject":{"reference":"Patient/p2"}}"#,
    r#"{"resourceType":"Patient","id":"p2"}"#,
    r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","id":"n2","subject":{"reference":"Patient/p2"}}}]}"#,
    r#"{"resourceType":"Binary","id":"b1","securityContext":{"reference":"Patient/p2"},"data":"aGk="}"#,
    r#"{"resourceType":"Observation","id":"o17","status":1,"subject":{"reference":"Patient/p2"}}"#,
    r#"{"resourceType":"Observation","id":"o18","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p2"}]}"#,
];

const ODD: &[&str] = &[
    r#"{"resourceType":"Practitioner","id":"d1"}"#,
    r#"{"resourceType":"Observation","id":"o4","subject":{"reference":"Patient/p2"},"subject":{"reference":"Patient/p1"}}"#,
    r#"{"resourceType":"Observation","id":"o5","subject":{"reference":"Patient/p2","reference":"Patient/p1"}}"#,
    r#"{"resourceType":"Observation","id":"o6","subject":{"reference":"Patient/p1"},"sub\u006aect":{"reference":"Patient/p1"}}"#,
    r#"{"resourceType":"Observation","resourceType":"Observation","id":"o7","subject":{"reference":"Patient/p1"}}"#,
    r##"{"resourceType":"Observation","id":"o9","contained":[{"resourceType":"Patient","id":"x"}],"subject":{"reference":"#x"}}"##,
    r#"{"resourceType":"Observation","id":"o10","subject":{"reference":"Patient/p1"},"note":[{"text":"\ud800 lone surrogate, skipped"}]}"#,
    r#"{"resourceType":"Observation","id":"o\ud800","subject":{"reference":"Patient/p1"}}"#,
    r#"{"id":"o11","subject":{"reference":"Patient/p1"}}"#,
    r#"{"resourceType":"Observation","id":"o12","subject":{"reference":"Patient/p1"},"code":{"coding":[{"code":1e400}]}}"#,
    // o3's category again, then a stray bracket or a raw tab in it.
    r#"{"resourceType":"Observation","id":"o19","category":[{"coding":[{"code":"laboratory"}]}]],"subject":{"reference":"Patient/p1"}}"#,
    "{\"resourceType\":\"Observation\",\"id\":\"o20\",\"category\":[{\"coding\":[{\"code\":\"labora\ttor\"}]}],\"subject\":{\"reference\":\"Patient/p1\"}}",
    r#"{}"#,
    "null",
    "[]",
    "7",
];

fn any_resource() -> impl Strategy<Value = &'static str> + Clone {
    prop_oneof![
        proptest::sample::select(OWN),
        proptest::sample::select(FOREIGN),
        proptest::sample::select(ODD),
    ]
}

const SEARCHES: &[&str] = &[
    r#"{"mode":"match"}"#,
    r#"{"mode":"include"}"#,
    r#"{"mode":"outcome"}"#,
    r#"{"score":1}"#,
    "null",
    r#"{"mode":null}"#,
    r#"{"mode":7}"#,
    r#"["include"]"#,
    r#"{"mode":"match","mode":"include"}"#,
    r#"{"mode":"inc\u006cude"}"#,
    r#"{"mode":"outc\u006fme"}"#,
    r#"{"mode":"m\u0061tch"}"#,
    r#"{"mode":"match","score":1e400}"#,
];

/// Mostly entries a server would send (so that whole bodies come out unchanged or
/// filtered often enough), the rest anything.
fn entry_strategy() -> impl Strategy<Value = String> {
    let ordinary = prop_oneof![
        (
            proptest::sample::select(OWN),
            proptest::sample::select(vec![
                r#","search":{"mode":"match"}"#,
                r#","search":{"mode":"include"}"#,
                "",
            ])
        ),
        (
            proptest::sample::select(FOREIGN),
            Just(r#","search":{"mode":"include"}"#)
        ),
        (
            proptest::sample::select(ODD),
            Just(r#","search":{"mode":"include"}"#)
        ),
        (Just(OWN[3]), Just(r#","search":{"mode":"outcome"}"#)),
    ]
    .prop_map(|(r, search)| format!(r#"{{"fullUrl":"urn:uuid:1","resource":{r}{search}}}"#));
    prop_oneof![3 => ordinary, 2 => odd_entry_strategy()]
}

/// One entry: the members in the generated order, or a non-object shape.
fn odd_entry_strategy() -> impl Strategy<Value = String> {
    let resource = any_resource();
    let search = proptest::sample::select(SEARCHES);
    (
        proptest::option::weighted(0.9, resource.clone()),
        proptest::option::weighted(0.8, search.clone()),
        proptest::option::weighted(0.15, resource.clone()),
        proptest::option::weighted(0.15, search),
        any::<bool>(),
        any::<bool>(),
        0..40u8,
    )
        .prop_map(
            |(resource, search, again, search_again, search_first, escaped, shape)| {
                let name = if escaped {
                    "resourc\\u0065"
                } else {
                    "resource"
                };
                let mut members =
                    vec![r#""fullUrl":"https://gw.example/fhir/Observation/x""#.to_owned()];
                let push_search = |members: &mut Vec<String>| {
                    if let Some(s) = search {
                        members.push(format!(r#""search":{s}"#));
                    }
                };
                if search_first {
                    push_search(&mut members);
                }
                if let Some(r) = resource {
                    members.push(format!(r#""{name}":{r}"#));
                }
                if !search_first {
                    push_search(&mut members);
                }
                if let Some(r) = again {
                    members.push(format!(r#""resource":{r}"#));
                }
                if let Some(s) = search_again {
                    members.push(format!(r#""search":{s}"#));
                }
                match shape {
                    0 => format!("[{}]", resource.unwrap_or("null")),
                    1 => "null".to_owned(),
                    _ => format!("{{{}}}", members.join(",")),
                }
            },
        )
}

/// A body: a Bundle (list or not) or a single resource, members in any order, sometimes
/// broken after the fact.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let resource_type = proptest::sample::select(vec![
        Some(r#""resourceType":"Bundle""#),
        Some(r#""resourceType":"Bundle""#),
        Some(r#""resourceType":"Observation""#),
        Some(r#""resourceType":"Bundle","resourceType":"Bundle""#),
        None,
    ]);
    let kind = proptest::sample::select(vec![
        Some(r#""type":"searchset""#),
        Some(r#""type":"searchset""#),
        Some(r#""type":"history""#),
        Some(r#""type":"document""#),
        Some(r#""type":"collection""#),
        Some(r#""type":7"#),
        None,
    ]);
    let entries = prop_oneof![
        8 => proptest::collection::vec(entry_strategy(), 0..6)
            .prop_map(|e| Some(format!(r#""entry":[{}]"#, e.join(",")))),
        1 => Just(None),
        1 => proptest::sample::select(vec![
            r#""entry":{}"#, r#""entry":null"#, r#""entry":[],"entry":[]"#,
        ]).prop_map(|e| Some(e.to_owned())),
    ];
    let subject = proptest::sample::select(vec![
        None,
        Some(r#""subject":{"reference":"Patient/p1"}"#),
        Some(r#""subject":{"reference":"Patient/p2"}"#),
        Some(r#""id":"p1""#),
    ]);
    let damage = prop_oneof![
        3 => Just(Vec::new()),
        2 => proptest::collection::vec(damage_strategy(), 1..3),
    ];
    (resource_type, kind, entries, subject, damage, any::<bool>())
        .prop_flat_map(|(rt, kind, entries, subject, damage, trailing)| {
            let members: Vec<String> = [
                rt,
                kind,
                entries.as_deref(),
                subject,
                Some(r#""total":3"#),
                Some(r#""link":[{"relation":"self","url":"x"}]"#),
            ]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect();
            (Just(members).prop_shuffle(), Just(damage), Just(trailing))
        })
        .prop_map(|(members, damage, trailing)| {
            let mut body = format!("{{{}}}", members.join(",")).into_bytes();
            for d in damage {
                d.apply(&mut body);
            }
            if trailing {
                body.extend_from_slice(b"\n ");
            }
            body
        })
}

/// Damage done to a generated body after the fact: the malformed text a scanner might
/// read differently from serde_json, and well-formed changes (whitespace, repeated members)
/// that move entries and members around.
#[derive(Debug, Clone)]
enum Damage {
    Insert(proptest::sample::Index, &'static [u8]),
    Remove(proptest::sample::Index),
    Replace(proptest::sample::Index, &'static [u8]),
    Truncate(proptest::sample::Index),
    FlipBit(proptest::sample::Index, u8),
    /// A copy of the text between two points inserted at a third: repeated members,
    /// entries, brackets.
    Duplicate(
        proptest::sample::Index,
        proptest::sample::Index,
        proptest::sample::Index,
    ),
}

const DAMAGE_BYTES: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u",
    b"\\u00",
    b"\\uZZZZ",
    b"\\ud800",
    b"\\x",
    b"\x00",
    b"\x01",
    b"\x1f",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b" ",
    b"\n",
    b"\t",
    b"\r",
    b"\x0b",
    b"-",
    b"0",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"1e",
    b"1e400",
    b"-0",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"tru",
    b"nul",
    b"null",
    br#""subject":{"reference":"Patient/p2"},"#,
    br#""resource":{"resourceType":"Observation","id":"x","subject":{"reference":"Patient/p2"}},"#,
    br#""search":{"mode":"include"},"#,
    br#""mode":"match","#,
    br#""entry":[],"#,
];

fn damage_strategy() -> impl Strategy<Value = Damage> {
    use proptest::sample::{Index, select};
    prop_oneof![
        4 => (any::<Index>(), select(DAMAGE_BYTES)).prop_map(|(i, b)| Damage::Insert(i, b)),
        2 => any::<Index>().prop_map(Damage::Remove),
        2 => (any::<Index>(), select(DAMAGE_BYTES)).prop_map(|(i, b)| Damage::Replace(i, b)),
        1 => any::<Index>().prop_map(Damage::Truncate),
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Damage::FlipBit(i, bit)),
        2 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Damage::Duplicate(a, b, c)),
    ]
}

impl Damage {
    fn apply(&self, body: &mut Vec<u8>) {
        if body.is_empty() {
            return;
        }
        let len = body.len();
        match self {
            Damage::Insert(i, bytes) => {
                let at = i.index(len + 1);
                body.splice(at..at, bytes.iter().copied());
            }
            Damage::Remove(i) => {
                body.remove(i.index(len));
            }
            Damage::Replace(i, bytes) => {
                let at = i.index(len);
                body.splice(at..at + 1, bytes.iter().copied());
            }
            Damage::Truncate(i) => body.truncate(i.index(len)),
            Damage::FlipBit(i, bit) => body[i.index(len)] ^= 1 << bit,
            Damage::Duplicate(a, b, at) => {
                let (a, b) = (a.index(len + 1), b.index(len + 1));
                let copy = body[a.min(b)..a.max(b)].to_vec();
                let at = at.index(len + 1);
                body.splice(at..at, copy);
            }
        }
    }
}

#[derive(Debug, Default)]
struct DifferentialStats {
    bodies: usize,
    /// Bodies that are not UTF-8 JSON serde_json takes as a `Value`.
    malformed: usize,
    /// Checks that pass such a body on (as the multi-pass check does: a value it only skips,
    /// such as `1e400` or a lone surrogate, breaks the `Value` but not the check).
    malformed_passed: usize,
    checks: usize,
    settled_by_single_pass: usize,
    filtered_by_single_pass: usize,
    unchanged: usize,
    filtered: usize,
    needs_tree: usize,
    refused: usize,
}

#[test]
fn single_pass_gives_the_verdicts_of_the_multi_pass_check() {
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::RefCell;

    let checks = [
        search_check(),
        check(
            "patient/Observation.rs patient/Patient.rs",
            "GET",
            "/Observation?patient=p1",
        ),
        check(
            "patient/Observation.rs?category=laboratory",
            "GET",
            "/Observation?patient=p1",
        ),
        check("patient/*.rs", "GET", "/Observation/o1"),
        check("patient/*.rs", "GET", "/Patient/p1"),
        check("patient/*.rs", "GET", "/Bundle/d1"),
    ];
    const CASES: u32 = 10_000;
    let stats = RefCell::new(DifferentialStats::default());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&body_strategy(), |body| {
        let mut s = stats.borrow_mut();
        s.bodies += 1;
        let malformed = serde_json::from_slice::<Value>(&body).is_err();
        s.malformed += usize::from(malformed);
        for c in &checks {
            let old = verify_response_bytes_multi_pass(c, &body);
            let new = verify_response_bytes(c, &body);
            prop_assert_eq!(&new, &old, "{}", String::from_utf8_lossy(&body));
            s.checks += 1;
            if let Ok(text) = std::str::from_utf8(&body)
                && let Some(settled) = crate::verify_single::single_pass(c, text)
            {
                s.settled_by_single_pass += 1;
                if matches!(settled, Ok(RawVerdict::Filtered { .. })) {
                    s.filtered_by_single_pass += 1;
                }
            }
            if malformed
                && matches!(
                    old,
                    Ok(RawVerdict::Unchanged(_) | RawVerdict::Filtered { .. })
                )
            {
                s.malformed_passed += 1;
            }
            match old {
                Ok(RawVerdict::Unchanged(_)) => s.unchanged += 1,
                Ok(RawVerdict::Filtered { .. }) => s.filtered += 1,
                Ok(RawVerdict::NeedsTree) => s.needs_tree += 1,
                Err(_) => s.refused += 1,
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let s = stats.into_inner();
    eprintln!("{s:?}");
    // Every verdict comes up often enough for agreement to mean something, and the
    // single pass settles a real share of the bodies rather than deferring everything.
    let floor = s.checks / 50;
    assert!(s.unchanged > floor && s.filtered > floor / 4, "{s:?}");
    assert!(s.needs_tree > floor && s.refused > floor, "{s:?}");
    assert!(s.settled_by_single_pass > s.checks / 10, "{s:?}");
    assert!(s.filtered_by_single_pass > floor / 4, "{s:?}");
    assert!(s.malformed > s.bodies / 5, "{s:?}");
}

#[test]
fn single_pass_settles_the_common_shapes_itself() {
    let c = search_check();
    let own = text(&obs("o1", "p1"));
    let settled = [
        // Entries before the members that say it is a list.
        format!(r#"{{"entry":[{{"resource":{own}}}],"type":"searchset","resourceType":"Bundle"}}"#),
        format!(
            r#"{{"resourceType":"Bundle","entry":[{{"search":{{"mode":"match"}},"resource":{own}}}],"type":"history"}}"#
        ),
        format!(
            r#"{{"resourceType":"Bundle","type":"history","entry":[{{"request":{{"method":"DELETE"}}}},{{"resource":{own}}}]}}"#
        ),
        r#"{"resourceType":"Bundle","type":"searchset","total":0}"#.to_owned(),
        // Another patient's include: cut out after the one pass.
        format!(
            r#"{{"type":"searchset","entry":[{{"resource":{own}}},{{"resource":{},"search":{{"mode":"include"}}}}],"resourceType":"Bundle"}}"#,
            text(&obs("o2", "p2"))
        ),
        // Not a list, known before its entries: read whole, once.
        format!(r#"{{"resourceType":"Bundle","type":"document","entry":[{{"resource":{own}}}]}}"#),
        own.clone(),
    ];
    for body in &settled {
        let single = crate::verify_single::single_pass(&c, body);
        assert!(single.is_some(), "{body}");
        assert_eq!(
            single,
            Some(verify_response_bytes_multi_pass(&c, body.as_bytes())),
            "{body}"
        );
    }
    let deferred = [
        // A match entry to remove, or a shape the list rules hand to the tree.
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{}}}]}}"#,
            text(&obs("o2", "p2"))
        ),
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"fullUrl":"x"}},{{"resource":{own}}}]}}"#
        ),
        format!(r#"{{"resourceType":"Bundle","type":"searchset","entry":[[{own}]]}}"#),
        // Entries read as a list, but the body turns out not to be one.
        format!(r#"{{"entry":[{{"resource":{own}}}],"resourceType":"Bundle","type":"document"}}"#),
    ];
    for body in &deferred {
        assert_eq!(crate::verify_single::single_pass(&c, body), None, "{body}");
    }
}

#[test]
fn array_shaped_entries_and_searches_are_never_passed_through() {
    // serde's derive fills a struct from an array of its fields in order: an entry
    // `[own, other]` once read the other patient's resource as `search` and skipped it.
    let c = search_check();
    let own = text(&obs("o1", "p1"));
    let other = text(&obs("o2", "p2"));
    for body in [
        format!(r#"{{"resourceType":"Bundle","type":"searchset","entry":[[{own},{other}]]}}"#),
        format!(r#"{{"resourceType":"Bundle","type":"searchset","entry":[[{own}]]}}"#),
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own},"search":["match"]}}]}}"#
        ),
    ] {
        assert_eq!(
            verify_response_bytes(&c, body.as_bytes()),
            Ok(RawVerdict::NeedsTree),
            "{body}"
        );
        assert_eq!(
            verify_response_bytes_multi_pass(&c, body.as_bytes()),
            Ok(RawVerdict::NeedsTree),
            "{body}"
        );
    }
    // The tree check takes such entries out.
    let mut tree: Value = serde_json::from_str(&format!(
        r#"{{"resourceType":"Bundle","type":"searchset","entry":[[{own},{other}]]}}"#
    ))
    .unwrap();
    verify_response(&c, &mut tree).unwrap();
    assert!(!tree.to_string().contains("\"o2\""), "{tree}");
    // An object entry with an object `search` still takes the fast path.
    let plain = format!(
        r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{own},"search":{{"mode":"match","score":1}}}}]}}"#
    );
    assert!(matches!(
        verify_response_bytes(&c, plain.as_bytes()),
        Ok(RawVerdict::Unchanged(_))
    ));
}

/// serde_json builds at most 127 nested levels, and the multi-pass check counts them from
/// the resource while the single pass counts from the top of the body: around that limit,
/// the single pass defers and the verdicts stay the same.
#[test]
fn nesting_near_the_limit_gets_the_verdicts_of_the_multi_pass_check() {
    let search = search_check();
    let read = check("patient/*.rs", "GET", "/Observation/o1");
    let mut settled = 0;
    for levels in 118..=132 {
        let nested = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        for member in ["code", "extension"] {
            let resource = format!(
                r#"{{"resourceType":"Observation","id":"o1","subject":{{"reference":"Patient/p1"}},"{member}":{nested}}}"#
            );
            let list = format!(
                r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{resource}}}]}}"#
            );
            for (c, body) in [(&read, &resource), (&search, &list)] {
                let reference = verify_response_bytes_multi_pass(c, body.as_bytes());
                assert_eq!(
                    verify_response_bytes(c, body.as_bytes()),
                    reference,
                    "{member} {levels}"
                );
                if let Some(single) = crate::verify_single::single_pass(c, body) {
                    assert_eq!(single, reference, "{member} {levels}");
                    settled += 1;
                }
            }
        }
    }
    assert!(settled > 10, "{settled}");
}

#[test]
fn checked_members_build_as_the_multi_pass_check_builds_them() {
    let texts = [
        r#""""#,
        r#""abc""#,
        "\"é ü \u{7f} \u{10348}\"",
        r#""a\"b""#,
        r#""\u0041\/""#,
        r#""\ud800""#,
        r#"{"reference":"Patient/p1"}"#,
        "7",
        "1e400",
        "null",
    ];
    for text in texts {
        let mut s = crate::json_scan::Scanner::new(text);
        assert_eq!(s.skip_value(0), Ok(()), "{text}");
        assert_eq!(
            crate::verify_single::build(text).ok(),
            strict_value(text).ok(),
            "{text}"
        );
    }
    assert_eq!(crate::verify_single::plain_string(r#""a\"b""#), None);
    assert_eq!(crate::verify_single::plain_string(r#""abc""#), Some("abc"));
}

use serde_json::{Value, json};

use super::*;
use crate::authorize::tests::request;
use crate::decision::{AllowWithin, Decision, Grant, Policy};
use crate::{authorize, authorize_bundle};

fn within(
    scopes: &str,
    patient: Option<&str>,
    method: &str,
    url: &str,
    policy: &Policy,
) -> AllowWithin {
    let grant = Grant::new(scopes, patient, None);
    match authorize(&grant, &request(method, url, None, None), policy) {
        Decision::AllowWithin(w) => *w,
        other => panic!("{url}: {other:?}"),
    }
}

fn policy() -> Policy {
    Policy::default().with_bases(["https://gw.example/fhir"])
}

fn obs(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "subject": {"reference": format!("Patient/{patient}")}})
}

fn lab_obs(id: &str, patient: &str, category: &str) -> Value {
    let mut o = obs(id, patient);
    o["category"] = json!([{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]);
    o
}

fn entry(resource: Value, mode: &str) -> Value {
    json!({"resource": resource, "search": {"mode": mode}})
}

#[test]
fn read_of_own_and_other_patients_resources() {
    let w = within(
        "patient/*.rs",
        Some("p1"),
        "GET",
        "/Observation/o1",
        &policy(),
    );
    assert_eq!(
        verify_resource(&w.check, &obs("o1", "p1")).map(|p| p.into_iter().collect::<Vec<_>>()),
        Ok(vec!["p1".to_owned()])
    );
    let denied = verify_resource(&w.check, &obs("o2", "p2"));
    assert_eq!(
        denied.as_ref().err().map(|r| r.kind),
        Some(DenyKind::OtherPatient)
    );
    assert!(
        !denied
            .err()
            .map(|r| r.diagnostic)
            .unwrap_or_default()
            .contains("p2")
    );

    let hide = Policy {
        hide_existence: true,
        ..policy()
    };
    let w = within("patient/*.rs", Some("p1"), "GET", "/Observation/o2", &hide);
    let denied = verify_resource(&w.check, &obs("o2", "p2")).err();
    assert_eq!(denied.as_ref().map(|r| r.http_status()), Some(404));
}

#[test]
fn anchors_that_cannot_be_shown_ours_are_refused() {
    let w = within(
        "patient/*.rs",
        Some("p1"),
        "GET",
        "/Observation/o1",
        &policy(),
    );
    for subject in [
        json!({"reference": "https://evil.example/fhir/Patient/p1"}),
        json!({"reference": "Group/p1"}),
        json!({"type": "Patient", "identifier": {"value": "p1"}}),
        json!({"reference": "#p"}),
    ] {
        let o = json!({"resourceType": "Observation", "subject": subject,
            "contained": [{"resourceType": "Patient", "id": "p"}]});
        assert!(verify_resource(&w.check, &o).is_err(), "{o}");
    }
    let absolute = json!({"resourceType": "Observation",
        "subject": {"reference": "https://gw.example/fhir/Patient/p1"}});
    assert!(verify_resource(&w.check, &absolute).is_ok());
    let no_type = json!({"id": "x"});
    assert!(verify_resource(&w.check, &no_type).is_err());
}

#[test]
fn non_compartment_types_need_a_scope_naming_them() {
    let prac = json!({"resourceType": "Practitioner", "id": "d1"});
    let all = within(
        "patient/*.rs",
        Some("p1"),
        "GET",
        "/Observation/o1",
        &policy(),
    );
    assert!(verify_resource(&all.check, &prac).is_ok());
    let obs_only = within(
        "patient/Observation.rs",
        Some("p1"),
        "GET",
        "/Observation/o1",
        &policy(),
    );
    assert_eq!(
        verify_resource(&obs_only.check, &prac)
            .err()
            .map(|r| r.kind),
        Some(DenyKind::InsufficientScope)
    );
}

#[test]
fn binary_with_another_patients_security_context_is_hidden() {
    let w = within("patient/*.rs", Some("p1"), "GET", "/Binary/b1", &policy());
    let bin = |ctx: Value| json!({"resourceType": "Binary", "contentType": "text/plain", "securityContext": ctx});
    assert!(verify_resource(&w.check, &bin(json!({"reference": "Patient/p1"}))).is_ok());
    assert!(verify_resource(&w.check, &bin(json!({"reference": "DocumentReference/d1"}))).is_ok());
    assert!(verify_resource(&w.check, &bin(json!({"reference": "Patient/p2"}))).is_err());
    assert!(
        verify_resource(
            &w.check,
            &bin(json!({"reference": "https://evil.example/Patient/p1"}))
        )
        .is_err()
    );
    assert!(verify_resource(&w.check, &json!({"resourceType": "Binary"})).is_ok());
}

#[test]
fn searchset_is_filtered_with_a_suppressed_outcome() {
    let w = within(
        "patient/Observation.rs patient/Practitioner.rs",
        Some("p1"),
        "GET",
        "/Observation?_include=Observation:subject&_include=Observation:performer",
        &policy(),
    );
    let upstream_oo = json!({"resourceType": "OperationOutcome", "issue": []});
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": 2, "entry": [
        entry(obs("o1", "p1"), "match"),
        entry(obs("o2", "p2"), "match"),
        entry(json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Secret"}]}), "include"),
        entry(json!({"resourceType": "Patient", "id": "p1"}), "include"),
        entry(json!({"resourceType": "Practitioner", "id": "d1"}), "include"),
        entry(upstream_oo, "outcome"),
    ]});
    let out = filter_searchset(&w.check, &mut bundle).unwrap_or_default();
    assert_eq!(out.removed_match, 1);
    // Patient p1 is also removed: the scopes do not grant Patient.
    assert_eq!(out.removed_included, 2);
    assert_eq!(out.patients.iter().collect::<Vec<_>>(), vec!["p1"]);
    let text = bundle.to_string();
    assert!(!text.contains("p2") && !text.contains("Secret"), "{text}");
    assert!(bundle.get("total").is_none());
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 4);
    let last = entries.last().cloned().unwrap_or_default();
    assert_eq!(last["search"]["mode"], "outcome");
    assert_eq!(last["resource"]["issue"][0]["code"], "suppressed");
}

#[test]
fn searchset_entries_without_a_resource_are_dropped() {
    let w = within("patient/*.rs", Some("p1"), "GET", "/Observation", &policy());
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        entry(obs("o1", "p1"), "match"),
        {"fullUrl": "https://gw.example/fhir/Observation/of-p2", "search": {"mode": "match"}}]});
    let out = filter_searchset(&w.check, &mut bundle).unwrap_or_default();
    assert_eq!(out.removed_match, 1);
    assert!(!bundle.to_string().contains("of-p2"));
}

#[test]
fn nothing_removed_means_nothing_added() {
    let w = within("patient/*.rs", Some("p1"), "GET", "/Observation", &policy());
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": 1,
        "entry": [entry(obs("o1", "p1"), "match")]});
    let before = bundle.clone();
    let out = filter_searchset(&w.check, &mut bundle).unwrap_or_default();
    assert_eq!(out.removed(), 0);
    assert_eq!(bundle, before);
}

#[test]
fn granular_restrictions_filter_the_response() {
    let w = within(
        "patient/Observation.rs?category=laboratory",
        Some("p1"),
        "GET",
        "/Observation",
        &policy(),
    );
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        entry(lab_obs("o1", "p1", "laboratory"), "match"),
        entry(lab_obs("o2", "p1", "vital-signs"), "match"),
        entry(obs("o3", "p1"), "match"),
    ]});
    let out = filter_searchset(&w.check, &mut bundle).unwrap_or_default();
    assert_eq!(out.removed_match, 2);
    // F21: reading a vital-signs Observation is refused.
    let read = within(
        "patient/Observation.rs?category=laboratory",
        Some("p1"),
        "GET",
        "/Observation/o2",
        &policy(),
    );
    assert_eq!(
        verify_resource(&read.check, &lab_obs("o2", "p1", "vital-signs"))
            .err()
            .map(|r| r.kind),
        Some(DenyKind::InsufficientScope)
    );
    assert!(verify_resource(&read.check, &lab_obs("o1", "p1", "laboratory")).is_ok());
}

#[test]
fn history_and_documents() {
    let w = within(
        "patient/*.rs",
        Some("p1"),
        "GET",
        "/Observation/o1/_history",
        &policy(),
    );
    let mut history = json!({"resourceType": "Bundle", "type": "history", "entry": [
        {"resource": obs("o1", "p1")},
        {"resource": obs("o1", "p2")},
        {"request": {"method": "DELETE", "url": "Observation/o1"}},
    ]});
    let out = verify_response(&w.check, &mut history).unwrap_or_default();
    assert_eq!(out.removed_match, 1);
    assert_eq!(history["entry"].as_array().map(Vec::len), Some(2));

    let doc = within(
        "patient/*.rs",
        Some("p1"),
        "GET",
        "/Composition/c1/$document",
        &policy(),
    );
    let mut good = json!({"resourceType": "Bundle", "type": "document", "entry": [
        {"resource": {"resourceType": "Composition", "subject": {"reference": "Patient/p1"}}},
        {"resource": obs("o1", "p1")}]});
    assert!(verify_response(&doc.check, &mut good).is_ok());
    let mut bad = json!({"resourceType": "Bundle", "type": "document", "entry": [
        {"resource": {"resourceType": "Composition", "subject": {"reference": "Patient/p1"}}},
        {"resource": obs("o2", "p2")}]});
    assert!(verify_response(&doc.check, &mut bad).is_err());
}

#[test]
fn create_body_must_stay_in_the_compartment() {
    let w = within(
        "patient/*.cruds",
        Some("p1"),
        "POST",
        "/Observation",
        &policy(),
    );
    assert!(w.check_body(&obs("n", "p1"), None).is_ok());
    // F18.
    let err = w.check_body(&obs("n", "p2"), None).err();
    assert_eq!(err.map(|e| e.kind), Some(DenyKind::OtherPatient));
    let wrong_type = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}});
    assert_eq!(
        w.check_body(&wrong_type, None).err().map(|e| e.kind),
        Some(DenyKind::Invalid)
    );
    let no_subject = json!({"resourceType": "Observation"});
    assert!(w.check_body(&no_subject, None).is_err());
}

#[test]
fn update_checks_current_and_body() {
    let w = within(
        "patient/*.cruds",
        Some("p1"),
        "PUT",
        "/Observation/o1",
        &policy(),
    );
    assert!(w.fetch_current);
    assert!(w.check_current(Some(&obs("o1", "p1"))).is_ok());
    assert!(w.check_current(Some(&obs("o1", "p2"))).is_err());
    assert!(w.check_current(None).is_ok());
    // F19: moving the resource to p2.
    assert!(w.check_body(&obs("o1", "p1"), None).is_ok());
    assert!(w.check_body(&obs("o1", "p2"), None).is_err());
    assert_eq!(
        w.check_body(&obs("other-id", "p1"), None)
            .err()
            .map(|e| e.kind),
        Some(DenyKind::Invalid)
    );
}

#[test]
fn json_patch_result_is_checked() {
    let w = within(
        "patient/*.cruds",
        Some("p1"),
        "PATCH",
        "/Observation/o1",
        &policy(),
    );
    let current = obs("o1", "p1");
    let harmless = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    assert!(w.check_body(&harmless, Some(&current)).is_ok());
    let moving = json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]);
    assert_eq!(
        w.check_body(&moving, Some(&current)).err().map(|e| e.kind),
        Some(DenyKind::OtherPatient)
    );
    let broken = json!([{"op": "replace", "path": "/nope/x", "value": 1}]);
    assert_eq!(
        w.check_body(&broken, Some(&current)).err().map(|e| e.kind),
        Some(DenyKind::Invalid)
    );
    let fhirpath = json!({"resourceType": "Parameters", "parameter": []});
    assert_eq!(
        w.check_body(&fhirpath, Some(&current))
            .err()
            .map(|e| e.kind),
        Some(DenyKind::NotSupported)
    );
}

#[test]
fn conditional_patch_may_not_touch_anchors() {
    let w = within(
        "patient/*.cruds",
        Some("p1"),
        "PATCH",
        "/Observation?identifier=x",
        &policy(),
    );
    let harmless = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    assert!(w.check_body(&harmless, None).is_ok());
    for path in ["/subject", "/subject/reference", "/performer/0", "/", "/id"] {
        let p = json!([{"op": "replace", "path": path, "value": "x"}]);
        assert_eq!(
            w.check_body(&p, None).err().map(|e| e.kind),
            Some(DenyKind::NotSupported),
            "{path}"
        );
    }
    let mv = json!([{"op": "move", "from": "/subject", "path": "/note"}]);
    assert!(w.check_body(&mv, None).is_err());
}

fn batch(kind: &str) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": [
        {"request": {"method": "GET", "url": "Patient/p1"}},
        {"request": {"method": "GET", "url": "Patient/p2"}},
        {"request": {"method": "DELETE", "url": "Observation?code=x"}},
        {"request": {"method": "GET", "url": "Observation?code=x"}},
    ]})
}

#[test]
fn batch_is_decided_per_entry_and_answered_in_place() {
    let grant = Grant::new("patient/*.cruds", Some("p1"), None);
    let plan =
        authorize_bundle(&grant, &batch("batch"), &policy()).unwrap_or_else(|e| panic!("{e}"));
    let allowed: Vec<bool> = plan
        .entries
        .iter()
        .map(|e| e.decision.is_allowed())
        .collect();
    assert_eq!(allowed, vec![true, false, true, true]);

    let mut forward = batch("batch");
    plan.rewrite(&mut forward);
    let urls: Vec<&str> = forward["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["request"]["url"].as_str())
        .collect();
    assert_eq!(
        urls,
        vec![
            "Patient/p1",
            "Observation?code=x&patient=p1",
            "Observation?code=x&patient=p1"
        ]
    );

    let mut response = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}, "response": {"status": "200 OK"}},
        {"response": {"status": "204 No Content"}},
        {"resource": {"resourceType": "Bundle", "type": "searchset", "entry": [
            entry(obs("o1", "p1"), "match"), entry(obs("o2", "p2"), "match")]},
         "response": {"status": "200 OK"}},
    ]});
    let out = plan.finish_response(&mut response);
    assert_eq!(out.removed_match, 1);
    let statuses: Vec<String> = response["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["response"]["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        statuses,
        vec!["200 OK", "403 Forbidden", "204 No Content", "200 OK"]
    );
    assert!(!response.to_string().contains("o2"));
}

#[test]
fn transaction_is_all_or_nothing() {
    let grant = Grant::new("patient/*.cruds", Some("p1"), None);
    let err = authorize_bundle(&grant, &batch("transaction"), &policy()).err();
    assert_eq!(err.as_ref().map(|e| e.kind), Some(DenyKind::OtherPatient));
    assert!(
        err.map(|e| e.diagnostic)
            .unwrap_or_default()
            .starts_with("Bundle.entry[1]")
    );

    let ok = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": obs("n", "p1")}]});
    assert!(authorize_bundle(&grant, &ok, &policy()).is_ok());
    let moving = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": obs("n", "p2")}]});
    assert!(authorize_bundle(&grant, &moving, &policy()).is_err());
    let by_id = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Observation/o1"}, "resource": obs("o1", "p1")}]});
    assert_eq!(
        authorize_bundle(&grant, &by_id, &policy())
            .err()
            .map(|e| e.kind),
        Some(DenyKind::NotSupported)
    );
    let urn = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient"}},
        {"request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:1"}}}]});
    assert!(authorize_bundle(&grant, &urn, &policy()).is_err());
    let not_batch = json!({"resourceType": "Bundle", "type": "collection"});
    assert_eq!(
        authorize_bundle(&grant, &not_batch, &policy())
            .err()
            .map(|e| e.kind),
        Some(DenyKind::Invalid)
    );
}

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{TestStore, issue_code};

fn patient(mrn: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}]})
}

async fn create_if_none_exist(t: &TestStore, mrn: &str) -> (StatusCode, Value) {
    let r = t
        .client
        .post(t.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", format!("identifier=urn:mrn|{mrn}"))
        .body(patient(mrn).to_string())
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn conditional_create_creates_once() {
    let t = TestStore::start().await;
    let (s, first) = create_if_none_exist(&t, "M1").await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, second) = create_if_none_exist(&t, "M1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(first["id"], second["id"]);
    assert_eq!(t.search_ids("Patient?identifier=M1").await.len(), 1);

    // Two matches: 412.
    t.post("Patient", patient("M2")).await;
    t.post("Patient", patient("M2")).await;
    let (s, b) = create_if_none_exist(&t, "M2").await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    assert_eq!(issue_code(&b), "multiple-matches");
}

#[tokio::test]
async fn conditional_update_and_delete() {
    let t = TestStore::start().await;
    // No match: creates.
    let (s, b) = t.put("Patient?identifier=urn:mrn|U1", patient("U1")).await;
    assert_eq!(s, StatusCode::CREATED);
    let id = b["id"].as_str().unwrap().to_owned();
    // One match: updates it.
    let mut p = patient("U1");
    p["gender"] = json!("female");
    let (s, b) = t.put("Patient?identifier=urn:mrn|U1", p).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["id"], id.as_str());
    assert_eq!(b["meta"]["versionId"], "2");

    let r = t
        .req(Method::DELETE, "Patient?identifier=urn:mrn|U1", None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = t.get(&format!("Patient/{id}")).await;
    assert_eq!(s, StatusCode::GONE);
}

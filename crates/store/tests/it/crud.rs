use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{TestStore, issue_code};

fn patient(family: &str) -> serde_json::Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ann"]}], "gender": "female", "birthDate": "1980-05-01"})
}

#[tokio::test]
async fn create_assigns_id_and_version_and_returns_headers() {
    let t = TestStore::start().await;
    let r = t
        .req(Method::POST, "Patient", Some(patient("Lovelace")))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with(&format!("{}/Patient/", t.base)) && loc.ends_with("/_history/1"),
        "{loc}"
    );
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(r.headers().contains_key("last-modified"));
    let body: serde_json::Value = r.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));

    let (s, read) = t.get(&format!("Patient/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read["name"][0]["family"], "Lovelace");
}

#[tokio::test]
async fn body_id_is_ignored_on_create() {
    let t = TestStore::start().await;
    let mut p = patient("X");
    p["id"] = json!("chosen");
    let (s, b) = t.post("Patient", p).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(b["id"], "chosen");
}

#[tokio::test]
async fn read_unknown_is_404_and_deleted_is_410() {
    let t = TestStore::start().await;
    let (s, b) = t.get("Patient/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["resourceType"], "OperationOutcome");
    assert_eq!(issue_code(&b), "not-found");

    let (_, created) = t.post("Patient", patient("Gone")).await;
    let id = created["id"].as_str().unwrap();
    let r = t.req(Method::DELETE, &format!("Patient/{id}"), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, b) = t.get(&format!("Patient/{id}")).await;
    assert_eq!(s, StatusCode::GONE);
    assert_eq!(issue_code(&b), "deleted");
    // Deleting again is idempotent.
    let r = t.req(Method::DELETE, &format!("Patient/{id}"), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn update_as_create_then_update_bumps_version_and_vread_sees_both() {
    let t = TestStore::start().await;
    let mut p = patient("One");
    p["id"] = json!("p1");
    let (s, b) = t.put("Patient/p1", p.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(b["meta"]["versionId"], "1");
    p["name"][0]["family"] = json!("Two");
    let (s, b) = t.put("Patient/p1", p).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["meta"]["versionId"], "2");

    let (s, v1) = t.get("Patient/p1/_history/1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v1["name"][0]["family"], "One");
    let (_, v2) = t.get("Patient/p1/_history/2").await;
    assert_eq!(v2["name"][0]["family"], "Two");
    let (s, _) = t.get("Patient/p1/_history/3").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn if_match_gives_optimistic_locking() {
    let t = TestStore::start().await;
    let mut p = patient("Lock");
    p["id"] = json!("lock");
    t.put("Patient/lock", p.clone()).await;

    let r = t
        .client
        .put(t.url("Patient/lock"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "W/\"2\"");

    // A second writer still holding version 1 loses.
    let r = t
        .client
        .put(t.url("Patient/lock"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(issue_code(&b), "conflict");

    let r = t
        .client
        .delete(t.url("Patient/lock"))
        .header("if-match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn if_none_match_and_if_modified_since_give_304() {
    let t = TestStore::start().await;
    let (_, b) = t.post("Patient", patient("Cache")).await;
    let id = b["id"].as_str().unwrap();
    let r = t.req(Method::GET, &format!("Patient/{id}"), None).await;
    let last_modified = r.headers()["last-modified"].to_str().unwrap().to_owned();

    let r = t
        .client
        .get(t.url(&format!("Patient/{id}")))
        .header("if-none-match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = t
        .client
        .get(t.url(&format!("Patient/{id}")))
        .header("if-none-match", "W/\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = t
        .client
        .get(t.url(&format!("Patient/{id}")))
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = t
        .client
        .get(t.url(&format!("Patient/{id}")))
        .header("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn prefer_return_minimal_and_operation_outcome() {
    let t = TestStore::start().await;
    let r = t
        .client
        .post(t.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(patient("Min").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().contains_key("location"));
    assert!(r.bytes().await.unwrap().is_empty());

    let r = t
        .client
        .post(t.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(patient("OO").to_string())
        .send()
        .await
        .unwrap();
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn json_patch_updates_and_bad_patch_is_rejected() {
    let t = TestStore::start().await;
    let mut p = patient("Patchy");
    p["id"] = json!("pp");
    t.put("Patient/pp", p).await;
    let r = t
        .client
        .patch(t.url("Patient/pp"))
        .header("content-type", "application/json-patch+json")
        .body(json!([{"op": "replace", "path": "/gender", "value": "other"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["gender"], "other");
    assert_eq!(b["meta"]["versionId"], "2");

    let r = t
        .client
        .patch(t.url("Patient/pp"))
        .header("content-type", "application/json-patch+json")
        .body(json!([{"op": "replace", "path": "/id", "value": "other"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = t
        .client
        .patch(t.url("Patient/pp"))
        .header("content-type", "application/json-patch+json")
        .body(json!([{"op": "test", "path": "/gender", "value": "male"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(issue_code(&b), "processing");
}

#[tokio::test]
async fn validation_errors_name_the_element() {
    let t = TestStore::start().await;
    let r = t
        .client
        .post(t.url("Patient"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(issue_code(&b), "structure");

    let (s, b) = t
        .post(
            "Patient",
            json!({"resourceType": "Observation", "status": "final"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["issue"][0]["expression"][0], "resourceType");

    let (s, b) = t.post("Patient", json!({"resourceType": "Nonsense"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(issue_code(&b), "invalid");

    let (s, b) = t
        .put("Patient/a", json!({"resourceType": "Patient", "id": "b"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["issue"][0]["expression"][0], "Patient.id");

    let (s, b) = t
        .post(
            "Observation",
            json!({"resourceType": "Observation", "status": "final", "subject": {"reference": 42}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["issue"][0]["expression"][0],
        "Observation.subject.reference"
    );

    // References to absent resources are allowed.
    let (s, _) = t
        .post("Observation", json!({"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/absent"}}))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let (s, b) = t.get("Nonsense/1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(issue_code(&b), "not-supported");
}

#[tokio::test]
async fn capability_statement_lists_what_is_supported() {
    let t = TestStore::start().await;
    let (s, cs) = t.get("metadata").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let obs = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    let params: Vec<&str> = obs["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        params.contains(&"patient")
            && params.contains(&"category")
            && params.contains(&"value-quantity")
    );
    assert!(
        !params.contains(&"code-value-quantity"),
        "composite parameters are not supported"
    );
    let codes: Vec<&str> = cs["rest"][0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["transaction", "batch", "history-system"]);
}

#[tokio::test]
async fn paths_outside_the_base_are_404() {
    let t = TestStore::start().await;
    let base_root = t.base.trim_end_matches("/fhir").to_owned();
    let r = t
        .client
        .get(format!("{base_root}/other/Patient"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(issue_code(&b), "not-found");
}

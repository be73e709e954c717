use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestStore, issue_code};

fn txn(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn post_entry(full_url: &str, resource: Value) -> Value {
    let t = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": t}})
}

#[tokio::test]
async fn transaction_resolves_urn_uuid_references() {
    let t = TestStore::start().await;
    let p = "urn:uuid:11111111-1111-1111-1111-111111111111";
    let bundle = txn(
        "transaction",
        vec![
            post_entry(
                "urn:uuid:22222222-2222-2222-2222-222222222222",
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": p}}),
            ),
            post_entry(
                p,
                json!({"resourceType": "Patient", "name": [{"family": "Urn"}]}),
            ),
        ],
    );
    let (s, b) = t.post("", bundle).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["type"], "transaction-response");
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    let patient_loc = entries[1]["response"]["location"].as_str().unwrap();
    let patient_id = patient_loc.split('/').rev().nth(2).unwrap();
    let obs_ids = t
        .search_ids(&format!("Observation?patient={patient_id}"))
        .await;
    assert_eq!(obs_ids.len(), 1);
}

#[tokio::test]
async fn failing_entry_rolls_back_a_transaction_but_not_a_batch() {
    let t = TestStore::start().await;
    let entries = vec![
        post_entry(
            "urn:uuid:a",
            json!({"resourceType": "Patient", "name": [{"family": "Kept"}]}),
        ),
        json!({"resource": {"resourceType": "Patient", "id": "x"}, "request": {"method": "PUT", "url": "Patient/y"}}),
    ];
    let (s, b) = t.post("", txn("transaction", entries.clone())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(issue_code(&b), "invalid");
    assert!(
        b["issue"][0]["expression"][0]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[1]"),
        "{b}"
    );
    assert!(
        t.search_ids("Patient?family=Kept").await.is_empty(),
        "transaction rolled back"
    );

    let (s, b) = t.post("", txn("batch", entries)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["type"], "batch-response");
    assert_eq!(b["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(b["entry"][1]["response"]["status"], "400 Bad Request");
    assert_eq!(
        b["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(
        t.search_ids("Patient?family=Kept").await.len(),
        1,
        "batch kept the good entry"
    );
}

#[tokio::test]
async fn transaction_with_reads_deletes_conditional_refs_and_if_match() {
    let t = TestStore::start().await;
    t.put("Organization/o1", json!({"resourceType": "Organization", "id": "o1", "identifier": [{"system": "urn:npi", "value": "9"}]})).await;
    t.put(
        "Patient/gone",
        json!({"resourceType": "Patient", "id": "gone"}),
    )
    .await;
    let bundle = txn(
        "transaction",
        vec![
            json!({"request": {"method": "DELETE", "url": "Patient/gone"}}),
            post_entry(
                "urn:uuid:p",
                json!({"resourceType": "Patient", "managingOrganization": {"reference": "Organization?identifier=urn:npi|9"}}),
            ),
            json!({"request": {"method": "GET", "url": "Organization/o1"}}),
        ],
    );
    let (s, b) = t.post("", bundle).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["entry"][0]["response"]["status"], "204 No Content");
    assert_eq!(
        t.search_ids("Patient?organization=Organization/o1")
            .await
            .len(),
        1
    );
    let (s, _) = t.get("Patient/gone").await;
    assert_eq!(s, StatusCode::GONE);

    // A stale ifMatch fails the whole transaction with 412.
    let bundle = txn(
        "transaction",
        vec![
            json!({"resource": {"resourceType": "Organization", "id": "o1"}, "request": {"method": "PUT", "url": "Organization/o1", "ifMatch": "W/\"9\""}}),
        ],
    );
    let (s, _) = t.post("", bundle).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn non_bundle_or_wrong_type_is_rejected() {
    let t = TestStore::start().await;
    let (s, b) = t
        .post("", json!({"resourceType": "Bundle", "type": "collection"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["issue"][0]["expression"][0], "Bundle.type");
}

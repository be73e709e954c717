use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::TestStore;

#[tokio::test]
async fn instance_type_and_system_history_newest_first() {
    let t = TestStore::start().await;
    for v in ["a", "b", "c"] {
        t.put("Patient/h1", json!({"resourceType": "Patient", "id": "h1", "gender": "unknown", "name": [{"family": v}]})).await;
    }
    t.req(Method::DELETE, "Patient/h1", None).await;
    t.put(
        "Practitioner/d1",
        json!({"resourceType": "Practitioner", "id": "d1"}),
    )
    .await;

    let (s, b) = t.get("Patient/h1/_history").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["type"], "history");
    assert_eq!(b["total"], 4);
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[1]["resource"]["name"][0]["family"], "c");
    assert_eq!(entries[1]["response"]["etag"], "W/\"3\"");
    assert_eq!(entries[3]["resource"]["meta"]["versionId"], "1");

    let (_, b) = t.get("Patient/_history").await;
    assert_eq!(b["total"], 4);
    let (_, b) = t.get("_history").await;
    assert_eq!(b["total"], 5);
    assert_eq!(b["entry"][0]["resource"]["resourceType"], "Practitioner");

    let (_, b) = t.get("_history?_count=2").await;
    assert_eq!(b["entry"].as_array().unwrap().len(), 2);
    assert!(
        b["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next")
    );

    let (_, b) = t.get("_history?_since=2999-01-01").await;
    assert_eq!(b["total"], 0);

    let (s, _) = t.get("Patient/none/_history").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A deleted version cannot be read, earlier ones can.
    let (s, _) = t.get("Patient/h1/_history/4").await;
    assert_eq!(s, StatusCode::GONE);
    let (s, _) = t.get("Patient/h1/_history/2").await;
    assert_eq!(s, StatusCode::OK);
}

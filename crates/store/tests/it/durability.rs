use reqwest::StatusCode;
use serde_json::json;

use crate::TestStore;

#[tokio::test]
async fn everything_survives_a_restart() {
    let t = TestStore::start().await;
    t.put(
        "Patient/d1",
        json!({"resourceType": "Patient", "id": "d1", "name": [{"family": "Durable"}]}),
    )
    .await;
    t.put(
        "Patient/d1",
        json!({"resourceType": "Patient", "id": "d1", "name": [{"family": "Durable2"}]}),
    )
    .await;
    let (_, created) = t.post("Observation", json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"}, "subject": {"reference": "Patient/d1"}})).await;
    let obs_id = created["id"].as_str().unwrap().to_owned();
    let dir = t.stop().await;

    let t = TestStore::start_in(dir).await;
    assert_eq!(t.store.schema_version().unwrap(), 1);
    let (s, b) = t.get("Patient/d1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["meta"]["versionId"], "2");
    let (s, _) = t.get("Patient/d1/_history/1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.search_ids("Observation?patient=d1").await, [obs_id]);
    assert_eq!(t.search_ids("Patient?family=durable2").await, ["d1"]);
    assert!(t.db_path().exists());
}

//! The response check on the bytes (the hot path of phase 7): a body with nothing to remove
//! leaves exactly as the upstream sent it, other patients' `include` entries are cut out of
//! the text, and everything else (another patient's `match` entry, members the check reads
//! that appear twice) still goes through the parsed tree, so no byte of P2's data leaves.

use fhirgate_testkit::gateway::{self, PUBLIC_BASE, TestGateway};
use fhirgate_testkit::issuer::TestIssuer;
use fhirgate_testkit::upstream::{Canned, MockUpstream};
use fhirgate_tokens::IssuerConfig;
use http::StatusCode;
use serde_json::{Value, json};

use fhirgate_gateway::AuthConfig;

struct Fixture {
    issuer: TestIssuer,
    upstream: MockUpstream,
    gw: TestGateway,
    http: reqwest::Client,
}

impl Fixture {
    async fn start() -> Fixture {
        let issuer = TestIssuer::start().await.unwrap();
        let upstream = MockUpstream::start().await.unwrap();
        let mut config = gateway::config(&upstream.base_url()).unwrap();
        let entry = IssuerConfig {
            issuer: issuer.issuer().to_owned(),
            ..IssuerConfig::default()
        };
        config.auth = AuthConfig::required(vec![entry.validate(PUBLIC_BASE).unwrap()]);
        let gw = TestGateway::start(config).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Fixture {
            issuer,
            upstream,
            gw,
            http,
        }
    }

    /// `patient/*.rs` for P1.
    async fn get(&self, path: &str) -> (u16, String) {
        let token = self
            .issuer
            .token()
            .claim("aud", PUBLIC_BASE)
            .build()
            .unwrap();
        let response = self
            .http
            .get(self.gw.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let length = response
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
        let text = response.text().await.unwrap();
        if let Some(length) = length {
            assert_eq!(length, text.len());
        }
        (status, text)
    }

    fn serve(&self, path: &str, body: &str) {
        self.upstream.respond(
            path,
            Canned::raw(
                StatusCode::OK,
                Some("application/fhir+json; charset=utf-8"),
                body.to_owned(),
            ),
        );
    }
}

fn observation(i: usize, patient: &str) -> String {
    // Key order and spacing no serialiser would produce: only a pass-through keeps them.
    format!(
        r#"{{ "subject" : {{"reference": "Patient/{patient}"}}, "resourceType": "Observation", "id": "o{i}", "status": "final", "note": [{{"text": "note of {patient}"}}], "valueQuantity": {{"value": 72.50, "unit": "/min"}} }}"#
    )
}

fn searchset(entries: &[String]) -> String {
    format!(
        r#"{{"resourceType": "Bundle", "type": "searchset", "total": {}, "entry": [{}]}}"#,
        entries.len(),
        entries.join(", ")
    )
}

fn entry(resource: &str, mode: &str) -> String {
    format!(
        r#"{{"fullUrl": "{PUBLIC_BASE}/Observation/x", "resource": {resource}, "search": {{"mode": "{mode}"}}}}"#
    )
}

fn ids(text: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(text).unwrap();
    v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.pointer("/resource/id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_own_searchset_of_thirty_leaves_byte_for_byte() {
    let f = Fixture::start().await;
    let entries: Vec<String> = (0..30)
        .map(|i| entry(&observation(i, "P1"), "match"))
        .collect();
    let body = searchset(&entries);
    f.serve("/Observation", &body);
    let (status, text) = f.get("/Observation?patient=P1").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, body);
}

#[tokio::test]
async fn one_entry_of_thirty_for_another_patient_is_still_removed() {
    let f = Fixture::start().await;
    let mut entries: Vec<String> = (0..30)
        .map(|i| entry(&observation(i, "P1"), "match"))
        .collect();
    entries[17] = entry(&observation(17, "P2"), "match");
    f.serve("/Observation", &searchset(&entries));
    let (status, text) = f.get("/Observation?patient=P1").await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("P2"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v.get("total").is_none(),
        "a total counting removed matches is dropped"
    );
    assert_eq!(ids(&text).len(), 29);
    assert_eq!(
        v["entry"].as_array().unwrap().len(),
        29 + 1,
        "29 entries and the suppressed outcome"
    );
}

#[tokio::test]
async fn another_patients_include_is_cut_out_and_the_rest_kept_as_sent() {
    let f = Fixture::start().await;
    let mut entries: Vec<String> = (0..5)
        .map(|i| entry(&observation(i, "P1"), "match"))
        .collect();
    let foreign = r#"{"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/P2"}, "note": [{"text": "p2-secret-note"}]}"#;
    entries.insert(2, entry(foreign, "include"));
    f.serve("/Observation", &searchset(&entries));
    let (status, text) = f.get("/Observation?patient=P1").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("P2") && !text.contains("p2-secret-note"),
        "{text}"
    );
    for kept in entries.iter().filter(|e| !e.contains("P2")) {
        assert!(text.contains(kept.as_str()), "{kept} not passed as sent");
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    let last = v["entry"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last.pointer("/search/mode"), Some(&json!("outcome")));
    assert_eq!(
        last.pointer("/resource/issue/0/code"),
        Some(&json!("suppressed"))
    );
}

#[tokio::test]
async fn a_repeated_subject_never_leaves_as_sent() {
    let f = Fixture::start().await;
    // A client reading the first `subject` would see P2's Observation.
    let twice = r#"{"resourceType": "Observation", "id": "o9", "subject": {"reference": "Patient/P2"}, "subject": {"reference": "Patient/P1"}}"#;
    let inner = r#"{"resourceType": "Observation", "id": "o8", "subject": {"reference": "Patient/P2", "reference": "Patient/P1"}}"#;
    let entries = [
        entry(&observation(1, "P1"), "match"),
        entry(twice, "match"),
        entry(inner, "match"),
    ];
    f.serve("/Observation", &searchset(&entries));
    let (status, text) = f.get("/Observation?patient=P1").await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("Patient/P2"), "{text}");
    f.serve("/Observation/o9", twice);
    let (status, text) = f.get("/Observation/o9").await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("Patient/P2"), "{text}");
}

#[tokio::test]
async fn single_reads_pass_own_as_sent_and_refuse_others() {
    let f = Fixture::start().await;
    f.serve("/Observation/o1", &observation(1, "P1"));
    f.serve("/Observation/o2", &observation(2, "P2"));
    let patient = r#"{"resourceType":"Patient",  "id":"P1", "name":[{"family":"Oneperson"}]}"#;
    f.serve("/Patient/P1", patient);
    let (status, text) = f.get("/Observation/o1").await;
    assert_eq!((status, text), (200, observation(1, "P1")));
    let (status, text) = f.get("/Patient/P1").await;
    assert_eq!((status, text.as_str()), (200, patient));
    let (status, text) = f.get("/Observation/o2").await;
    assert_eq!(status, 403, "{text}");
    assert!(!text.contains("P2"), "{text}");
}

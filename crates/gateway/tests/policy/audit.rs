//! Phase 8: one audit record per FHIR request, allowed or refused, naming the patients whose
//! data was returned or asked for, written before the response completes, in a chain that
//! `fhirgate audit verify` accepts.

use std::path::Path;

use fhirgate_audit::{AuditConfig, AuditEvent, OnFailure};
use fhirgate_testkit::gateway::PUBLIC_BASE;

use crate::Env;

/// Every record in the directory, in order. Called right after responses were read: the
/// gateway must already have written them.
fn records(dir: &Path) -> Vec<AuditEvent> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read(&file).unwrap();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let (_, event) = fhirgate_audit::search::parse_record(line).unwrap();
            out.push(event);
        }
    }
    out
}

fn patients(event: &AuditEvent) -> Vec<&str> {
    event.patients().collect()
}

async fn audited() -> (Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig::file(dir.path().join("audit"));
    let env = Env::start_with(|c| c.audit = Some(config)).await;
    (env, dir)
}

#[tokio::test]
async fn every_request_is_recorded_with_the_patients_it_touched() {
    let (env, dir) = audited().await;
    let audit_dir = dir.path().join("audit");
    let t1 = env.t1();

    // A read of P1's own record.
    let a = env.get("/Patient/P1", &t1).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let log = records(&audit_dir);
    assert_eq!(log.len(), 1, "written before the response completed");
    let read = &log[0];
    assert_eq!(patients(read), ["P1"]);
    assert_eq!(read.interaction_code(), "read");
    assert_eq!(read.client_id(), Some("app-1"));
    assert_eq!(read.subject(), Some("user-1"));
    assert!(read.token_id().unwrap().starts_with("jti-"));
    assert_eq!(read.network_address(), Some("127.0.0.1"));

    // A searchset under the patient grant: only P1 remains in it.
    let a = env.get("/Observation?code=x", &t1).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let log = records(&audit_dir);
    assert_eq!(log.len(), 2);
    assert_eq!(patients(&log[1]), ["P1"]);
    assert_eq!(log[1].interaction_code(), "search-type");
    assert_eq!(log[1].query().as_deref(), Some("code=x"));
    assert_eq!(read.query(), None);

    // A searchset under a user grant holds both patients: both are recorded.
    let user = env
        .issuer
        .token()
        .claim("aud", PUBLIC_BASE)
        .claim("scope", "user/*.rs")
        .without_claim("patient")
        .build()
        .unwrap();
    let a = env.get("/Observation", &user).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains("p2-secret-note"), "{}", a.text);
    let log = records(&audit_dir);
    assert_eq!(patients(&log[2]), ["P1", "P2"]);

    // Refused: another patient's record (the attempt names P2), and no token at all.
    let a = env.get("/Patient/P2", &t1).await;
    assert_eq!(a.status, 403);
    let a = env
        .get_anonymous("/Observation?patient=P1&access_token=not-a-token")
        .await;
    assert_eq!(a.status, 401);
    let a = env.get("/Patient/P1//x", &t1).await;
    assert_eq!(a.status, 400);
    let log = records(&audit_dir);
    assert_eq!(log.len(), 6);
    let denied = &log[3];
    assert_eq!(patients(denied), ["P2"]);
    assert_eq!(denied.client_id(), Some("app-1"));
    let text = serde_json::to_string(denied).unwrap();
    assert!(text.contains("forbidden"), "{text}");
    let anonymous = &log[4];
    assert_eq!(anonymous.client_id(), None);
    assert_eq!(anonymous.subject(), None);
    let text = serde_json::to_string(anonymous).unwrap();
    assert!(
        !text.contains("access_token") && !text.contains("not-a-token"),
        "{text}"
    );
    // The rest of its query is kept.
    assert_eq!(anonymous.query().as_deref(), Some("patient=P1"));
    assert_ne!(
        log[5].interaction_code(),
        "read",
        "unclassifiable requests are recorded too"
    );

    let report = fhirgate_audit::verify(&[audit_dir]).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 6);
}

#[tokio::test]
async fn throttled_requests_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    let config = AuditConfig::file(&audit_dir);
    let env = Env::start_with(|c| {
        c.audit = Some(config);
        c.rate_limit = Some(crate::rate_limit(serde_json::json!({
            "rules": [{"name": "per-client", "key": "client_id", "per_minute": 1}]
        })));
    })
    .await;
    let t1 = env.t1();
    assert_eq!(env.get("/Patient/P1", &t1).await.status, 200);
    assert_eq!(env.get("/Patient/P1", &t1).await.status, 429);
    let log = records(&audit_dir);
    assert_eq!(log.len(), 2);
    assert!(
        serde_json::to_string(&log[1])
            .unwrap()
            .contains("throttled")
    );
    assert!(fhirgate_audit::verify(&[audit_dir]).unwrap().is_intact());
}

#[tokio::test]
async fn an_unwritable_trail_refuses_phi_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    let mut config = AuditConfig::file(&audit_dir);
    config.on_failure = OnFailure::Refuse;
    // Small files, so the next file (which cannot be created) is needed soon.
    config.rotate_size = 4096;
    let env = Env::start_with(|c| c.audit = Some(config)).await;
    let t1 = env.t1();
    assert_eq!(env.get("/Patient/P1", &t1).await.status, 200);
    // The directory disappears (volume unmounted, path replaced): new files cannot be made.
    let moved = dir.path().join("moved");
    std::fs::rename(&audit_dir, &moved).unwrap();
    std::fs::write(&audit_dir, b"not a directory").unwrap();
    // The first failing write refuses its own response instead of completing it unaudited:
    // the checked Patient is held whole, so the refusal is still a 503 (a streamed body would
    // be cut off instead).
    let mut refused = None;
    for _ in 0..8 {
        let a = env.get("/Patient/P1", &t1).await;
        if a.status != 200 {
            refused = Some(a);
            break;
        }
    }
    let a = refused.expect("an unaudited response must not complete");
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.code(), "transient");
    let a = env.get("/Patient/P1", &t1).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.code(), "transient");
    assert!(a.header("retry-after").is_some());
    // `/metadata` is not PHI.
    let hits = env.upstream.hits();
    let metadata = env.get_anonymous("/metadata").await;
    assert_eq!(metadata.status, 200, "{}", metadata.text);
    assert_eq!(env.upstream.hits(), hits + 1);

    // Back in place: the next request is served and audited, after a notice of the gap.
    std::fs::remove_file(&audit_dir).unwrap();
    std::fs::rename(&moved, &audit_dir).unwrap();
    let a = env.get("/Patient/P1", &t1).await;
    assert_eq!(
        a.status, 503,
        "the request that finds the trail unhealthy is still refused"
    );
    let again = env.get("/Patient/P1", &t1).await;
    assert_eq!(again.status, 200, "{}", again.text);
    let report = fhirgate_audit::verify(&[audit_dir]).unwrap();
    assert!(report.is_intact(), "{report:?}");
}

#[tokio::test]
async fn a_streamed_response_completes_only_after_its_record_is_written() {
    use fhirgate_testkit::upstream::{Canned, Gate, MockUpstream};

    const TOTAL: u64 = 2 * 1024 * 1024;
    const FIRST: u64 = 512 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    let upstream = MockUpstream::start().await.unwrap();
    let mut config = fhirgate_testkit::gateway::config(&upstream.base_url()).unwrap();
    config.audit = Some(AuditConfig::file(&audit_dir));
    let gw = fhirgate_testkit::gateway::TestGateway::start(config)
        .await
        .unwrap();
    let gate = Gate::new();
    upstream.respond(
        "/Binary/big",
        Canned::streaming(TOTAL).pause_after(FIRST, &gate),
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut response = http.get(gw.url("/Binary/big")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0u64;
    while received < FIRST / 2 {
        received += response.chunk().await.unwrap().unwrap().len() as u64;
    }
    // Data is flowing, the upstream is paused: the request is not over, so no record yet.
    assert!(records(&audit_dir).is_empty());
    gate.open();
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len() as u64;
    }
    assert_eq!(received, TOTAL);
    let log = records(&audit_dir);
    assert_eq!(
        log.len(),
        1,
        "the record exists once the last byte has arrived"
    );
    assert!(!log[0].aborted());
    assert_eq!(log[0].interaction_code(), "read");

    // HEAD has no body: recorded before the answer is sent at all.
    let head = http.head(gw.url("/Binary/big")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(records(&audit_dir).len(), 2);
}

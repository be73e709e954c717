//! Upstream bodies that go wrong after the headers (issue #10 item 2, the part about
//! existing behaviour): a reset mid-body, a slow trickle, a stall, and an answer larger than
//! the verify buffer under a patient scope. Before-header faults, retries and health checks
//! are tested with the upstream pool.

use std::path::Path;
use std::time::{Duration, Instant};

use fhirgate_testkit::issuer::TestIssuer;
use serde_json::Value;

use crate::raw_upstream::{RawUpstream, Script, observation};
use crate::{assert_alive, client, config, eventually, get, start};

/// A `user/` token: reads are forwarded as they are and the body streams through.
fn user_token(issuer: &TestIssuer) -> String {
    issuer
        .token()
        .claim("scope", "user/*.rs")
        .without_claim("patient")
        .build()
        .unwrap()
}

/// A `patient/` token for P1: the answer is read whole and verified before any of it leaves.
fn patient_token(issuer: &TestIssuer) -> String {
    issuer.token().build().unwrap()
}

fn audit_section(dir: &Path) -> String {
    format!(
        "audit:\n  sink: file\n  path: {}\n  on_failure: continue\n",
        dir.display()
    )
}

/// Every AuditEvent written to `dir` so far.
fn audit_events(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|l| l["event"].clone())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_aborted(event: &Value) -> bool {
    event["entity"].as_array().into_iter().flatten().any(|e| {
        e["detail"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["type"] == "aborted" && d["valueString"] == "true")
    })
}

#[tokio::test]
async fn a_reset_mid_body_aborts_the_response_and_the_audit_record_says_so() {
    let issuer = TestIssuer::start().await.unwrap();
    let full = observation("P1", 200_000, "MID-BODY-MARKER");
    let upstream = RawUpstream::start(Script::ResetMidBody {
        declared: full.len(),
        body: full[..60_000].to_vec(),
    })
    .await;
    let audit_dir = tempfile::tempdir().unwrap();
    let gw = start(&config(
        &upstream.base_url(),
        &issuer,
        "",
        &audit_section(audit_dir.path()),
    ))
    .await;

    // Streamed (user scope): the headers are out before the reset, so the client must see a
    // broken body, never a clean short one it could take for the whole answer.
    let response = client()
        .get(format!("{}/fhir/Observation/o1", gw.address))
        .bearer_auth(user_token(&issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await;
    assert!(
        body.is_err(),
        "a cut-off body arrived as a complete one ({} bytes)",
        body.map(|b| b.len()).unwrap_or_default()
    );
    let event = eventually(Duration::from_secs(10), "an aborted audit record", || {
        let events = audit_events(audit_dir.path());
        async move { events.into_iter().find(is_aborted) }
    })
    .await;
    assert_eq!(event["outcome"], "8", "{event}");
    assert!(
        event["outcomeDesc"]
            .as_str()
            .is_some_and(|d| d.contains("aborted")),
        "{event}"
    );

    // Verified (patient scope): nothing has left yet when the reset comes, so the answer is
    // a clean 502 with no byte of the partial resource, and no record says "aborted".
    let records_before = audit_events(audit_dir.path()).len();
    let a = get(&gw, "/Observation/o1", Some(&patient_token(&issuer))).await;
    a.expect(502, "exception");
    assert!(!a.text.contains("MID-BODY-MARKER"), "{a:?}");
    let event = eventually(Duration::from_secs(10), "the 502 audit record", || {
        let events = audit_events(audit_dir.path());
        async move { events.get(records_before).cloned() }
    })
    .await;
    assert_eq!(event["outcome"], "8", "{event}");
    assert!(!is_aborted(&event), "{event}");
    assert_eq!(upstream.hits(), 2);
    assert_alive(&gw).await;
}

#[tokio::test]
async fn a_slow_but_steady_trickle_completes() {
    let issuer = TestIssuer::start().await.unwrap();
    let body = observation("P1", 6_000, "TRICKLE-MARKER");
    // 30 pieces 60 ms apart: about 2 s in all, far past any per-read deadline a proxy
    // could wrongly apply to the whole body, each gap far below the stall limit.
    let upstream = RawUpstream::start(Script::Trickle {
        body: body.clone(),
        chunk: 200,
        pause: Duration::from_millis(60),
    })
    .await;
    let gw = start(&config(&upstream.base_url(), &issuer, "", "")).await;

    let streamed = get(&gw, "/Observation/o1", Some(&user_token(&issuer))).await;
    assert_eq!(streamed.status, 200, "{streamed:?}");
    assert_eq!(streamed.text.as_bytes(), body.as_slice());

    let verified = get(&gw, "/Observation/o1", Some(&patient_token(&issuer))).await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let value: Value = serde_json::from_str(&verified.text).unwrap();
    assert_eq!(value["subject"]["reference"], "Patient/P1");
    assert!(verified.text.contains("TRICKLE-MARKER"));
    assert_alive(&gw).await;
}

#[tokio::test]
async fn a_body_over_the_verify_buffer_is_502_too_costly_and_nothing_leaks() {
    let issuer = TestIssuer::start().await.unwrap();
    let body = observation("P1", 256 * 1024, "OVERSIZED-MARKER");
    let extra = "authorization:\n  verify_buffer_max: 64KiB\n";
    for chunked in [false, true] {
        let upstream = RawUpstream::start(Script::Whole {
            body: body.clone(),
            chunked,
        })
        .await;
        let gw = start(&config(&upstream.base_url(), &issuer, "", extra)).await;

        // Under a patient scope it cannot be verified, so it is refused whole.
        let a = get(&gw, "/Observation/o1", Some(&patient_token(&issuer))).await;
        a.expect(502, "too-costly");
        assert!(!a.text.contains("OVERSIZED-MARKER"), "chunked={chunked}");
        assert!(
            a.text.len() < 4096,
            "chunked={chunked}: {} bytes",
            a.text.len()
        );

        // The same answer to a user/ token needs no verification and streams whole.
        let a = get(&gw, "/Observation/o1", Some(&user_token(&issuer))).await;
        assert_eq!(a.status, 200, "chunked={chunked}");
        assert_eq!(a.text.len(), body.len(), "chunked={chunked}");
        assert_alive(&gw).await;
    }
}

#[tokio::test]
async fn a_body_that_stalls_mid_way_is_cut() {
    let issuer = TestIssuer::start().await.unwrap();
    let full = observation("P1", 100_000, "STALL-MARKER");
    let upstream = RawUpstream::start(Script::StallMidBody {
        declared: full.len(),
        body: full[..30_000].to_vec(),
    })
    .await;
    let audit_dir = tempfile::tempdir().unwrap();
    // `config` sets `response_timeout: 5s`, which also bounds each wait for more body.
    let gw = start(&config(
        &upstream.base_url(),
        &issuer,
        "",
        &audit_section(audit_dir.path()),
    ))
    .await;

    // Verified: the gateway is still reading when the upstream stalls, so the client gets a
    // clean 504 and none of the partial resource.
    let started = Instant::now();
    let a = get(&gw, "/Observation/o1", Some(&patient_token(&issuer))).await;
    let took = started.elapsed();
    a.expect(504, "timeout");
    assert!(!a.text.contains("STALL-MARKER"), "{a:?}");
    assert!(
        took >= Duration::from_secs(4),
        "cut after {took:?}, before the limit"
    );
    assert!(took < Duration::from_secs(20), "cut after {took:?}");

    // Streamed: the client must see the body fail, not hang for ever, and the audit record
    // must say the answer was cut off.
    let started = Instant::now();
    let response = client()
        .get(format!("{}/fhir/Observation/o1", gw.address))
        .bearer_auth(user_token(&issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(20));
    let event = eventually(Duration::from_secs(10), "an aborted audit record", || {
        let events = audit_events(audit_dir.path());
        async move { events.into_iter().find(is_aborted) }
    })
    .await;
    assert_eq!(event["outcome"], "8", "{event}");
    assert_eq!(upstream.hits(), 2);
    assert_alive(&gw).await;
}

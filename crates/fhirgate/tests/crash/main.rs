//! Crash test of the audit trail (issue #8): load through the real binary with the audit on
//! at its default durability (`os`), `kill -9` right after N successful responses, restart on
//! the same audit folder (three crashes in a row), and check with `fhirgate audit verify` that
//! the hash chain is intact across the crashes and that every answered request has its record
//! (found by the X-Request-ID each request carried). Duplicates are allowed, losses are not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fhirgate_testkit::process::FhirgateProcess;
use fhirgate_testkit::upstream::{Canned, MockUpstream};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_fhirgate");
/// Successful responses to collect before each kill.
const ANSWERED: usize = 300;
/// Crash-and-restart cycles on the same audit folder.
const ROUNDS: usize = 3;
/// Concurrent clients producing them.
const CLIENTS: usize = 8;

fn config(upstream: &MockUpstream, audit: &Path) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         public_base_url: http://127.0.0.1/fhir\n\
         upstream:\n  url: {}\n\
         auth:\n  mode: disabled\n\
         audit:\n  path: {}\n",
        upstream.base_url(),
        audit.display()
    )
}

/// Every line of every file in the audit folder.
fn trail(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}

/// Start the gateway, load it from [`CLIENTS`] clients until [`ANSWERED`] responses have
/// completed, `kill -9` it at once, and return the request ids that were answered.
async fn load_then_kill(yaml: &str, http: &reqwest::Client, round: usize) -> Vec<String> {
    let mut gateway = FhirgateProcess::serve(BIN, yaml).await.unwrap();
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let (enough_tx, mut enough_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let http = http.clone();
        let answered = Arc::clone(&answered);
        let enough_tx = enough_tx.clone();
        let enough_rx = enough_tx.subscribe();
        let base = format!("{}/fhir", gateway.address);
        clients.push(tokio::spawn(async move {
            let mut n = 0usize;
            // Keep sending until told to stop: the kill comes while requests are in flight.
            while !*enough_rx.borrow() {
                n += 1;
                let id = format!("crash-{round}-{c}-{n}");
                let sent = http
                    .get(format!("{base}/Patient/p{}", n % 10))
                    .header("X-Request-ID", &id)
                    .send()
                    .await;
                // A failure before the kill is not an answer; the loop goes on (and the
                // wait below fails the test if answers stop coming). After the kill the
                // stop flag is already set, so the loop ends.
                let Ok(response) = sent else { continue };
                if response.status() != 200 {
                    continue;
                }
                // Successful means the whole body arrived.
                if response.bytes().await.is_err() {
                    continue;
                }
                let mut done = answered.lock().unwrap();
                done.push(id);
                if done.len() >= ANSWERED {
                    let _ = enough_tx.send(true);
                }
            }
        }));
    }
    tokio::time::timeout(
        Duration::from_secs(120),
        enough_rx.wait_for(|enough| *enough),
    )
    .await
    .expect("the gateway answered N requests within 2 minutes")
    .unwrap();
    // Right after the N-th answer, while the other clients still have requests in flight.
    gateway.kill_hard().await.unwrap();
    let answered_before_kill = answered.lock().unwrap().clone();
    for client in clients {
        client.await.unwrap();
    }
    answered_before_kill
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_n_answers_loses_no_audit_record() {
    let upstream = MockUpstream::start().await.unwrap();
    for i in 0..10 {
        upstream.respond(
            &format!("/Patient/p{i}"),
            Canned::resource(&json!({"resourceType": "Patient", "id": format!("p{i}")})),
        );
    }
    let audit = tempfile::tempdir().unwrap();
    let yaml = config(&upstream, audit.path());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Several crashes in a row: each restart must continue the chain the killed process left.
    let mut answered_before_kill: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let answered = load_then_kill(&yaml, &http, round).await;
        assert!(answered.len() >= ANSWERED);
        eprintln!(
            "round {round}: kill -9 after {} complete answers",
            answered.len()
        );
        answered_before_kill.extend(answered);
    }

    // The restarted gateway continues the same chain.
    let mut restarted = FhirgateProcess::serve(BIN, &yaml).await.unwrap();
    for k in 0..5 {
        let response = http
            .get(format!("{}/fhir/Patient/p{k}", restarted.address))
            .header("X-Request-ID", format!("after-restart-{k}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    restarted.signal("TERM").unwrap();
    restarted.wait_exit(Duration::from_secs(60)).await.unwrap();

    let verify = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(audit.path())
        .env("FHIRGATE_LOG", "error")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(
        verify.status.success(),
        "audit verify failed:\n{report}\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(report.contains("OK: the chain is intact"), "{report}");

    let text = trail(audit.path());
    let recorded: HashSet<&str> = text
        .lines()
        .flat_map(|line| line.split('"'))
        .filter(|s| s.starts_with("crash-") || s.starts_with("after-restart-"))
        .collect();
    let lost: Vec<&String> = answered_before_kill
        .iter()
        .filter(|id| !recorded.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered requests have no audit record, e.g. {:?}",
        lost.len(),
        answered_before_kill.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    for k in 0..5 {
        assert!(
            recorded.contains(format!("after-restart-{k}").as_str()),
            "after-restart-{k} not recorded"
        );
    }
    let records = text.lines().filter(|l| !l.trim().is_empty()).count();
    let found = answered_before_kill.len() - lost.len();
    eprintln!(
        "N = {} requests answered before the kills; records found for them: {found}; \
         {records} records in the trail; {}",
        answered_before_kill.len(),
        report.trim()
    );
    assert!(
        report.contains(&format!("{records} record(s)")),
        "verify should have checked all {records} lines:\n{report}"
    );
}

//! `fhirgate audit verify|search` run as the real binary against files written by the
//! audit library, as the gateway would write them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use fhirgate_audit::{AuditConfig, AuditInput, AuditPrincipal, AuditSink, Interaction};

fn fhirgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fhirgate"))
        .args(args)
        .env("FHIRGATE_LOG", "error")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Five requests: p1 read by app-1 twice (one an hour ago, one three days ago), p2 by
/// app-1, p1 by app-2 in a search that also returned p3, and a refused request.
fn write_trail(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = AuditSink::open(&AuditConfig::file(dir)).unwrap();
        let now = SystemTime::now();
        let rec = |age_h: u64, n: u32, it: Interaction, client: &str, patients: &[&str], status| {
            let mut i = AuditInput::new(
                now - Duration::from_secs(age_h * 3600),
                format!("req-{n}"),
                "GET",
                it,
                status,
            );
            i.resource_type = Some("Observation".into());
            let mut p = AuditPrincipal::new(Some(format!("user-{n}")), Some(client.into()));
            p.fhir_user = Some("Practitioner/dr-who".into());
            i.principal = Some(p);
            i.patients = patients.iter().map(|s| s.to_string()).collect();
            i
        };
        for input in [
            rec(72, 1, Interaction::Read, "app-1", &["p1"], 200),
            rec(5, 2, Interaction::Read, "app-1", &["p2"], 200),
            rec(2, 3, Interaction::SearchType, "app-2", &["p1", "p3"], 200),
            rec(1, 4, Interaction::Read, "app-1", &["p1"], 200),
            rec(1, 5, Interaction::Read, "app-3", &[], 403),
        ] {
            sink.record(input).await.unwrap();
        }
    });
}

#[test]
fn verify_reports_an_intact_chain_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path());
    let o = fhirgate(&["audit", "verify", dir.path().to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("checked 1 file(s), 5 record(s) (seq 1..5)"),
        "{out}"
    );
    assert!(out.contains("head: seq 5 sha256 "), "{out}");
    assert!(out.contains("OK: the chain is intact"), "{out}");
}

#[test]
fn verify_names_the_first_broken_record_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path());
    let file = fhirgate_audit::files::list_log_files(dir.path()).unwrap()[0]
        .0
        .clone();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.remove(1); // delete the record of seq 2
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let o = fhirgate(&["audit", "verify", file.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(out.contains("BROKEN: "), "{out}");
    assert!(
        out.contains(&format!("{name}:2: seq 3 follows seq 1")),
        "{out}"
    );
}

#[test]
fn verify_fails_clearly_on_a_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let o = fhirgate(&["audit", "verify", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"));
}

#[test]
fn search_answers_who_accessed_a_patient() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path());
    let d = dir.path().to_str().unwrap();

    let o = fhirgate(&["audit", "search", d, "--patient", "p1"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{out}");
    assert!(
        lines[0].contains("WHO") && lines[0].contains("CLIENT"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "header + 3 accesses to p1:\n{out}");
    assert!(lines[1].contains("Practitioner/dr-who") && lines[1].contains("app-1"));
    assert!(lines[2].contains("app-2") && lines[2].contains("search-type"));
    assert!(lines[2].contains("patients: p1,p3"), "{out}");

    let o = fhirgate(&[
        "audit",
        "search",
        d,
        "--patient",
        "Patient/p1",
        "--since",
        "2d",
        "--client",
        "app-1",
        "--json",
    ]);
    assert!(o.status.success());
    let out = stdout(&o);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["request_id"], "req-4");
    assert_eq!(rows[0]["client_id"], "app-1");
    assert_eq!(rows[0]["interaction"], "read");
    assert_eq!(rows[0]["outcome"], "0");

    let o = fhirgate(&["audit", "search", d, "--since", "not-a-time"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--since"));
}

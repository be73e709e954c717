use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fhirgate_audit::{AuditConfig, AuditInput, AuditPrincipal, AuditSink, Interaction, Outcome};

/// 2026-11-29T10:00:00Z
pub fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_946_400)
}

pub fn input(n: u64, interaction: Interaction, patients: &[&str]) -> AuditInput {
    let mut i = AuditInput::new(
        t0() + Duration::from_secs(n),
        format!("req-{n}"),
        "GET",
        interaction,
        200,
    );
    i.client_address = Some("192.0.2.7".parse().unwrap());
    i.resource_type = Some("Observation".to_owned());
    let mut p = AuditPrincipal::new(Some("user-1".into()), Some("app-1".into()));
    p.fhir_user = Some("Practitioner/pr-1".into());
    p.issuer = Some("https://idp.example".into());
    p.token_id = Some(format!("jti-{n}"));
    i.principal = Some(p);
    i.patients = patients.iter().map(|s| s.to_string()).collect();
    i.outcome = Outcome::new(200);
    i
}

pub fn config(dir: &Path) -> AuditConfig {
    AuditConfig::file(dir)
}

pub async fn write_n(sink: &AuditSink, from: u64, n: u64) {
    for k in from..from + n {
        sink.record(input(k, Interaction::Read, &["p1"]))
            .await
            .unwrap();
    }
}

pub fn files(dir: &Path) -> Vec<PathBuf> {
    fhirgate_audit::files::list_log_files(dir)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

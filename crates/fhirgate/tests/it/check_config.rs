use std::process::Command;

use crate::{BIN, config_file, example_config};

fn check(text: &str) -> (bool, String, String, String) {
    let file = config_file(text);
    let out = Command::new(BIN)
        .args(["check-config"])
        .arg(file.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        file.path().display().to_string(),
    )
}

#[test]
fn the_example_config_passes() {
    let (ok, stdout, stderr, _) = check(&example_config());
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

#[test]
fn an_unknown_key_fails_with_its_position() {
    let text = example_config().replace("  connect_timeout: 5s", "  conect_timeout: 5s");
    let (ok, _, stderr, file) = check(&text);
    assert!(!ok);
    let line = text
        .lines()
        .position(|l| l.contains("conect_timeout"))
        .unwrap()
        + 1;
    assert!(stderr.contains(&format!("{file}:{line}:")), "{stderr}");
    assert!(stderr.contains("conect_timeout"), "{stderr}");
}

#[test]
fn a_bad_url_and_a_bad_duration_are_both_reported() {
    let text = example_config()
        .replace("url: http://127.0.0.1:8090/fhir", "url: not a url")
        .replace("drain_time: 30s", "drain_time: soon");
    let (ok, _, stderr, file) = check(&text);
    assert!(!ok);
    let url_line = text
        .lines()
        .position(|l| l.contains("url: not a url"))
        .unwrap()
        + 1;
    let drain_line = text
        .lines()
        .position(|l| l.contains("drain_time: soon"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("{file}:{url_line}:8: upstream.url: expected")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:{drain_line}:15: shutdown.drain_time: expected a duration"
        )),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_fails() {
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/fhirgate.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

use std::process::Stdio;
use std::time::Duration;

use fhirgate_testkit::upstream::{Canned, Gate, MockUpstream};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{BIN, config_file, example_config, sigterm};

/// Start `fhirgate serve` with the example config pointed at `upstream` on an ephemeral port;
/// returns the child and its `http://127.0.0.1:PORT`.
async fn start(upstream: &MockUpstream) -> (Child, String, tempfile::NamedTempFile) {
    let text = example_config()
        .replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")
        // These tests are about transport; tokens are covered by the gateway's authz tests.
        .replace("  mode: required", "  mode: disabled")
        .replace("http://127.0.0.1:8090/fhir", &upstream.base_url());
    let file = config_file(&text);
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(file.path())
        .env("FHIRGATE_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on ".len()..];
                let end = rest
                    .char_indices()
                    .skip("http://".len())
                    .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ':'))
                    .map_or(rest.len(), |(i, _)| i);
                return rest[..end].to_owned();
            }
        }
        panic!("fhirgate exited without listening");
    })
    .await
    .expect("fhirgate announced its address");
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address, file)
}

#[tokio::test]
async fn serve_proxies_and_drains_on_sigterm() {
    let upstream = MockUpstream::start().await.unwrap();
    let gate = Gate::new();
    upstream.respond(
        "/Patient/slow",
        Canned::resource(&serde_json::json!({"resourceType": "Patient", "id": "slow"}))
            .hold_until(&gate),
    );
    let (mut child, address, _file) = start(&upstream).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let response = client
        .get(format!("{address}/fhir/Patient/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last_request().unwrap().target, "/fhir/Patient/1");
    let response = client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A request in flight when SIGTERM arrives still completes, then the process exits 0.
    let in_flight = tokio::spawn(client.get(format!("{address}/fhir/Patient/slow")).send());
    upstream.wait_for_hits(2).await;
    sigterm(&child);
    gate.open();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("fhirgate exited after draining")
        .unwrap();
    assert!(status.success(), "{status}");
}

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::{BIN, sigterm};

/// Container runtimes and Kubernetes stop a process with SIGTERM: the standalone store must
/// take it as the signal to shut down cleanly (exit 0), like `serve` and `demo` do, rather
/// than die from it.
#[tokio::test]
async fn store_serve_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["store", "serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("store.sqlite"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(base) = line.strip_prefix("FHIR base ") {
                return base.to_owned();
            }
        }
        panic!("fhirgate store serve exited without announcing its base URL");
    })
    .await
    .expect("the store announced its base URL");

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client.get(format!("{base}/metadata")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the store exited after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

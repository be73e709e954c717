//! Faults against the real binary (issue #10 items 2, 3, 6): identity-provider outages,
//! upstream bodies that break, trickle or stall, responses over the verify buffer; plus the
//! replay of the `bundle` and `config` fuzz corpora. docs/reliability.md ("Faults") states
//! what each case must look like to a client.

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fuzz_corpus;
mod idp;
mod raw_upstream;
mod upstream;

use std::time::{Duration, Instant};

use fhirgate_testkit::issuer::{DEFAULT_AUDIENCE, TestIssuer};
use fhirgate_testkit::process::FhirgateProcess;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_fhirgate");

/// The bundle property, the same file the `bundle` fuzz target compiles.
#[path = "../../../../fuzz/checks/bundle.rs"]
mod bundle_check;

/// A gateway config: `upstream` behind tokens from `issuer`. `issuer_extra` lines go into
/// the issuer entry (indent 6), `extra` at the top level.
pub fn config(upstream: &str, issuer: &TestIssuer, issuer_extra: &str, extra: &str) -> String {
    let issuer_extra: String = issuer_extra
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    format!(
        "listen: 127.0.0.1:0
public_base_url: {DEFAULT_AUDIENCE}
upstream:
  url: {upstream}
  response_timeout: 5s
auth:
  mode: required
  issuers:
    - issuer: {}
{issuer_extra}{extra}",
        issuer.issuer()
    )
}

pub async fn start(yaml: &str) -> FhirgateProcess {
    start_with_env(yaml, &[]).await
}

pub async fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> FhirgateProcess {
    FhirgateProcess::serve_with_env(BIN, yaml, env)
        .await
        .unwrap_or_else(|e| panic!("fhirgate did not start: {e:#}\n{yaml}"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    /// The first OperationOutcome issue code, if the body is one.
    pub fn issue_code(&self) -> Option<String> {
        let v: Value = serde_json::from_str(&self.text).ok()?;
        v["issue"][0]["code"].as_str().map(str::to_owned)
    }

    /// Assert status and OperationOutcome issue code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.issue_code().as_deref(), Some(code), "{self:?}");
        self
    }
}

pub async fn get(gw: &FhirgateProcess, path: &str, token: Option<&str>) -> Answer {
    let mut request = client().get(format!("{}/fhir{path}", gw.address));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        headers,
        text,
    }
}

/// The process is still up and answering.
pub async fn assert_alive(gw: &FhirgateProcess) {
    let health = client()
        .get(format!("{}/healthz", gw.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        !gw.logs().iter().any(|l| l.contains("panicked")),
        "a panic was logged"
    );
}

/// Poll `f` until it returns `Some` or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

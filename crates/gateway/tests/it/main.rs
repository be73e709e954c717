//! Gateway integration tests: a real gateway on `127.0.0.1:0` in front of the in-process mock
//! upstream, driven over HTTP. One binary to keep link time down.

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod errors;
mod proxy;
mod server;
mod upstream_targets;

use std::net::SocketAddr;

use fhirgate_gateway::GatewayConfig;
use fhirgate_testkit::gateway::{self, TestGateway};
use fhirgate_testkit::upstream::MockUpstream;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn start() -> (MockUpstream, TestGateway) {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> (MockUpstream, TestGateway) {
    let upstream = MockUpstream::start().await.unwrap();
    let mut config = gateway::config(&upstream.base_url()).unwrap();
    adjust(&mut config);
    let gw = TestGateway::start(config).await.unwrap();
    (upstream, gw)
}

/// Status, headers and body of a response the test expects to be an OperationOutcome; checks
/// the content type and returns the issue code.
pub async fn outcome_code(
    response: reqwest::Response,
) -> (u16, String, reqwest::header::HeaderMap) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/fhir+json; charset=utf-8"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let code = body["issue"][0]["code"].as_str().unwrap().to_owned();
    (status, code, headers)
}

/// A raw HTTP/1.1 exchange, for request targets an HTTP client library would normalise.
/// Returns the status and the body.
pub async fn raw(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

pub fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
}

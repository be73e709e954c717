//! Upstream faults, retries, balancing and passive health (issue #10 item 2), against mock
//! upstreams and tiny raw TCP servers that misbehave on purpose.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fhirgate_gateway::{Balance, GatewayConfig};
use fhirgate_testkit::gateway::{self, TestGateway};
use fhirgate_testkit::upstream::{Canned, Gate, MockUpstream};
use http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

use crate::{client, outcome_code};

fn patient() -> Canned {
    Canned::resource(&json!({"resourceType": "Patient", "id": "1"}))
}

/// A port nothing listens on any more.
fn dead_base() -> String {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    format!("http://127.0.0.1:{port}/fhir")
}

/// A server that reads each request (head and, when declared, body) and then closes the
/// connection without answering. Returns its base URL and the number of requests it read.
async fn resetting_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                // Reset rather than a clean close: the abortive close the tests are about.
                let _ = stream.set_zero_linger();
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, seen)
}

fn config_for(targets: &[String], adjust: impl FnOnce(&mut GatewayConfig)) -> GatewayConfig {
    let mut config = gateway::config(&targets[0]).unwrap();
    config.upstream.targets = targets.iter().map(|t| Url::parse(t).unwrap()).collect();
    adjust(&mut config);
    config
}

#[tokio::test]
async fn a_get_is_retried_on_connect_failure_and_served_by_the_other_target() {
    let good = MockUpstream::start().await.unwrap();
    good.respond("/Patient/1", patient());
    let config = config_for(&[dead_base(), good.base_url()], |_| {});
    let gw = TestGateway::start(config).await.unwrap();
    // Whichever target round-robin starts with, both requests succeed.
    for _ in 0..2 {
        let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(good.hits(), 2);
}

#[tokio::test]
async fn without_retries_a_connect_failure_is_502_exception() {
    let good = MockUpstream::start().await.unwrap();
    good.respond("/Patient/1", patient());
    let config = config_for(&[dead_base(), good.base_url()], |c| {
        c.upstream.retries.max = 0
    });
    let gw = TestGateway::start(config).await.unwrap();
    let mut codes = Vec::new();
    for _ in 0..2 {
        let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
        codes.push(response.status().as_u16());
        if response.status() == StatusCode::BAD_GATEWAY {
            let (_, code, _) = outcome_code(response).await;
            assert_eq!(code, "exception");
        }
    }
    codes.sort_unstable();
    assert_eq!(codes, [200, 502]);
}

#[tokio::test]
async fn a_post_that_reached_the_upstream_is_never_sent_twice() {
    let (reset_a, seen_a) = resetting_server().await;
    let (reset_b, seen_b) = resetting_server().await;
    let config = config_for(&[reset_a, reset_b], |_| {});
    let gw = TestGateway::start(config).await.unwrap();
    let response = client()
        .post(gw.url("/Patient"))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient"}"#)
        .send()
        .await
        .unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (502, "exception"));
    // The answer came after every attempt, so the count is final.
    assert_eq!(
        seen_a.load(Ordering::SeqCst) + seen_b.load(Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn a_get_reset_before_headers_is_retried_once_then_502() {
    let (reset, seen) = resetting_server().await;
    let config = config_for(std::slice::from_ref(&reset), |_| {});
    let gw = TestGateway::start(config).await.unwrap();
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (502, "exception"));
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_retry_budget_stops_retries_once_spent() {
    let (reset, seen) = resetting_server().await;
    // No deposits: only the reserve of 10 retries is ever available.
    let config = config_for(std::slice::from_ref(&reset), |c| {
        c.upstream.retries.budget_percent = 0;
    });
    let gw = TestGateway::start(config).await.unwrap();
    for i in 1..=12 {
        let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
        let (status, code, _) = outcome_code(response).await;
        assert_eq!((status, code.as_str()), (502, "exception"), "request {i}");
    }
    // Ten requests sent twice, the last two once each.
    assert_eq!(seen.load(Ordering::SeqCst), 22);
}

#[tokio::test]
async fn a_stalled_upstream_is_504_timeout_at_the_configured_limit() {
    let upstream = MockUpstream::start().await.unwrap();
    let gate = Gate::new();
    upstream.respond("/Patient/1", patient().hold_until(&gate));
    let limit = Duration::from_millis(300);
    let config = config_for(&[upstream.base_url()], |c| {
        c.upstream.response_timeout = limit
    });
    let gw = TestGateway::start(config).await.unwrap();
    let started = Instant::now();
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    let elapsed = started.elapsed();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (504, "timeout"));
    assert!(elapsed >= limit, "{elapsed:?}");
    // Not retried: a stall is not a connect failure or a reset.
    assert_eq!(upstream.hits(), 1);
    gate.open();
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    for m in [&a, &b] {
        m.respond("/Patient/1", patient());
    }
    let config = config_for(&[a.base_url(), b.base_url()], |_| {});
    let gw = TestGateway::start(config).await.unwrap();
    for _ in 0..10 {
        let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!((a.hits(), b.hits()), (5, 5));
}

#[tokio::test]
async fn least_requests_avoids_the_target_with_a_request_in_flight() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let gate = Gate::new();
    for m in [&a, &b] {
        m.respond("/Patient/slow", patient().hold_until(&gate));
        m.respond("/Patient/1", patient());
    }
    let config = config_for(&[a.base_url(), b.base_url()], |c| {
        c.upstream.balance = Balance::LeastRequests;
    });
    let gw = TestGateway::start(config).await.unwrap();
    let slow_url = gw.url("/Patient/slow");
    let slow = tokio::spawn(async move { client().get(slow_url).send().await });
    tokio::time::timeout(Duration::from_secs(5), async {
        while a.hits() + b.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let busy_is_a = a.hits() == 1;
    for _ in 0..4 {
        let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (busy, free) = if busy_is_a { (&a, &b) } else { (&b, &a) };
    assert_eq!((busy.hits(), free.hits()), (1, 4));
    gate.open();
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_failing_target_is_ejected_and_returns_after_eject_for() {
    let failing = MockUpstream::start().await.unwrap();
    let healthy = MockUpstream::start().await.unwrap();
    failing.respond(
        "/Patient/1",
        Canned::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}),
        ),
    );
    healthy.respond("/Patient/1", patient());
    let eject_for = Duration::from_millis(600);
    let config = config_for(&[failing.base_url(), healthy.base_url()], |c| {
        c.upstream.health.failures_to_eject = 2;
        c.upstream.health.eject_for = eject_for;
    });
    let gw = TestGateway::start(config).await.unwrap();
    let get = || async { client().get(gw.url("/Patient/1")).send().await.unwrap() };
    for _ in 0..10 {
        get().await;
    }
    let ejected_at = Instant::now();
    // Round-robin sends every other request to the failing target until its second failure.
    assert_eq!(failing.hits(), 2);
    assert_eq!(healthy.hits(), 8);

    let metrics = client()
        .get(gw.root_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ejections = metrics
        .lines()
        .find(|l| {
            l.starts_with("fhirgate_upstream_ejections_total")
                && l.contains(&failing.addr().to_string())
        })
        .unwrap_or_default()
        .to_owned();
    assert!(ejections.ends_with(" 1"), "{ejections}\n{metrics}");

    // After eject_for the target gets traffic again.
    tokio::time::timeout(Duration::from_secs(10), async {
        while failing.hits() == 2 {
            get().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(ejected_at.elapsed() >= eject_for - Duration::from_millis(100));
}

#[tokio::test]
async fn when_every_target_is_ejected_requests_are_tried_anyway() {
    let only = MockUpstream::start().await.unwrap();
    only.respond("/Patient/1", Canned::empty(StatusCode::SERVICE_UNAVAILABLE));
    let config = config_for(&[only.base_url()], |c| {
        c.upstream.health.failures_to_eject = 1;
        c.upstream.health.eject_for = Duration::from_secs(60);
    });
    let gw = TestGateway::start(config).await.unwrap();
    for _ in 0..3 {
        let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(only.hits(), 3);
    only.respond("/Patient/1", patient());
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn pooled_connections_are_reused_and_bundles_rewritten_from_the_answering_target() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    for m in [&a, &b] {
        m.respond(
            "/Observation",
            Canned::json(StatusCode::OK, &m.searchset("Observation", 3)),
        );
    }
    let config = config_for(&[a.base_url(), b.base_url()], |_| {});
    let gw = TestGateway::start(config).await.unwrap();
    for _ in 0..6 {
        let body = client()
            .get(gw.url("/Observation?patient=1"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["entry"][0]["fullUrl"],
            format!("{}/Observation/0", gateway::PUBLIC_BASE)
        );
        assert!(!v["link"][0]["url"].as_str().unwrap().contains("127.0.0.1"));
    }
    assert_eq!((a.hits(), b.hits()), (3, 3));
    // Sequential requests reuse one keep-alive connection per target.
    assert_eq!((a.connections(), b.connections()), (1, 1));
}

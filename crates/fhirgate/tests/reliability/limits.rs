//! Item 1, connection hygiene: header count, idle keep-alive connections, stalled request
//! bodies and the connection limit, each next to the case that must keep working.

use std::time::Duration;

use fhirgate_testkit::process::FhirgateProcess;

use crate::{BIN, Raw, Upstream, config, socket};

#[tokio::test]
async fn too_many_headers_are_431_operation_outcome() {
    let upstream = Upstream::start().await;
    let gateway =
        FhirgateProcess::serve(BIN, &config(&upstream, "limits:\n  max_header_count: 20\n"))
            .await
            .unwrap();
    let addr = socket(&gateway.address);
    let request = |n: usize| {
        let mut r = String::from("GET /fhir/Patient/1 HTTP/1.1\r\nHost: gateway.test\r\n");
        for i in 0..n {
            r.push_str(&format!("X-Extra-{i}: {i}\r\n"));
        }
        r.push_str("\r\n");
        r
    };
    let mut allowed = Raw::connect(addr).await.unwrap();
    allowed.send(request(15).as_bytes()).await.unwrap();
    let answer = allowed.read_response().await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");

    let mut denied = Raw::connect(addr).await.unwrap();
    denied.send(request(30).as_bytes()).await.unwrap();
    let answer = denied.read_response().await.unwrap();
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/fhir+json"))
    );
    let outcome: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "too-long");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_busy_ones_are_not() {
    let upstream = Upstream::start().await;
    // A long header timeout, so that what closes the connection is the idle timer.
    let gateway = FhirgateProcess::serve(
        BIN,
        &config(
            &upstream,
            "limits:\n  idle_timeout: 1s\n  header_read_timeout: 60s\n",
        ),
    )
    .await
    .unwrap();
    let addr = socket(&gateway.address);

    let mut busy = Raw::connect(addr).await.unwrap();
    let mut idle = Raw::connect(addr).await.unwrap();
    assert_eq!(idle.get("/fhir/Patient/1").await.unwrap().status, 200);
    // A request every 300 ms for 3 s: three idle periods long, on one connection.
    for _ in 0..10 {
        assert_eq!(busy.get("/fhir/Patient/1").await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let closed = idle
        .wait_closed(Duration::from_secs(10))
        .await
        .expect("the idle connection is closed");
    assert!(closed < Duration::from_secs(10));
}

/// An idle HTTP/1.1 connection is kept (its buffers released, `keepalive.rs`) until
/// `idle_timeout`, not `header_read_timeout`; the header clock starts with a request's first
/// byte, also on a connection that has served requests before.
#[tokio::test]
async fn idle_http1_connections_outlive_the_header_timeout_and_a_started_head_does_not() {
    let upstream = Upstream::start().await;
    let gateway = FhirgateProcess::serve(
        BIN,
        &config(
            &upstream,
            "limits:\n  idle_timeout: 60s\n  header_read_timeout: 1s\n",
        ),
    )
    .await
    .unwrap();
    let addr = socket(&gateway.address);
    let mut idle = Raw::connect(addr).await.unwrap();
    let mut slow = Raw::connect(addr).await.unwrap();
    assert_eq!(idle.get("/fhir/Patient/1").await.unwrap().status, 200);
    assert_eq!(slow.get("/fhir/Patient/1").await.unwrap().status, 200);
    // Past the hibernation delay, so the next bytes meet a fresh hyper connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.send(b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: gateway\r\n")
        .await
        .unwrap();
    let cut = slow
        .wait_closed(Duration::from_secs(10))
        .await
        .expect("a request head unfinished past the header timeout is cut off");
    assert!(cut < Duration::from_secs(5), "cut after {cut:?}");
    // Idle for twice the header timeout, and still served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = idle.get("/fhir/Patient/1").await.unwrap();
    assert_eq!(again.status, 200);
}

/// Bytes hyper read ahead when an idle connection's buffers are released (the start of a
/// pipelined request) are replayed to the next hyper connection, not lost.
#[tokio::test]
async fn a_pipelined_request_split_across_the_buffer_release_is_served() {
    let upstream = Upstream::start().await;
    let gateway = FhirgateProcess::serve(BIN, &config(&upstream, ""))
        .await
        .unwrap();
    let mut client = Raw::connect(socket(&gateway.address)).await.unwrap();
    client
        .send(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\nGET /fhir/Patient/1 HTTP/1.1\r\n")
        .await
        .unwrap();
    let first = client.read_response().await.unwrap();
    assert_eq!(first.status, 200);
    assert!(!first.body.contains("resourceType"), "{}", first.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.send(b"Host: gateway\r\n\r\n").await.unwrap();
    let second = client.read_response().await.unwrap();
    assert_eq!(second.status, 200);
    assert!(
        second.body.contains(r#""resourceType":"Patient""#),
        "{}",
        second.body
    );
}

#[tokio::test]
async fn a_stalled_request_body_loses_its_connection_and_a_slow_one_completes() {
    let upstream = Upstream::start().await;
    let gateway = FhirgateProcess::serve(
        BIN,
        &config(
            &upstream,
            "limits:\n  body_read_timeout: 1s\n  header_read_timeout: 60s\n",
        ),
    )
    .await
    .unwrap();
    let addr = socket(&gateway.address);
    let body = br#"{"resourceType":"Patient","id":"x","active":true}"#;
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );

    // Slow but steady: a piece every 300 ms is within the limit.
    let mut slow = Raw::connect(addr).await.unwrap();
    slow.send(head.as_bytes()).await.unwrap();
    for piece in body.chunks(10) {
        slow.send(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(slow.read_response().await.unwrap().status, 201);

    // Stalled: half the body, then nothing.
    let mut stalled = Raw::connect(addr).await.unwrap();
    stalled.send(head.as_bytes()).await.unwrap();
    stalled.send(&body[..20]).await.unwrap();
    let closed = stalled
        .wait_closed(Duration::from_secs(15))
        .await
        .expect("the stalled upload's connection is closed");
    assert!(closed < Duration::from_secs(15));
    gateway
        .wait_for_log("request body stalled", Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let upstream = Upstream::start().await;
    let gateway = FhirgateProcess::serve(
        BIN,
        &config(
            &upstream,
            "limits:\n  max_connections: 4\n  header_read_timeout: 60s\n  idle_timeout: 60s\n",
        ),
    )
    .await
    .unwrap();
    let addr = socket(&gateway.address);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = Raw::connect(addr).await.unwrap();
        assert_eq!(c.get("/fhir/Patient/1").await.unwrap().status, 200);
        held.push(c);
    }
    // The fifth connects (the kernel's backlog accepts it) but is not served yet.
    let mut fifth = Raw::connect(addr).await.unwrap();
    let pending = tokio::time::timeout(Duration::from_secs(1), fifth.get("/fhir/Patient/1")).await;
    assert!(
        pending.is_err(),
        "served beyond max_connections: {pending:?}"
    );
    gateway
        .wait_for_log("limits.max_connections reached", Duration::from_secs(5))
        .await
        .unwrap();
    // One closes: the fifth is accepted and answered (its request is already sent).
    drop(held.pop());
    let answer = tokio::time::timeout(Duration::from_secs(10), fifth.read_response())
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(answer.status, 200);
    // The others are still served.
    assert_eq!(held[0].get("/fhir/Patient/1").await.unwrap().status, 200);
}

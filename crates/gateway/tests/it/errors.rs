//! One test per `GatewayError` variant: status, content type and OperationOutcome code, and
//! that rejected requests never reach the upstream.

use std::time::Duration;

use fhirgate_testkit::upstream::{Canned, Gate};
use http::StatusCode;

use crate::{client, get, outcome_code, raw, start, start_with};

#[tokio::test]
async fn malformed_paths_are_400_and_never_forwarded() {
    let (upstream, gw) = start().await;
    for target in [
        "/fhir/Patient/a%2Fb",
        "/fhir/Patient/../Patient/1",
        "/fhir/./Patient/1",
        "/fhir//Patient/1",
        "/fhir/Patient/1;x=y",
        "/fhir/Patient/1%00",
        "/fhir/patient/1",
    ] {
        let (status, body) = raw(gw.addr(), &get(target)).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains("\"code\":\"invalid\""), "{target}: {body}");
    }
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn bad_id_is_400_value() {
    let (upstream, gw) = start().await;
    let response = client().get(gw.url("/Patient/a_b")).send().await.unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (400, "value"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn method_override_header_is_400_invalid() {
    let (upstream, gw) = start().await;
    let response = client()
        .post(gw.url("/Patient/1"))
        .header("X-HTTP-Method-Override", "DELETE")
        .send()
        .await
        .unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (400, "invalid"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn wrong_method_for_path_is_405_not_supported() {
    let (upstream, gw) = start().await;
    let response = client()
        .request(http::Method::OPTIONS, gw.url("/Patient/1"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (405, "not-supported"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn unknown_route_is_404_not_found() {
    let (upstream, gw) = start().await;
    let response = client().get(gw.root_url("/nope")).send().await.unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (404, "not-found"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn trace_is_501_not_supported() {
    let (upstream, gw) = start().await;
    let response = client()
        .request(http::Method::TRACE, gw.url("/Patient/1"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (501, "not-supported"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn declared_body_over_limit_is_413_too_long() {
    let (upstream, gw) = start_with(|c| c.limits.max_body_size = 1024).await;
    let response = client()
        .post(gw.url("/Patient"))
        .header("content-type", "application/fhir+json")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (413, "too-long"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn streamed_body_over_limit_is_413_too_long() {
    let (_upstream, gw) = start_with(|c| c.limits.max_body_size = 1024).await;
    let chunk = format!("200\r\n{}\r\n", " ".repeat(0x200));
    let request = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/fhir+json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(8)
    );
    let (status, body) = raw(gw.addr(), &request).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"code\":\"too-long\""), "{body}");
}

#[tokio::test]
async fn long_uri_is_414_too_long() {
    let (upstream, gw) = start().await;
    let query = "x".repeat(10 * 1024);
    let response = client()
        .get(gw.url(&format!("/Patient?name={query}")))
        .send()
        .await
        .unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (414, "too-long"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn large_headers_are_431_too_long() {
    let (upstream, gw) = start().await;
    let response = client()
        .get(gw.url("/Patient/1"))
        .header("authorization", format!("Bearer {}", "a".repeat(36 * 1024)))
        .send()
        .await
        .unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (431, "too-long"));
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn over_concurrency_limit_is_503_transient_with_retry_after() {
    let (upstream, gw) = start_with(|c| c.limits.max_concurrent_requests = 1).await;
    let gate = Gate::new();
    upstream.respond(
        "/Patient/slow",
        Canned::resource(&serde_json::json!({"resourceType": "Patient", "id": "slow"}))
            .hold_until(&gate),
    );
    let slow = tokio::spawn(client().get(gw.url("/Patient/slow")).send());
    upstream.wait_for_hits(1).await;

    let response = client().get(gw.url("/Patient/2")).send().await.unwrap();
    let (status, code, headers) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (503, "transient"));
    assert_eq!(headers.get("retry-after").unwrap(), "1");

    gate.open();
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn connection_refused_is_502_exception() {
    // A port that was just free: nothing listens on it any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config =
        fhirgate_testkit::gateway::config(&format!("http://127.0.0.1:{port}/fhir")).unwrap();
    let gw = fhirgate_testkit::gateway::TestGateway::start(config)
        .await
        .unwrap();
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (502, "exception"));
}

#[tokio::test]
async fn upstream_closing_before_headers_is_502_exception() {
    let (upstream, gw) = start().await;
    upstream.respond("/Patient/1", Canned::close_connection());
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (502, "exception"));
}

#[tokio::test]
async fn upstream_timeout_is_504_timeout() {
    let (upstream, gw) =
        start_with(|c| c.upstream.response_timeout = Duration::from_millis(200)).await;
    upstream.respond(
        "/Patient/1",
        Canned::resource(&serde_json::json!({"resourceType": "Patient"}))
            .with_delay(Duration::from_secs(5)),
    );
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (504, "timeout"));
}

#[tokio::test]
async fn html_502_from_upstream_becomes_an_outcome_keeping_the_status() {
    let (upstream, gw) = start().await;
    upstream.respond("/Patient/1", Canned::html_502());
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 502);
    assert!(text.contains("\"code\":\"exception\""), "{text}");
    assert!(
        !text.contains("nginx") && !text.contains("10.0.0.7"),
        "{text}"
    );
}

#[tokio::test]
async fn empty_503_from_upstream_becomes_transient() {
    let (upstream, gw) = start().await;
    upstream.respond("/Patient/1", Canned::empty(StatusCode::SERVICE_UNAVAILABLE));
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    let (status, code, _) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (503, "transient"));
}

#[tokio::test]
async fn panic_is_500_exception() {
    let upstream = fhirgate_testkit::upstream::MockUpstream::start()
        .await
        .unwrap();
    let config = fhirgate_testkit::gateway::config(&upstream.base_url()).unwrap();
    let gateway = fhirgate_gateway::Gateway::new(config).unwrap().mount(
        "/boom",
        tower::service_fn(|_req: http::Request<axum::body::Body>| async {
            if true {
                panic!("deliberate");
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
        }),
    );
    let gw = fhirgate_testkit::gateway::TestGateway::start_gateway(gateway)
        .await
        .unwrap();
    let response = client().get(gw.root_url("/boom")).send().await.unwrap();
    let (status, code, headers) = outcome_code(response).await;
    assert_eq!((status, code.as_str()), (500, "exception"));
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn unreadable_form_body_is_400_structure() {
    let (upstream, gw) = start().await;
    let request = "POST /fhir/Observation/_search HTTP/1.1\r\nHost: gw.test\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\nzz\r\npatient=1\r\n0\r\n\r\n";
    let (status, body) = raw(gw.addr(), request).await;
    // hyper may refuse the framing itself; either way the upstream never sees it.
    assert!(status == 400 || status == 0, "{status} {body}");
    if status == 400 {
        assert!(body.contains("\"code\":\"structure\""), "{body}");
    }
    assert_eq!(upstream.hits(), 0);
}

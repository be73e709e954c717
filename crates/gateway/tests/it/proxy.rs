//! What the upstream receives and what the client gets back.

use std::time::Duration;

use fhirgate_testkit::gateway::PUBLIC_BASE;
use fhirgate_testkit::upstream::{Canned, Gate};
use http::StatusCode;
use serde_json::{Value, json};

use crate::{client, start, start_with};

#[tokio::test]
async fn read_is_forwarded_to_exactly_the_classified_path() {
    let (upstream, gw) = start().await;
    let response = client().get(gw.url("/Patient/123")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "123");
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.method, http::Method::GET);
    assert_eq!(seen.target, "/fhir/Patient/123");
}

#[tokio::test]
async fn search_query_reaches_the_upstream() {
    let (upstream, gw) = start().await;
    upstream.respond(
        "/Observation",
        Canned::resource(&upstream.searchset("Observation", 2)),
    );
    let response = client()
        .get(gw.url("/Observation?patient=123&code=http%3A%2F%2Floinc.org%7C1234-5,abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        upstream.last_request().unwrap().target,
        "/fhir/Observation?patient=123&code=http%3A%2F%2Floinc.org%7C1234-5,abc"
    );
}

#[tokio::test]
async fn post_search_form_body_is_forwarded_as_classified() {
    let (upstream, gw) = start().await;
    upstream.respond(
        "/Observation/_search",
        Canned::resource(&upstream.searchset("Observation", 1)),
    );
    let response = client()
        .post(gw.url("/Observation/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("patient=123&code=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.target, "/fhir/Observation/_search");
    assert_eq!(&seen.body[..], b"patient=123&code=abc");
}

#[tokio::test]
async fn request_id_is_generated_propagated_and_echoed() {
    let (upstream, gw) = start().await;
    let response = client().get(gw.url("/Patient/1")).send().await.unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!generated.is_empty());
    assert_eq!(
        upstream.last_request().unwrap().headers["x-request-id"],
        generated.as_str()
    );

    let response = client()
        .get(gw.url("/Patient/1"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    assert_eq!(
        upstream.last_request().unwrap().headers["x-request-id"],
        "abc-123"
    );
}

#[tokio::test]
async fn forwarded_headers_and_traceparent() {
    let (upstream, gw) = start().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    client()
        .get(gw.url("/Patient/1"))
        .header("traceparent", traceparent)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    let seen = upstream.last_request().unwrap().headers;
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], gw.addr().to_string().as_str());
    assert_eq!(seen["traceparent"], traceparent);
    assert_eq!(seen["host"], upstream.addr().to_string().as_str());

    // Without one from the client, the connection's own address starts the list.
    client().get(gw.url("/Patient/1")).send().await.unwrap();
    let seen = upstream.last_request().unwrap().headers;
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let (upstream, gw) = start().await;
    upstream.respond(
        "/Patient/1",
        Canned::resource(&json!({"resourceType": "Patient", "id": "1"}))
            .with_header("connection", "x-upstream-private")
            .with_header("x-upstream-private", "1")
            .with_header("proxy-authenticate", "Basic")
            .with_header("x-kept", "yes"),
    );
    let response = client()
        .get(gw.url("/Patient/1"))
        .header("connection", "x-client-private")
        .header("x-client-private", "1")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("keep-alive", "timeout=5")
        .header("x-client-kept", "yes")
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    assert!(headers.get("x-upstream-private").is_none());
    assert!(headers.get("proxy-authenticate").is_none());
    assert_eq!(headers["x-kept"], "yes");

    let seen = upstream.last_request().unwrap().headers;
    for name in [
        "x-client-private",
        "te",
        "proxy-authorization",
        "keep-alive",
    ] {
        assert!(seen.get(name).is_none(), "{name} was forwarded");
    }
    assert_eq!(seen["x-client-kept"], "yes");
}

#[tokio::test]
async fn location_headers_are_rewritten_to_the_public_base() {
    let (upstream, gw) = start().await;
    let base = upstream.base_url();
    upstream.respond(
        "/Patient",
        Canned::json(
            StatusCode::CREATED,
            &json!({"resourceType": "Patient", "id": "9"}),
        )
        .with_header("location", &format!("{base}/Patient/9/_history/1"))
        .with_header("content-location", &format!("{base}/Patient/9/_history/1")),
    );
    let response = client()
        .post(gw.url("/Patient"))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let expected = format!("{PUBLIC_BASE}/Patient/9/_history/1");
    assert_eq!(response.headers()["location"], expected.as_str());
    assert_eq!(response.headers()["content-location"], expected.as_str());
    assert_eq!(
        &upstream.last_request().unwrap().body[..],
        br#"{"resourceType":"Patient"}"#
    );
}

#[tokio::test]
async fn bundle_links_and_full_urls_are_rewritten() {
    let (upstream, gw) = start().await;
    upstream.respond(
        "/Observation",
        Canned::resource(&upstream.searchset("Observation", 3)),
    );
    let response = client()
        .get(gw.url("/Observation?patient=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(length, bytes.len());
    let bundle: Value = serde_json::from_slice(&bytes).unwrap();
    for link in bundle["link"].as_array().unwrap() {
        assert!(
            link["url"].as_str().unwrap().starts_with(PUBLIC_BASE),
            "{link}"
        );
    }
    for entry in bundle["entry"].as_array().unwrap() {
        assert!(
            entry["fullUrl"].as_str().unwrap().starts_with(PUBLIC_BASE),
            "{entry}"
        );
        // Resource content is the upstream's, untouched.
        assert!(
            entry["resource"]["text"]["div"]
                .as_str()
                .unwrap()
                .contains(&upstream.base_url())
        );
    }
    // Bundles must arrive uncompressed to be rewritten.
    assert!(
        upstream
            .last_request()
            .unwrap()
            .headers
            .get("accept-encoding")
            .is_none()
    );
}

#[tokio::test]
async fn bundle_over_the_rewrite_limit_streams_unmodified() {
    let (upstream, gw) = start_with(|c| c.limits.bundle_rewrite_max = 100).await;
    let bundle = upstream.searchset("Observation", 3);
    upstream.respond("/Observation", Canned::resource(&bundle));
    let response = client()
        .get(gw.url("/Observation?patient=1"))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, bundle);
}

#[tokio::test]
async fn metadata_and_upstream_outcomes_pass_through_unchanged() {
    let (upstream, gw) = start().await;
    let capability =
        json!({"resourceType": "CapabilityStatement", "status": "active", "fhirVersion": "4.0.1"});
    upstream.respond("/metadata", Canned::resource(&capability));
    let outcome = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found", "diagnostics": "Resource Patient/404 is not known"}]});
    upstream.respond(
        "/Patient/404",
        Canned::json(StatusCode::NOT_FOUND, &outcome),
    );

    let response = client().get(gw.url("/metadata")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), capability);
    assert_eq!(upstream.last_request().unwrap().target, "/fhir/metadata");

    let response = client().get(gw.url("/Patient/404")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.json::<Value>().await.unwrap(), outcome);
}

#[tokio::test]
async fn a_50_mb_response_streams_through_without_buffering() {
    const TOTAL: u64 = 50 * 1024 * 1024;
    const FIRST: u64 = 1024 * 1024;
    let (upstream, gw) = start().await;
    let gate = Gate::new();
    upstream.respond(
        "/Binary/big",
        Canned::streaming(TOTAL).pause_after(FIRST, &gate),
    );

    let mut response = client().get(gw.url("/Binary/big")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The upstream is paused after 1 MiB: if the gateway buffered the body, no byte would
    // arrive here until the gate opens, and this would time out.
    // Later phases may hold back the last frame until the audit record is written, so wait
    // for half of what the upstream has sent.
    let mut received = 0u64;
    tokio::time::timeout(Duration::from_secs(20), async {
        while received < FIRST / 2 {
            received += response.chunk().await.unwrap().unwrap().len() as u64;
        }
    })
    .await
    .expect("the first bytes arrived while the upstream was still sending");
    assert!(upstream.bytes_streamed() < TOTAL);

    gate.open();
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len() as u64;
    }
    assert_eq!(received, TOTAL);
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (upstream, gw) = start().await;
    let client = client();
    for i in 0..5 {
        let response = client
            .get(gw.url(&format!("/Patient/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
    }
    assert_eq!(upstream.hits(), 5);
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn head_requests_get_headers_only() {
    let (upstream, gw) = start().await;
    upstream.respond(
        "/Observation",
        Canned::resource(&upstream.searchset("Observation", 2)),
    );
    let response = client()
        .head(gw.url("/Observation?patient=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(upstream.last_request().unwrap().method, http::Method::HEAD);
}

#[tokio::test]
async fn metadata_names_the_public_base_not_the_upstream() {
    let (upstream, gw) = start_with(|c| {
        c.smart_configuration = Some(json!({"token_endpoint": "https://as.example/token"}));
    })
    .await;
    let internal = upstream.base_url();
    let capability = json!({"resourceType": "CapabilityStatement", "status": "active",
        "implementation": {"description": "store", "url": internal.trim_end_matches('/')}});
    upstream.respond("/metadata", Canned::resource(&capability));
    let response = client().get(gw.url("/metadata")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["implementation"]["url"], PUBLIC_BASE);
    assert_eq!(body["implementation"]["description"], "store");
}

//! Listener behaviour: health endpoints, HTTP/2, mounted services, graceful shutdown.

use std::convert::Infallible;

use fhirgate_testkit::gateway::{self, TestGateway};
use fhirgate_testkit::upstream::{Canned, Gate, MockUpstream};
use http::StatusCode;
use serde_json::json;

use crate::{client, start};

#[tokio::test]
async fn healthz_and_readyz() {
    let (_upstream, gw) = start().await;
    let response = client().get(gw.root_url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client().get(gw.root_url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_fails_when_the_upstream_is_down() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = gateway::config(&format!("http://127.0.0.1:{port}/fhir")).unwrap();
    let gw = TestGateway::start(config).await.unwrap();
    let response = client().get(gw.root_url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = client().get(gw.root_url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn http2_prior_knowledge_works() {
    let (upstream, gw) = start().await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(gw.url("/Patient/7")).send().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["id"],
        "7"
    );
    // The upstream connection is HTTP/1.1 whatever the client speaks.
    assert_eq!(upstream.last_request().unwrap().target, "/fhir/Patient/7");
}

#[tokio::test]
async fn mounted_services_see_the_full_path_inside_the_transport_layers() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = gateway::config(&upstream.base_url()).unwrap();
    let service = tower::service_fn(|request: http::Request<axum::body::Body>| async move {
        Ok::<_, Infallible>(http::Response::new(axum::body::Body::from(
            request.uri().path().to_owned(),
        )))
    });
    let gateway = fhirgate_gateway::Gateway::new(config)
        .unwrap()
        .mount("/auth", service);
    let gw = TestGateway::start_gateway(gateway).await.unwrap();
    let response = client()
        .get(gw.root_url("/auth/token"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "/auth/token");
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_in_flight_request() {
    let (upstream, mut gw) = start().await;
    let gate = Gate::new();
    upstream.respond(
        "/Patient/slow",
        Canned::resource(&json!({"resourceType": "Patient", "id": "slow"})).hold_until(&gate),
    );
    let in_flight = tokio::spawn(client().get(gw.url("/Patient/slow")).send());
    upstream.wait_for_hits(1).await;

    gw.begin_shutdown();
    gate.open();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["id"],
        "slow"
    );
    gw.shutdown().await.unwrap();
}

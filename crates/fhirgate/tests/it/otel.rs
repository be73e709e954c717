//! OpenTelemetry export (`tracing:`): the real binary sends its phase spans to an in-test
//! OTLP/HTTP collector, continuing the client's trace, and names its forward span in the
//! upstream's `traceparent`. Without the section the client's header passes unchanged. Log
//! lines written while a request runs carry its request id.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use fhirgate_testkit::process::FhirgateProcess;
use fhirgate_testkit::upstream::{Canned, MockUpstream};
use serde_json::{Value, json};

use crate::BIN;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Value>>>);

/// An OTLP/HTTP (JSON) collector on 127.0.0.1:0; returns its traces URL.
async fn collector(received: Received) -> String {
    async fn traces(State(received): State<Received>, body: Bytes) -> &'static str {
        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
            received.0.lock().unwrap().push(value);
        }
        "{}"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1/traces")
}

/// Every span object (anything with `traceId` and `name`) in the payloads.
fn spans(payloads: &[Value]) -> Vec<Value> {
    fn walk(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(map) => {
                if map.contains_key("traceId") && map.contains_key("name") {
                    out.push(v.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    payloads.iter().for_each(|p| walk(p, &mut out));
    out
}

fn field<'a>(span: &'a Value, name: &str) -> &'a str {
    span[name].as_str().unwrap_or("")
}

fn config(upstream: &MockUpstream, tracing: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\npublic_base_url: http://127.0.0.1/fhir\n\
         upstream:\n  url: {}\nauth:\n  mode: disabled\n{tracing}",
        upstream.base_url()
    )
}

async fn read_patient(gateway: &FhirgateProcess) {
    let response = reqwest::Client::new()
        .get(format!("{}/fhir/Patient/p1", gateway.address))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

#[tokio::test]
async fn phase_spans_reach_the_collector_in_the_clients_trace() {
    let received = Received::default();
    let endpoint = collector(received.clone()).await;
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond(
        "/Patient/p1",
        Canned::resource(&json!({"resourceType": "Patient", "id": "p1"})),
    );
    let yaml = config(
        &upstream,
        &format!(
            "tracing:\n  otlp_endpoint: {endpoint}\n  protocol: http/json\n  \
             service_name: fhirgate-under-test\n"
        ),
    );
    let mut gateway = FhirgateProcess::serve(BIN, &yaml).await.unwrap();
    read_patient(&gateway).await;

    // The upstream is told the gateway's forward span, in the client's trace.
    let sent = upstream.last_request().unwrap();
    let traceparent = sent.headers["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], TRACE_ID, "{traceparent}");
    assert_ne!(parts[2], CLIENT_SPAN, "{traceparent}");
    let forward_span_id = parts[2].to_owned();

    // Batches are sent every few seconds and at shutdown; poll with a deadline.
    gateway.signal("TERM").unwrap();
    gateway.wait_exit(Duration::from_secs(60)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ours = loop {
        let all = spans(&received.0.lock().unwrap());
        let ours: Vec<Value> = all
            .into_iter()
            .filter(|s| field(s, "traceId") == TRACE_ID)
            .collect();
        if ours.iter().any(|s| field(s, "name") == "request")
            || tokio::time::Instant::now() > deadline
        {
            break ours;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = ours.iter().map(|s| field(s, "name")).collect();
    let request = ours
        .iter()
        .find(|s| field(s, "name") == "request")
        .unwrap_or_else(|| panic!("no request span in the client's trace; got {names:?}"));
    assert_eq!(field(request, "parentSpanId"), CLIENT_SPAN, "{request}");
    for phase in [
        "classify",
        "authenticate",
        "authorize",
        "forward",
        "verify",
        "audit",
    ] {
        let span = ours
            .iter()
            .find(|s| field(s, "name") == phase)
            .unwrap_or_else(|| panic!("no {phase} span; got {names:?}"));
        assert_eq!(
            field(span, "parentSpanId"),
            field(request, "spanId"),
            "{phase} is a child of the request span"
        );
    }
    let forward = ours.iter().find(|s| field(s, "name") == "forward").unwrap();
    assert_eq!(field(forward, "spanId"), forward_span_id);
    let payloads = received.0.lock().unwrap().clone();
    assert!(
        payloads
            .iter()
            .any(|p| p.to_string().contains("fhirgate-under-test")),
        "service.name is exported"
    );
}

#[tokio::test]
async fn without_tracing_the_clients_traceparent_passes_unchanged() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.respond(
        "/Patient/p1",
        Canned::resource(&json!({"resourceType": "Patient", "id": "p1"})),
    );
    let gateway = FhirgateProcess::serve(BIN, &config(&upstream, ""))
        .await
        .unwrap();
    read_patient(&gateway).await;
    let sent = upstream.last_request().unwrap();
    assert_eq!(
        sent.headers["traceparent"].to_str().unwrap(),
        format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")
    );
}

#[tokio::test]
async fn log_lines_inside_a_request_carry_its_request_id() {
    // A searchset over `limits.bundle_rewrite_max` makes the forward phase log a warning from
    // deep inside the request, a line that names no request id itself: the id must come
    // from the request span, at the default log level.
    let upstream = MockUpstream::start().await.unwrap();
    let entries: Vec<Value> = (0..40)
        .map(|i| json!({"resource": {"resourceType": "Patient", "id": format!("p{i}")}}))
        .collect();
    upstream.respond(
        "/Patient",
        Canned::resource(&json!({"resourceType": "Bundle", "type": "searchset", "entry": entries})),
    );
    let yaml = config(&upstream, "limits:\n  bundle_rewrite_max: 1KiB\n");
    let gateway = FhirgateProcess::serve(BIN, &yaml).await.unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/fhir/Patient", gateway.address))
        .header("X-Request-ID", "log-line-id-1")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let line = gateway
        .wait_for_log("bundle_rewrite_max", Duration::from_secs(10))
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["level"], "WARN", "{line}");
    assert_eq!(value["span"]["request_id"], "log-line-id-1", "{line}");
    // Not a field of the event itself: the span supplies it.
    assert!(value.get("request_id").is_none(), "{line}");
}

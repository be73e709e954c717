//! Forwarding the trail to a FHIR server: batches, retries, resume after restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use fhirgate_audit::{AuditSink, ForwardConfig, Forwarder};
use serde_json::Value;

use crate::support::{config, write_n};

#[derive(Clone, Default)]
struct Server {
    bundles: Arc<Mutex<Vec<Value>>>,
    fail_next: Arc<Mutex<u32>>,
}

impl Server {
    fn request_ids(&self) -> Vec<String> {
        self.bundles
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["entry"].as_array().unwrap().clone())
            .map(|e| {
                let ev: fhirgate_audit::AuditEvent =
                    serde_json::from_value(e["resource"].clone()).unwrap();
                ev.request_id().unwrap().to_owned()
            })
            .collect()
    }
}

async fn receive(State(s): State<Server>, body: String) -> (StatusCode, String) {
    {
        let mut fail = s.fail_next.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
        }
    }
    let bundle: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(bundle["type"], "batch");
    let n = bundle["entry"].as_array().unwrap().len();
    s.bundles.lock().unwrap().push(bundle);
    let entries: Vec<Value> = (0..n)
        .map(|_| serde_json::json!({"response": {"status": "201 Created"}}))
        .collect();
    let resp =
        serde_json::json!({"resourceType": "Bundle", "type": "batch-response", "entry": entries});
    (StatusCode::OK, resp.to_string())
}

async fn start_server() -> (Server, String) {
    let server = Server::default();
    let app = Router::new()
        .route("/fhir", post(receive))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (server, format!("http://{addr}/fhir"))
}

#[tokio::test]
async fn forwards_in_batches_retries_and_resumes() {
    let (server, url) = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_size = 64 * 1024;
    let sink = AuditSink::open(&cfg).unwrap();
    write_n(&sink, 1, 250).await;

    let mut fwd_cfg = ForwardConfig::new(&url);
    fwd_cfg.batch_size = 100;
    let fwd = Forwarder::new(dir.path(), &fwd_cfg).unwrap();
    *server.fail_next.lock().unwrap() = 1;
    assert!(fwd.forward_once().await.is_err(), "server unavailable");
    assert_eq!(fwd.cursor().unwrap(), 0, "nothing acknowledged yet");
    assert_eq!(fwd.forward_once().await.unwrap(), 100);
    assert_eq!(fwd.forward_once().await.unwrap(), 100);
    assert_eq!(fwd.forward_once().await.unwrap(), 50);
    assert_eq!(fwd.forward_once().await.unwrap(), 0);
    assert_eq!(fwd.cursor().unwrap(), 250);
    let ids = server.request_ids();
    let expected: Vec<String> = (1..=250).map(|n| format!("req-{n}")).collect();
    assert_eq!(ids, expected);

    // A new forwarder (after a restart) continues from the cursor.
    write_n(&sink, 251, 5).await;
    let fwd = Forwarder::new(dir.path(), &fwd_cfg).unwrap();
    assert_eq!(fwd.forward_once().await.unwrap(), 5);
    assert_eq!(server.request_ids().len(), 255);
    // The cursor file is not mistaken for an audit file.
    assert!(
        fhirgate_audit::verify(&[dir.path().to_path_buf()])
            .unwrap()
            .is_intact()
    );
}

#[tokio::test]
async fn the_background_loop_catches_up_and_stops_on_shutdown() {
    let (server, url) = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = AuditSink::open(&config(dir.path())).unwrap();
    let mut fwd_cfg = ForwardConfig::new(&url);
    fwd_cfg.interval = Duration::from_millis(20);
    let fwd = Forwarder::new(dir.path(), &fwd_cfg).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    *server.fail_next.lock().unwrap() = 2;
    let task = tokio::spawn(fwd.run(stopped));
    write_n(&sink, 1, 30).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.request_ids().len() < 30 {
        assert!(Instant::now() < deadline, "forwarder did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.request_ids().len(), 30);
}

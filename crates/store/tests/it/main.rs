//! Integration tests: the store served on 127.0.0.1:0, driven over HTTP.

// Helpers outside `#[test]` functions are test code too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bundle;
mod conditional;
mod crud;
mod durability;
mod history;
mod import;
mod search;

use std::path::PathBuf;

use fhirgate_store::Store;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::Value;

/// A running store on an ephemeral port.
pub struct TestStore {
    pub base: String,
    pub client: Client,
    pub store: Store,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestStore {
    pub async fn start() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> TestStore {
        let store = Store::open(dir.path().join("store.db")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/fhir", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = store.clone();
        let b = base.clone();
        let task = tokio::spawn(async move {
            fhirgate_store::serve(listener, s, &b, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestStore {
            base,
            client: Client::new(),
            store,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    /// Stop serving and hand back the directory (for restart tests).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn req(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut r = self.client.request(method, self.url(path));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        r.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.req(Method::GET, path, None).await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.req(Method::POST, path, Some(body)).await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.req(Method::PUT, path, Some(body)).await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Ids of the `match` entries of a searchset, in order.
    pub async fn search_ids(&self, path: &str) -> Vec<String> {
        let (s, b) = self.get(path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        match_ids(&b)
    }
}

pub fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn issue_code(outcome: &Value) -> &str {
    outcome["issue"][0]["code"].as_str().unwrap_or("")
}

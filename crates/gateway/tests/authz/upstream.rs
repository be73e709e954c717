//! A small FHIR server holding two patients' data (P1 and P2), realistic enough for the
//! authorization tests: reads, searches that honour `patient`/`subject`/`_id` (or ignore them in
//! naughty mode), `_include` that reaches every Patient, compartment searches, writes that echo,
//! and batches. It records every request so tests can assert what the gateway forwarded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Text that only P2's data contains; it must never appear in a response to P1's token.
pub const P2_MARKERS: [&str; 2] = ["Zebediah", "p2-secret-note"];

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Shared {
    base: String,
    resources: Mutex<Vec<Value>>,
    naughty: AtomicBool,
    requests: Mutex<Vec<Recorded>>,
}

pub struct FhirUpstream {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FhirUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn patient(id: &str, name: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "meta": {"versionId": "1"},
           "name": [{"family": name}]})
}

fn observation(id: &str, patient: &str, category: &str, note: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "meta": {"versionId": "3"}, "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "x"}]},
           "subject": {"reference": format!("Patient/{patient}")},
           "note": [{"text": note}]})
}

impl FhirUpstream {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base: format!("http://{addr}/fhir"),
            resources: Mutex::new(vec![
                patient("P1", "Oneperson"),
                patient("P2", "Zebediah"),
                observation("o1", "P1", "laboratory", "p1 lab"),
                observation("o1v", "P1", "vital-signs", "p1 vitals"),
                observation("o2", "P2", "laboratory", "p2-secret-note"),
                json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/P1"}}),
                json!({"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Doc"}]}),
            ]),
            ..Shared::default()
        });
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FhirUpstream { shared, task })
    }

    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// Ignore patient constraints in searches, as a buggy server might.
    pub fn set_naughty(&self, on: bool) {
        self.shared.naughty.store(on, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the upstream was called")
    }
}

fn fhir(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [("content-type", "application/fhir+json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    fhir(
        StatusCode::NOT_FOUND,
        &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}),
    )
}

async fn answer(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.lock().unwrap().push(Recorded {
        method: method.clone(),
        target: uri
            .path_and_query()
            .map(|pq| pq.to_string())
            .unwrap_or_default(),
        headers,
        body: body.clone(),
    });
    let path = uri.path().strip_prefix("/fhir").unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut params: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if method == Method::POST && segments.last() == Some(&"_search") {
        params.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["metadata"]) => fhir(
            StatusCode::OK,
            &json!({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                    "fhirVersion": "4.0.1", "format": ["json"], "rest": [{"mode": "server"}]}),
        ),
        ("GET", [rt, id, "_history"]) => match find(&s, rt, id) {
            Some(r) => fhir(
                StatusCode::OK,
                &json!({"resourceType": "Bundle", "type": "history", "entry": [
                    {"fullUrl": format!("{}/{rt}/{id}", s.base), "resource": r},
                    {"fullUrl": format!("{}/{rt}/{id}", s.base), "resource": r}]}),
            ),
            None => not_found(),
        },
        ("GET", [rt, id, "_history", _]) => match find(&s, rt, id) {
            Some(r) => fhir(StatusCode::OK, &r),
            None => not_found(),
        },
        ("GET", [rt, id]) if !rt.starts_with('$') && !id.starts_with('$') => {
            match find(&s, rt, id) {
                Some(r) => fhir(StatusCode::OK, &r),
                None => not_found(),
            }
        }
        ("GET", [rt]) | ("POST", [rt, "_search"]) if !rt.starts_with('$') => {
            fhir(StatusCode::OK, &search(&s, rt, &params, None))
        }
        ("GET", ["Patient", id, rt]) => fhir(StatusCode::OK, &search(&s, rt, &params, Some(id))),
        ("POST", [rt]) => echo(StatusCode::CREATED, rt, "new", &body),
        ("PUT", [rt, id]) => echo(StatusCode::OK, rt, id, &body),
        ("PATCH", [_, _]) => fhir(
            StatusCode::OK,
            &json!({"resourceType": "OperationOutcome", "issue": []}),
        ),
        ("DELETE", _) => StatusCode::NO_CONTENT.into_response(),
        ("POST", []) => batch(&s, &body),
        (_, [first, ..]) if first.starts_with('$') => fhir(
            StatusCode::OK,
            &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}),
        ),
        _ => not_found(),
    }
}

fn find(s: &Shared, rt: &str, id: &str) -> Option<Value> {
    s.resources
        .lock()
        .unwrap()
        .iter()
        .find(|r| r["resourceType"] == rt && r["id"] == id)
        .cloned()
}

fn owner(r: &Value) -> Option<String> {
    if r["resourceType"] == "Patient" {
        return r["id"].as_str().map(str::to_owned);
    }
    r.pointer("/subject/reference")
        .and_then(Value::as_str)
        .map(|s| s.rsplit('/').next().unwrap_or("").to_owned())
}

fn search(s: &Shared, rt: &str, params: &[(String, String)], compartment: Option<&str>) -> Value {
    let naughty = s.naughty.load(Ordering::SeqCst);
    let wanted: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "patient" || k == "subject" || (rt == "Patient" && k == "_id"))
        .map(|(_, v)| v.rsplit('/').next().unwrap_or("").to_owned())
        .chain(compartment.map(str::to_owned))
        .collect();
    let categories: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "category")
        .map(|(_, v)| v.rsplit('|').next().unwrap_or(""))
        .collect();
    let all = s.resources.lock().unwrap().clone();
    let mut entries: Vec<Value> = all
        .iter()
        .filter(|r| r["resourceType"] == rt)
        .filter(|r| naughty || wanted.is_empty() || owner(r).is_some_and(|o| wanted.contains(&o)))
        .filter(|r| {
            naughty
                || categories.is_empty()
                || categories
                    .iter()
                    .any(|c| r.pointer("/category/0/coding/0/code") == Some(&json!(c)))
        })
        .map(|r| {
            json!({"fullUrl": format!("{}/{}/{}", s.base, rt, r["id"].as_str().unwrap_or("")),
                   "resource": r, "search": {"mode": "match"}})
        })
        .collect();
    if params
        .iter()
        .any(|(k, _)| k == "_include" || k == "_revinclude")
    {
        // Includes reach every patient, as `_include=*` on a shared server would.
        for p in all.iter().filter(|r| r["resourceType"] == "Patient") {
            entries.push(
                json!({"fullUrl": format!("{}/Patient/{}", s.base, p["id"].as_str().unwrap_or("")),
                                "resource": p, "search": {"mode": "include"}}),
            );
        }
    }
    json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(),
           "link": [{"relation": "self", "url": format!("{}/{rt}", s.base)}], "entry": entries})
}

fn echo(status: StatusCode, rt: &str, id: &str, body: &Bytes) -> Response {
    let mut value: Value = serde_json::from_slice(body).unwrap_or(json!({}));
    value["id"] = json!(id);
    if value.get("resourceType").is_none() {
        value["resourceType"] = json!(rt);
    }
    fhir(status, &value)
}

fn batch(s: &Shared, body: &Bytes) -> Response {
    let bundle: Value = serde_json::from_slice(body).unwrap_or(json!({}));
    let mut out = Vec::new();
    let empty = Vec::new();
    for entry in bundle["entry"].as_array().unwrap_or(&empty) {
        let url = entry
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or("");
        let parts: Vec<&str> = url.split('?').next().unwrap_or("").split('/').collect();
        let found = match parts.as_slice() {
            [rt, id] => find(s, rt, id),
            [rt] => Some(search(s, rt, &[], None)),
            _ => None,
        };
        out.push(match found {
            Some(r) => json!({"resource": r, "response": {"status": "200 OK"}}),
            None => json!({"response": {"status": "404 Not Found"}}),
        });
    }
    fhir(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": "batch-response", "entry": out}),
    )
}

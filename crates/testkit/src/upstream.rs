//! An in-process FHIR-ish upstream on `127.0.0.1:0` with canned answers and a record of every
//! request it received, so tests can assert what the gateway forwarded (or that it forwarded
//! nothing).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

/// A latch tests open to let a held response proceed.
#[derive(Clone, Debug)]
pub struct Gate(Arc<Semaphore>);

impl Gate {
    pub fn new() -> Self {
        Gate(Arc::new(Semaphore::new(0)))
    }

    /// Let every current and future waiter through.
    pub fn open(&self) {
        self.0.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    async fn wait(&self) {
        // The permit goes straight back, so an opened gate stays open.
        let _ = self.0.acquire().await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// What the upstream sends for a path.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: CannedBody,
    /// Wait this long before sending headers.
    pub delay: Option<Duration>,
    /// Wait for this gate before sending headers.
    pub hold: Option<Gate>,
}

#[derive(Clone, Debug)]
pub enum CannedBody {
    Bytes(Bytes),
    /// `total` bytes generated on the fly in `chunk`-sized pieces; with `pause`, the stream
    /// stops after that many bytes until the gate opens.
    Generated {
        total: u64,
        chunk: usize,
        pause: Option<(u64, Gate)>,
    },
    /// Close the connection without sending any response.
    Close,
}

impl Canned {
    pub fn raw(status: StatusCode, content_type: Option<&str>, body: impl Into<Bytes>) -> Self {
        let mut headers = Vec::new();
        if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(ct).ok()) {
            headers.push((header::CONTENT_TYPE, ct));
        }
        Canned {
            status,
            headers,
            body: CannedBody::Bytes(body.into()),
            delay: None,
            hold: None,
        }
    }

    /// A FHIR JSON answer.
    pub fn json(status: StatusCode, value: &Value) -> Self {
        Canned::raw(
            status,
            Some("application/fhir+json; charset=utf-8"),
            serde_json::to_vec(value).unwrap_or_default(),
        )
    }

    pub fn resource(value: &Value) -> Self {
        Canned::json(StatusCode::OK, value)
    }

    /// What a load balancer sends when its backend is down.
    pub fn html_502() -> Self {
        Canned::raw(
            StatusCode::BAD_GATEWAY,
            Some("text/html"),
            "<html><body><h1>502 Bad Gateway</h1><p>nginx/1.22.1 at 10.0.0.7</p></body></html>",
        )
    }

    pub fn empty(status: StatusCode) -> Self {
        Canned::raw(status, None, Bytes::new())
    }

    pub fn close_connection() -> Self {
        Canned {
            body: CannedBody::Close,
            ..Canned::empty(StatusCode::OK)
        }
    }

    /// `total` bytes of JSON-ish filler generated on the fly, never held in memory at once.
    pub fn streaming(total: u64) -> Self {
        Canned {
            body: CannedBody::Generated {
                total,
                chunk: 64 * 1024,
                pause: None,
            },
            ..Canned::raw(
                StatusCode::OK,
                Some("application/octet-stream"),
                Bytes::new(),
            )
        }
    }

    /// For [`Canned::streaming`]: stop after `after` bytes until `gate` opens.
    pub fn pause_after(mut self, after: u64, gate: &Gate) -> Self {
        if let CannedBody::Generated { pause, .. } = &mut self.body {
            *pause = Some((after, gate.clone()));
        }
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.headers.push((n, v));
        }
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn hold_until(mut self, gate: &Gate) -> Self {
        self.hold = Some(gate.clone());
        self
    }
}

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query exactly as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct State {
    hits: AtomicUsize,
    connections: AtomicUsize,
    bytes_streamed: AtomicU64,
    arrived: Notify,
    requests: Mutex<Vec<RecordedRequest>>,
    routes: Mutex<Vec<(String, Canned)>>,
}

/// The mock upstream. Dropping it stops accepting connections.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

/// The FHIR base path the mock serves under.
pub const UPSTREAM_BASE_PATH: &str = "/fhir";

impl MockUpstream {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&accept_state);
                state.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { answer(state, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(MockUpstream { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/fhir`
    pub fn base_url(&self) -> String {
        format!("http://{}{UPSTREAM_BASE_PATH}", self.addr)
    }

    /// Answer requests for `path` (relative to the base, e.g. `/Patient/1`, query ignored).
    pub fn respond(&self, path: &str, canned: Canned) {
        let full = format!("{UPSTREAM_BASE_PATH}{path}");
        if let Ok(mut routes) = self.state.routes.lock() {
            routes.retain(|(p, _)| *p != full);
            routes.push((full, canned));
        }
    }

    /// Number of requests received.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (to check that the gateway reuses them).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Bytes of generated bodies handed to the socket so far.
    pub fn bytes_streamed(&self) -> u64 {
        self.state.bytes_streamed.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.requests().pop()
    }

    /// Resolves once at least `n` requests have arrived.
    pub async fn wait_for_hits(&self, n: usize) {
        loop {
            let arrived = self.state.arrived.notified();
            if self.hits() >= n {
                return;
            }
            arrived.await;
        }
    }

    /// A searchset Bundle with `count` entries whose `fullUrl`s and links are absolute URLs
    /// under this upstream's base, as FHIR servers answer.
    pub fn searchset(&self, resource_type: &str, count: usize) -> Value {
        let base = self.base_url();
        let entries: Vec<Value> = (0..count)
            .map(|i| {
                json!({
                    "fullUrl": format!("{base}/{resource_type}/{i}"),
                    "resource": {"resourceType": resource_type, "id": i.to_string(),
                                 "text": {"div": format!("mentions {base}/{resource_type}/{i}")}},
                    "search": {"mode": "match"}
                })
            })
            .collect();
        json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": count,
            "link": [
                {"relation": "self", "url": format!("{base}/{resource_type}?_count=10")},
                {"relation": "next", "url": format!("{base}/{resource_type}?_count=10&_offset=10")}
            ],
            "entry": entries
        })
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type MockBody = BoxBody<Bytes, Infallible>;

#[derive(Debug)]
struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closing the connection on purpose")
    }
}

impl std::error::Error for CloseConnection {}

async fn answer(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, CloseConnection> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(RecordedRequest {
            method: parts.method.clone(),
            target,
            headers: parts.headers.clone(),
            body,
        });
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.arrived.notify_waiters();

    let canned = state.routes.lock().ok().and_then(|routes| {
        routes
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, c)| c.clone())
    });
    let canned = canned.unwrap_or_else(|| default_answer(&path));
    if let Some(delay) = canned.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(gate) = &canned.hold {
        gate.wait().await;
    }
    let body: MockBody = match canned.body {
        CannedBody::Close => return Err(CloseConnection),
        CannedBody::Bytes(bytes) => Full::new(bytes).boxed(),
        CannedBody::Generated {
            total,
            chunk,
            pause,
        } => generated(state, total, chunk, pause),
    };
    let mut response = Response::new(body);
    *response.status_mut() = canned.status;
    for (name, value) in canned.headers {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

fn default_answer(path: &str) -> Canned {
    let id = path.rsplit('/').next().unwrap_or("example");
    Canned::resource(&json!({"resourceType": "Patient", "id": id}))
}

fn generated(state: Arc<State>, total: u64, chunk: usize, pause: Option<(u64, Gate)>) -> MockBody {
    let piece = Bytes::from(vec![b'x'; chunk.max(1)]);
    let stream = futures_util::stream::unfold((0u64, pause), move |(sent, mut pause)| {
        let piece = piece.clone();
        let state = Arc::clone(&state);
        async move {
            if sent >= total {
                return None;
            }
            if let Some((after, gate)) = &pause
                && sent >= *after
            {
                gate.wait().await;
                pause = None;
            }
            let n = (total - sent).min(piece.len() as u64);
            let data = piece.slice(..n as usize);
            state.bytes_streamed.fetch_add(n, Ordering::SeqCst);
            Some((Ok::<_, Infallible>(Frame::data(data)), (sent + n, pause)))
        }
    });
    StreamBody::new(stream).boxed()
}

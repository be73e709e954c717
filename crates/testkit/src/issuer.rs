//! A local OIDC issuer on `127.0.0.1:0`: discovery, JWKS and RFC 7662 introspection, with
//! switches for key rotation, outages, slow and oversized responses, and counters so tests
//! can assert how often the gateway called it. Also a [`Canary`] server that must never be
//! contacted (for `jku`/`x5u` SSRF tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::mint::{JwtBuilder, TestKey, now_secs};

/// The audience tokens get unless a test says otherwise (security.md §1 fixture).
pub const DEFAULT_AUDIENCE: &str = "https://gw/fhir";
/// Client credentials the introspection endpoint accepts (client_secret_basic).
pub const INTROSPECTION_CLIENT_ID: &str = "fhirgate";
pub const INTROSPECTION_CLIENT_SECRET: &str = "introspection-secret";

#[derive(Default)]
struct Shared {
    issuer: String,
    keys: Mutex<Vec<TestKey>>,
    raw_jwks_entries: Mutex<Vec<Value>>,
    outage: AtomicBool,
    delay_ms: AtomicU64,
    oversized: AtomicBool,
    /// Served instead of the key set / the introspection answer while set.
    jwks_override: Mutex<Option<String>>,
    introspection_override: Mutex<Option<String>>,
    openid_discovery: AtomicBool,
    cache_control: Mutex<Option<String>>,
    discovery_issuer: Mutex<Option<String>>,
    opaque: Mutex<HashMap<String, Value>>,
    jwks_hits: AtomicU64,
    discovery_hits: AtomicU64,
    introspection_hits: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running test issuer. Dropping it stops the server.
pub struct TestIssuer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// RSA key `k1` (published, `alg: RS256`).
    pub k1: TestKey,
    /// EC P-256 key `k2` (published, `alg: ES256`).
    pub k2: TestKey,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    /// Start with keys `k1` (RS256) and `k2` (ES256) published.
    pub async fn start() -> anyhow::Result<Self> {
        let k1 = TestKey::rsa("k1")?;
        let k2 = TestKey::ec_p256("k2")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            keys: Mutex::new(vec![k1.clone(), k2.clone()]),
            openid_discovery: AtomicBool::new(true),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(openid))
            .route("/.well-known/oauth-authorization-server", get(oauth_as))
            .route("/jwks", get(jwks))
            .route("/introspect", post(introspect))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            task,
            k1,
            k2,
        })
    }

    /// The issuer identifier (`http://127.0.0.1:PORT`, no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.shared.issuer)
    }

    /// The introspection endpoint URL.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.shared.issuer)
    }

    /// A token signed by `k1` (RS256) with iss, aud, sub, scope, patient, client_id, jti,
    /// iat = now and exp = now + 300 by the host clock.
    pub fn token(&self) -> JwtBuilder {
        self.token_at(now_secs())
    }

    /// As [`TestIssuer::token`], with `now` supplied (for tests on an injected clock).
    pub fn token_at(&self, now: u64) -> JwtBuilder {
        self.token_with(&self.k1, "RS256", now)
    }

    /// A token signed by `key` as `alg`, with the usual claims at `now`.
    pub fn token_with(&self, key: &TestKey, alg: &str, now: u64) -> JwtBuilder {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let jti = format!("jti-{}", SEQ.fetch_add(1, Ordering::Relaxed));
        JwtBuilder::new(key, alg)
            .claim("iss", self.issuer())
            .claim("aud", DEFAULT_AUDIENCE)
            .claim("sub", "user-1")
            .claim("scope", "launch/patient patient/*.rs")
            .claim("patient", "P1")
            .claim("client_id", "app-1")
            .claim("jti", jti)
            .claim("iat", now)
            .claim("exp", now + 300)
    }

    /// Publish another key (rotation).
    pub fn add_key(&self, key: TestKey) {
        lock(&self.shared.keys).push(key);
    }

    /// Stop publishing a key.
    pub fn remove_key(&self, kid: &str) {
        lock(&self.shared.keys).retain(|k| k.kid != kid);
    }

    /// Publish an arbitrary JWK entry as is (e.g. a `use: enc` key or an `oct` key).
    pub fn publish_raw_jwk(&self, jwk: Value) {
        lock(&self.shared.raw_jwks_entries).push(jwk);
    }

    /// Every endpoint answers 500 while set.
    pub fn set_outage(&self, on: bool) {
        self.shared.outage.store(on, Ordering::SeqCst);
    }

    /// Every endpoint waits this long before answering.
    pub fn set_delay(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The JWKS response grows past 2 MiB while set.
    pub fn set_oversized_jwks(&self, on: bool) {
        self.shared.oversized.store(on, Ordering::SeqCst);
    }

    /// While `Some`, the JWKS endpoint answers 200 `application/json` with exactly this text
    /// (garbage, an empty object, keys of the wrong shape) instead of the key set.
    pub fn set_jwks_body(&self, body: Option<&str>) {
        *lock(&self.shared.jwks_override) = body.map(str::to_owned);
    }

    /// While `Some`, the introspection endpoint answers 200 `application/json` with exactly
    /// this text to every authenticated request.
    pub fn set_introspection_body(&self, body: Option<&str>) {
        *lock(&self.shared.introspection_override) = body.map(str::to_owned);
    }

    /// Serve `/.well-known/openid-configuration` (default) or only the RFC 8414 document.
    pub fn set_openid_discovery(&self, on: bool) {
        self.shared.openid_discovery.store(on, Ordering::SeqCst);
    }

    /// `Cache-Control` on the JWKS response.
    pub fn set_jwks_cache_control(&self, value: Option<&str>) {
        *lock(&self.shared.cache_control) = value.map(str::to_owned);
    }

    /// Make the discovery documents claim another `issuer`.
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        *lock(&self.shared.discovery_issuer) = issuer.map(str::to_owned);
    }

    /// Register an opaque token; introspection answers `active: true` plus `claims`.
    pub fn activate_opaque(&self, token: &str, claims: Value) {
        let mut body = json!({"active": true, "iss": self.issuer()});
        if let (Some(b), Value::Object(c)) = (body.as_object_mut(), claims) {
            b.extend(c);
        }
        lock(&self.shared.opaque).insert(token.to_owned(), body);
    }

    /// Register an exact introspection answer for a token.
    pub fn set_introspection_response(&self, token: &str, body: Value) {
        lock(&self.shared.opaque).insert(token.to_owned(), body);
    }

    /// Revoke an opaque token: introspection answers `active: false` from now on.
    pub fn revoke_opaque(&self, token: &str) {
        lock(&self.shared.opaque).remove(token);
    }

    /// JWKS requests served so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    /// Discovery requests served so far.
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.discovery_hits.load(Ordering::SeqCst)
    }

    /// Introspection requests served so far.
    pub fn introspection_calls(&self) -> u64 {
        self.shared.introspection_hits.load(Ordering::SeqCst)
    }
}

async fn gate(s: &Shared) -> Option<Response> {
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if s.outage.load(Ordering::SeqCst) {
        return Some((StatusCode::INTERNAL_SERVER_ERROR, "down").into_response());
    }
    None
}

fn discovery_doc(s: &Shared) -> Value {
    let issuer = lock(&s.discovery_issuer)
        .clone()
        .unwrap_or_else(|| s.issuer.clone());
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", s.issuer),
        "introspection_endpoint": format!("{}/introspect", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "authorization_endpoint": format!("{}/authorize", s.issuer),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    })
}

async fn openid(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = gate(&s).await {
        return r;
    }
    if !s.openid_discovery.load(Ordering::SeqCst) {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(discovery_doc(&s)).into_response()
}

async fn oauth_as(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = gate(&s).await {
        return r;
    }
    axum::Json(discovery_doc(&s)).into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = gate(&s).await {
        return r;
    }
    if let Some(body) = lock(&s.jwks_override).clone() {
        return raw_json(body);
    }
    let mut keys: Vec<Value> = lock(&s.keys).iter().map(TestKey::jwk).collect();
    keys.extend(lock(&s.raw_jwks_entries).iter().cloned());
    let mut doc = json!({ "keys": keys });
    if s.oversized.load(Ordering::SeqCst) {
        doc["padding"] = json!("x".repeat(2 * 1024 * 1024 + 1));
    }
    let mut resp = axum::Json(doc).into_response();
    if let Some(cc) = lock(&s.cache_control)
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(header::CACHE_CONTROL, cc);
    }
    resp
}

async fn introspect(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    s.introspection_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = gate(&s).await {
        return r;
    }
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{INTROSPECTION_CLIENT_ID}:{INTROSPECTION_CLIENT_SECRET}"
        ))
    );
    let basic_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str());
    let assertion_ok = form.get("client_assertion").is_some_and(|a| !a.is_empty())
        && form.get("client_id").map(String::as_str) == Some(INTROSPECTION_CLIENT_ID);
    if !basic_ok && !assertion_ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    if let Some(body) = lock(&s.introspection_override).clone() {
        return raw_json(body);
    }
    let body = form
        .get("token")
        .and_then(|t| lock(&s.opaque).get(t).cloned())
        .unwrap_or_else(|| json!({"active": false}));
    axum::Json(body).into_response()
}

/// 200 with a body that claims to be JSON whatever it holds.
fn raw_json(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A server that counts every request it receives; tests assert it saw none.
pub struct Canary {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canary {
    /// Start on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let app = Router::new().fallback(any(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"keys": []}))
            }
        }));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, hits, task })
    }

    /// A URL on the canary.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

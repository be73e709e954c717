//! FHIR REST over HTTP: one axum handler parses the request into an [`op::Op`], runs it on
//! the blocking pool against a reader or the writer connection, and renders the result.

pub(crate) mod bundle;
mod capability;
mod op;
mod parse;
pub(crate) mod response;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use tokio::net::TcpListener;

use crate::Store;
use crate::error::StoreError;
use crate::fhirtime;
use op::{Op, OpResult, execute};
use parse::{Body, Conditions};
use response::Return;

/// Largest request body accepted (a transaction Bundle of a big patient record).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

struct App {
    store: Store,
    /// Absolute base URL without trailing slash (e.g. `http://127.0.0.1:8080/fhir`).
    base_url: String,
    /// Path part of the base URL (e.g. `/fhir`), stripped from incoming paths.
    base_path: String,
    capability: String,
}

/// The store's FHIR API. Requests are expected under the path of `base_url` (e.g. `/fhir`);
/// links, `Location` headers and `fullUrl`s are absolute URLs under `base_url`.
pub fn router(store: Store, base_url: &str) -> Router {
    let base_url = base_url.trim_end_matches('/').to_owned();
    let base_path = url::Url::parse(&base_url)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let capability = capability::capability_statement(&base_url).to_string();
    let app = Arc::new(App {
        store,
        base_url,
        base_path,
        capability,
    });
    Router::new().fallback(handle).with_state(app)
}

/// Serve the store on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    base_url: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store, base_url))
        .with_graceful_shutdown(shutdown)
        .await
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    match handle_inner(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle_inner(app: &Arc<App>, req: Request) -> Result<Response, StoreError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let Some(rel) = path.strip_prefix(app.base_path.as_str()) else {
        return Err(StoreError::UnknownPath(path.to_owned()));
    };
    if !rel.is_empty() && !rel.starts_with('/') {
        return Err(StoreError::UnknownPath(path.to_owned()));
    }
    let rel = percent_decode(rel.trim_start_matches('/'));
    let query = parts.uri.query().unwrap_or("").to_owned();
    let headers = &parts.headers;
    let prefer = header_str(headers, header::HeaderName::from_static("prefer"));
    let ret = Return::from_prefer(prefer);
    let strict = prefer.is_some_and(|p| p.contains("handling=strict"));

    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| StoreError::TooCostly(format!("request body over {MAX_BODY_BYTES} bytes")))?;
    let content_type = header_str(headers, header::CONTENT_TYPE).unwrap_or("");
    let body = if bytes.is_empty() {
        Body::None
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        Body::Form(String::from_utf8_lossy(&bytes).into_owned())
    } else if content_type.contains("xml") {
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            StoreError::NotSupported("only JSON is supported".into()),
        )
            .into_response());
    } else {
        Body::Json(
            serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::structure(format!("the body is not valid JSON: {e}")))?,
        )
    };

    let op = parse::parse(
        &parts.method,
        &rel,
        &query,
        &Conditions::from_headers(headers),
        body,
        strict,
        &app.base_url,
    )?;
    match op {
        Op::Capabilities => Ok(response::json_body(StatusCode::OK, app.capability.clone())),
        Op::Bundle(bundle) => {
            let store = app.store.clone();
            let base = app.base_url.clone();
            let out =
                tokio::task::spawn_blocking(move || bundle::process(&store, &bundle, &base, ret))
                    .await
                    .map_err(|_| StoreError::Worker)??;
            Ok(response::json_body(StatusCode::OK, out.to_string()))
        }
        op => {
            let write = op.writes();
            let is_read = matches!(op, Op::Read { .. } | Op::Vread { .. });
            let res = if write {
                app.store.write_async(move |c| execute(c, op)).await?
            } else {
                app.store.read_async(move |c| execute(c, op)).await?
            };
            if is_read
                && parts.method == Method::GET
                && let OpResult::Resource { stored, .. } = &res
                && not_modified(headers, stored)
            {
                let mut r = StatusCode::NOT_MODIFIED.into_response();
                if let Ok(v) = stored.etag().parse() {
                    r.headers_mut().insert(header::ETAG, v);
                }
                return Ok(r);
            }
            Ok(response::result(res, &app.base_url, ret, write))
        }
    }
}

/// `If-None-Match` (takes precedence) or `If-Modified-Since` say the client's copy is current.
fn not_modified(h: &HeaderMap, stored: &crate::ops::Stored) -> bool {
    if let Some(inm) = header_str(h, header::IF_NONE_MATCH) {
        return inm
            .split(',')
            .any(|t| t.trim() == "*" || op::parse_etag(t) == Some(stored.version));
    }
    if let Some(ims) = header_str(h, header::IF_MODIFIED_SINCE).and_then(fhirtime::parse_http_date)
    {
        return stored.updated_ms / 1000 <= ims / 1000;
    }
    false
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

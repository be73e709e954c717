//! The optional admin listener (`metrics.admin_listen`): `/metrics`, `/healthz` and `/readyz`
//! on their own address, so the figures can stay on an internal network while the FHIR API
//! is public. It serves nothing else and stops when the main listener stops.

use std::convert::Infallible;

use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::reload::ReloadRequest;
use crate::router::Router;

/// `POST` here re-reads the configuration file, as SIGHUP does.
const RELOAD_PATH: &str = "/admin/reload";

/// Longest wait for the file to be read, validated and swapped in.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `POST /admin/reload`: 200 with what was reloaded, 409 with why nothing changed (the
/// same text as the log line), 404 when the binary offers no reload, 405 for other methods.
/// Operator-facing plain text, like the probes.
async fn reload_config(
    request: &Request<Incoming>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
) -> Response<Body> {
    let Some(reload) = reload else {
        return plain(
            StatusCode::NOT_FOUND,
            "reload is not available\n".to_owned(),
        );
    };
    if request.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use POST\n".to_owned());
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let (answer, outcome) = oneshot::channel();
    if reload.send(answer).await.is_err() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload is not running\n".to_owned(),
        );
    }
    match tokio::time::timeout(RELOAD_WAIT, outcome).await {
        Ok(Ok(Ok(done))) => plain(StatusCode::OK, format!("{done}\n")),
        Ok(Ok(Err(refused))) => plain(StatusCode::CONFLICT, format!("{refused}\n")),
        Ok(Err(_)) | Err(_) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reload did not finish; see the log\n".to_owned(),
        ),
    }
}

/// `POST` here empties the response cache; `?type=Practitioner` only that type's entries.
pub(crate) const CACHE_PURGE_PATH: &str = "/admin/cache/purge";

/// `POST /admin/cache/purge[?type=T]`: 200 saying what was purged, 400 for an unknown type,
/// 404 when no cache is configured, 405 for other methods.
pub(crate) fn purge_cache(
    pipeline: &crate::pipeline::Pipeline,
    request: &Request<Body>,
) -> Response<Body> {
    let Some(cache) = &pipeline.cache else {
        return plain(StatusCode::NOT_FOUND, "no cache is configured\n".to_owned());
    };
    if request.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use POST\n".to_owned());
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let named = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("type="));
    let Some(name) = named else {
        cache.purge(None);
        tracing::info!("cache purged");
        return plain(StatusCode::OK, "purged all entries\n".to_owned());
    };
    match fhirgate_fhir::ResourceType::from_name(name) {
        Some(resource_type) => {
            cache.purge(Some(resource_type));
            tracing::info!(resource_type = name, "cache purged for one type");
            plain(StatusCode::OK, format!("purged {name} entries\n"))
        }
        None => plain(
            StatusCode::BAD_REQUEST,
            format!("unknown resource type {name:?}\n"),
        ),
    }
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn spawn(
    listener: TcpListener,
    router: Router,
    reload: Option<mpsc::Sender<ReloadRequest>>,
) -> JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("admin listener (metrics, probes) on http://{addr}");
    }
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors and similar: back off instead of spinning; the
                // main listener logs the condition.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let router = router.clone();
            let reload = reload.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let router = router.clone();
                let reload = reload.clone();
                async move {
                    if request.uri().path() == RELOAD_PATH {
                        return Ok::<_, Infallible>(reload_config(&request, reload).await);
                    }
                    Ok::<_, Infallible>(router.admin(request.map(Body::new)).await)
                }
            });
            tokio::spawn(async move {
                let http = auto::Builder::new(TokioExecutor::new());
                let connection = http.serve_connection(TokioIo::new(stream), service);
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "admin connection ended with an error");
                }
            });
        }
    })
}

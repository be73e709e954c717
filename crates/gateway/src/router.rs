//! Which service answers a path: `/healthz`, `/readyz`, mounted services (the embedded
//! authorization server, the app), the FHIR base path, or a 404 OperationOutcome.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::error::GatewayError;
use crate::reload::SharedPipeline;

/// A service mounted next to the FHIR API. It receives the full, unstripped path.
pub type MountedService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

#[derive(Clone)]
pub(crate) struct Router {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    /// Loaded once per request: a reload swaps it while running requests keep theirs.
    pipeline: SharedPipeline,
    mounts: Vec<(String, MountedService)>,
}

impl Router {
    pub(crate) fn new(pipeline: SharedPipeline, mounts: Vec<(String, MountedService)>) -> Self {
        Router {
            inner: Arc::new(RouterInner { pipeline, mounts }),
        }
    }
}

impl Router {
    /// The admin listener's routes: the probes and the metrics, nothing else.
    pub(crate) async fn admin(&self, request: Request<Body>) -> Response<Body> {
        let inner = &self.inner;
        let path = request.uri().path();
        if path == "/healthz" || path == "/readyz" {
            return inner.route(request).await;
        }
        let pipeline = inner.pipeline.load_full();
        if path == crate::admin::CACHE_PURGE_PATH {
            return crate::admin::purge_cache(&pipeline, &request);
        }
        let metrics = pipeline.metrics.as_ref();
        if metrics.is_some_and(|m| m.path == path)
            && let Some(answer) = crate::metrics::scrape(&pipeline)
        {
            return answer;
        }
        GatewayError::RouteNotFound.to_response()
    }
}

/// Whether `path` is `prefix` itself or below it (whole segments only).
fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

impl RouterInner {
    async fn route(&self, request: Request<Body>) -> Response<Body> {
        let pipeline = self.pipeline.load_full();
        let path = request.uri().path();
        match path {
            "/healthz" => return text(StatusCode::OK, "ok"),
            "/readyz" => {
                return if pipeline.upstream.is_ready().await {
                    text(StatusCode::OK, "ready")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "upstream unreachable")
                };
            }
            _ => {}
        }
        if pipeline
            .metrics
            .as_ref()
            .is_some_and(|m| m.path == path && !m.on_admin_listener)
            && let Some(answer) = crate::metrics::scrape(&pipeline)
        {
            return answer;
        }
        // Mounts first: with a FHIR base at the root they would otherwise be shadowed.
        if let Some((_, service)) = self.mounts.iter().find(|(prefix, _)| under(path, prefix)) {
            return match service.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        if pipeline.base_path.is_empty() || under(path, &pipeline.base_path) {
            return pipeline.handle(request).await;
        }
        GatewayError::RouteNotFound.to_response()
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl Service<Request<Body>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { Ok(inner.route(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/fhir", "/fhir"));
        assert!(under("/fhir/Patient", "/fhir"));
        assert!(!under("/fhirx", "/fhir"));
        assert!(under("/auth/x", "/auth/"));
    }
}

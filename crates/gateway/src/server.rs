//! The listener: accepts TCP connections, serves HTTP/1.1 (keep-alive) and HTTP/2 (h2c) with
//! hyper, wraps the router in the transport layers, and drains in-flight requests on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::layers::{CounterRequestId, GuardLayer};
use crate::pipeline::{Pipeline, X_REQUEST_ID};
use crate::router::{MountedService, Router};
use crate::upstream::BuildError;

/// Clients get this long to send their request headers (slowloris bound).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway, configured and ready to serve on a listener.
pub struct Gateway {
    config: GatewayConfig,
    pipeline: Pipeline,
    mounts: Vec<(String, MountedService)>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .field(
                "mounts",
                &self.mounts.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Result<Self, BuildError> {
        let pipeline = Pipeline::new(&config)?;
        Ok(Gateway {
            config,
            pipeline,
            mounts: Vec::new(),
        })
    }

    /// Serve `service` for every path at or below `prefix` (e.g. `/auth`). The service sees
    /// the full path, prefix included, and runs inside the same transport layers (request id,
    /// limits, tracing) as the FHIR API. An `axum::Router` can be mounted as is.
    pub fn mount<S>(mut self, prefix: impl Into<String>, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.mounts
            .push((prefix.into(), MountedService::new(service)));
        self
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Serve until `shutdown` resolves, then stop accepting, let in-flight requests finish
    /// for up to `shutdown.drain_time`, and return.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let limits = self.config.limits.clone();
        let drain_time = self.config.shutdown.drain_time;
        let router = Router::new(self.pipeline, self.mounts);
        let admin = match self.config.metrics.admin_listen {
            Some(addr) => Some(crate::admin::spawn(
                TcpListener::bind(addr).await?,
                router.clone(),
            )),
            None => None,
        };
        let stack = ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                X_REQUEST_ID,
                CounterRequestId::new(),
            ))
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<Body>| {
                        tracing::debug_span!(
                            "request",
                            method = %request.method(),
                            path = request.uri().path(),
                            request_id = request
                                .headers()
                                .get(X_REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-"),
                        )
                    })
                    // Failures are logged once, by the pipeline, with their cause.
                    .on_failure(()),
            )
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(GuardLayer::new(limits.clone()))
            .service(router);

        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // Room for the request line and header block, so that oversize headers reach the
            // guard layer and get a proper 431 OperationOutcome.
            .max_buf_size((limits.max_header_size + limits.max_uri_length + 4096).max(8192));
        http.http2().timer(TokioTimer::new()).max_header_list_size(
            u32::try_from(limits.max_header_size + limits.max_uri_length).unwrap_or(u32::MAX),
        );

        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "TCP_NODELAY not set");
            }
            let stack = stack.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                stack.clone().oneshot(request)
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection.into_owned());
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
                }
            });
        }
        drop(listener);
        if let Some(admin) = admin {
            admin.abort();
        }
        tracing::info!(drain_time = %humantime::format_duration(drain_time), "shutting down: draining in-flight requests");
        match tokio::time::timeout(drain_time, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("drain time elapsed with requests still in flight"),
        }
        Ok(())
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "request handler panicked");
    GatewayError::Internal.to_response()
}

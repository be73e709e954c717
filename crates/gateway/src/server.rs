//! The listener: accepts TCP connections, serves HTTP/1.1 (keep-alive) and HTTP/2 (h2c) with
//! hyper, wraps the router in the transport layers, and drains in-flight requests on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tower::{Service, ServiceExt};

use crate::config::GatewayConfig;
use crate::connection::{Activity, DriveEnd, StallGuard};
use crate::ctx::Peer;
use crate::error::GatewayError;
use crate::keepalive::{self, Answering};
use crate::layers::Front;
use crate::pipeline::Pipeline;
use crate::reload::{ReloadRequest, Reloader, SharedPipeline};
use crate::router::{MountedService, Router};
use crate::upstream::BuildError;

/// The gateway, configured and ready to serve on a listener.
pub struct Gateway {
    config: GatewayConfig,
    pipeline: SharedPipeline,
    mounts: Vec<(String, MountedService)>,
    reloader: Reloader,
    reload_requests: Option<mpsc::Sender<ReloadRequest>>,
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
        let pipeline: SharedPipeline = Arc::new(ArcSwap::from_pointee(Pipeline::new(&config)?));
        let reloader = Reloader::new(Arc::clone(&pipeline), config.clone());
        Ok(Gateway {
            config,
            pipeline,
            mounts: Vec::new(),
            reloader,
            reload_requests: None,
        })
    }

    /// Swaps in new configurations while serving (SIGHUP, `POST /admin/reload`).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Let `POST /admin/reload` on the admin listener ask the owner of the configuration
    /// file to re-read it; the owner answers on the enclosed channel.
    pub fn on_reload_request(mut self, requests: mpsc::Sender<ReloadRequest>) -> Self {
        self.reload_requests = Some(requests);
        self
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
                self.reload_requests,
            )),
            None => None,
        };
        let stack = Front::new(limits.clone(), router);

        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // Room over the limit so that most over-limit requests reach the count check
            // below and get a 431 OperationOutcome; hyper answers a bare 431 beyond it.
            .max_headers(limits.max_header_count.saturating_mul(4).max(100))
            // Room for the request line and header block, so that oversize headers reach the
            // guard layer and get a proper 431 OperationOutcome.
            .max_buf_size((limits.max_header_size + limits.max_uri_length + 4096).max(8192));
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new()).max_header_list_size(
            u32::try_from(limits.max_header_size + limits.max_uri_length).unwrap_or(u32::MAX),
        );
        let protocols = Arc::new(keepalive::Protocols {
            http1,
            http2,
            idle_timeout: limits.idle_timeout,
            header_read_timeout: limits.header_read_timeout,
        });

        // One permit per open connection: beyond `max_connections` the loop stops accepting
        // and new connections wait in the kernel's backlog, costing this process nothing.
        let max_connections = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let slots = Arc::new(Semaphore::new(max_connections as usize));
        let (closing, closing_rx) = watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let slot = match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    tracing::warn!(
                        max_connections,
                        "limits.max_connections reached: new connections wait in the accept backlog"
                    );
                    tokio::select! {
                        slot = Arc::clone(&slots).acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
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
            let activity = Activity::new();
            let body_activity = Arc::clone(&activity);
            let (body_timeout, max_header_count, max_header_size) = (
                limits.body_read_timeout,
                limits.max_header_count,
                limits.max_header_size,
            );
            let peer_info = Peer::new(peer);
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let answered = body_activity.request_started();
                let mut request = request.map(|body| {
                    Body::new(StallGuard::new(
                        body,
                        body_timeout,
                        Arc::clone(&body_activity),
                    ))
                });
                request.extensions_mut().insert(peer_info.clone());
                let too_many_headers = request.headers().len() > max_header_count;
                let stack = stack.clone();
                // Boxed: hyper hands a connection back between requests only when the
                // service's future is Unpin.
                Box::pin(async move {
                    let response = if too_many_headers {
                        GatewayError::HeadersTooLarge {
                            limit: max_header_size,
                        }
                        .to_response()
                        .map(Either::Right)
                    } else {
                        stack.oneshot(request).await?.map(Either::Left)
                    };
                    Ok::<_, Infallible>(response.map(|body| Answering::new(body, answered)))
                })
            });
            let closing = closing_rx.clone();
            let protocols = Arc::clone(&protocols);
            let fut = keepalive::serve(stream, protocols, service, activity, closing);
            tokio::spawn(async move {
                match fut.await {
                    Ok(()) => {}
                    Err(DriveEnd::Error(err)) => {
                        tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
                    }
                    Err(DriveEnd::BodyStalled) => {
                        tracing::info!(peer = %peer, "request body stalled past limits.body_read_timeout: connection closed");
                    }
                    Err(DriveEnd::Idle) => {
                        tracing::debug!(peer = %peer, "connection idle past limits.idle_timeout: closed");
                    }
                }
                drop(slot);
            });
        }
        drop(listener);
        if let Some(admin) = admin {
            admin.abort();
        }
        tracing::info!(drain_time = %humantime::format_duration(drain_time), "shutting down: draining in-flight requests");
        // Ignored when no connection is open: nobody listens then.
        let _ = closing.send(true);
        match tokio::time::timeout(drain_time, slots.acquire_many(max_connections)).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("drain time elapsed with requests still in flight"),
        }
        Ok(())
    }
}

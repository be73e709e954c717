//! The optional admin listener (`metrics.admin_listen`): `/metrics`, `/healthz` and `/readyz`
//! on their own address, so the figures can stay on an internal network while the FHIR API
//! is public. It serves nothing else and stops when the main listener stops.

use std::convert::Infallible;

use axum::body::Body;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::router::Router;

pub(crate) fn spawn(listener: TcpListener, router: Router) -> JoinHandle<()> {
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
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let router = router.clone();
                async move { Ok::<_, Infallible>(router.admin(request.map(Body::new)).await) }
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

//! A real gateway on `127.0.0.1:0` for integration tests.

use std::net::SocketAddr;
use std::time::Duration;

use fhirgate_gateway::{Gateway, GatewayConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

/// The public base URL test gateways announce; upstream URLs are rewritten to it.
pub const PUBLIC_BASE: &str = "https://fhir.example.test/fhir";

/// A gateway config proxying to `upstream_base` with short timeouts suited to tests.
pub fn config(upstream_base: &str) -> anyhow::Result<GatewayConfig> {
    let mut config = GatewayConfig::new(Url::parse(PUBLIC_BASE)?, Url::parse(upstream_base)?);
    config.upstream.connect_timeout = Duration::from_secs(2);
    config.upstream.response_timeout = Duration::from_secs(5);
    config.shutdown.drain_time = Duration::from_secs(10);
    // Transport tests run without tokens; security tests replace this with their issuers.
    config.auth = fhirgate_gateway::AuthConfig::disabled();
    Ok(config)
}

pub struct TestGateway {
    addr: SocketAddr,
    base_path: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestGateway {
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Self> {
        TestGateway::start_gateway(Gateway::new(config)?).await
    }

    /// Start an already-built gateway (e.g. one with mounted services).
    pub async fn start_gateway(gateway: Gateway) -> anyhow::Result<Self> {
        let base_path = gateway
            .config()
            .public_base_url
            .path()
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(TestGateway {
            addr,
            base_path,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The FHIR base as reachable in the test, e.g. `http://127.0.0.1:PORT/fhir`.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.base_path)
    }

    /// `base_url()` + `path` (path starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// `http://127.0.0.1:PORT` + `path`, for routes outside the FHIR base.
    pub fn root_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Start graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shut down and wait until the gateway has drained and stopped.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

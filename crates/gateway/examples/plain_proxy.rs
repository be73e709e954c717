//! The gateway as a plain proxy (authentication disabled), configured from the command line, for load tests that should
//! not depend on the rest of the workspace:
//!
//! `plain_proxy LISTEN UPSTREAM_BASE PUBLIC_BASE`, e.g.
//! `plain_proxy 127.0.0.1:8080 http://127.0.0.1:18080/fhir http://127.0.0.1:8080/fhir`

use std::time::Duration;

use fhirgate_gateway::{AuthConfig, Gateway, GatewayConfig};

fn main() -> anyhow::Result<()> {
    // `PLAIN_PROXY_RUNTIME=current` runs everything on one thread (no cross-thread wake-ups),
    // to compare against the default multi-threaded runtime when pinned to one core.
    let mut builder = if std::env::var("PLAIN_PROXY_RUNTIME").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream), Some(public)) = (args.next(), args.next(), args.next())
    else {
        anyhow::bail!("usage: plain_proxy LISTEN UPSTREAM_BASE PUBLIC_BASE");
    };
    let mut config = GatewayConfig::new(public.parse()?, upstream.parse()?);
    config.listen = listen.parse()?;
    config.shutdown.drain_time = Duration::from_secs(5);
    // A plain proxy: measures transport cost only, no token checks.
    config.auth = AuthConfig::disabled();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    Gateway::new(config)?
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

//! `fhirgate auth serve`: the embedded authorization server alone, for the scaled-out layout
//! where several `fhirgate serve` replicas trust one authorization server (docs/scaling.md).
//!
//! Its store is one SQLite file: run exactly one instance per data directory (single
//! writer). With `--redis-url` every access token it ends is announced to the gateways'
//! `auth.revocation`, so they refuse it within a second although they verify JWTs locally.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fhirgate_authserver::{AuthConfig, AuthServer, RevocationNotices};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory holding `auth.sqlite` (one server per directory: it is the only writer).
    #[arg(long, env = "FHIRGATE_DATA_DIR", default_value = "fhirgate-data")]
    data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Public URL of this server; the issuer is `{url}/auth`. Defaults to
    /// `http://<bound address>`.
    #[arg(long, env = "FHIRGATE_AUTH_URL")]
    url: Option<url::Url>,
    /// The FHIR base URL the tokens are for (the gateways' `public_base_url`): the only `aud`.
    #[arg(long, env = "FHIRGATE_PUBLIC_URL")]
    fhir_base: url::Url,
    /// Announce ended access tokens through this Redis (the gateways' `auth.revocation`).
    #[arg(long, env = "FHIRGATE_REDIS_URL")]
    redis_url: Option<String>,
    /// PUBLISH channel of the notices (the sorted set is `{channel}:revoked`).
    #[arg(long, default_value = RevocationNotices::DEFAULT_CHANNEL)]
    revocation_channel: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let bound = listener.local_addr()?;
    let url = match &args.url {
        Some(u) => u.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{bound}"),
    };
    let issuer = format!("{url}/auth");
    let mut config = AuthConfig::new(
        AuthConfig::db_path_in(&args.data_dir),
        &issuer,
        args.fhir_base.as_str().trim_end_matches('/'),
    );
    config.revocation_notices = args.redis_url.as_ref().map(|redis_url| RevocationNotices {
        redis_url: redis_url.clone(),
        channel: args.revocation_channel.clone(),
    });
    // Opened inside the runtime: the notice publisher runs on it.
    let server = AuthServer::open(config).with_context(|| {
        format!(
            "opening the authorization store in {}",
            args.data_dir.display()
        )
    })?;
    let app = axum::Router::new().nest("/auth", server.router());
    // Tests and scripts read this line to find an ephemeral port.
    tracing::info!(
        issuer = %issuer,
        fhir_base = %server.fhir_base(),
        revocation_notices = server.publishes_revocations(),
        "listening on http://{bound}"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(super::super::signal::shutdown_signal())
        .await
        .context("serving the authorization server")?;
    tracing::info!("stopped");
    Ok(())
}

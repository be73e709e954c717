//! `fhirgate serve` and `fhirgate check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fhirgate_gateway::Gateway;

use crate::config::{self, Config};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (YAML).
    #[arg(long, short)]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// Configuration file (YAML).
    pub file: PathBuf,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // Confined to one CPU (e.g. `taskset`, a one-core container), a single-threaded runtime
    // keeps the client and upstream connections of a request on one thread without
    // cross-thread wake-ups: in the proxy benchmark it cost ~3-9% less CPU per request.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let gateway_config = config.gateway;
    let listen = gateway_config.listen;
    let base_path = gateway_config
        .public_base_url
        .path()
        .trim_end_matches('/')
        .to_owned();
    let upstream = gateway_config.upstream.url.clone();
    let gateway = Gateway::new(gateway_config).context("building the gateway")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    // Tests and scripts read this line to find an ephemeral port.
    tracing::info!(
        fhir_base = %format!("http://{bound}{base_path}"),
        upstream = %upstream,
        "listening on http://{bound}"
    );
    gateway
        .serve(listener, super::signal::shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    match config::load(&args.file) {
        Ok(config) => {
            let g = &config.gateway;
            println!(
                "ok: {} (listen {}, FHIR base {} -> upstream {})",
                args.file.display(),
                g.listen,
                g.public_base_url,
                g.upstream.url
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

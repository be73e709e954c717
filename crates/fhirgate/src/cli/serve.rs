//! `fhirgate serve` and `fhirgate check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fhirgate_gateway::{Gateway, ReloadRequest, Reloader};

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
    runtime.block_on(serve(config, args.config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let gateway_config = config.gateway;
    let listen = gateway_config.listen;
    let base_path = gateway_config
        .public_base_url
        .path()
        .trim_end_matches('/')
        .to_owned();
    let upstream = gateway_config.upstream.url.clone();
    // OpenTelemetry export (`tracing:`); not changed by a reload.
    let otel = match &gateway_config.tracing {
        Some(tracing) => Some(super::logging::install(tracing)?),
        None => None,
    };
    // SIGHUP and `POST /admin/reload` re-read the file; registered before the listener
    // is announced, so a HUP sent after that line is never the default (fatal) action.
    let hangups = super::signal::Hangups::new();
    let (reload_requests, admin_reloads) = tokio::sync::mpsc::channel(4);
    let gateway = Gateway::new(gateway_config)
        .context("building the gateway")?
        .on_reload_request(reload_requests);
    tokio::spawn(reload_loop(
        path,
        gateway.reloader(),
        hangups,
        admin_reloads,
    ));
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
    if let Some(otel) = otel {
        otel.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Re-read the configuration file on SIGHUP or on request from the admin endpoint, one at a
/// time. A file that does not validate, or a change that needs a restart, leaves the running
/// configuration active; the log line says why (with file:line:col as `check-config` does).
async fn reload_loop(
    path: PathBuf,
    reloader: Reloader,
    hangups: super::signal::Hangups,
    mut admin: tokio::sync::mpsc::Receiver<ReloadRequest>,
) {
    loop {
        let answer = tokio::select! {
            () = hangups.recv() => {
                tracing::info!("SIGHUP received: reloading the configuration");
                None
            }
            request = admin.recv() => match request {
                Some(answer) => {
                    tracing::info!("reload requested on the admin listener");
                    Some(answer)
                }
                // The gateway is gone: only signals are left, and they are moot too.
                None => return,
            },
        };
        let outcome = reload_once(&path, &reloader).await;
        if let Some(answer) = answer {
            // The admin client may have gone away; the log has the outcome anyway.
            let _ = answer.send(outcome);
        }
    }
}

async fn reload_once(path: &std::path::Path, reloader: &Reloader) -> Result<String, String> {
    let file = path.to_owned();
    // Reading the file (and a smart.configuration_file) is blocking I/O.
    let loaded = tokio::task::spawn_blocking(move || config::load(&file)).await;
    let config = match loaded {
        Ok(Ok(config)) => config,
        Ok(Err(errors)) => {
            let message = format!(
                "configuration reload refused, the running configuration stays active:\n{errors}"
            );
            tracing::error!(file = %path.display(), "{message}");
            return Err(message);
        }
        Err(err) => {
            let message = format!("configuration reload failed: {err}");
            tracing::error!("{message}");
            return Err(message);
        }
    };
    match reloader.reload(config.gateway) {
        Ok(summary) => {
            let message = format!(
                "configuration reloaded from {} (kept: {}; rebuilt: {})",
                path.display(),
                list(&summary.kept),
                list(&summary.rebuilt),
            );
            tracing::info!("{message}");
            Ok(message)
        }
        Err(err) => {
            let message = format!("configuration reload refused: {err}");
            tracing::error!(file = %path.display(), "{message}");
            Err(message)
        }
    }
}

fn list(parts: &[&str]) -> String {
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(", ")
    }
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

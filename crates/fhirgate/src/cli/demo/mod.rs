//! `fhirgate demo`: the whole system in one process and one port, with sample data, demo
//! users and demo clients. The embedded FHIR store runs on an internal loopback port as the
//! gateway's upstream, like any FHIR server would; the authorization server and the demo app
//! are mounted next to the FHIR API on the gateway's listener.

mod backend_key;
mod files;
mod manifest;
mod seed;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use fhirgate_authserver::{AuthConfig, AuthServer, MintRequest};
use fhirgate_gateway::{AuthConfig as GatewayAuth, Gateway, GatewayConfig};
use fhirgate_store::Store;
use fhirgate_tokens::IssuerSettings;
use tokio::sync::watch;
use url::Url;

use crate::cli::app::{self, APP_PATH, AppConfig};
use manifest::{Files, Manifest, Urls};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the FHIR store, the authorization store, keys and demo.json.
    #[arg(long, default_value = "fhirgate-data")]
    pub data_dir: PathBuf,
    /// Delete the data folder first (only if it is a fhirgate data folder).
    #[arg(long)]
    pub reset: bool,
    /// Address to listen on; port 0 picks a free port (printed when ready).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Patients to generate when the store is empty.
    #[arg(long, default_value_t = 40)]
    pub patients: usize,
}

/// The public URLs, all derived from the origin the listener actually got.
struct Origin {
    origin: String,
    fhir_base: String,
    issuer: String,
}

impl Origin {
    fn new(bound: SocketAddr) -> Self {
        // A wildcard address is where we listen, not where a browser can reach us.
        let ip = match bound.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let origin = format!("http://{}", SocketAddr::new(ip, bound.port()));
        Origin {
            fhir_base: format!("{origin}/fhir"),
            issuer: format!("{origin}/auth"),
            origin,
        }
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if args.reset && files::reset(&args.data_dir)? {
        println!("--reset: deleted {}", args.data_dir.display());
    }
    files::create_dir(&args.data_dir)?;
    // Absolute, so the paths in demo.json work from any directory.
    let dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    let previous = Manifest::read(&dir);

    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let bound = listener.local_addr()?;
    let urls = Origin::new(bound);
    // The store is reachable only through the gateway; this port is never published.
    let store_listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the store's port")?;

    let store = Store::open(files::fhir_store(&dir))
        .with_context(|| format!("opening {}", files::fhir_store(&dir).display()))?;
    seed::ensure_data(&store, &dir, args.patients)?;

    let auth = AuthServer::open(AuthConfig::new(
        files::auth_store(&dir),
        &urls.issuer,
        &urls.fhir_base,
    ))
    .with_context(|| format!("opening {}", files::auth_store(&dir).display()))?;
    let first_patient = seed::fill_picker(&store, &auth)?;
    let users = seed::users(&store, &auth, first_patient.as_ref(), previous.as_ref())?;
    let key = backend_key::load_or_create(&dir)?;
    let clients = seed::clients(&auth, &urls.origin, &key, previous.as_ref())?;

    let manifest = manifest_for(&urls, &dir, users, clients);
    let manifest_path = manifest.write(&dir)?;
    let token = auth
        .mint_token(MintRequest {
            client_id: seed::BACKEND_CLIENT.into(),
            scope: "system/*.rs".into(),
            patient: None,
            user: None,
            expires_in: Duration::from_secs(15 * 60),
        })
        .context("minting the example backend token")?;
    print_welcome(&manifest, &manifest_path, &token.access_token);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(
        listener,
        store_listener,
        store,
        auth,
        &urls,
        started,
        audit_dir(&dir),
    ))?;
    say("fhirgate demo stopped");
    Ok(ExitCode::SUCCESS)
}

/// The gateway's configuration for the demo; the one place that says what the gateway
/// trusts and enforces here. The embedded authorization server is trusted like any other
/// issuer: through its discovery document and JWKS, fetched over HTTP from this very port.
fn gateway_config(
    urls: &Origin,
    listen: SocketAddr,
    upstream: Url,
    smart_configuration: serde_json::Value,
    audit_dir: PathBuf,
) -> anyhow::Result<GatewayConfig> {
    let public = Url::parse(&urls.fhir_base).context("the public FHIR base")?;
    let mut issuer = IssuerSettings::new(&urls.issuer, &urls.fhir_base);
    issuer.required_typ = Some("at+jwt".into());
    // The demo speaks plain HTTP; with `--listen` on a LAN address its issuer is not loopback.
    issuer.allow_http = true;
    let mut config =
        GatewayConfig::new(public, upstream).with_smart_configuration(smart_configuration);
    config.listen = listen;
    config.auth = GatewayAuth::required(vec![issuer]);
    // A demo is stopped by hand; nobody wants to wait 30 s for a browser's idle connection.
    config.shutdown.drain_time = Duration::from_secs(3);
    // What an operator would turn on: every access audited, metrics, and a per-client limit
    // modest enough that the RateLimit-* headers are worth looking at.
    config.audit = Some(fhirgate_audit::AuditConfig::file(audit_dir));
    let rate_limit: fhirgate_ratelimit::RawRateLimitConfig = serde_yaml_ng::from_str(
        "rules: [{name: per-client, key: client_id, per_second: 20, per_minute: 600}]",
    )
    .context("the demo's rate limit")?;
    config.rate_limit = Some(rate_limit.validate().context("the demo's rate limit")?);
    // Browser apps under development run on a loopback port of their own; any such port may
    // call the FHIR API (a token is still required), and so may pages on the demo's origin.
    config.cors.allowed_origins = vec![
        config.public_base_url.origin().ascii_serialization(),
        "http://127.0.0.1:*".to_owned(),
        "http://localhost:*".to_owned(),
    ];
    Ok(config)
}

/// The demo's audit trail, inside the data folder.
fn audit_dir(dir: &std::path::Path) -> PathBuf {
    dir.join("audit")
}

async fn serve(
    listener: TcpListener,
    store_listener: TcpListener,
    store: Store,
    auth: AuthServer,
    urls: &Origin,
    started: Instant,
    audit_dir: PathBuf,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    store_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let store_listener = tokio::net::TcpListener::from_std(store_listener)?;
    let bound = listener.local_addr()?;
    let store_addr = store_listener.local_addr()?;

    let upstream = format!("http://{store_addr}/fhir");
    let (stop_tx, stop_rx) = watch::channel(false);
    let store_stop = stopped(stop_rx.clone());
    let store_task = tokio::spawn({
        let upstream = upstream.clone();
        async move { fhirgate_store::serve(store_listener, store, &upstream, store_stop).await }
    });

    let upstream = Url::parse(&upstream).context("the store's URL")?;
    let config = gateway_config(urls, bound, upstream, auth.smart_configuration(), audit_dir)?;
    let gateway = Gateway::new(config)
        .context("building the gateway")?
        .mount("/auth", axum::Router::new().nest("/auth", auth.router()))
        .mount(
            APP_PATH,
            app::router(AppConfig {
                fhir_base: urls.fhir_base.clone(),
                client_id: seed::PUBLIC_CLIENT.into(),
                scope: seed::app_scope(),
                redirect_uri: format!("{}{APP_PATH}/", urls.origin),
            }),
        );

    // Tests and scripts wait for this exact line.
    println!(
        "fhirgate demo ready at {} (started in {:.1}s; Ctrl-C stops it)",
        urls.origin,
        started.elapsed().as_secs_f64()
    );
    let result = gateway
        .serve(listener, async {
            super::signal::shutdown_signal().await;
            say("shutting down");
            let _ = stop_tx.send(true);
        })
        .await;
    // Also when the gateway failed: the store must not outlive it.
    let _ = stop_tx.send(true);
    let store_result = store_task.await;
    result.context("serving the gateway")?;
    store_result
        .context("the store task")?
        .context("serving the store")?;
    Ok(())
}

/// Resolves once `true` is sent (or the sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A status line after start-up. Whoever started us may have closed our stdout by now, and
/// that must not turn a clean shutdown into a panic.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn manifest_for(
    urls: &Origin,
    dir: &std::path::Path,
    users: Vec<manifest::DemoUser>,
    clients: Vec<manifest::DemoClient>,
) -> Manifest {
    let o = &urls.origin;
    let i = &urls.issuer;
    Manifest {
        format_version: manifest::FORMAT_VERSION,
        urls: Urls {
            origin: o.clone(),
            fhir_base: urls.fhir_base.clone(),
            issuer: i.clone(),
            smart_configuration: format!("{}/.well-known/smart-configuration", urls.fhir_base),
            openid_configuration: format!("{i}/.well-known/openid-configuration"),
            authorization_endpoint: format!("{i}/authorize"),
            token_endpoint: format!("{i}/token"),
            jwks: format!("{i}/jwks"),
            app: format!("{o}{APP_PATH}/"),
            healthz: format!("{o}/healthz"),
            readyz: format!("{o}/readyz"),
            metrics: Some(format!("{o}/metrics")),
        },
        files: Files {
            data_dir: dir.to_path_buf(),
            fhir_store: files::fhir_store(dir),
            auth_store: files::auth_store(dir),
            audit_log: Some(audit_dir(dir)),
        },
        users,
        clients,
    }
}

fn print_welcome(m: &Manifest, manifest_path: &std::path::Path, token: &str) {
    let u = &m.urls;
    println!();
    println!("  FHIR base       {}", u.fhir_base);
    println!("  demo app        {}", u.app);
    println!("  issuer          {}", u.issuer);
    println!("  SMART config    {}", u.smart_configuration);
    if let Some(metrics) = &u.metrics {
        println!("  metrics         {metrics}");
    }
    if let Some(audit) = &m.files.audit_log {
        println!("  audit log       {}", audit.display());
    }
    println!();
    println!("  users (sign in at the demo app):");
    for user in &m.users {
        println!(
            "    {:<14} password {:<18} {} ({})",
            user.username,
            user.password,
            user.fhir_user.as_deref().unwrap_or("-"),
            user.role
        );
    }
    println!();
    println!("  clients:");
    for c in &m.clients {
        let secret = c
            .client_secret
            .as_deref()
            .map(|s| format!(" secret {s}"))
            .unwrap_or_default();
        println!("    {:<18} {}{secret}", c.client_id, c.kind);
        if let Some(key) = &c.key {
            println!(
                "    {:<18} key {} (kid {}, {})",
                "",
                key.private_key_pem.display(),
                key.kid,
                key.alg
            );
        }
    }
    println!();
    println!("  a backend-services token (system/*.rs, valid 15 minutes):");
    println!(
        "    curl -H \"Authorization: Bearer {token}\" \"{}/Patient?_count=3\"",
        u.fhir_base
    );
    println!();
    println!(
        "  URLs, users, passwords, secrets and key files: {}",
        manifest_path.display()
    );
    println!();
}

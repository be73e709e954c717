//! `fhirgate store ...` subcommands: run the embedded FHIR store on its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Serve the embedded FHIR R4 store over HTTP.
    Serve(ServeArgs),
    /// Show the schema version and resource counts of a store file.
    Info(InfoArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// SQLite store file (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Public base URL of the FHIR API (its path is where the API is served). Defaults to
    /// `http://<bound address>/fhir`.
    #[arg(long)]
    pub base_url: Option<url::Url>,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// SQLite store file.
    #[arg(long)]
    pub db: PathBuf,
}

pub fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Serve(args) => serve(args),
        StoreCommand::Info(args) => info(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = fhirgate_store::Store::open(&args.db)
        .with_context(|| format!("opening store {}", args.db.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let bound = listener.local_addr()?;
        let base_url = match args.base_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{bound}/fhir"),
        };
        println!("listening on http://{bound}");
        println!("FHIR base {base_url}");
        fhirgate_store::serve(listener, store, &base_url, super::signal::shutdown_signal())
            .await
            .context("serving the store")?;
        Ok(ExitCode::SUCCESS)
    })
}

fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let store = fhirgate_store::Store::open(&args.db)
        .with_context(|| format!("opening store {}", args.db.display()))?;
    println!("store {}", store.path().display());
    println!("schema version {}", store.schema_version()?);
    let counts = store.counts()?;
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    for (t, n) in counts {
        println!("{t:>28} {n:>9}");
    }
    println!("{:>28} {total:>9}", "total");
    Ok(ExitCode::SUCCESS)
}

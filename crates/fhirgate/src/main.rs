//! The `fhirgate` binary: CLI, configuration loading and wiring.
//!
//! Each subcommand lives in its own module under `cli/`, with its own clap `Args`, so the
//! parts of the system (gateway, store, authorization server) can grow independently.

mod cli;
mod config;

use clap::{Parser, Subcommand};

/// Every request allocates a little (headers, bodies, futures); mimalloc's per-thread free
/// lists make that measurably cheaper than glibc malloc on the proxy's hot path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// fhirgate: a SMART on FHIR gateway, authorization server and FHIR store in one binary.
#[derive(Debug, Parser)]
#[command(name = "fhirgate", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log format: `pretty` for terminals, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = cli::logging::LogFormat::Pretty)]
    log_format: cli::logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (and whatever embedded parts the config enables).
    Serve(cli::serve::ServeArgs),
    /// Validate a configuration file without starting anything.
    CheckConfig(cli::serve::CheckConfigArgs),
    /// Embedded FHIR store: run it standalone.
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
    /// Sample data: generate and import FHIR resources into the embedded store.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Embedded authorization server administration (users, clients, keys, tokens).
    #[command(subcommand)]
    Auth(cli::auth::AuthCommand),
    /// Audit trail: verify the hash chain, search who accessed a patient's data.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// The whole system on one port with sample data, demo users, clients and the demo app.
    Demo(cli::demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::CheckConfig(args) => cli::serve::check_config(args),
        Command::Store(cmd) => cli::store::run(cmd),
        Command::Data(cmd) => cli::data::run(cmd),
        Command::Auth(cmd) => cli::auth::run(cmd),
        Command::Audit(cmd) => cli::audit::run(cmd),
        Command::Demo(args) => cli::demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

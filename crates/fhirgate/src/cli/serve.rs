//! `fhirgate serve` and `fhirgate check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

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
    anyhow::bail!("serve is not wired yet ({})", args.config.display())
}

pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("check-config is not wired yet ({})", args.file.display())
}

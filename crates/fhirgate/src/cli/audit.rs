//! `fhirgate audit ...` subcommands.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {}

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {}
}

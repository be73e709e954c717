//! `fhirgate auth ...` subcommands.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {}

pub fn run(command: AuthCommand) -> anyhow::Result<ExitCode> {
    match command {}
}

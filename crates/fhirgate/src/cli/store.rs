//! `fhirgate store ...` subcommands.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {}

pub fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {}
}

//! `fhirgate data ...` subcommands: generate sample data and import FHIR files.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use fhirgate_store::generate::{GenerateOptions, GenerateSummary};
use fhirgate_store::import::{ImportProgress, import_paths};

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Generate deterministic, realistic, linked sample data.
    Generate(GenerateArgs),
    /// Import FHIR Bundles (e.g. Synthea output), single resources and NDJSON files.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["data_dir", "db"])))]
pub struct GenerateArgs {
    /// Number of patients.
    #[arg(long, default_value_t = 100)]
    pub patients: usize,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write one NDJSON file per resource type into this directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write straight into this store file.
    #[arg(long)]
    pub db: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Store file to import into (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    /// Files or directories (`.json` Bundles or resources, `.ndjson`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(command: DataCommand) -> anyhow::Result<ExitCode> {
    match command {
        DataCommand::Generate(args) => generate(args),
        DataCommand::Import(args) => import(args),
    }
}

/// A one-line progress display on terminals; silent otherwise.
struct Progress {
    tty: bool,
    start: Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    fn show(&self, line: &str) {
        if self.tty {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        }
    }

    fn rate(&self, n: usize) -> f64 {
        n as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn print_summary(summary: &GenerateSummary) {
    for (t, n) in &summary.by_type {
        println!("{t:>28} {n:>9}");
    }
    println!("{:>28} {:>9}", "total", summary.total());
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let opts = GenerateOptions {
        patients: args.patients,
        seed: args.seed,
    };
    let progress = Progress::new();
    let summary = if let Some(dir) = &args.data_dir {
        let s = fhirgate_store::generate::generate_ndjson(dir, opts)
            .with_context(|| format!("writing NDJSON into {}", dir.display()))?;
        println!("wrote {} resources into {}", s.total(), dir.display());
        s
    } else if let Some(db) = &args.db {
        let store = fhirgate_store::Store::open(db)
            .with_context(|| format!("opening store {}", db.display()))?;
        let s = fhirgate_store::generate::generate_into(&store, opts, &mut |n| {
            progress.show(&format!("{n} resources ({:.0}/s)", progress.rate(n)));
        })?;
        progress.done();
        println!(
            "stored {} resources in {} ({:.0} resources/s)",
            s.total(),
            db.display(),
            progress.rate(s.total())
        );
        s
    } else {
        anyhow::bail!("give --data-dir or --db");
    };
    print_summary(&summary);
    Ok(ExitCode::SUCCESS)
}

fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let store = fhirgate_store::Store::open(&args.db)
        .with_context(|| format!("opening store {}", args.db.display()))?;
    let progress = Progress::new();
    let report = import_paths(&store, &args.paths, &mut |p: &ImportProgress<'_>| {
        progress.show(&format!(
            "[{}/{}] {} resources ({:.0}/s) {}",
            p.files_done,
            p.files_total,
            p.resources,
            progress.rate(p.resources),
            p.file.display()
        ));
    });
    progress.done();
    println!(
        "imported {} resources from {} files in {:.1}s ({:.0} resources/s)",
        report.resources,
        report.files,
        progress.start.elapsed().as_secs_f64(),
        progress.rate(report.resources)
    );
    for (t, n) in &report.by_type {
        println!("{t:>28} {n:>9}");
    }
    if report.errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} problems:", report.errors.len());
    for e in &report.errors {
        eprintln!("  {e}");
    }
    Ok(ExitCode::FAILURE)
}

//! `fhirgate audit ...` subcommands: check the audit trail's hash chain and answer "who
//! accessed this patient's data" from the files the gateway wrote (see the `fhirgate-audit`
//! crate for the format).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use fhirgate_audit::{AuditSummary, SearchFilter, VerifyReport};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of audit files; exit status 1 if a record was altered, removed or
    /// reordered.
    Verify(VerifyArgs),
    /// List who accessed a patient's data (and other filters), oldest first.
    Search(SearchArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Audit directories (all files, in chain order) or files (checked in the order given).
    #[arg(default_value = "audit")]
    paths: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Audit directories or files.
    #[arg(default_value = "audit")]
    paths: Vec<PathBuf>,
    /// Patient id (`123` or `Patient/123`) whose data was returned or touched.
    #[arg(long)]
    patient: Option<String>,
    /// Only records at or after: RFC 3339 time, a date (UTC), or an age such as `2d`, `12h`.
    #[arg(long)]
    since: Option<String>,
    /// Only records before: same forms as `--since`.
    #[arg(long)]
    until: Option<String>,
    /// Only this OAuth client_id.
    #[arg(long)]
    client: Option<String>,
    /// Only this user (`sub` or `fhirUser`).
    #[arg(long)]
    user: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Search(args) => search(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let report = fhirgate_audit::verify(&args.paths)?;
    let mut out = std::io::stdout().lock();
    print_report(&mut out, &report)?;
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(out: &mut impl Write, report: &VerifyReport) -> std::io::Result<()> {
    let range = match (report.first_seq, &report.head) {
        (Some(first), Some((last, _))) => format!(" (seq {first}..{last})"),
        _ => String::new(),
    };
    writeln!(
        out,
        "checked {} file(s), {} record(s){range}",
        report.files.len(),
        report.records
    )?;
    if let Some((seq, hash)) = &report.head {
        writeln!(
            out,
            "head: seq {seq} sha256 {hash} (keep it elsewhere: records cut from the end of the \
             newest file can only be detected against it)"
        )?;
    }
    if report.starts_after_genesis() {
        writeln!(
            out,
            "note: the chain starts at seq {}: earlier files were not given or have been removed",
            report.first_seq.unwrap_or_default()
        )?;
    }
    for t in &report.truncations {
        writeln!(
            out,
            "truncated: {}: incomplete last record ({} bytes): the writer stopped mid-write; \
             the chain continues from the line before",
            t.at, t.bytes
        )?;
    }
    match report.first_break() {
        None => writeln!(out, "OK: the chain is intact")?,
        Some(first) => {
            writeln!(out, "BROKEN: {first}")?;
            if report.break_count > 1 {
                writeln!(out, "{} break(s) in total; the others:", report.break_count)?;
                for b in report.breaks.iter().skip(1) {
                    writeln!(out, "  {b}")?;
                }
            }
        }
    }
    Ok(())
}

fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let bound = |s: &Option<String>, flag: &str| -> anyhow::Result<_> {
        s.as_deref()
            .map(|s| fhirgate_audit::parse_time_bound(s, now))
            .transpose()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--{flag}"))
    };
    let mut filter = SearchFilter::default();
    filter.since = bound(&args.since, "since")?;
    filter.until = bound(&args.until, "until")?;
    filter.patient = args.patient;
    filter.client = args.client;
    filter.user = args.user;

    let mut out = std::io::stdout().lock();
    let mut matches = 0u64;
    let written = (|| -> anyhow::Result<()> {
        if !args.json {
            writeln!(out, "{}", AuditSummary::table_header())?;
        }
        for item in fhirgate_audit::search(&args.paths, filter)? {
            match item {
                Ok(summary) => {
                    matches += 1;
                    if args.json {
                        serde_json::to_writer(&mut out, &summary)?;
                        writeln!(out)?;
                    } else {
                        writeln!(out, "{}", summary.table_row())?;
                    }
                }
                Err(skipped) => eprintln!("warning: skipped {skipped}"),
            }
        }
        out.flush()?;
        Ok(())
    })();
    if let Err(e) = written {
        // `... | head` closing the pipe is a normal way to stop reading.
        let closed = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                || c.downcast_ref::<serde_json::Error>()
                    .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
        });
        if closed {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(e);
    }
    eprintln!("{matches} matching record(s)");
    Ok(ExitCode::SUCCESS)
}

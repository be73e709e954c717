//! Loading FHIR data files: Bundles (Synthea's transaction Bundles, batches, collections),
//! single resources, and NDJSON (one resource per line, as bulk export writes it).
//!
//! A bad file or line is recorded with its name and position and the rest still loads.
//! NDJSON is written in chunks of [`CHUNK`] resources per transaction, so memory stays flat
//! for files of any size.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;

use crate::Store;
use crate::error::{Result, StoreError};
use crate::ops;
use crate::rest::bundle;
use crate::rest::response::Return;

/// Resources per write transaction for NDJSON and collection Bundles.
pub const CHUNK: usize = 1000;
/// Largest single JSON file read whole (Bundles); NDJSON is streamed and has no limit.
pub const MAX_JSON_FILE: u64 = 512 * 1024 * 1024;

/// One problem found while importing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportIssue {
    pub file: PathBuf,
    /// `line 12`, `entry[3]`, or `file`.
    pub position: String,
    pub message: String,
}

impl std::fmt::Display for ImportIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.file.display(),
            self.position,
            self.message
        )
    }
}

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    pub files: usize,
    pub resources: usize,
    pub by_type: BTreeMap<String, usize>,
    pub errors: Vec<ImportIssue>,
}

/// Progress after each chunk or file.
#[derive(Debug, Clone)]
pub struct ImportProgress<'a> {
    pub file: &'a Path,
    pub files_done: usize,
    pub files_total: usize,
    pub resources: usize,
}

/// Store each resource under its own id (update-as-create), or a new id when it has none.
/// Invalid resources fail the whole call (used for generated data).
pub fn put_all(conn: &Connection, resources: Vec<Value>) -> Result<usize> {
    let n = resources.len();
    for v in resources {
        put_one(conn, v)?;
    }
    Ok(n)
}

fn put_one(conn: &Connection, v: Value) -> Result<String> {
    let rtype = v
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| StoreError::invalid("resourceType is missing", Some("resourceType")))?
        .to_owned();
    ops::resource_type(&rtype).map_err(|_| {
        StoreError::invalid(
            format!("unknown resourceType '{rtype}'"),
            Some("resourceType"),
        )
    })?;
    match v.get("id").and_then(Value::as_str).map(str::to_owned) {
        Some(id) => {
            ops::update(conn, &rtype, &id, v, None)?;
        }
        None => {
            ops::create(conn, &rtype, v, None)?;
        }
    }
    Ok(rtype)
}

/// Files under `paths` (directories searched recursively for `.json`, `.ndjson`, `.jsonl`).
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            children.sort();
            let children: Vec<PathBuf> = children
                .into_iter()
                .filter(|c| {
                    c.is_dir()
                        || matches!(
                            c.extension().and_then(|e| e.to_str()),
                            Some("json" | "ndjson" | "jsonl")
                        )
                })
                .collect();
            out.extend(expand(&children));
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Import files and directories.
pub fn import_paths(
    store: &Store,
    paths: &[PathBuf],
    progress: &mut dyn FnMut(&ImportProgress<'_>),
) -> ImportReport {
    let files = expand(paths);
    let mut report = ImportReport::default();
    let total = files.len();
    for (i, file) in files.iter().enumerate() {
        let ndjson = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("ndjson" | "jsonl")
        );
        let result = if ndjson {
            import_ndjson(store, file, &mut report, &mut |r| {
                progress(&ImportProgress {
                    file,
                    files_done: i,
                    files_total: total,
                    resources: r,
                })
            })
        } else {
            import_json_file(store, file, &mut report)
        };
        if let Err(e) = result {
            report.errors.push(ImportIssue {
                file: file.clone(),
                position: "file".into(),
                message: e.to_string(),
            });
        }
        report.files += 1;
        progress(&ImportProgress {
            file,
            files_done: i + 1,
            files_total: total,
            resources: report.resources,
        });
    }
    report
}

fn count(report: &mut ImportReport, rtype: String) {
    report.resources += 1;
    *report.by_type.entry(rtype).or_default() += 1;
}

fn import_ndjson(
    store: &Store,
    file: &Path,
    report: &mut ImportReport,
    progress: &mut dyn FnMut(usize),
) -> Result<()> {
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    // One thread reads, parses, validates and indexes; this one writes. Two chunks in
    // flight bound the memory.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(usize, Result<ops::Prepared>)>>(2);
    std::thread::scope(|scope| -> Result<()> {
        let producer = scope.spawn(move || -> Result<()> {
            let mut chunk = Vec::with_capacity(CHUNK);
            for (i, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let prepared = serde_json::from_str::<Value>(&line)
                    .map_err(|e| StoreError::structure(format!("not valid JSON: {e}")))
                    .and_then(ops::prepare_put);
                chunk.push((i + 1, prepared));
                if chunk.len() >= CHUNK && tx.send(std::mem::take(&mut chunk)).is_err() {
                    return Ok(()); // the writer stopped; its error is reported
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            Ok(())
        });
        for batch in rx {
            // A resource that failed to prepare was never written; a failed write of one
            // resource happens before any of its rows, so the chunk can still commit.
            let outcomes = store.write(|c| {
                Ok(batch
                    .into_iter()
                    .map(|(line, p)| {
                        let r = p.and_then(|p| {
                            let t = p.rtype().to_owned();
                            ops::put_prepared(c, p).map(|_| t)
                        });
                        (line, r)
                    })
                    .collect::<Vec<_>>())
            })?;
            for (line, r) in outcomes {
                match r {
                    Ok(t) => count(report, t),
                    Err(e) => report.errors.push(ImportIssue {
                        file: file.to_owned(),
                        position: format!("line {line}"),
                        message: e.to_string(),
                    }),
                }
            }
            progress(report.resources);
        }
        producer.join().map_err(|_| StoreError::Worker)?
    })
}

fn import_json_file(store: &Store, file: &Path, report: &mut ImportReport) -> Result<()> {
    if std::fs::metadata(file)?.len() > MAX_JSON_FILE {
        return Err(StoreError::TooCostly(format!(
            "JSON file larger than {MAX_JSON_FILE} bytes; use NDJSON for big data sets"
        )));
    }
    let bytes = std::fs::read(file)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::structure(format!("not valid JSON: {e}")))?;
    import_value(store, file, v, report)
}

/// Import one parsed JSON document (a Bundle or a single resource).
pub fn import_value(store: &Store, file: &Path, v: Value, report: &mut ImportReport) -> Result<()> {
    let is_bundle = v.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if is_bundle && (kind == "transaction" || kind == "batch") {
        let types: Vec<Option<String>> = v
            .get("entry")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .map(|e| {
                        e.pointer("/resource/resourceType")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        match bundle::process(store, &v, "", Return::Minimal) {
            Ok(resp) => {
                let entries = resp
                    .get("entry")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (i, e) in entries.iter().enumerate() {
                    let status = e
                        .pointer("/response/status")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if status.starts_with('2') {
                        if let Some(Some(t)) = types.get(i) {
                            count(report, t.clone());
                        }
                    } else {
                        report.errors.push(ImportIssue {
                            file: file.to_owned(),
                            position: format!("entry[{i}]"),
                            message: e
                                .pointer("/response/outcome/issue/0/diagnostics")
                                .and_then(Value::as_str)
                                .unwrap_or(status)
                                .to_owned(),
                        });
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let position = msg
                    .strip_prefix("Bundle.")
                    .and_then(|m| m.split_once(':'))
                    .map_or_else(|| "bundle".to_owned(), |(p, _)| p.to_owned());
                report.errors.push(ImportIssue {
                    file: file.to_owned(),
                    position,
                    message: msg,
                });
            }
        }
        return Ok(());
    }
    let resources: Vec<(String, Value)> = if is_bundle {
        v.get("entry")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .enumerate()
                    .filter_map(|(i, e)| {
                        e.get("resource")
                            .map(|r| (format!("entry[{i}]"), r.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![("resource".to_owned(), v)]
    };
    for chunk in resources.chunks(CHUNK) {
        let outcomes = store.write(|c| {
            Ok(chunk
                .iter()
                .map(|(pos, r)| (pos.clone(), put_one(c, r.clone())))
                .collect::<Vec<_>>())
        })?;
        for (pos, r) in outcomes {
            match r {
                Ok(t) => count(report, t),
                Err(e) => report.errors.push(ImportIssue {
                    file: file.to_owned(),
                    position: pos,
                    message: e.to_string(),
                }),
            }
        }
    }
    Ok(())
}

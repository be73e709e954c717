//! Checking the chain: `fhirgate audit verify`.
//!
//! Directories are expanded to their audit files in chain order; files named explicitly are
//! checked in the order given. What counts as a break: a line that is not a chain record, a
//! sequence number other than the next one (records removed, a file missing, lines
//! reordered), and a `prev` that is not the hash of the line before (that line was edited).
//! An incomplete last line of a file (the writer died mid-write, see [`crate::filelog`]) is
//! reported as a truncation, not a break, because the writer continues the chain from the last
//! complete line. What a chain cannot show: records cut from the very end of the newest
//! file. To cover that, keep the reported head hash somewhere else (a ticket, another system)
//! and compare later.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::chain::{ChainHead, GENESIS, hash_line, hex, parse_line};
use crate::files::{MAX_LINE, list_log_files};

/// Breaks beyond this many are counted but not listed.
const MAX_LISTED_BREAKS: usize = 100;

/// Where in the files a record sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What is wrong at a break.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakKind {
    /// The line is not a chain record.
    Malformed { reason: String },
    /// Sequence numbers jump forward: records `expected..found` are missing.
    Missing { expected: u64, found: u64 },
    /// A sequence number at or below one already seen: records reordered or duplicated.
    OutOfOrder { expected: u64, found: u64 },
    /// `prev` does not match the hash of the line before: that line was altered.
    HashMismatch { seq: u64 },
    /// The first record claims to be the first ever but does not link to the genesis hash.
    BadGenesis,
}

/// One place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub at: Location,
    pub kind: BreakKind,
    /// The location of the record before, when known (the one an edit would have touched).
    pub previous: Option<Location>,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BreakKind::Malformed { reason } => write!(f, "{}: {reason}", self.at),
            BreakKind::Missing { expected, found } => write!(
                f,
                "{}: seq {found} follows seq {}: records {expected}..={} are missing (lines or \
                 a whole file removed)",
                self.at,
                expected.saturating_sub(1),
                found.saturating_sub(1)
            ),
            BreakKind::OutOfOrder { expected, found } => write!(
                f,
                "{}: seq {found} where seq {expected} was expected: records reordered or \
                 duplicated",
                self.at
            ),
            BreakKind::HashMismatch { seq } => {
                write!(f, "{} (seq {seq}): prev hash does not match ", self.at)?;
                match &self.previous {
                    Some(p) => write!(f, "the record at {p}: that record was altered"),
                    None => write!(f, "the record before it: that record was altered"),
                }
            }
            BreakKind::BadGenesis => write!(
                f,
                "{}: seq 1 must have prev = 64 zeros (the chain's start)",
                self.at
            ),
        }
    }
}

/// An incomplete last line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub at: Location,
    pub bytes: u64,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub files: Vec<PathBuf>,
    pub records: u64,
    pub first_seq: Option<u64>,
    /// The newest record: its seq and hash (hex), to anchor elsewhere.
    pub head: Option<(u64, String)>,
    /// Up to 100 breaks, the first one first.
    pub breaks: Vec<Break>,
    /// All breaks, including those not listed.
    pub break_count: u64,
    pub truncations: Vec<Truncation>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.break_count == 0
    }

    pub fn first_break(&self) -> Option<&Break> {
        self.breaks.first()
    }

    /// The chain does not start at seq 1: older files were not given (or were removed).
    pub fn starts_after_genesis(&self) -> bool {
        self.first_seq.is_some_and(|s| s > 1)
    }
}

/// Why verification could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no audit files found in {0}")]
    Empty(PathBuf),
}

/// Directories expanded to their audit files in chain order; files kept as given.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, VerifyError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| VerifyError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let listed = list_log_files(path).map_err(|source| VerifyError::Io {
                path: path.clone(),
                source,
            })?;
            if listed.is_empty() {
                return Err(VerifyError::Empty(path.clone()));
            }
            files.extend(listed.into_iter().map(|(p, _)| p));
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

struct State {
    report: VerifyReport,
    expected: Option<ChainHead>,
    previous: Option<Location>,
}

impl State {
    fn broke(&mut self, at: Location, kind: BreakKind) {
        self.report.break_count += 1;
        if self.report.breaks.len() < MAX_LISTED_BREAKS {
            self.report.breaks.push(Break {
                at,
                kind,
                previous: self.previous.clone(),
            });
        }
    }

    fn line(&mut self, at: Location, line: &[u8]) {
        let header = match parse_line(line) {
            Ok(h) => h,
            Err(reason) => {
                self.broke(at, BreakKind::Malformed { reason });
                // Resynchronise on the next good line, so one bad line is one break.
                self.expected = None;
                self.previous = None;
                return;
            }
        };
        let seq = header.seq;
        match self.expected {
            None => {
                if self.report.first_seq.is_none() {
                    self.report.first_seq = Some(seq);
                }
                if seq == 1 && header.prev != GENESIS {
                    self.broke(at.clone(), BreakKind::BadGenesis);
                }
            }
            Some(exp) if seq > exp.next_seq => self.broke(
                at.clone(),
                BreakKind::Missing {
                    expected: exp.next_seq,
                    found: seq,
                },
            ),
            Some(exp) if seq < exp.next_seq => self.broke(
                at.clone(),
                BreakKind::OutOfOrder {
                    expected: exp.next_seq,
                    found: seq,
                },
            ),
            Some(exp) if header.prev != exp.prev => {
                self.broke(at.clone(), BreakKind::HashMismatch { seq });
            }
            Some(_) => {}
        }
        self.report.records += 1;
        let head = ChainHead::after(seq, line);
        self.report.head = Some((seq, hex(&head.prev)));
        self.expected = Some(head);
        self.previous = Some(at);
    }
}

/// Check the chain through `paths` (directories and/or files).
pub fn verify(paths: &[PathBuf]) -> Result<VerifyReport, VerifyError> {
    let files = expand_paths(paths)?;
    let mut state = State {
        report: VerifyReport::default(),
        expected: None,
        previous: None,
    };
    for file in &files {
        verify_file(&mut state, file).map_err(|source| VerifyError::Io {
            path: file.clone(),
            source,
        })?;
        state.report.files.push(file.clone());
    }
    Ok(state.report)
}

fn verify_file(state: &mut State, path: &Path) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let at = Location {
            file: path.to_path_buf(),
            line: line_no,
        };
        match buf.strip_suffix(b"\n") {
            Some(line) => state.line(at, line),
            None if n as u64 > MAX_LINE => {
                state.broke(
                    at,
                    BreakKind::Malformed {
                        reason: format!("line longer than {MAX_LINE} bytes"),
                    },
                );
                return Ok(());
            }
            None => {
                state.report.truncations.push(Truncation {
                    at,
                    bytes: n as u64,
                });
                return Ok(());
            }
        }
    }
}

/// Hash of a line as the chain computes it, hex (for tools and tests).
pub fn line_hash_hex(line: &[u8]) -> String {
    hex(&hash_line(line))
}

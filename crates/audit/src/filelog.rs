//! The append-only file target: rotation by size and UTC day, and recovery of the chain
//! from what is on disk (at start-up and after a failed write).
//!
//! Recovery rules, deterministic so `verify` can rely on them:
//! - The chain continues from the last complete (`\n`-terminated) line of the newest file
//!   that has one.
//! - If the newest file ends with an incomplete line (the process died mid-write), that file
//!   is left untouched and writing continues in a new file whose first record is a trail
//!   notice naming the truncated file; its `prev` links to the last complete line.
//! - If the last complete line is not a chain record, start-up fails ([`AuditError::Corrupt`])
//!   instead of guessing: an operator must look at the file.
//! - Otherwise the newest file is appended to (it rotates as usual).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::{Date, OffsetDateTime};

use crate::chain::{ChainHead, parse_line};
use crate::clock::Clock;
use crate::error::AuditError;
use crate::files::{LogFileName, list_log_files, read_tail};

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub head: ChainHead,
    /// The newest file ended with this many bytes of an incomplete record.
    pub truncated: Option<(PathBuf, u64)>,
}

#[derive(Debug)]
struct Current {
    file: File,
    path: PathBuf,
    /// Bytes written so far (not counting `pending`).
    size: u64,
    date: Date,
}

#[derive(Debug)]
pub(crate) struct FileLog {
    dir: PathBuf,
    rotate_size: u64,
    rotate_daily: bool,
    fsync: bool,
    clock: Arc<dyn Clock>,
    current: Option<Current>,
    /// Lines of the group being written, flushed with one `write(2)`.
    pending: Vec<u8>,
}

impl FileLog {
    pub fn new(
        dir: PathBuf,
        rotate_size: u64,
        rotate_daily: bool,
        fsync: bool,
        clock: Arc<dyn Clock>,
    ) -> FileLog {
        FileLog {
            dir,
            rotate_size,
            rotate_daily,
            fsync,
            clock,
            current: None,
            pending: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Find where the chain left off and, when the newest file is intact, reopen it for
    /// appending. Any open file is dropped first.
    pub fn recover(&mut self) -> Result<Recovered, AuditError> {
        self.current = None;
        self.pending.clear();
        std::fs::create_dir_all(&self.dir).map_err(|e| AuditError::write(&self.dir, e))?;
        let files = list_log_files(&self.dir).map_err(|e| AuditError::write(&self.dir, e))?;
        let mut truncated = None;
        let mut head = ChainHead::genesis();
        let mut reopen = None;
        for (i, (path, name)) in files.iter().enumerate().rev() {
            let tail = read_tail(path).map_err(|e| AuditError::write(path, e))?;
            let newest = i + 1 == files.len();
            if newest && tail.partial > 0 {
                truncated = Some((path.clone(), tail.partial));
            }
            let Some(line) = tail.last_line else {
                continue;
            };
            let header = parse_line(&line).map_err(|reason| AuditError::Corrupt {
                path: path.clone(),
                reason,
            })?;
            head = ChainHead::after(header.seq, &line);
            if newest && tail.partial == 0 {
                reopen = Some((path.clone(), *name, tail.len));
            }
            break;
        }
        if let Some((path, name, size)) = reopen {
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| AuditError::write(&path, e))?;
            self.current = Some(Current {
                file,
                path,
                size,
                date: name.date,
            });
        }
        Ok(Recovered { head, truncated })
    }

    /// Queue one line (with `\n`) whose sequence number is `seq`, rotating first if it would
    /// not fit the current file or the UTC day changed.
    pub fn append(&mut self, seq: u64, line: &[u8]) -> Result<(), AuditError> {
        let today = OffsetDateTime::from(self.clock.now()).date();
        let rotate = match &self.current {
            None => true,
            Some(cur) => {
                let size = cur.size + self.pending.len() as u64;
                (self.rotate_daily && cur.date != today)
                    || (size > 0 && size + line.len() as u64 > self.rotate_size)
            }
        };
        if rotate {
            self.flush()?;
            self.current = Some(self.create(seq, today)?);
        }
        self.pending.extend_from_slice(line);
        Ok(())
    }

    /// Hand the queued lines to the OS in one write, then sync if configured.
    pub fn flush(&mut self) -> Result<(), AuditError> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if !self.pending.is_empty() {
            cur.file
                .write_all(&self.pending)
                .map_err(|e| AuditError::write(&cur.path, e))?;
            cur.size += self.pending.len() as u64;
            self.pending.clear();
            if self.fsync {
                cur.file
                    .sync_data()
                    .map_err(|e| AuditError::write(&cur.path, e))?;
            }
        }
        Ok(())
    }

    fn create(&self, seq: u64, date: Date) -> Result<Current, AuditError> {
        let mut name = LogFileName {
            first_seq: seq,
            date,
            k: 0,
        };
        loop {
            let path = self.dir.join(name.file_name());
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    if self.fsync {
                        // The new directory entry must survive a power loss too.
                        sync_dir(&self.dir).map_err(|e| AuditError::write(&self.dir, e))?;
                    }
                    return Ok(Current {
                        file,
                        path,
                        size: 0,
                        date,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && name.k < 1000 => {
                    name.k += 1;
                }
                Err(e) => return Err(AuditError::write(path, e)),
            }
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

//! Audit file names, directory listing, and finding where the chain left off.
//!
//! Files are named `audit-{first seq, 12 digits}-{UTC date YYYYMMDD}[.{k}].jsonl`. The first
//! sequence number orders the files (zero-padded so a shell glob sorts them too); the date is
//! the UTC day the file was opened, which daily rotation compares against. `.k` appears only
//! when a file with the same first seq already exists (a restart after a crash that left a
//! file with no complete line) and orders such files among themselves.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use time::Date;

/// The parts of an audit file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFileName {
    pub first_seq: u64,
    pub date: Date,
    pub k: u32,
}

impl LogFileName {
    pub fn file_name(&self) -> String {
        let (y, m, d) = (
            self.date.year(),
            u8::from(self.date.month()),
            self.date.day(),
        );
        if self.k == 0 {
            format!("audit-{:012}-{y:04}{m:02}{d:02}.jsonl", self.first_seq)
        } else {
            format!(
                "audit-{:012}-{y:04}{m:02}{d:02}.{}.jsonl",
                self.first_seq, self.k
            )
        }
    }

    pub fn parse(name: &str) -> Option<LogFileName> {
        let rest = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
        let (seq, rest) = rest.split_once('-')?;
        let (date, k) = match rest.split_once('.') {
            Some((date, k)) => (date, k.parse().ok()?),
            None => (rest, 0),
        };
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || date.len() != 8 {
            return None;
        }
        let year: i32 = date.get(0..4)?.parse().ok()?;
        let month: u8 = date.get(4..6)?.parse().ok()?;
        let day: u8 = date.get(6..8)?.parse().ok()?;
        let month = time::Month::try_from(month).ok()?;
        Some(LogFileName {
            first_seq: seq.parse().ok()?,
            date: Date::from_calendar_date(year, month, day).ok()?,
            k,
        })
    }

    fn order_key(&self) -> (u64, u32) {
        (self.first_seq, self.k)
    }
}

/// The audit files of a directory in chain order. Other files are ignored.
pub fn list_log_files(dir: &Path) -> io::Result<Vec<(PathBuf, LogFileName)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(parsed) = name.to_str().and_then(LogFileName::parse) else {
            continue;
        };
        if entry.file_type()?.is_file() {
            files.push((entry.path(), parsed));
        }
    }
    files.sort_by_key(|(_, n)| n.order_key());
    Ok(files)
}

/// The end of a file: its last complete line and any bytes after it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tail {
    pub len: u64,
    /// The last `\n`-terminated line, without the `\n`.
    pub last_line: Option<Vec<u8>>,
    /// Bytes after the last `\n`: a record cut off mid-write.
    pub partial: u64,
}

const TAIL_CHUNK: u64 = 64 * 1024;
/// A line longer than this is treated as corruption rather than read into memory.
pub const MAX_LINE: u64 = 64 * 1024 * 1024;

/// Read a file backwards until its last complete line is found, so a 100 MiB file costs a
/// few kilobytes at start-up.
pub fn read_tail(path: &Path) -> io::Result<Tail> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    let mut last_nl: Option<usize> = None;
    loop {
        let new_start = start.saturating_sub(TAIL_CHUNK);
        let mut chunk = vec![0u8; usize::try_from(start - new_start).unwrap_or(0)];
        file.seek(SeekFrom::Start(new_start))?;
        file.read_exact(&mut chunk)?;
        let added = chunk.len();
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = new_start;
        last_nl = last_nl.map(|p| p + added);
        if last_nl.is_none() {
            last_nl = buf.iter().rposition(|&b| b == b'\n');
        }
        if let Some(nl) = last_nl {
            let before = buf.get(..nl).unwrap_or_default();
            let line_start = match before.iter().rposition(|&b| b == b'\n') {
                Some(p) => Some(p + 1),
                None if start == 0 => Some(0),
                None => None,
            };
            if let Some(ls) = line_start {
                return Ok(Tail {
                    len,
                    last_line: Some(buf.get(ls..nl).unwrap_or_default().to_vec()),
                    partial: len - (start + nl as u64 + 1),
                });
            }
        } else if start == 0 {
            return Ok(Tail {
                len,
                last_line: None,
                partial: len,
            });
        }
        if len - start > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "last line of {} is longer than {MAX_LINE} bytes",
                    path.display()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names_round_trip_and_sort_by_seq() {
        let date = Date::from_calendar_date(2026, time::Month::November, 29).unwrap();
        let n = LogFileName {
            first_seq: 42,
            date,
            k: 0,
        };
        assert_eq!(n.file_name(), "audit-000000000042-20261129.jsonl");
        assert_eq!(LogFileName::parse(&n.file_name()), Some(n));
        let k = LogFileName { k: 2, ..n };
        assert_eq!(k.file_name(), "audit-000000000042-20261129.2.jsonl");
        assert_eq!(LogFileName::parse(&k.file_name()), Some(k));
        assert_eq!(LogFileName::parse("audit-x-20261129.jsonl"), None);
        assert_eq!(LogFileName::parse("notes.txt"), None);
    }

    #[test]
    fn tail_finds_last_line_and_partial_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let big = "x".repeat(100_000);
        std::fs::write(&p, format!("a\n{big}\nlast\npart")).unwrap();
        let t = read_tail(&p).unwrap();
        assert_eq!(t.last_line.as_deref(), Some(&b"last"[..]));
        assert_eq!(t.partial, 4);
        std::fs::write(&p, format!("a\n{big}\n")).unwrap();
        let t = read_tail(&p).unwrap();
        assert_eq!(t.last_line.as_deref(), Some(big.as_bytes()));
        assert_eq!(t.partial, 0);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(b"only partial").unwrap();
        let t = read_tail(&p).unwrap();
        assert_eq!(t.last_line, None);
        assert_eq!(t.partial, 12);
        std::fs::write(&p, "").unwrap();
        assert_eq!(read_tail(&p).unwrap(), Tail::default());
        std::fs::write(&p, "single\n").unwrap();
        assert_eq!(
            read_tail(&p).unwrap().last_line.as_deref(),
            Some(&b"single"[..])
        );
    }
}

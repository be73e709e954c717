//! Reading events back: `fhirgate audit search` ("who accessed this patient's data?").

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;
use time::OffsetDateTime;

use crate::chain::parse_line;
use crate::event::AuditEvent;
use crate::files::MAX_LINE;
use crate::verify::{VerifyError, expand_paths};

/// Which events to return; empty fields match everything.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SearchFilter {
    /// Patient id, with or without `Patient/`.
    pub patient: Option<String>,
    /// Recorded at or after.
    pub since: Option<OffsetDateTime>,
    /// Recorded before.
    pub until: Option<OffsetDateTime>,
    pub client: Option<String>,
    /// `sub` or `fhirUser`.
    pub user: Option<String>,
}

impl SearchFilter {
    pub fn matches(&self, event: &AuditEvent) -> bool {
        if let Some(p) = &self.patient {
            let id = p.strip_prefix("Patient/").unwrap_or(p);
            if !event.patients().any(|x| x == id) {
                return false;
            }
        }
        if self.since.is_some_and(|t| event.recorded < t)
            || self.until.is_some_and(|t| event.recorded >= t)
        {
            return false;
        }
        if let Some(c) = &self.client
            && event.client_id() != Some(c.as_str())
        {
            return false;
        }
        if let Some(u) = &self.user
            && event.user() != Some(u.as_str())
            && event.subject() != Some(u.as_str())
        {
            return false;
        }
        true
    }
}

/// One matching event, flattened for a table or a JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    #[serde(with = "time::serde::rfc3339")]
    pub recorded: OffsetDateTime,
    pub seq: u64,
    pub user: Option<String>,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub network_address: Option<String>,
    pub interaction: String,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub outcome: Option<String>,
    pub outcome_desc: Option<String>,
    pub patients: Vec<String>,
    pub request_id: Option<String>,
    pub token_id: Option<String>,
    pub aborted: bool,
    pub file: PathBuf,
    pub line: u64,
}

impl AuditSummary {
    fn new(seq: u64, event: &AuditEvent, file: PathBuf, line: u64) -> AuditSummary {
        AuditSummary {
            recorded: event.recorded,
            seq,
            user: event.user().map(str::to_owned),
            sub: event.subject().map(str::to_owned),
            client_id: event.client_id().map(str::to_owned),
            network_address: event.network_address().map(str::to_owned),
            interaction: event.interaction_code().to_owned(),
            action: event.action.map(|a| a.code().to_owned()),
            resource: event.resource().map(str::to_owned),
            outcome: event.outcome.map(|o| o.code().to_owned()),
            outcome_desc: event.outcome_desc.clone(),
            patients: event.patients().map(str::to_owned).collect(),
            request_id: event.request_id().map(str::to_owned),
            token_id: event.token_id().map(str::to_owned),
            aborted: event.aborted(),
            file,
            line,
        }
    }
}

const TABLE_WIDTHS: [usize; 5] = [24, 28, 18, 17, 28];

impl AuditSummary {
    /// Column titles matching [`AuditSummary::table_row`].
    pub fn table_header() -> String {
        table_line([
            "TIME",
            "WHO",
            "CLIENT",
            "INTERACTION",
            "RESOURCE",
            "OUTCOME",
        ])
    }

    /// One row of the human-readable table: time, who, client, interaction, resource,
    /// outcome (and the patients, when the event names more than the one searched for).
    pub fn table_row(&self) -> String {
        use time::format_description::well_known::Rfc3339;
        let time = self
            .recorded
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.recorded.to_string());
        let who = self.user.as_deref().or(self.sub.as_deref()).unwrap_or("-");
        let mut outcome = self.outcome_desc.clone().unwrap_or_else(|| "-".to_owned());
        if self.patients.len() > 1 {
            outcome.push_str(&format!(" [patients: {}]", self.patients.join(",")));
        }
        table_line([
            &time,
            who,
            self.client_id.as_deref().unwrap_or("-"),
            &self.interaction,
            self.resource.as_deref().unwrap_or("-"),
            &outcome,
        ])
    }
}

fn table_line(cols: [&str; 6]) -> String {
    let mut out = String::new();
    for (i, col) in cols.iter().enumerate() {
        match TABLE_WIDTHS.get(i) {
            Some(w) => out.push_str(&format!("{col:<w$} ", w = w - 1)),
            None => out.push_str(col),
        }
    }
    out.trim_end().to_owned()
}

/// A line that could not be read as an event (reported, then skipped).
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct SkippedLine {
    pub file: PathBuf,
    pub line: u64,
    pub reason: String,
}

/// Parse a line (without `\n`) into its seq and event.
pub fn parse_record(line: &[u8]) -> Result<(u64, AuditEvent), String> {
    let header = parse_line(line)?;
    let event: AuditEvent =
        serde_json::from_str(header.event).map_err(|e| format!("not an AuditEvent: {e}"))?;
    Ok((header.seq, event))
}

/// Events in `paths` matching `filter`, in file order. Lines that cannot be read come out as
/// `Err` and the iteration goes on; a file that cannot be opened ends it with an `Err`.
pub fn search(
    paths: &[PathBuf],
    filter: SearchFilter,
) -> Result<impl Iterator<Item = Result<AuditSummary, SkippedLine>>, VerifyError> {
    let files = expand_paths(paths)?;
    Ok(SearchIter {
        files: files.into_iter(),
        current: None,
        filter,
        buf: Vec::new(),
    })
}

struct SearchIter {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, BufReader<File>, u64)>,
    filter: SearchFilter,
    buf: Vec<u8>,
}

impl Iterator for SearchIter {
    type Item = Result<AuditSummary, SkippedLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some((path, reader, line_no)) = self.current.as_mut() else {
                let path = self.files.next()?;
                match File::open(&path) {
                    Ok(f) => self.current = Some((path, BufReader::new(f), 0)),
                    Err(e) => {
                        return Some(Err(SkippedLine {
                            file: path,
                            line: 0,
                            reason: e.to_string(),
                        }));
                    }
                }
                continue;
            };
            self.buf.clear();
            let read = reader.take(MAX_LINE + 1).read_until(b'\n', &mut self.buf);
            *line_no += 1;
            let skipped = |reason: String| SkippedLine {
                file: path.clone(),
                line: *line_no,
                reason,
            };
            match read {
                Ok(0) => {
                    self.current = None;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    let err = skipped(e.to_string());
                    self.current = None;
                    return Some(Err(err));
                }
            }
            let Some(line) = self.buf.strip_suffix(b"\n") else {
                // An incomplete last line: the writer died mid-write; nothing to read.
                self.current = None;
                continue;
            };
            match parse_record(line) {
                Ok((seq, event)) if self.filter.matches(&event) => {
                    return Some(Ok(AuditSummary::new(seq, &event, path.clone(), *line_no)));
                }
                Ok(_) => {}
                Err(reason) => return Some(Err(skipped(reason))),
            }
        }
    }
}

/// `--since`/`--until` values: an RFC 3339 time (`2026-11-29T08:00:00Z`), a date
/// (`2026-11-29`, midnight UTC) or an age before `now` (`2d`, `12h`, `90min`).
pub fn parse_time_bound(s: &str, now: SystemTime) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    let now = OffsetDateTime::from(now);
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date_fmt) {
        return Ok(d.midnight().assume_utc());
    }
    match humantime::parse_duration(s) {
        Ok(age) => Ok(now - age),
        Err(_) => Err(format!(
            "'{s}' is neither an RFC 3339 time (2026-11-29T08:00:00Z), a date (2026-11-29) nor \
             an age (2d, 12h)"
        )),
    }
}

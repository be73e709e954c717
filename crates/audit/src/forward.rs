//! Optional forwarding of the trail to a FHIR server (`POST` of `batch` Bundles of
//! `AuditEvent`s), e.g. to a central audit repository.
//!
//! The forwarder tails the audit files instead of taking records from requests: the files
//! already are the durable, bounded-by-disk queue, so a slow or absent audit server never
//! blocks a request, nothing is lost across restarts, and retries simply resend from the
//! cursor. Delivery is at-least-once: a batch accepted by the server whose cursor update
//! then fails is sent again. The cursor (last forwarded seq) lives in `.forward-cursor` in
//! the audit directory, replaced atomically.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::chain::parse_line;
use crate::files::{MAX_LINE, list_log_files};

const CURSOR_FILE: &str = ".forward-cursor";

/// `audit.forward` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ForwardConfig {
    /// FHIR base URL of the audit server; Bundles are POSTed to it.
    pub url: String,
    /// Records per Bundle.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Pause when caught up; also the first retry delay (doubling up to 5 minutes).
    #[serde(default = "default_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Per-request timeout.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

fn default_batch() -> usize {
    100
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration '{s}' ({e}); e.g. 5s")))
}

impl ForwardConfig {
    pub fn new(url: impl Into<String>) -> Self {
        ForwardConfig {
            url: url.into(),
            batch_size: default_batch(),
            interval: default_interval(),
            timeout: default_timeout(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    #[error("audit forward url '{0}' is not an http(s) URL")]
    BadUrl(String),
    #[error("audit forwarding: {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit forwarding: cursor file {0} does not hold a sequence number")]
    BadCursor(PathBuf),
    #[error("audit forwarding to {url} failed: {reason}")]
    Http { url: String, reason: String },
}

/// Sends the trail's events to a FHIR server, from where it left off.
#[derive(Debug, Clone)]
pub struct Forwarder {
    dir: PathBuf,
    url: reqwest::Url,
    client: reqwest::Client,
    config: ForwardConfig,
}

impl Forwarder {
    pub fn new(dir: impl Into<PathBuf>, config: &ForwardConfig) -> Result<Forwarder, ForwardError> {
        let url = reqwest::Url::parse(&config.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ForwardError::BadUrl(config.url.clone()))?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| ForwardError::Http {
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
        Ok(Forwarder {
            dir: dir.into(),
            url,
            client,
            config: config.clone(),
        })
    }

    fn cursor_path(&self) -> PathBuf {
        self.dir.join(CURSOR_FILE)
    }

    /// The last forwarded seq (0 before the first batch).
    pub fn cursor(&self) -> Result<u64, ForwardError> {
        let path = self.cursor_path();
        match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| ForwardError::BadCursor(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(ForwardError::Io { path, source }),
        }
    }

    fn set_cursor(&self, seq: u64) -> Result<(), ForwardError> {
        let path = self.cursor_path();
        let tmp = self.dir.join(format!("{CURSOR_FILE}.tmp"));
        std::fs::write(&tmp, format!("{seq}\n"))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| ForwardError::Io { path, source })
    }

    /// Send the next batch (up to `batch_size` records after the cursor). Returns how many
    /// records were sent; 0 when caught up.
    pub async fn forward_once(&self) -> Result<usize, ForwardError> {
        let after = self.cursor()?;
        let dir = self.dir.clone();
        let max = self.config.batch_size.max(1);
        let batch = tokio::task::spawn_blocking(move || read_after(&dir, after, max))
            .await
            .map_err(|e| ForwardError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|(path, source)| ForwardError::Io { path, source })?;
        let Some(&(last_seq, _)) = batch.last() else {
            return Ok(0);
        };
        let body = bundle(&batch);
        let http_err = |reason: String| ForwardError::Http {
            url: self.url.to_string(),
            reason,
        };
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/fhir+json")
            .header("accept", "application/fhir+json")
            .body(body)
            .send()
            .await
            .map_err(|e| http_err(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http_err(format!("HTTP {status}")));
        }
        let text = response.text().await.map_err(|e| http_err(e.to_string()))?;
        check_batch_response(&text).map_err(http_err)?;
        self.set_cursor(last_seq)?;
        Ok(batch.len())
    }

    /// Forward until `shutdown` turns true: drain, pause `interval` when caught up, back off
    /// (doubling, at most 5 minutes) on errors, which are logged.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut delay = self.config.interval;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pause = match self.forward_once().await {
                Ok(n) if n > 0 => {
                    delay = self.config.interval;
                    continue;
                }
                Ok(_) => self.config.interval,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "audit forwarding failed");
                    let d = delay;
                    delay = (delay * 2).min(Duration::from_secs(300));
                    d
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

type ReadError = (PathBuf, std::io::Error);

/// Up to `max` complete records with seq > `after`, as (seq, event JSON), in chain order.
fn read_after(dir: &Path, after: u64, max: usize) -> Result<Vec<(u64, String)>, ReadError> {
    let files = list_log_files(dir).map_err(|e| (dir.to_path_buf(), e))?;
    // Start at the last file that begins at or before the first wanted seq.
    let start = files
        .iter()
        .rposition(|(_, n)| n.first_seq <= after.saturating_add(1))
        .unwrap_or(0);
    let mut out = Vec::new();
    for (path, _) in files.iter().skip(start) {
        let file = File::open(path).map_err(|e| (path.clone(), e))?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = (&mut reader)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| (path.clone(), e))?;
            let Some(line) = buf.strip_suffix(b"\n").filter(|_| n > 0) else {
                break;
            };
            // Lines that are not records are `verify`'s business; forwarding skips them.
            let Ok(header) = parse_line(line) else {
                continue;
            };
            if header.seq > after {
                out.push((header.seq, header.event.to_owned()));
                if out.len() >= max {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

fn bundle(batch: &[(u64, String)]) -> String {
    let mut s = String::from(r#"{"resourceType":"Bundle","type":"batch","entry":["#);
    for (i, (_, event)) in batch.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(r#"{"resource":"#);
        s.push_str(event);
        s.push_str(r#","request":{"method":"POST","url":"AuditEvent"}}"#);
    }
    s.push_str("]}");
    s
}

/// A `batch-response` whose entries are not all 2xx is a failure (the batch is resent).
fn check_batch_response(text: &str) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        entry: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        response: Option<EntryResponse>,
    }
    #[derive(Deserialize)]
    struct EntryResponse {
        status: String,
    }
    let Ok(resp) = serde_json::from_str::<Resp>(text) else {
        return Ok(());
    };
    let failed = resp
        .entry
        .iter()
        .filter_map(|e| e.response.as_ref())
        .find(|r| !r.status.trim_start().starts_with('2'));
    match failed {
        Some(r) => Err(format!("an entry was answered with '{}'", r.status)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_wrap_events_and_failed_entries_fail_the_batch() {
        let b = bundle(&[(1, r#"{"a":1}"#.into()), (2, r#"{"a":2}"#.into())]);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["type"], "batch");
        assert_eq!(v["entry"][1]["resource"]["a"], 2);
        assert_eq!(v["entry"][0]["request"]["url"], "AuditEvent");
        let ok = r#"{"entry":[{"response":{"status":"201 Created"}}]}"#;
        assert_eq!(check_batch_response(ok), Ok(()));
        let bad = r#"{"entry":[{"response":{"status":"201"}},{"response":{"status":"400 Bad Request"}}]}"#;
        assert!(check_batch_response(bad).unwrap_err().contains("400"));
    }
}

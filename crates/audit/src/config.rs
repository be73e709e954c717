//! The `audit:` section of the configuration file.
//!
//! Sizes and durations are parsed while deserialising, so a bad value is reported by the YAML
//! loader with its line; [`AuditConfig::validate`] then checks what spans several keys.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::ConfigError;
use crate::forward::ForwardConfig;

/// Where records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON-lines files in `path`, rotated by size and UTC day.
    File,
    /// JSON lines on standard output, for containers whose log collector keeps them. The chain
    /// restarts at seq 1 with each process.
    Stdout,
}

/// When `record` resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After `write(2)`: survives the process being killed, not a power loss.
    Os,
    /// After `fdatasync(2)` of the group the record was written with: survives power loss.
    Fsync,
}

/// What the gateway does while the sink cannot write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse requests touching PHI with 503 until a write succeeds again.
    Refuse,
    /// Keep serving (records that fail are logged as errors, never silently dropped).
    Continue,
}

/// The `audit:` configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuditConfig {
    pub sink: SinkKind,
    /// Directory of the audit files (`sink: file`). Created if missing.
    pub path: PathBuf,
    /// Start a new file before one grows beyond this (`100MiB`).
    #[serde(deserialize_with = "de_size")]
    pub rotate_size: u64,
    /// Start a new file when the UTC day changes.
    pub rotate_daily: bool,
    pub durability: Durability,
    pub on_failure: OnFailure,
    /// Name of this gateway in `AuditEvent.source.observer`.
    pub observer: String,
    /// Records waiting for the writer; when full, `record` waits (up to `write_timeout`).
    pub queue_capacity: usize,
    /// Longest a request waits for its record to be written before it is treated as failed.
    #[serde(deserialize_with = "de_duration")]
    pub write_timeout: Duration,
    /// Also send the events to a FHIR server (tails the files; `sink: file` only).
    pub forward: Option<ForwardConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            sink: SinkKind::File,
            path: PathBuf::from("audit"),
            rotate_size: 100 * 1024 * 1024,
            rotate_daily: true,
            durability: Durability::Os,
            on_failure: OnFailure::Refuse,
            observer: "fhirgate".to_owned(),
            queue_capacity: 8192,
            write_timeout: Duration::from_secs(10),
            forward: None,
        }
    }
}

impl AuditConfig {
    /// A file sink in `path` with the defaults.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        AuditConfig {
            path: path.into(),
            ..AuditConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.durability == Durability::Fsync && self.sink != SinkKind::File {
            return Err(ConfigError::FsyncNeedsFile);
        }
        if self.rotate_size < 4096 {
            return Err(ConfigError::RotateSizeTooSmall);
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::ZeroQueue);
        }
        if self.observer.trim().is_empty() {
            return Err(ConfigError::EmptyObserver);
        }
        if let Some(fwd) = &self.forward {
            if self.sink != SinkKind::File {
                return Err(ConfigError::ForwardNeedsFile);
            }
            let scheme_ok = fwd.url.starts_with("http://") || fwd.url.starts_with("https://");
            if !scheme_ok {
                return Err(ConfigError::ForwardUrl(fwd.url.clone()));
            }
        }
        Ok(())
    }
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(s) => s
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| {
                serde::de::Error::custom(format!("invalid size '{s}' ({e}); e.g. 100MiB"))
            }),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration '{s}' ({e}); e.g. 10s")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_keys_and_rejects_unknown_ones() {
        let c: AuditConfig = serde_json::from_str(
            r#"{"sink":"file","path":"/var/log/fhirgate","rotate_size":"10MiB",
                "rotate_daily":false,"durability":"fsync","on_failure":"continue",
                "observer":"gw-1","write_timeout":"2s"}"#,
        )
        .unwrap();
        assert_eq!(c.rotate_size, 10 * 1024 * 1024);
        assert_eq!(c.durability, Durability::Fsync);
        assert_eq!(c.on_failure, OnFailure::Continue);
        assert_eq!(c.write_timeout, Duration::from_secs(2));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            serde_json::from_str::<AuditConfig>("{}").unwrap(),
            AuditConfig::default()
        );
        assert!(serde_json::from_str::<AuditConfig>(r#"{"durabilty":"os"}"#).is_err());
        assert!(serde_json::from_str::<AuditConfig>(r#"{"rotate_size":"ten"}"#).is_err());
        let stdout_fsync: AuditConfig =
            serde_json::from_str(r#"{"sink":"stdout","durability":"fsync"}"#).unwrap();
        assert_eq!(stdout_fsync.validate(), Err(ConfigError::FsyncNeedsFile));
        let fwd: AuditConfig = serde_json::from_str(
            r#"{"forward":{"url":"https://audit.example/fhir","batch_size":50,"interval":"1s"}}"#,
        )
        .unwrap();
        assert_eq!(fwd.validate(), Ok(()));
        assert_eq!(fwd.forward.unwrap().batch_size, 50);
        let bad: AuditConfig = serde_json::from_str(r#"{"forward":{"url":"ftp://x"}}"#).unwrap();
        assert!(bad.validate().is_err());
    }
}

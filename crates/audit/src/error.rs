//! Errors of the audit trail.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a record could not be written. Cloneable because one failed group write fails every
/// record of the group.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Writing, syncing or creating an audit file failed (disk full, permissions, ...).
    #[error("audit write to {path} failed: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The newest audit file ends in something that is not a chain record, so the chain
    /// cannot be continued safely; an operator has to look at it.
    #[error("cannot continue the audit chain from {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The writer did not accept or finish the record in time (queue full, disk stalled).
    #[error("audit writer did not complete the record within {0:?}")]
    Timeout(std::time::Duration),
    /// The writer thread is gone (it could not be started or has stopped).
    #[error("audit writer has stopped")]
    Closed,
    /// The event could not be serialised (should not happen with well-formed input).
    #[error("audit event could not be serialised: {0}")]
    Serialize(String),
}

impl AuditError {
    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> AuditError {
        AuditError::Write {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// An audit configuration that parses but cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("audit.durability: fsync needs audit.sink: file (stdout cannot be synced)")]
    FsyncNeedsFile,
    #[error("audit.rotate_size must be at least 4KiB")]
    RotateSizeTooSmall,
    #[error("audit.queue_capacity must be at least 1")]
    ZeroQueue,
    #[error("audit.observer must not be empty")]
    EmptyObserver,
    #[error("audit.forward needs audit.sink: file (it sends what the files hold)")]
    ForwardNeedsFile,
    #[error("audit.forward.url '{0}' must be an http:// or https:// FHIR base URL")]
    ForwardUrl(String),
}

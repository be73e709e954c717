//! Tamper-evident audit trail: the last phase of every gateway request (DESIGN.md §3 step 8).
//!
//! The gateway builds an [`AuditInput`] when it is done with a request (allowed or refused)
//! and awaits [`AuditSink::record`] before the response's last byte goes out, so a process
//! killed right after serving data has already handed that record to the OS. The record
//! becomes a FHIR R4 `AuditEvent` in IHE BALP shape ([`serialize_event`]) and is
//! appended as one JSON line carrying a hash of the line before it ([`chain`]), across
//! rotated files ([`files`], [`filelog`]). The `fhirgate audit` commands read the same files
//! back: [`verify`] checks the chain, [`search()`] answers who accessed a patient's data.
//! Optionally a [`Forwarder`] tails the files and POSTs the events to a FHIR server.
//!
//! This crate depends on no other fhirgate crate: the writer (gateway) and the readers (CLI)
//! share only the file format defined here.
//!
//! # File format
//! Each line: `{"seq":N,"prev":"<hex sha256 of the previous line without \n>","event":{..}}`.
//! See [`chain`] for the exact rules, [`filelog`] for what happens after a crash mid-write,
//! and [`verify`] for what a check can and cannot detect.

pub mod chain;
pub mod clock;
pub mod config;
pub mod error;
pub mod event;
pub mod filelog;
pub mod files;
pub mod forward;
mod gather;
pub mod input;
pub mod search;
pub mod verify;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AuditConfig, Durability, OnFailure, SinkKind};
pub use error::{AuditError, ConfigError};
pub use event::{AuditEvent, OutcomeCode, serialize_event};
pub use forward::{ForwardConfig, ForwardError, Forwarder};
pub use input::{Action, AuditInput, AuditPrincipal, Interaction, Outcome};
pub use search::{AuditSummary, SearchFilter, SkippedLine, parse_time_bound, search};
pub use verify::{Break, BreakKind, VerifyError, VerifyReport, verify};
pub use writer::{AuditSink, MAX_GROUP, MemoryLog};

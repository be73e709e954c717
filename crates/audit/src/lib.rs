//! Tamper-evident audit trail (in progress).

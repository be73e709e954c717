//! Integration tests of the audit trail: one binary (link time on 2 cores).

// Helpers outside `#[test]` functions unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chain;
mod crash;
mod event;
mod forward;
mod search;
mod sink;
mod support;

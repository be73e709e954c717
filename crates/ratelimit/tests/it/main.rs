//! Integration tests for fhirgate-ratelimit: one binary (link time on 2 cores).

// `allow-*-in-tests` covers `#[test]` functions only, not the shared helpers here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod config;
mod local;
mod redis;
mod support;

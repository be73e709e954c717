//! One integration binary (link time on 2 cores): the router served on 127.0.0.1:0 and
//! driven over HTTP through every flow and every negative check of the AS catalogue.

// Test helpers outside #[test] functions may panic: a failed helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backend;
mod discovery;
mod ehr;
mod harness;
mod introspection;
mod negative_authorize;
mod negative_token;
mod notices;
mod refresh;
mod standalone;

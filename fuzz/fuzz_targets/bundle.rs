//! Bundle handling on arbitrary JSON bytes: batch/transaction authorization and rewrite,
//! and searchset/history verification under a patient scope. The property lives in
//! `fuzz/checks/bundle.rs` so the corpus replay test checks the same thing.
//!
//! The gateway's upstream-URL rewrite (`crates/gateway/src/forward/bundle.rs`) is not a
//! public entry point yet, so it is not exercised here.
#![no_main]

#[path = "../checks/bundle.rs"]
mod check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check::check_bundle_bytes(data) {
        panic!("{violation}");
    }
});

//! The byte-level response check on arbitrary bodies: the single pass against its
//! multi-pass reference, and both against the tree check. The property lives in
//! `fuzz/checks/verify_bytes.rs` so the corpus replay test checks the same thing.
#![no_main]

#[path = "../checks/verify_bytes.rs"]
mod check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check::check_verify_bytes(data) {
        panic!("{violation}");
    }
});

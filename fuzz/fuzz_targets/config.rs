//! The configuration loader on arbitrary text: YAML → validated config or errors with a
//! position, never a panic. The loader is compiled in from the binary crate's source (it
//! has no library target); property in `fuzz/checks/config.rs`.
#![no_main]

// Only `parse` is called; the rest of the module serves `fhirgate serve`.
#[allow(dead_code)]
#[path = "../../crates/fhirgate/src/config/mod.rs"]
mod config;

#[path = "../checks/config.rs"]
mod check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check::check_config_bytes(data) {
        panic!("{violation}");
    }
});

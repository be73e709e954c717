//! Request classification on arbitrary bytes: `method\npath\nquery\nform-body`.
//! Must never panic, and anything it accepts must be safe to forward unchanged.
#![no_main]

use fhirgate_fhir::fuzzing::{check_accepted, classify_input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(Ok(request)) = classify_input(data)
        && let Err(violation) = check_accepted(&request)
    {
        panic!("{violation}");
    }
});

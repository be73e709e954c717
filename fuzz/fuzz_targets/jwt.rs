//! JWT header and claims parsing on arbitrary bytes (fhirgate-tokens, sans-IO part).
//! Must never panic; anything it parses must be covered end to end by the signature input,
//! and any claims it accepts must be within the time and issuer rules.
#![no_main]

use fhirgate_tokens::fuzzing::check_token_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_token_bytes(data) {
        panic!("{violation}");
    }
});

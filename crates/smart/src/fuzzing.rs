//! Shared by the `fuzz/` targets and the corpus-replay test, so both hold the response
//! check to the same reference. Not part of the gateway's API.

use crate::decision::DenyReason;
use crate::verify::ResponseCheck;
use crate::verify_raw::RawVerdict;

/// [`crate::verify_response_bytes`] without its single pass: the multi-pass check every
/// verdict of the single pass must equal.
pub fn verify_response_bytes_multi_pass(
    check: &ResponseCheck,
    body: &[u8],
) -> Result<RawVerdict, DenyReason> {
    crate::verify_raw::verify_response_bytes_multi_pass(check, body)
}

//! Entry points shared by the `jwt` fuzz target, the corpus replay test and the property
//! tests: run the sans-IO parser and claim checks on arbitrary bytes and report any broken
//! invariant as an error string (the fuzz target turns it into a crash).

use crate::config::IssuerSettings;
use crate::jwt;

/// Issuer the fuzz harness accepts claims from.
pub const FUZZ_ISSUER: &str = "https://idp.example";
/// Audience the fuzz harness accepts.
pub const FUZZ_AUDIENCE: &str = "https://gw.example/fhir";
/// The fixed "now" of the harness (2023-11-14).
pub const FUZZ_NOW: u64 = 1_700_000_000;

/// Parse `data` as a token and check its claims; `Err` names a violated invariant.
pub fn check_token_bytes(data: &[u8]) -> Result<(), String> {
    let Ok(token) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let _ = jwt::shape(token);
    let Ok(parsed) = jwt::parse(token) else {
        return Ok(());
    };
    if token.len() > jwt::MAX_TOKEN_BYTES {
        return Err("accepted an oversized token".into());
    }
    let rebuilt = format!("{}.{}", parsed.signing_input, parsed.signature_b64);
    if rebuilt != token {
        return Err("signing input and signature do not cover the whole token".into());
    }
    if parsed.signature_b64.is_empty() {
        return Err("accepted an empty signature".into());
    }
    if parsed
        .header
        .kid
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > jwt::MAX_KID_BYTES)
    {
        return Err("accepted an out-of-range kid".into());
    }
    let settings = IssuerSettings::new(FUZZ_ISSUER, FUZZ_AUDIENCE);
    if let Ok(p) = jwt::check_claims(&parsed, &settings, FUZZ_NOW) {
        if p.issuer != FUZZ_ISSUER {
            return Err("principal names another issuer".into());
        }
        if p.expires_at.saturating_add(settings.clock_skew.as_secs()) < FUZZ_NOW {
            return Err("accepted an expired token".into());
        }
        if p.expires_at > FUZZ_NOW + settings.max_lifetime.as_secs() + settings.clock_skew.as_secs()
        {
            return Err("accepted a token beyond the lifetime cap".into());
        }
    }
    Ok(())
}

//! The property the `config` fuzz target checks: YAML text in, either a validated
//! configuration or errors that each say something and point inside the text. Never a
//! panic, whatever the bytes.
//!
//! The loader lives in the `fhirgate` binary crate, which has no library target; the fuzz
//! target compiles the same source files in with `#[path]` (see `fuzz_targets/config.rs`).
//! The corpus replay test runs the real binary's `check-config` on every seed instead.

use crate::config::{ConfigError, parse};

/// `Err` describes the first violated property; non-UTF-8 input passes (the loader reads
/// the file as UTF-8 and reports that before parsing).
pub fn check_config_bytes(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Err(errors) = parse(text) else {
        return Ok(());
    };
    if errors.is_empty() {
        return Err("refused without saying why".into());
    }
    // YAML also breaks lines at a lone CR, NEL, LS and PS; count every one of them.
    let lines = text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
        + 1;
    for ConfigError {
        line,
        column,
        key,
        message,
    } in &errors
    {
        if message.trim().is_empty() {
            return Err(format!("an error for {key:?} has no message"));
        }
        if line.is_some_and(|l| l == 0 || l > lines) {
            return Err(format!(
                "{key:?}: line {line:?} is outside a {lines}-line text"
            ));
        }
        if column.is_some_and(|c| c == 0) {
            return Err(format!("{key:?}: column 0 (positions are 1-based)"));
        }
    }
    Ok(())
}

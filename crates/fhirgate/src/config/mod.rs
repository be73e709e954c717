//! The configuration file: YAML read in two stages (DESIGN.md §6). `raw` mirrors the file with
//! unknown keys denied; `validate` turns it into typed values. Every error names the file,
//! line and column and says what was expected.
//!
//! Later sections (issuers, the embedded authorization server, the store, rate limits, cache,
//! audit, metrics) are added as new fields of [`raw::RawConfig`] and [`Config`].

mod locate;
mod raw;
#[cfg(test)]
mod reference;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use fhirgate_gateway::GatewayConfig;

/// Everything `fhirgate serve` runs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewayConfig,
}

/// One error, with its position when known.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key (`upstream.url`), empty for file-level errors.
    pub key: String,
    pub message: String,
}

/// All errors of one file.
#[derive(Debug)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match (e.line, e.column) {
                (Some(line), Some(col)) => write!(f, "{file}:{line}:{col}: ")?,
                (Some(line), None) => write!(f, "{file}:{line}: ")?,
                _ => write!(f, "{file}: ")?,
            }
            if !e.key.is_empty() {
                write!(f, "{}: ", e.key)?;
            }
            f.write_str(&e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: path.to_owned(),
        errors,
    };
    let source = std::fs::read_to_string(path).map_err(|err| {
        fail(vec![ConfigError {
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read the file: {err}"),
        }])
    })?;
    parse(&source).map_err(fail)
}

/// Validate configuration text.
pub fn parse(source: &str) -> Result<Config, Vec<ConfigError>> {
    // An empty file is an empty mapping, which then reports the required keys.
    let raw: raw::RawConfig = if source.trim().is_empty() {
        raw::RawConfig::default()
    } else {
        serde_yaml_ng::from_str(source).map_err(|err| vec![yaml_error(&err, source)])?
    };
    let gateway = validate::validate(&raw).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| {
                let path: Vec<&str> = p.key.split('.').collect();
                let position = locate::locate(source, &path);
                ConfigError {
                    line: position.map(|(l, _)| l),
                    column: position.map(|(_, c)| c),
                    key: p.key.to_owned(),
                    message: p.message,
                }
            })
            .collect::<Vec<_>>()
    })?;
    Ok(Config { gateway })
}

fn yaml_error(err: &serde_yaml_ng::Error, source: &str) -> ConfigError {
    let mut message = err.to_string();
    // The position is printed in front, in the usual file:line:col form.
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    // At the end of a text without a final line break the parser reports the line after
    // the last one, which an editor cannot jump to: point at the end of the text instead.
    let position = err.location().map(|l| {
        let end = end_of(source);
        if l.line() > end.0 {
            end
        } else {
            (l.line(), l.column())
        }
    });
    ConfigError {
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        key: String::new(),
        message,
    }
}

/// Line and column (1-based) just after the last character, counting the line breaks
/// YAML knows (CR LF as one).
fn end_of(source: &str) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                line += 1;
                column = 1;
            }
            _ => column += 1,
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests;

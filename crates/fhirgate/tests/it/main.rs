//! Smoke tests of the built `fhirgate` binary: `check-config` and `serve` with the example
//! configuration, on ephemeral ports.

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod check_config;
mod examples;
mod otel;
mod serve;
mod store;

use std::path::PathBuf;

pub const BIN: &str = env!("CARGO_BIN_EXE_fhirgate");

pub fn example_config() -> String {
    let path = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../../examples/fhirgate.yaml");
    std::fs::read_to_string(path).unwrap()
}

/// Write `text` to a temporary YAML file that lives as long as the returned guard.
pub fn config_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// Send SIGTERM, as container runtimes and Kubernetes do to stop a process.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

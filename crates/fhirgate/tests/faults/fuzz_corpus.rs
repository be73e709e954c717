//! Replays the committed seed corpora of the `bundle` and `config` fuzz targets as ordinary
//! tests: bundle seeds through the same property file the fuzzer compiles, config seeds
//! through the real binary's `check-config` (the loader lives in the binary crate).

use std::path::PathBuf;
use std::process::Command;

use crate::BIN;
use crate::bundle_check::check_bundle_bytes;

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../../fuzz/corpus")
    .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let data = std::fs::read(&f).unwrap();
            (f, data)
        })
        .collect()
}

#[test]
fn replay_bundle_corpus() {
    let seeds = corpus("bundle");
    assert!(seeds.len() >= 20, "only {} bundle seeds", seeds.len());
    for (file, data) in &seeds {
        if let Err(violation) = check_bundle_bytes(data) {
            panic!("{}: {violation}", file.display());
        }
    }
}

#[test]
fn replay_config_corpus_through_check_config() {
    let seeds = corpus("config");
    assert!(seeds.len() >= 20, "only {} config seeds", seeds.len());
    let (mut accepted, mut refused) = (0, 0);
    for (file, _) in &seeds {
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(file)
            // A seed naming a secret variable must not find one by accident.
            .env_clear()
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = file.display().to_string();
        match out.status.code() {
            Some(0) => accepted += 1,
            Some(code) => {
                // Refused: an ordinary exit (never a panic's 101) with a message naming the
                // file, and every message is a line of its own.
                assert_ne!(code, 101, "{name} panicked:\n{stderr}");
                assert!(!stderr.contains("panicked"), "{name}:\n{stderr}");
                assert!(stderr.contains(&name), "{name}: no file in\n{stderr}");
                refused += 1;
            }
            None => panic!("{name}: killed by a signal\n{stderr}"),
        }
    }
    // The seeds cover both sides; if either count is zero the corpus lost its meaning.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

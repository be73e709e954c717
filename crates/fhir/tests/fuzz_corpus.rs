//! Replays the committed fuzz seed corpus through `classify`, so every input the fuzzer
//! was seeded with (and every crash it ever found, once added) is a normal test.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use fhirgate_fhir::fuzzing::{check_accepted, classify_input};

fn corpus_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../../fuzz/corpus/classify")
}

#[test]
fn replay_classify_corpus() {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "seed corpus has only {} files",
        files.len()
    );
    let (mut accepted, mut rejected) = (0, 0);
    for file in &files {
        let data = std::fs::read(file).unwrap();
        match classify_input(&data) {
            Some(Ok(req)) => {
                accepted += 1;
                if let Err(e) = check_accepted(&req) {
                    panic!("{}: {e}", file.display());
                }
            }
            Some(Err(_)) | None => rejected += 1,
        }
    }
    // The seeds cover both sides; if either count is zero the corpus lost its meaning.
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

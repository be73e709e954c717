//! Replay the committed fuzz corpora (`fuzz/corpus/scopes`, `fuzz/corpus/references`,
//! `fuzz/corpus/verify_bytes`) as ordinary tests, so the seeds keep being checked on stable
//! Rust.

use std::path::PathBuf;

use fhirgate_fhir::references::{collect_references, parse_reference, patient_links};
use fhirgate_smart::scope::MAX_SCOPE_LEN;
use fhirgate_smart::{Grant, ScopeSet};

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../../fuzz/corpus")
    .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn scopes_corpus_parses_without_widening() {
    let seeds = corpus("scopes");
    assert!(seeds.len() >= 10);
    for seed in seeds {
        let text = String::from_utf8_lossy(&seed);
        let set = ScopeSet::parse(&text);
        // Every accepted scope round-trips to a scope that parses to the same grant.
        for r in &set.resources {
            let printed = r.to_string();
            let again = ScopeSet::parse(&printed);
            if printed.len() > MAX_SCOPE_LEN {
                // Percent-encoding pushed it over the cap: refused when read back, which
                // narrows the grant (fuzz/fuzz_targets/scopes.rs checks the same).
                assert!(again.resources.is_empty(), "{printed}");
                continue;
            }
            assert_eq!(
                again.resources.first().map(|x| x.permissions),
                Some(r.permissions)
            );
        }
        let _ = Grant::new(&text, Some("p1"), None);
    }
}

#[test]
fn references_corpus_is_handled() {
    let seeds = corpus("references");
    assert!(seeds.len() >= 10);
    for seed in seeds {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&seed) else {
            continue;
        };
        let links = patient_links(&value, &["https://gw.example/fhir"]);
        assert!(links.primary.len() + links.unresolved_primary <= 10_000);
        for r in collect_references(&value) {
            let _ = parse_reference(&r, &["https://gw.example/fhir"]);
        }
    }
}

/// The `verify_bytes` property, the same file the fuzz target compiles.
#[path = "../../../../fuzz/checks/verify_bytes.rs"]
mod verify_bytes_check;

#[test]
fn verify_bytes_corpus_gets_the_reference_verdicts() {
    let seeds = corpus("verify_bytes");
    assert!(seeds.len() >= 20);
    for seed in seeds {
        if let Err(violation) = verify_bytes_check::check_verify_bytes(&seed) {
            panic!("{violation}: {}", String::from_utf8_lossy(&seed));
        }
    }
}

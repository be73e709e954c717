//! Replays the committed `jwt` fuzz corpus as a stable test (`fuzz/corpus/jwt/`).

use fhirgate_tokens::fuzzing::check_token_bytes;

#[test]
fn jwt_fuzz_corpus_replays_cleanly() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../../fuzz/corpus/jwt");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let data = std::fs::read(&path)?;
        if let Err(v) = check_token_bytes(&data) {
            anyhow::bail!("{}: {v}", path.display());
        }
        n += 1;
    }
    assert!(n >= 30, "corpus has {n} entries");
    Ok(())
}

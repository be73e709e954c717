//! The data folder: what lives in it, `--reset`, and writing secrets owner-only.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::manifest;

pub const FHIR_STORE: &str = "store.sqlite";
pub const AUTH_STORE: &str = "auth.sqlite";

/// Files whose presence marks a folder as ours, so `--reset` never wipes anything else.
const MARKERS: [&str; 3] = [manifest::FILE_NAME, FHIR_STORE, AUTH_STORE];

pub fn fhir_store(dir: &Path) -> PathBuf {
    dir.join(FHIR_STORE)
}

pub fn auth_store(dir: &Path) -> PathBuf {
    dir.join(AUTH_STORE)
}

/// Deletes the data folder, but only one that fhirgate made (or an empty one). Returns
/// whether there was one.
pub fn reset(dir: &Path) -> anyhow::Result<bool> {
    if !dir.exists() {
        return Ok(false);
    }
    if !dir.is_dir() {
        bail!("--reset: {} is not a directory", dir.display());
    }
    let ours = MARKERS.iter().any(|m| dir.join(m).exists());
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .next()
        .is_none();
    if !ours && !empty {
        bail!(
            "--reset refused: {} does not look like a fhirgate data folder (none of {} in it); \
             pick another --data-dir or delete it yourself",
            dir.display(),
            MARKERS.join(", ")
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("deleting {}", dir.display()))?;
    Ok(true)
}

/// Creates the folder, owner-only on Unix: it holds keys, passwords and patient data.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file, and
/// with mode 0600 from the start, so the secret is never readable by others in between.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_refuses_a_folder_that_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("thesis.tex"), "precious").unwrap();
        let err = reset(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("does not look like a fhirgate data folder"),
            "{err}"
        );
        assert!(dir.path().join("thesis.tex").exists());
    }

    #[test]
    fn reset_deletes_a_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join(manifest::FILE_NAME), "{}").unwrap();
        std::fs::write(data.join("other"), "x").unwrap();
        assert!(reset(&data).unwrap());
        assert!(!data.exists());
        assert!(!reset(&data).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_private(&path, b"secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    }
}

//! The backend-services client's key pair, kept in the data folder: the private key as a
//! PKCS#8 PEM (owner-only) for scripts to sign `private_key_jwt` assertions with, and the
//! public key set that is registered inline with the client.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fhirgate_authserver::jws::RsaSigner;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::files::write_private;

pub const PRIVATE_KEY_FILE: &str = "backend-private-key.pem";
pub const PUBLIC_JWKS_FILE: &str = "backend-jwks.json";
/// SMART Backend Services asks servers to support RS384 and ES384.
pub const ALG: &str = "RS384";

const PEM_LABEL: &str = "PRIVATE KEY";

#[derive(Debug, Clone)]
pub struct BackendKey {
    pub kid: String,
    pub jwks: Value,
    pub private_key_pem: PathBuf,
    pub public_jwks: PathBuf,
}

/// Loads the key pair from the data folder, generating and writing it on first use.
pub fn load_or_create(dir: &Path) -> anyhow::Result<BackendKey> {
    let private_key_pem = dir.join(PRIVATE_KEY_FILE);
    let public_jwks = dir.join(PUBLIC_JWKS_FILE);
    let der = if private_key_pem.exists() {
        let text = std::fs::read_to_string(&private_key_pem)
            .with_context(|| format!("reading {}", private_key_pem.display()))?;
        pem_decode(&text)
            .ok_or_else(|| anyhow!("{} is not a PEM private key", private_key_pem.display()))?
    } else {
        let (_, der) =
            RsaSigner::generate(String::new()).context("generating the backend client key")?;
        write_private(&private_key_pem, pem_encode(&der).as_bytes())
            .with_context(|| format!("writing {}", private_key_pem.display()))?;
        der
    };
    let signer = RsaSigner::from_pkcs8(String::new(), &der)
        .with_context(|| format!("loading {}", private_key_pem.display()))?;
    let public = signer.public_jwk();
    let (n, e) = (
        public["n"].as_str().unwrap_or_default(),
        public["e"].as_str().unwrap_or_default(),
    );
    let kid = thumbprint(n, e);
    let jwks = json!({"keys": [{
        "kty": "RSA", "kid": kid, "use": "sig", "alg": ALG, "n": n, "e": e,
    }]});
    std::fs::write(&public_jwks, serde_json::to_string_pretty(&jwks)?)
        .with_context(|| format!("writing {}", public_jwks.display()))?;
    Ok(BackendKey {
        kid,
        jwks,
        private_key_pem,
        public_jwks,
    })
}

/// RFC 7638 JWK thumbprint: a kid that follows from the key itself, so it needs no storage
/// and changes exactly when the key does.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    out
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let body = text.split_once(&begin)?.1.split_once(&end)?.0;
    let b64: String = body.split_whitespace().collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_survives_a_restart_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(first.kid, second.kid);
        assert_eq!(first.jwks, second.jwks);
        assert_eq!(first.jwks["keys"][0]["alg"], "RS384");
        let pem = std::fs::read_to_string(&first.private_key_pem).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}

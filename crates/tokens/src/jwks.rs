//! A parsed JWK Set and the rule for choosing one key for a token.
//!
//! `kid` and key type together must pick exactly one key, and that key must allow the
//! token's `alg` (RFC 8725 §3.1). Symmetric (`oct`) keys in a JWKS are ignored: an HMAC
//! secret is only ever the one configured for the issuer.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::config::parse_alg;
use crate::json::parse_object;

/// Upper bound on keys kept from one JWKS; real sets have a handful.
const MAX_KEYS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

#[derive(Clone)]
struct KeyEntry {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<Algorithm>,
    key: Arc<DecodingKey>,
}

/// A set of verification keys from one JWKS document.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<KeyEntry>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self
            .keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.kind))
            .collect();
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

/// Result of looking a token's key up.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Exactly one usable key.
    Found(Arc<DecodingKey>),
    /// No key has this `kid` (a refetch may help).
    UnknownKid,
    /// Keys with this `kid` exist but none (or more than one) fits the algorithm.
    Mismatch,
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not a JSON object with a `keys` array")]
    Shape,
    #[error("JWKS has no usable signature keys")]
    NoKeys,
}

impl KeySet {
    /// Parse a JWKS document; keys we cannot use are skipped, not fatal.
    pub fn parse(bytes: &[u8]) -> Result<Self, JwksError> {
        let doc = parse_object(bytes).map_err(|_| JwksError::Shape)?;
        let Some(Value::Array(items)) = doc.get("keys") else {
            return Err(JwksError::Shape);
        };
        let keys: Vec<KeyEntry> = items
            .iter()
            .filter_map(|v| v.as_object().and_then(entry))
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Choose the key for a token with this `kid` and `alg`.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection {
        let fits = |k: &&KeyEntry| k.kind.fits(alg) && k.alg.is_none_or(|a| a == alg);
        let mut found = None;
        let mut count = 0usize;
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Selection::UnknownKid;
                }
                for k in named.filter(fits) {
                    count += 1;
                    found = Some(k.key.clone());
                }
            }
            None => {
                for k in self.keys.iter().filter(fits) {
                    count += 1;
                    found = Some(k.key.clone());
                }
            }
        }
        match (count, found) {
            (1, Some(k)) => Selection::Found(k),
            _ => Selection::Mismatch,
        }
    }
}

fn string<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    m.get(name).and_then(Value::as_str)
}

fn entry(m: &Map<String, Value>) -> Option<KeyEntry> {
    // A key marked for encryption, or whose key_ops exclude verify, never verifies tokens.
    match m.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return None,
    }
    match m.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|o| o.as_str() == Some("verify")) => {}
        Some(_) => return None,
    }
    let alg = match m.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(parse_alg(a)?),
        Some(_) => return None,
    };
    let kid = match m.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return None,
    };
    let (kind, key) = match string(m, "kty")? {
        "RSA" => (
            KeyKind::Rsa,
            DecodingKey::from_rsa_components(string(m, "n")?, string(m, "e")?).ok()?,
        ),
        "EC" => {
            let kind = match string(m, "crv")? {
                "P-256" => KeyKind::P256,
                "P-384" => KeyKind::P384,
                _ => return None,
            };
            (
                kind,
                DecodingKey::from_ec_components(string(m, "x")?, string(m, "y")?).ok()?,
            )
        }
        "OKP" if string(m, "crv")? == "Ed25519" => (
            KeyKind::Ed25519,
            DecodingKey::from_ed_components(string(m, "x")?).ok()?,
        ),
        _ => return None,
    };
    if alg.is_some_and(|a| !kind.fits(a)) {
        return None;
    }
    Some(KeyEntry {
        kid,
        kind,
        alg,
        key: Arc::new(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = r#"{"kty":"RSA","kid":"k1","alg":"RS256","n":"AQAB","e":"AQAB"}"#;
    const EC: &str = r#"{"kty":"EC","kid":"k2","crv":"P-256","x":"AQAB","y":"AQAB"}"#;

    fn set(keys: &[&str]) -> Result<KeySet, JwksError> {
        KeySet::parse(format!("{{\"keys\":[{}]}}", keys.join(",")).as_bytes())
    }

    #[test]
    fn kid_and_kty_pick_one_key() {
        let s = set(&[RSA, EC]).unwrap();
        assert!(matches!(
            s.select(Some("k1"), Algorithm::RS256),
            Selection::Found(_)
        ));
        assert!(matches!(
            s.select(Some("k2"), Algorithm::ES256),
            Selection::Found(_)
        ));
        assert!(matches!(
            s.select(Some("k2"), Algorithm::RS256),
            Selection::Mismatch
        ));
        assert!(matches!(
            s.select(Some("k1"), Algorithm::PS256),
            Selection::Mismatch
        ));
        assert!(matches!(
            s.select(Some("k1"), Algorithm::HS256),
            Selection::Mismatch
        ));
        assert!(matches!(
            s.select(Some("zz"), Algorithm::RS256),
            Selection::UnknownKid
        ));
        assert!(matches!(
            s.select(None, Algorithm::ES256),
            Selection::Found(_)
        ));
        assert!(matches!(
            s.select(None, Algorithm::ES384),
            Selection::Mismatch
        ));
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let enc = r#"{"kty":"RSA","kid":"e","use":"enc","n":"AQAB","e":"AQAB"}"#;
        let oct = r#"{"kty":"oct","kid":"h","k":"c2VjcmV0"}"#;
        let wrong_alg =
            r#"{"kty":"EC","kid":"w","alg":"RS256","crv":"P-256","x":"AQAB","y":"AQAB"}"#;
        let s = set(&[RSA, enc, oct, wrong_alg]).unwrap();
        assert_eq!(s.len(), 1);
        assert!(matches!(
            s.select(Some("e"), Algorithm::RS256),
            Selection::UnknownKid
        ));
        assert!(matches!(
            s.select(Some("h"), Algorithm::HS256),
            Selection::UnknownKid
        ));
        assert_eq!(set(&[enc, oct]).err(), Some(JwksError::NoKeys));
        assert_eq!(KeySet::parse(b"[]").err(), Some(JwksError::Shape));
        assert_eq!(
            KeySet::parse(br#"{"keys":{}}"#).err(),
            Some(JwksError::Shape)
        );
    }
}

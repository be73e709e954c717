//! Small helpers: random handles, hashing, base64url, constant-time comparison.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A 256-bit random handle, base64url encoded (43 characters).
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A shorter random id (128 bits) for rows that are not secrets by themselves.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(data: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(data.as_bytes()).ok()
}

/// Constant-time equality; lengths are not secret here (hashes or fixed-size handles).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// RFC 7636 §4.1 `unreserved` characters.
pub fn is_pkce_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// The origin (`scheme://host[:port]`) of an absolute URL, as browsers send it in `Origin`.
pub fn origin_of(u: &str) -> Option<String> {
    let parsed = url::Url::parse(u).ok()?;
    match parsed.origin() {
        url::Origin::Tuple(..) => Some(parsed.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// Form or query parameters with duplicates detected (RFC 6749 §3.1: parameters MUST NOT
/// be included more than once).
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(raw: &[u8]) -> Self {
        Self {
            pairs: url::form_urlencoded::parse(raw).into_owned().collect(),
        }
    }
    /// The single value of `name`; `Err` names the parameter when it is repeated.
    pub fn one(&self, name: &str) -> Result<Option<&str>, String> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(format!("parameter `{name}` is repeated"));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }
    /// The value, treating an empty string as absent.
    pub fn get(&self, name: &str) -> Result<Option<&str>, String> {
        Ok(self.one(name)?.filter(|v| !v.is_empty()))
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameter_is_reported() {
        let p = Params::parse(b"a=1&b=2&a=3");
        assert!(p.one("a").is_err());
        assert_eq!(p.one("b"), Ok(Some("2")));
        assert_eq!(p.one("c"), Ok(None));
        assert_eq!(p.all("a"), vec!["1", "3"]);
    }

    #[test]
    fn origin_is_scheme_host_port() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080/auth/x").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin_of("https://a.example/").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(origin_of("not a url"), None);
    }
}

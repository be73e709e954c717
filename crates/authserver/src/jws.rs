//! Compact JWS signing and verification on aws-lc-rs, for our own tokens (RS256) and
//! for client assertions (RS384, ES384, and their 256-bit siblings). Kept small and
//! explicit so the accepted algorithms are exactly the ones listed here.

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use serde_json::{Map, Value};

use crate::error::{AuthError, Result};
use crate::util::{b64url, b64url_decode};

/// Algorithms we verify on client assertions. `none` and HMAC are absent on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlg {
    Rs256,
    Rs384,
    Es256,
    Es384,
}

impl JwsAlg {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Self::Rs256),
            "RS384" => Some(Self::Rs384),
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            _ => None,
        }
    }
    pub fn kty(self) -> &'static str {
        match self {
            Self::Rs256 | Self::Rs384 => "RSA",
            Self::Es256 | Self::Es384 => "EC",
        }
    }
    fn crv(self) -> Option<&'static str> {
        match self {
            Self::Es256 => Some("P-256"),
            Self::Es384 => Some("P-384"),
            _ => None,
        }
    }
}

/// An RSA signing key of ours, loaded once (parsing per signature would be slow).
pub struct RsaSigner {
    pub kid: String,
    pair: RsaKeyPair,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RsaSigner {
    /// A fresh 2048-bit key; returns the signer and its PKCS#8 DER for storage.
    pub fn generate(kid: String) -> Result<(Self, Vec<u8>)> {
        use aws_lc_rs::encoding::AsDer;
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| AuthError::Crypto("RSA key generation failed".into()))?;
        let der = pair
            .as_der()
            .map_err(|_| AuthError::Crypto("RSA key encoding failed".into()))?;
        let bytes = der.as_ref().to_vec();
        Ok((Self { kid, pair }, bytes))
    }

    pub fn from_pkcs8(kid: String, der: &[u8]) -> Result<Self> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| AuthError::Crypto(format!("stored key {kid} rejected: {e}")))?;
        Ok(Self { kid, pair })
    }

    /// The public half as a JWK (RFC 7517), bare `n`/`e` as SMART asks.
    pub fn public_jwk(&self) -> Value {
        let pk = self.pair.public_key();
        serde_json::json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": b64url(pk.modulus().big_endian_without_leading_zero()),
            "e": b64url(pk.exponent().big_endian_without_leading_zero()),
        })
    }

    /// Signs `claims` as an RS256 JWS with the given `typ` header.
    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String> {
        let header = serde_json::json!({"alg": "RS256", "typ": typ, "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| AuthError::Crypto("signing failed".into()))?;
        Ok(format!("{signing_input}.{}", b64url(&sig)))
    }
}

/// The three parts of a compact JWS, decoded but NOT verified.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> Unverified<'a> {
    pub fn parse(token: &'a str) -> Option<Self> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header = serde_json::from_slice::<Value>(&b64url_decode(h)?).ok()?;
        let claims = serde_json::from_slice::<Value>(&b64url_decode(c)?).ok()?;
        let signing_input = token.get(..h.len() + 1 + c.len())?;
        Some(Self {
            header: header.as_object()?.clone(),
            claims: claims.as_object()?.clone(),
            signing_input,
            signature: b64url_decode(s)?,
        })
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Verifies the signature with a JWK whose `kty` (and `crv`) must fit `alg`.
    pub fn verify(&self, alg: JwsAlg, jwk: &Value) -> bool {
        if jwk.get("kty").and_then(Value::as_str) != Some(alg.kty()) {
            return false;
        }
        let field = |n: &str| jwk.get(n).and_then(Value::as_str).and_then(b64url_decode);
        let msg = self.signing_input.as_bytes();
        match alg {
            JwsAlg::Rs256 | JwsAlg::Rs384 => {
                let (Some(n), Some(e)) = (field("n"), field("e")) else {
                    return false;
                };
                let params: &signature::RsaParameters = if alg == JwsAlg::Rs256 {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA384
                };
                signature::RsaPublicKeyComponents { n: &n, e: &e }
                    .verify(params, msg, &self.signature)
                    .is_ok()
            }
            JwsAlg::Es256 | JwsAlg::Es384 => {
                if jwk.get("crv").and_then(Value::as_str) != alg.crv() {
                    return false;
                }
                let (Some(x), Some(y)) = (field("x"), field("y")) else {
                    return false;
                };
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4u8);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let params = if alg == JwsAlg::Es256 {
                    &signature::ECDSA_P256_SHA256_FIXED
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED
                };
                signature::UnparsedPublicKey::new(params, &point)
                    .verify(msg, &self.signature)
                    .is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_round_trips_and_tampering_fails() {
        let (signer, der) = RsaSigner::generate("k1".into()).unwrap();
        let again = RsaSigner::from_pkcs8("k1".into(), &der).unwrap();
        let jwt = again
            .sign("at+jwt", &serde_json::json!({"sub": "alice"}))
            .unwrap();
        let parsed = Unverified::parse(&jwt).unwrap();
        assert_eq!(parsed.header_str("typ"), Some("at+jwt"));
        assert_eq!(parsed.header_str("kid"), Some("k1"));
        assert!(parsed.verify(JwsAlg::Rs256, &signer.public_jwk()));
        // Same key, wrong algorithm family: refused.
        assert!(!parsed.verify(JwsAlg::Es256, &signer.public_jwk()));
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = b64url(br#"{"sub":"mallory"}"#);
        parts[1] = &forged;
        let forged_jwt = parts.join(".");
        let parsed = Unverified::parse(&forged_jwt).unwrap();
        assert!(!parsed.verify(JwsAlg::Rs256, &signer.public_jwk()));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        assert!(Unverified::parse("a.b").is_none());
        assert!(Unverified::parse("a.b.c.d").is_none());
        assert!(Unverified::parse("!!.??.xx").is_none());
    }
}

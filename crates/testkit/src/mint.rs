//! Token minting for tests: well-formed tokens and every malformed shape the verifier must
//! refuse (security.md §1): `alg:none`, HS256 keyed with an RSA public key, duplicate
//! members, `crit`, `jku`/`jwk` headers, extra segments, wrong-typed claims, ...
//!
//! Header and payload can be given as raw JSON text, so duplicates and odd spellings
//! survive exactly as written.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

/// base64url without padding, as JOSE uses it.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch by the host clock.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Clone)]
enum Material {
    Rsa(Arc<RsaKeyPair>),
    P256(Arc<EcdsaKeyPair>),
    P384(Arc<EcdsaKeyPair>),
    Ed(Arc<Ed25519KeyPair>),
}

/// A signing key with a `kid`, and how it is published in the JWKS.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    material: Material,
    /// `alg` member of the published JWK (`None` = omitted).
    pub jwk_alg: Option<String>,
    /// `use` member of the published JWK (`None` = omitted).
    pub jwk_use: Option<String>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({})", self.kid)
    }
}

impl TestKey {
    /// A fresh RSA-2048 key, published with `alg: RS256`.
    pub fn rsa(kid: &str) -> anyhow::Result<Self> {
        let k = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow!("RSA keygen"))?;
        Ok(Self::with(kid, Material::Rsa(Arc::new(k)), Some("RS256")))
    }

    /// A fresh P-256 key, published with `alg: ES256`.
    pub fn ec_p256(kid: &str) -> anyhow::Result<Self> {
        let k = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow!("EC keygen"))?;
        Ok(Self::with(kid, Material::P256(Arc::new(k)), Some("ES256")))
    }

    /// A fresh P-384 key, published with `alg: ES384`.
    pub fn ec_p384(kid: &str) -> anyhow::Result<Self> {
        let k = EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING)
            .map_err(|_| anyhow!("EC keygen"))?;
        Ok(Self::with(kid, Material::P384(Arc::new(k)), Some("ES384")))
    }

    /// A fresh Ed25519 key, published with `alg: EdDSA`.
    pub fn ed25519(kid: &str) -> anyhow::Result<Self> {
        let k = Ed25519KeyPair::generate().map_err(|_| anyhow!("Ed25519 keygen"))?;
        Ok(Self::with(kid, Material::Ed(Arc::new(k)), Some("EdDSA")))
    }

    fn with(kid: &str, material: Material, alg: Option<&str>) -> Self {
        Self {
            kid: kid.to_owned(),
            material,
            jwk_alg: alg.map(str::to_owned),
            jwk_use: Some("sig".into()),
        }
    }

    /// The same key under another `kid` or publication.
    pub fn renamed(&self, kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            ..self.clone()
        }
    }

    /// The public JWK as the issuer publishes it.
    pub fn jwk(&self) -> Value {
        let mut m = Map::new();
        m.insert("kid".into(), json!(self.kid));
        match &self.material {
            Material::Rsa(k) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                m.insert("kty".into(), json!("RSA"));
                m.insert("n".into(), json!(b64url(&c.n)));
                m.insert("e".into(), json!(b64url(&c.e)));
            }
            Material::P256(k) | Material::P384(k) => {
                let point = k.public_key().as_ref();
                let coord = (point.len().saturating_sub(1)) / 2;
                let crv = if matches!(self.material, Material::P256(_)) {
                    "P-256"
                } else {
                    "P-384"
                };
                m.insert("kty".into(), json!("EC"));
                m.insert("crv".into(), json!(crv));
                m.insert(
                    "x".into(),
                    json!(b64url(point.get(1..1 + coord).unwrap_or_default())),
                );
                m.insert(
                    "y".into(),
                    json!(b64url(point.get(1 + coord..).unwrap_or_default())),
                );
            }
            Material::Ed(k) => {
                m.insert("kty".into(), json!("OKP"));
                m.insert("crv".into(), json!("Ed25519"));
                m.insert("x".into(), json!(b64url(k.public_key().as_ref())));
            }
        }
        if let Some(a) = &self.jwk_alg {
            m.insert("alg".into(), json!(a));
        }
        if let Some(u) = &self.jwk_use {
            m.insert("use".into(), json!(u));
        }
        Value::Object(m)
    }

    /// Sign `msg` as `alg` would; fails when the key cannot do that algorithm.
    pub fn sign(&self, alg: &str, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match (&self.material, alg) {
            (Material::Rsa(k), _) => {
                let enc: &'static dyn sig::RsaEncoding = match alg {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    "PS512" => &sig::RSA_PSS_SHA512,
                    _ => bail!("RSA key cannot sign {alg}"),
                };
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(enc, &rng, msg, &mut out)
                    .map_err(|_| anyhow!("RSA sign"))?;
                Ok(out)
            }
            (Material::P256(k), "ES256") | (Material::P384(k), "ES384") => Ok(k
                .sign(&rng, msg)
                .map_err(|_| anyhow!("EC sign"))?
                .as_ref()
                .to_vec()),
            (Material::Ed(k), "EdDSA") => Ok(k.sign(msg).as_ref().to_vec()),
            _ => bail!("key {} cannot sign {alg}", self.kid),
        }
    }

    /// The encodings of an RSA public key an HS256 key-confusion attacker would try as the
    /// HMAC secret: PKCS#1 DER, SPKI DER, PKCS#1 PEM, SPKI PEM, and the raw JWK `n`.
    pub fn rsa_public_key_forms(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let Material::Rsa(k) = &self.material else {
            bail!("not an RSA key")
        };
        let pkcs1 = k.public_key().as_ref().to_vec();
        let spki = k
            .public_key()
            .as_der()
            .map_err(|_| anyhow!("SPKI"))?
            .as_ref()
            .to_vec();
        let n = PublicKeyComponents::<Vec<u8>>::from(k.public_key()).n;
        Ok(vec![
            pkcs1.clone(),
            spki.clone(),
            pem("RSA PUBLIC KEY", &pkcs1).into_bytes(),
            pem("PUBLIC KEY", &spki).into_bytes(),
            n,
        ])
    }

    /// PKCS#8 PEM of the private key (for `private_key_jwt` client configs).
    pub fn private_pkcs8_pem(&self) -> anyhow::Result<String> {
        let der = match &self.material {
            Material::Rsa(k) => k.as_der().map_err(|_| anyhow!("pkcs8"))?.as_ref().to_vec(),
            Material::Ed(k) => AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(k.as_ref())
                .map_err(|_| anyhow!("pkcs8"))?
                .as_ref()
                .to_vec(),
            Material::P256(k) | Material::P384(k) => k
                .to_pkcs8v1()
                .map_err(|_| anyhow!("pkcs8"))?
                .as_ref()
                .to_vec(),
        };
        Ok(pem("PRIVATE KEY", &der))
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[derive(Clone, Debug)]
enum Signing {
    Key(TestKey),
    Hmac(Vec<u8>),
    Empty,
    Raw(Vec<u8>),
}

/// Builds one token. Start from [`JwtBuilder::new`] or `TestIssuer::token()`.
#[derive(Clone, Debug)]
pub struct JwtBuilder {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    raw_header: Option<String>,
    raw_claims: Option<String>,
    signing: Signing,
    extra_segments: usize,
}

impl JwtBuilder {
    /// Header `{"alg": alg, "kid": key.kid}`, no claims, signed by `key`.
    pub fn new(key: &TestKey, alg: &str) -> Self {
        let mut header = Map::new();
        header.insert("alg".into(), json!(alg));
        header.insert("kid".into(), json!(key.kid));
        Self {
            header,
            claims: Map::new(),
            raw_header: None,
            raw_claims: None,
            signing: Signing::Key(key.clone()),
            extra_segments: 0,
        }
    }

    /// Set a header member.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.into(), value.into());
        self
    }

    /// Remove a header member.
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// Set a claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Remove a claim.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Use this exact header JSON text (duplicates survive).
    pub fn raw_header(mut self, json: &str) -> Self {
        self.raw_header = Some(json.to_owned());
        self
    }

    /// Use this exact payload JSON text (duplicates survive).
    pub fn raw_claims(mut self, json: &str) -> Self {
        self.raw_claims = Some(json.to_owned());
        self
    }

    /// Sign with HMAC-SHA256/384/512 (per the header `alg`) using `secret`, e.g. the RSA
    /// public key bytes for a key-confusion attack.
    pub fn hmac_secret(mut self, secret: &[u8]) -> Self {
        self.signing = Signing::Hmac(secret.to_vec());
        self
    }

    /// Sign with another key (header unchanged).
    pub fn signed_by(mut self, key: &TestKey) -> Self {
        self.signing = Signing::Key(key.clone());
        self
    }

    /// Leave the signature segment empty (`h.p.`).
    pub fn unsigned(mut self) -> Self {
        self.signing = Signing::Empty;
        self
    }

    /// Use these bytes as the signature.
    pub fn raw_signature(mut self, sig: Vec<u8>) -> Self {
        self.signing = Signing::Raw(sig);
        self
    }

    /// Append `n` more `.`-separated segments after the signature.
    pub fn extra_segments(mut self, n: usize) -> Self {
        self.extra_segments = n;
        self
    }

    /// The header `alg` (what signing uses).
    fn alg(&self) -> String {
        let from_raw = self
            .raw_header
            .as_deref()
            .and_then(|h| serde_json::from_str::<Value>(h).ok())
            .and_then(|v| v.get("alg").and_then(Value::as_str).map(str::to_owned));
        from_raw
            .or_else(|| {
                self.header
                    .get("alg")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }

    /// The compact serialisation.
    pub fn build(&self) -> anyhow::Result<String> {
        let h = match &self.raw_header {
            Some(r) => r.clone(),
            None => serde_json::to_string(&self.header)?,
        };
        let p = match &self.raw_claims {
            Some(r) => r.clone(),
            None => serde_json::to_string(&self.claims)?,
        };
        let input = format!("{}.{}", b64url(h), b64url(p));
        let alg = self.alg();
        let sig = match &self.signing {
            Signing::Key(k) => {
                // Keys sign with their own algorithm when the header names one they cannot do
                // (e.g. `alg: none` or RS256 on an EC key), so the token is otherwise genuine.
                let own = k.jwk_alg.clone().unwrap_or_else(|| "RS256".into());
                match k.sign(&alg, input.as_bytes()) {
                    Ok(s) => s,
                    Err(_) => k.sign(&own, input.as_bytes()).context("signing")?,
                }
            }
            Signing::Hmac(secret) => hmac(&alg, secret, input.as_bytes()),
            Signing::Empty => Vec::new(),
            Signing::Raw(s) => s.clone(),
        };
        let mut out = format!("{input}.{}", b64url(sig));
        for i in 0..self.extra_segments {
            out.push_str(&format!(".e{i}"));
        }
        Ok(out)
    }
}

fn hmac(alg: &str, secret: &[u8], msg: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac;
    let a = match alg {
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    hmac::sign(&hmac::Key::new(a, secret), msg)
        .as_ref()
        .to_vec()
}

/// Flip one bit of the signature of a compact token (J13).
pub fn flip_signature_bit(token: &str) -> anyhow::Result<String> {
    let (input, sig) = token.rsplit_once('.').context("not a JWS")?;
    let mut bytes = URL_SAFE_NO_PAD.decode(sig)?;
    let first = bytes.first_mut().context("empty signature")?;
    *first ^= 1;
    Ok(format!("{input}.{}", b64url(bytes)))
}

/// Replace the signature of `token` with the one from `other` (J13).
pub fn swap_signature(token: &str, other: &str) -> anyhow::Result<String> {
    let (input, _) = token.rsplit_once('.').context("not a JWS")?;
    let (_, sig) = other.rsplit_once('.').context("not a JWS")?;
    Ok(format!("{input}.{sig}"))
}

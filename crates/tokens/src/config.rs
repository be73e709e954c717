//! Issuer configuration: the raw YAML shape (`IssuerConfig`, unknown keys refused) and the
//! validated, typed settings (`IssuerSettings`) the verifier runs on.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Deserialize;
use url::Url;

/// One trusted token issuer as written in the config file (`tokens.issuers[]`).
///
/// ```yaml
/// - issuer: https://login.example.org/oauth2/default   # exact `iss` string
///   audiences: [https://fhir.example.org/fhir]          # default: the public FHIR base
///   algorithms: [RS256, ES256]
///   clock_skew: 60s
///   max_token_lifetime: 24h
///   required_typ: at+jwt
///   claims: { scope: [scp], client_id: [cid] }          # Okta
///   introspection:
///     endpoint: https://login.example.org/oauth2/default/v1/introspect
///     client_id: fhirgate
///     client_secret_env: FHIRGATE_INTROSPECTION_SECRET
/// ```
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier; compared byte-for-byte with `iss` and the discovery document.
    pub issuer: String,
    /// Accepted `aud` values; default: the gateway's public FHIR base URL.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `alg` values; default: RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Allowed clock difference for `exp`/`nbf`/`iat`, e.g. `"60s"` (default).
    pub clock_skew: Option<String>,
    /// Longest accepted token lifetime, e.g. `"24h"` (default).
    pub max_token_lifetime: Option<String>,
    /// Required JOSE `typ`, e.g. `at+jwt` (RFC 9068); unset = any.
    pub required_typ: Option<String>,
    /// Where SMART claims live in this issuer's tokens.
    #[serde(default)]
    pub claims: ClaimMappingConfig,
    /// Skip discovery and use this JWKS URL.
    pub jwks_uri: Option<String>,
    /// Name of an environment variable holding an HS256/384/512 shared secret.
    pub hs_secret_env: Option<String>,
    /// RFC 7662 introspection for opaque tokens.
    pub introspection: Option<IntrospectionConfig>,
    /// Upper bound on how long a verified token is remembered (default `"5m"`).
    pub token_cache_ttl: Option<String>,
    /// Timeout for discovery/JWKS/introspection calls (default `"5s"`).
    pub fetch_timeout: Option<String>,
    /// Largest discovery/JWKS/introspection response accepted, e.g. `"1MiB"` (default).
    pub fetch_max_size: Option<String>,
    /// Shortest JWKS cache lifetime whatever `Cache-Control` says (default `"1m"`).
    pub jwks_refresh_min: Option<String>,
    /// Longest JWKS cache lifetime whatever `Cache-Control` says (default `"1h"`).
    pub jwks_refresh_max: Option<String>,
    /// At most one JWKS refetch per this interval for unknown `kid`s (default `"10s"`).
    pub jwks_refetch_interval: Option<String>,
    /// Allow `http://` URLs for a non-loopback issuer (never in production).
    #[serde(default)]
    pub allow_http: bool,
}

/// Claim names, so Okta (`scp`, `cid`) and Azure (`scp`, `azp`) work without code changes.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClaimMappingConfig {
    /// Claims tried in order for scopes; default `["scope", "scp"]`.
    pub scope: Option<Vec<String>>,
    /// Default `patient`.
    pub patient: Option<String>,
    /// Default `encounter`.
    pub encounter: Option<String>,
    /// Default `fhirUser`.
    pub fhir_user: Option<String>,
    /// Claims tried in order for the client id; default `["client_id", "azp", "cid"]`.
    pub client_id: Option<Vec<String>>,
}

/// RFC 7662 endpoint and how the gateway authenticates to it.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint URL.
    pub endpoint: String,
    /// The gateway's client id at the issuer.
    pub client_id: String,
    /// `client_secret_basic`: environment variable holding the secret.
    pub client_secret_env: Option<String>,
    /// `private_key_jwt`: PEM file with the gateway's private key.
    pub private_key_file: Option<PathBuf>,
    /// `private_key_jwt` algorithm (default RS384, as SMART backend services suggest).
    pub private_key_alg: Option<String>,
    /// `kid` to put in the client assertion header.
    pub private_key_kid: Option<String>,
    /// How long an `active:true` answer is reused, capped by the token's `exp` (default `"60s"`).
    pub cache_ttl: Option<String>,
    /// How long an `active:false` answer is reused (default `"10s"`).
    pub negative_cache_ttl: Option<String>,
}

/// A configuration error, naming the issuer and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("issuer `{issuer}`: `{field}`: {message}")]
pub struct ConfigError {
    /// The issuer entry.
    pub issuer: String,
    /// The offending key.
    pub field: &'static str,
    /// What was expected.
    pub message: String,
}

/// Validated settings for one issuer.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// Exact issuer string.
    pub issuer: String,
    /// Accepted audiences (never empty).
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew for time claims.
    pub clock_skew: Duration,
    /// Maximum lifetime (`exp - iat`, and `exp - now`).
    pub max_lifetime: Duration,
    /// Required `typ`, compared case-insensitively, `application/` prefix optional.
    pub required_typ: Option<String>,
    /// Claim names.
    pub claims: ClaimMapping,
    /// JWKS URL if configured directly (otherwise discovered).
    pub jwks_uri: Option<Url>,
    /// HS* shared secret.
    pub hs_secret: Option<Secret>,
    /// Introspection, for opaque tokens.
    pub introspection: Option<IntrospectionSettings>,
    /// Longest time a verified token stays cached.
    pub token_cache_ttl: Duration,
    /// Network call timeout.
    pub fetch_timeout: Duration,
    /// Network response size cap in bytes.
    pub fetch_max_bytes: usize,
    /// JWKS freshness bounds.
    pub jwks_refresh_min: Duration,
    /// JWKS freshness bounds.
    pub jwks_refresh_max: Duration,
    /// Unknown-kid refetch rate limit.
    pub jwks_refetch_interval: Duration,
    /// Permit plain-HTTP URLs for non-loopback hosts.
    pub allow_http: bool,
}

/// Validated claim names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    pub scope: Vec<String>,
    pub patient: String,
    pub encounter: String,
    pub fhir_user: String,
    pub client_id: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            scope: vec!["scope".into(), "scp".into()],
            patient: "patient".into(),
            encounter: "encounter".into(),
            fhir_user: "fhirUser".into(),
            client_id: vec!["client_id".into(), "azp".into(), "cid".into()],
        }
    }
}

/// Validated introspection settings.
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    pub endpoint: Url,
    pub client_id: String,
    pub auth: ClientAuth,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
}

/// How the gateway authenticates to the introspection endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and this secret (RFC 6749 §2.3.1).
    ClientSecretBasic(Secret),
    /// A signed client assertion (RFC 7523, SMART backend services).
    PrivateKeyJwt {
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
    },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientSecretBasic(_) => f.write_str("ClientSecretBasic([redacted])"),
            Self::PrivateKeyJwt { alg, kid, .. } => {
                write!(f, "PrivateKeyJwt {{ alg: {alg:?}, kid: {kid:?} }}")
            }
        }
    }
}

/// Secret bytes with a redacted `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Algorithms accepted when the config names none: asymmetric only.
pub const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

pub(crate) fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl IssuerSettings {
    /// Defaults for an issuer and one audience; JWKS through discovery.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            clock_skew: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(24 * 3600),
            required_typ: None,
            claims: ClaimMapping::default(),
            jwks_uri: None,
            hs_secret: None,
            introspection: None,
            token_cache_ttl: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
            fetch_max_bytes: 1024 * 1024,
            jwks_refresh_min: Duration::from_secs(60),
            jwks_refresh_max: Duration::from_secs(3600),
            jwks_refetch_interval: Duration::from_secs(10),
            allow_http: false,
        }
    }
}

impl IssuerConfig {
    /// Validate against the process environment (for `*_env` secrets).
    pub fn validate(&self, default_audience: &str) -> Result<IssuerSettings, ConfigError> {
        self.validate_with_env(default_audience, &|k| std::env::var(k).ok())
    }

    /// Validate, reading secrets through `env` (tests pass a map instead of mutating the
    /// process environment).
    pub fn validate_with_env(
        &self,
        default_audience: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<IssuerSettings, ConfigError> {
        let err = |field: &'static str, message: String| ConfigError {
            issuer: self.issuer.clone(),
            field,
            message,
        };
        let mut s = IssuerSettings::new(self.issuer.clone(), default_audience);
        s.allow_http = self.allow_http;
        let issuer_url = Url::parse(&self.issuer)
            .map_err(|e| err("issuer", format!("expected an absolute URL: {e}")))?;
        check_scheme(&issuer_url, self.allow_http).map_err(|m| err("issuer", m))?;

        if !self.audiences.is_empty() {
            s.audiences = self.audiences.clone();
        }
        if s.audiences.iter().any(|a| a.is_empty()) {
            return Err(err("audiences", "empty audience".into()));
        }
        if !self.algorithms.is_empty() {
            s.algorithms = self
                .algorithms
                .iter()
                .map(|a| {
                    parse_alg(a).ok_or_else(|| err("algorithms", format!("unsupported `{a}`")))
                })
                .collect::<Result<_, _>>()?;
        }
        let dur = |field: &'static str, v: &Option<String>, d: Duration| match v {
            None => Ok(d),
            Some(t) => humantime::parse_duration(t)
                .map_err(|e| err(field, format!("expected a duration like `60s`: {e}"))),
        };
        s.clock_skew = dur("clock_skew", &self.clock_skew, s.clock_skew)?;
        s.max_lifetime = dur(
            "max_token_lifetime",
            &self.max_token_lifetime,
            s.max_lifetime,
        )?;
        s.token_cache_ttl = dur("token_cache_ttl", &self.token_cache_ttl, s.token_cache_ttl)?;
        s.fetch_timeout = dur("fetch_timeout", &self.fetch_timeout, s.fetch_timeout)?;
        s.jwks_refresh_min = dur(
            "jwks_refresh_min",
            &self.jwks_refresh_min,
            s.jwks_refresh_min,
        )?;
        s.jwks_refresh_max = dur(
            "jwks_refresh_max",
            &self.jwks_refresh_max,
            s.jwks_refresh_max,
        )?;
        s.jwks_refetch_interval = dur(
            "jwks_refetch_interval",
            &self.jwks_refetch_interval,
            s.jwks_refetch_interval,
        )?;
        if s.jwks_refresh_min > s.jwks_refresh_max {
            return Err(err(
                "jwks_refresh_min",
                "must not exceed jwks_refresh_max".into(),
            ));
        }
        if s.fetch_timeout.is_zero() || s.fetch_timeout > Duration::from_secs(60) {
            return Err(err("fetch_timeout", "expected between 1ms and 60s".into()));
        }
        if let Some(size) = &self.fetch_max_size {
            s.fetch_max_bytes = parse_size(size)
                .ok_or_else(|| err("fetch_max_size", "expected a size like `1MiB`".into()))?;
        }
        s.required_typ = self.required_typ.clone();
        s.claims = mapping(&self.claims);
        if let Some(u) = &self.jwks_uri {
            let url = Url::parse(u).map_err(|e| err("jwks_uri", e.to_string()))?;
            check_scheme(&url, self.allow_http).map_err(|m| err("jwks_uri", m))?;
            s.jwks_uri = Some(url);
        }
        let wants_hmac = s.algorithms.iter().any(|a| is_hmac(*a));
        match (&self.hs_secret_env, wants_hmac) {
            (Some(var), true) => {
                let v =
                    env(var).ok_or_else(|| err("hs_secret_env", format!("`{var}` is not set")))?;
                if v.len() < 32 {
                    return Err(err(
                        "hs_secret_env",
                        "secret must be at least 32 bytes".into(),
                    ));
                }
                s.hs_secret = Some(Secret::new(v.into_bytes()));
            }
            (None, true) => {
                return Err(err(
                    "algorithms",
                    "HS* algorithms need `hs_secret_env`".into(),
                ));
            }
            (Some(_), false) => {
                return Err(err(
                    "hs_secret_env",
                    "set, but no HS* algorithm is allowed".into(),
                ));
            }
            (None, false) => {}
        }
        if let Some(i) = &self.introspection {
            s.introspection =
                Some(introspection(i, self.allow_http, env).map_err(|(f, m)| err(f, m))?);
        }
        Ok(s)
    }
}

fn mapping(c: &ClaimMappingConfig) -> ClaimMapping {
    let d = ClaimMapping::default();
    ClaimMapping {
        scope: c.scope.clone().unwrap_or(d.scope),
        patient: c.patient.clone().unwrap_or(d.patient),
        encounter: c.encounter.clone().unwrap_or(d.encounter),
        fhir_user: c.fhir_user.clone().unwrap_or(d.fhir_user),
        client_id: c.client_id.clone().unwrap_or(d.client_id),
    }
}

fn introspection(
    i: &IntrospectionConfig,
    allow_http: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<IntrospectionSettings, (&'static str, String)> {
    let endpoint =
        Url::parse(&i.endpoint).map_err(|e| ("introspection.endpoint", e.to_string()))?;
    check_scheme(&endpoint, allow_http).map_err(|m| ("introspection.endpoint", m))?;
    let auth = match (&i.client_secret_env, &i.private_key_file) {
        (Some(var), None) => {
            let v = env(var).ok_or((
                "introspection.client_secret_env",
                format!("`{var}` is not set"),
            ))?;
            ClientAuth::ClientSecretBasic(Secret::new(v.into_bytes()))
        }
        (None, Some(path)) => {
            let alg = match &i.private_key_alg {
                None => Algorithm::RS384,
                Some(a) => parse_alg(a).filter(|a| !is_hmac(*a)).ok_or((
                    "introspection.private_key_alg",
                    format!("unsupported `{a}`"),
                ))?,
            };
            let pem = std::fs::read(path).map_err(|e| {
                (
                    "introspection.private_key_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            let key = match alg {
                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
                _ => EncodingKey::from_rsa_pem(&pem),
            }
            .map_err(|e| ("introspection.private_key_file", e.to_string()))?;
            ClientAuth::PrivateKeyJwt {
                key,
                alg,
                kid: i.private_key_kid.clone(),
            }
        }
        _ => {
            return Err((
                "introspection",
                "set exactly one of `client_secret_env` and `private_key_file`".into(),
            ));
        }
    };
    let dur = |field: &'static str, v: &Option<String>, d: u64| match v {
        None => Ok(Duration::from_secs(d)),
        Some(t) => humantime::parse_duration(t).map_err(|e| (field, e.to_string())),
    };
    Ok(IntrospectionSettings {
        endpoint,
        client_id: i.client_id.clone(),
        auth,
        cache_ttl: dur("introspection.cache_ttl", &i.cache_ttl, 60)?,
        negative_cache_ttl: dur(
            "introspection.negative_cache_ttl",
            &i.negative_cache_ttl,
            10,
        )?,
    })
}

/// `alg` names exactly as RFC 7518 spells them; `none` is never one of them.
pub(crate) fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => return None,
    })
}

fn check_scheme(url: &Url, allow_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(url) => Ok(()),
        "http" => Err("plain http is only allowed for loopback hosts (or `allow_http`)".into()),
        other => Err(format!("unsupported scheme `{other}`")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `1048576`, `512KiB`, `1MiB`, `2MB`.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "KB" | "kB" => 1000,
        "MiB" => 1024 * 1024,
        "MB" => 1_000_000,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

#[cfg(test)]
mod tests;

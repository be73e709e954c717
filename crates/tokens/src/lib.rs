//! Access-token verification: the authenticate phase of the gateway (DESIGN.md §3 step 2).
//!
//! A bearer token enters, a [`Principal`] (or a precise rejection) leaves. The gateway calls
//! [`extract_bearer`] on the request, then [`Verifier::verify`]; a failure's
//! [`TokenError::class`] says which 401/400/503 to send. JWTs are checked against keys found
//! through OIDC discovery and JWKS; opaque tokens through RFC 7662 introspection. Nothing
//! here knows about FHIR scopes beyond carrying them as strings.
//!
//! ```text
//! extract_bearer ─► Verifier::verify ─► token cache hit? ─► Principal
//!                        │ miss
//!                        ├─ JWT:    shape/size caps → strict parse → issuer by iss →
//!                        │          key by kid+kty (JWKS snapshot, single-flight refetch)
//!                        │          → signature → claims → cache
//!                        └─ opaque: introspection (cached) ─► Principal
//! ```

mod bearer;
mod clock;
mod config;
mod error;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod introspect;
mod json;
pub mod jwks;
pub mod jwt;
mod keys;
mod verifier;

pub use bearer::extract_bearer;
pub use clock::{Clock, ManualClock, TimeSource};
pub use config::{
    ClaimMapping, ClaimMappingConfig, ClientAuth, ConfigError, DEFAULT_ALGORITHMS,
    IntrospectionConfig, IntrospectionSettings, IssuerConfig, IssuerSettings, Secret,
};
pub use error::{CredentialError, ErrorClass, Reason, TokenError};
pub use jsonwebtoken::Algorithm;
pub use verifier::{Verifier, VerifierOptions};

/// Who is calling, as established from a verified access token.
///
/// CONTRACT: consumed by the gateway (authorize, throttle, cache, audit phases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The issuer that vouched for the token (exact configured string).
    pub issuer: String,
    /// `sub` claim.
    pub subject: Option<String>,
    /// `client_id` / `azp` / `cid`, per issuer config.
    pub client_id: Option<String>,
    /// Raw scope strings; parsing them is the `smart` crate's job.
    pub scopes: Vec<String>,
    /// SMART launch context `patient` (a Patient id).
    pub patient: Option<String>,
    /// SMART launch context `encounter` (an Encounter id).
    pub encounter: Option<String>,
    /// `fhirUser` (e.g. `Practitioner/123` or an absolute URL).
    pub fhir_user: Option<String>,
    /// `exp` as Unix seconds.
    pub expires_at: u64,
    /// `jti` (never the token itself).
    pub token_id: Option<String>,
}

/// Validate a list of issuer entries together: each one alone, plus no issuer twice.
pub fn validate_issuers(
    configs: &[IssuerConfig],
    default_audience: &str,
) -> Result<Vec<IssuerSettings>, ConfigError> {
    let mut out: Vec<IssuerSettings> = Vec::with_capacity(configs.len());
    for c in configs {
        let s = c.validate(default_audience)?;
        if out.iter().any(|o| o.issuer == s.issuer) {
            return Err(ConfigError {
                issuer: s.issuer,
                field: "issuer",
                message: "listed twice".into(),
            });
        }
        if s.introspection.is_some() && out.iter().any(|o| o.introspection.is_some()) {
            return Err(ConfigError {
                issuer: s.issuer,
                field: "introspection",
                message: "only one issuer may introspect opaque tokens".into(),
            });
        }
        out.push(s);
    }
    Ok(out)
}

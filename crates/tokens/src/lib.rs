//! Access-token verification: the authenticate phase of the gateway (DESIGN.md §3 step 2).
//!
//! A bearer token enters, a [`Principal`] (or a precise rejection) leaves. JWTs are checked
//! against keys found through OIDC discovery and JWKS; opaque tokens through RFC 7662
//! introspection. Nothing here knows about FHIR scopes beyond carrying them as strings.

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
    pub encounter: Option<String>,
    /// `fhirUser` (e.g. `Practitioner/123` or an absolute URL).
    pub fhir_user: Option<String>,
    /// `exp` as Unix seconds.
    pub expires_at: u64,
    /// `jti` (never the token itself).
    pub token_id: Option<String>,
}

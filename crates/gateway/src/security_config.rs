//! Typed configuration of the security phases: which token issuers are trusted
//! (authenticate), the site switches of the authorization decision (authorize, verify), and the
//! SMART discovery document the gateway serves.
//!
//! A gateway without issuers would let every request through, so that is only possible with
//! the explicit [`AuthMode::Disabled`]; [`crate::Gateway::new`] refuses an empty issuer list
//! otherwise.

use fhirgate_tokens::{Clock, IssuerSettings};
use serde_json::Value;

use crate::config::GatewayConfig;

/// Access-token verification (`auth:` in the config file).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// Trusted issuers, already validated (audience defaults to the public FHIR base).
    pub issuers: Vec<IssuerSettings>,
    /// Time source for token checks; tests inject a manual clock.
    pub clock: Clock,
    /// Revocation notices through Redis (`auth.revocation`); `None` = none.
    pub revocation: Option<crate::RevocationConfig>,
}

/// Whether requests must carry a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMode {
    /// Every FHIR request except `/metadata` and SMART discovery needs a valid token.
    Required,
    /// No authentication and no authorization: every request is forwarded. Only for a
    /// gateway in front of a server that enforces access itself, or for tests.
    Disabled,
}

/// Site switches of the authorize and verify phases (`authorization:` in the config file).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthorizationConfig {
    /// Answer another patient's data with 404 `not-found` instead of 403 `forbidden`.
    pub hide_existence: bool,
    /// Add the token's patient to searches that name none (otherwise they are refused).
    pub inject_patient: bool,
    /// Pass the client's `Authorization` header on to the upstream.
    pub forward_token: bool,
    /// Send `X-Fhirgate-Sub`, `-Client-Id`, `-Patient` and `-Scopes` to the upstream.
    pub context_headers: bool,
    /// Largest response buffered to verify it under a patient or granular grant; larger
    /// ones are refused with 502 `too-costly` rather than passed unverified.
    pub verify_buffer_max: usize,
}

impl AuthConfig {
    /// Require tokens from these issuers.
    pub fn required(issuers: Vec<IssuerSettings>) -> Self {
        AuthConfig {
            mode: AuthMode::Required,
            issuers,
            clock: Clock::system(),
            revocation: None,
        }
    }

    /// No authentication at all (see [`AuthMode::Disabled`]).
    pub fn disabled() -> Self {
        AuthConfig {
            mode: AuthMode::Disabled,
            issuers: Vec::new(),
            clock: Clock::system(),
            revocation: None,
        }
    }
}

impl Default for AuthConfig {
    /// Tokens required, no issuer yet: the gateway will not start until issuers are set or
    /// authentication is disabled explicitly.
    fn default() -> Self {
        AuthConfig::required(Vec::new())
    }
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            hide_existence: false,
            inject_patient: true,
            forward_token: true,
            context_headers: false,
            verify_buffer_max: 16 * 1024 * 1024,
        }
    }
}

impl GatewayConfig {
    /// Serve this document at `{base}/.well-known/smart-configuration` and take the OAuth
    /// endpoints injected into `/metadata` from it (e.g. the embedded authorization server's
    /// `smart_configuration()`).
    pub fn with_smart_configuration(mut self, document: Value) -> Self {
        self.smart_configuration = Some(document);
        self
    }
}

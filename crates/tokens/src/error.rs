//! Why a request failed authentication, in the few classes the gateway turns into HTTP.
//!
//! Descriptions are short static strings: they go into `WWW-Authenticate` and the
//! OperationOutcome, so they must never contain token contents or key material.

use std::time::Duration;

/// The HTTP-facing class of an authentication failure (reference/security.md §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// No credential at all: 401, `WWW-Authenticate: Bearer realm="…"` without `error`,
    /// OperationOutcome `login` (class A0).
    Login,
    /// A credential that is not acceptable: 401 `error="invalid_token"`; OperationOutcome
    /// `expired` when `expired` (time claims, class A2) else `unknown` (class A1).
    InvalidToken {
        /// The token failed only because of `exp`/`nbf`.
        expired: bool,
        /// Short reason for `error_description`.
        description: &'static str,
    },
    /// An authorization dependency (JWKS, introspection) is down; fail closed with
    /// 503 `transient` and `Retry-After` (class U).
    Unavailable {
        /// Value for the `Retry-After` header.
        retry_after: Duration,
    },
    /// Malformed credential presentation (two credentials, empty bearer): 400 with
    /// `error="invalid_request"` (class B).
    BadRequest {
        /// Short reason for `error_description`.
        description: &'static str,
    },
}

impl ErrorClass {
    /// The RFC 6750 §3.1 error code, if the challenge carries one.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            Self::Login | Self::Unavailable { .. } => None,
            Self::InvalidToken { .. } => Some("invalid_token"),
            Self::BadRequest { .. } => Some("invalid_request"),
        }
    }

    /// The `WWW-Authenticate` value for this class (RFC 6750 §3), or `None` when the
    /// response should not carry a challenge (503).
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        let realm = quote(realm);
        match self {
            Self::Login => Some(format!("Bearer realm=\"{realm}\"")),
            Self::InvalidToken { description, .. } | Self::BadRequest { description } => {
                let code = self.oauth_error().unwrap_or("invalid_token");
                Some(format!(
                    "Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{}\"",
                    quote(description)
                ))
            }
            Self::Unavailable { .. } => None,
        }
    }
}

/// Keep header values well-formed even if a realm contains quotes or control characters.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// Why the way the credential was presented is unacceptable (before any token parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// More than one credential: two `Authorization` headers, or a header and an
    /// `access_token` query parameter (RFC 6750 §2: exactly one method).
    #[error("more than one access token presented")]
    MultipleCredentials,
    /// `Authorization: Bearer` with nothing after it, or a header that is not text.
    #[error("malformed Authorization header")]
    Malformed,
    /// An `Authorization` scheme other than Bearer.
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
}

/// Why a presented token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was presented.
    #[error("no access token")]
    Missing,
    /// The presentation itself was wrong.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The token is not acceptable; the reason is safe to show.
    #[error("invalid token: {}", .0.description())]
    Invalid(Reason),
    /// A dependency needed to decide (JWKS or introspection) is unavailable.
    #[error("token issuer unavailable: {detail}")]
    Unavailable {
        /// How long the client should wait.
        retry_after: Duration,
        /// Operator-facing detail (logs only; no secrets).
        detail: &'static str,
    },
}

impl TokenError {
    /// The class the gateway maps to status, headers and OperationOutcome code.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Missing | Self::Credential(CredentialError::UnsupportedScheme) => {
                ErrorClass::Login
            }
            Self::Credential(CredentialError::MultipleCredentials) => ErrorClass::BadRequest {
                description: "more than one access token presented",
            },
            Self::Credential(CredentialError::Malformed) => ErrorClass::BadRequest {
                description: "malformed Authorization header",
            },
            Self::Invalid(r) => ErrorClass::InvalidToken {
                expired: r.is_time(),
                description: r.description(),
            },
            Self::Unavailable { retry_after, .. } => ErrorClass::Unavailable {
                retry_after: *retry_after,
            },
        }
    }

    /// A short machine label for metrics (`token failures by reason`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Credential(_) => "bad_request",
            Self::Invalid(r) => r.metric_label(),
            Self::Unavailable { .. } => "unavailable",
        }
    }
}

impl From<Reason> for TokenError {
    fn from(r: Reason) -> Self {
        Self::Invalid(r)
    }
}

/// The reason a token is invalid. Each carries a fixed, non-sensitive description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Not a well-formed compact JWS (segments, base64url, JSON, size).
    Malformed,
    /// Encrypted (JWE) or JSON-serialised tokens are not accepted.
    UnsupportedFormat,
    /// `alg` missing, `none`, not allowed for the issuer, or not supported.
    Algorithm,
    /// A header parameter we refuse (`crit`, `jku`, `x5u`, `jwk`, `zip`, nested JWT, bad `kid`).
    Header,
    /// `typ` is not the one the issuer requires.
    Type,
    /// The same JSON member appears twice.
    DuplicateMember,
    /// `iss` does not name a configured issuer (exact string match).
    Issuer,
    /// No key with this `kid` in the issuer's key set, even after a refetch.
    UnknownKey,
    /// The key found does not allow this algorithm or use.
    KeyMismatch,
    /// The signature does not verify.
    Signature,
    /// `exp` is in the past (beyond skew).
    Expired,
    /// `nbf` is in the future (beyond skew).
    NotYetValid,
    /// `iat` is in the future (beyond skew).
    IssuedInFuture,
    /// Lifetime exceeds the issuer's maximum.
    LifetimeTooLong,
    /// `aud` missing or not one of ours.
    Audience,
    /// A required claim is missing or a claim has the wrong JSON type.
    Claims,
    /// Introspection says the token is not active.
    Inactive,
    /// Opaque token but no issuer offers introspection.
    NoIntrospection,
}

impl Reason {
    /// The `error_description` text.
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "malformed token",
            Self::UnsupportedFormat => "unsupported token format",
            Self::Algorithm => "unacceptable signing algorithm",
            Self::Header => "unacceptable token header",
            Self::Type => "wrong token type",
            Self::DuplicateMember => "duplicate JSON member",
            Self::Issuer => "unknown issuer",
            Self::UnknownKey => "unknown signing key",
            Self::KeyMismatch => "signing key does not match algorithm",
            Self::Signature => "invalid signature",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid",
            Self::IssuedInFuture => "token issued in the future",
            Self::LifetimeTooLong => "token lifetime too long",
            Self::Audience => "token audience does not match this server",
            Self::Claims => "missing or malformed claims",
            Self::Inactive => "token is not active",
            Self::NoIntrospection => "opaque tokens are not accepted",
        }
    }

    /// Time-claim failures map to OperationOutcome `expired` (class A2).
    pub fn is_time(self) -> bool {
        matches!(self, Self::Expired | Self::NotYetValid)
    }

    fn metric_label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedFormat => "format",
            Self::Algorithm => "algorithm",
            Self::Header => "header",
            Self::Type => "typ",
            Self::DuplicateMember => "duplicate",
            Self::Issuer => "issuer",
            Self::UnknownKey => "unknown_kid",
            Self::KeyMismatch => "key_mismatch",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "iat_future",
            Self::LifetimeTooLong => "lifetime",
            Self::Audience => "audience",
            Self::Claims => "claims",
            Self::Inactive => "inactive",
            Self::NoIntrospection => "opaque",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_rfc6750_challenges() {
        let login = TokenError::Missing.class();
        assert_eq!(
            login.www_authenticate("https://gw/fhir").as_deref(),
            Some("Bearer realm=\"https://gw/fhir\"")
        );
        let inv = TokenError::Invalid(Reason::Expired).class();
        assert_eq!(
            inv,
            ErrorClass::InvalidToken {
                expired: true,
                description: "token expired"
            }
        );
        assert_eq!(
            inv.www_authenticate("r").as_deref(),
            Some(
                "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"token expired\""
            )
        );
        let sig = TokenError::Invalid(Reason::Signature).class();
        assert!(matches!(
            sig,
            ErrorClass::InvalidToken { expired: false, .. }
        ));
        let two = TokenError::from(CredentialError::MultipleCredentials).class();
        assert_eq!(two.oauth_error(), Some("invalid_request"));
        let down = TokenError::Unavailable {
            retry_after: Duration::from_secs(7),
            detail: "x",
        };
        assert_eq!(
            down.class(),
            ErrorClass::Unavailable {
                retry_after: Duration::from_secs(7)
            }
        );
        assert_eq!(down.class().www_authenticate("r"), None);
    }

    #[test]
    fn realm_cannot_break_the_header() {
        let h = ErrorClass::Login.www_authenticate("a\"b\r\nc");
        assert_eq!(h.as_deref(), Some("Bearer realm=\"abc\""));
    }
}

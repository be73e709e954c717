//! Errors: the library error (`AuthError`) for admin and start-up paths, and the wire
//! error (`OAuthError`) that every HTTP endpoint answers with, mapped to a response in
//! exactly one place ([`OAuthError::into_response`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// OAuth 2.0 error codes (RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    UnsupportedTokenType,
}

impl OAuthErrorCode {
    /// The code exactly as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::UnsupportedTokenType => "unsupported_token_type",
        }
    }
}

/// Failures of the library API (opening the store, admin functions).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("cryptography error: {0}")]
    Crypto(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("template error: {0}")]
    Template(#[from] minijinja::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = AuthError> = std::result::Result<T, E>;

/// An RFC 6749 §5.2 error response from the token, introspection and revocation
/// endpoints. The description is for developers and never contains secrets.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
    pub status: StatusCode,
    /// Seconds, for 429 answers.
    pub retry_after: Option<u64>,
    /// The client tried HTTP Basic: RFC 6749 §5.2 wants a `WWW-Authenticate` challenge.
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        let status = match code {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            code,
            description: description.into(),
            status,
            retry_after: None,
            basic_challenge: false,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidScope, d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::UnauthorizedClient, d)
    }
    pub fn server_error() -> Self {
        Self::new(OAuthErrorCode::ServerError, "internal error")
    }
    /// Brute-force lockout: 429 with `Retry-After`.
    pub fn locked_out(retry_after: u64) -> Self {
        let mut e = Self::new(
            OAuthErrorCode::InvalidClient,
            "too many failed authentication attempts; try again later",
        );
        e.status = StatusCode::TOO_MANY_REQUESTS;
        e.retry_after = Some(retry_after.max(1));
        e
    }
}

impl From<AuthError> for OAuthError {
    fn from(err: AuthError) -> Self {
        // Internal details go to the log, never to the client.
        tracing::error!(error = %err, "authorization server internal error");
        Self::server_error()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        if self.basic_challenge && self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fhirgate\""),
            );
        }
        resp
    }
}

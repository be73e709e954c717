//! Every failure the gateway itself answers, and the one place it becomes an HTTP response.
//!
//! Each variant knows its status and its OperationOutcome `issue.code`
//! (`reference/security.md` §0). [`GatewayError::to_response`] is the only function that turns
//! an error into a response, so the status/code table below is the whole contract. Diagnostics
//! are written for the caller; the underlying cause (socket errors, upstream details) is kept in
//! the variant's `source` for the log and never copied into the body.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use fhirgate_fhir::{ClassifyError, FHIR_JSON, IssueType, OperationOutcome};
use fhirgate_smart::DenyReason;
use fhirgate_tokens::{ErrorClass, TokenError};
use http::{HeaderValue, Response, StatusCode, header};

/// Boxed cause kept for logging.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request the gateway answers itself with an OperationOutcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The request is not a well-formed FHIR REST request (400, or 405 for a wrong method).
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    /// No service is mounted at this path.
    #[error("no FHIR endpoint or service at this path")]
    RouteNotFound,
    /// An HTTP method the gateway never forwards (TRACE, CONNECT, ...).
    #[error("HTTP method {0} is not supported")]
    MethodNotSupported(http::Method),
    /// The request body could not be read (client aborted, malformed chunking).
    #[error("the request body could not be read")]
    BodyRead(#[source] BoxError),
    #[error("the request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the request URI exceeds the limit of {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("the request headers exceed the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// More requests in flight than `limits.max_concurrent_requests`.
    #[error("the gateway is handling too many requests; retry shortly")]
    Overloaded,
    /// Upstream refused, reset or closed the connection, or TLS failed.
    #[error("the upstream FHIR server could not be reached")]
    UpstreamUnavailable(#[source] BoxError),
    /// No upstream response headers (or no connection) within the configured time.
    #[error("the upstream FHIR server did not answer within {}", humantime::format_duration(*.0))]
    UpstreamTimeout(Duration),
    /// The upstream answered an error status without a FHIR body (an HTML error page from a
    /// load balancer, an empty 502); the status is kept, the body replaced.
    #[error("the upstream FHIR server answered {0} without a FHIR OperationOutcome")]
    UpstreamStatus(StatusCode),
    /// A bug: a panic or an invariant that did not hold. Details are only logged.
    #[error("internal gateway error")]
    Internal,
    /// No, an unacceptable, or an uncheckable access token (401/400/503 per its class).
    #[error("{}", auth_diagnostic(.error))]
    Authentication {
        /// Kept as the source so the log names the exact reason; the client only gets the
        /// fixed diagnostic.
        #[source]
        error: TokenError,
        realm: Arc<str>,
    },
    /// The grant does not cover the request or what the upstream answered (403/404/400).
    #[error("{reason}")]
    Denied { reason: DenyReason, realm: Arc<str> },
    /// A response that must be verified is over `authorization.verify_buffer_max`; it is
    /// refused whole rather than passed unverified or cut.
    #[error(
        "the response is larger than the gateway can verify ({limit} bytes); narrow the request, e.g. with _count"
    )]
    VerifyTooLarge { limit: usize },
    /// A response that must be verified is not JSON the gateway can read.
    #[error("the upstream response could not be verified")]
    Unverifiable(#[source] BoxError),
    /// Over a configured rate limit (429); `headers` are the limiter's `Retry-After` and
    /// `RateLimit-*`.
    #[error("rate limit exceeded; retry after the time in Retry-After")]
    Throttled {
        rule: Arc<str>,
        headers: Vec<(http::HeaderName, HeaderValue)>,
    },
    /// The shared rate-limit store is unreachable and `fault_tolerant` is off (503).
    #[error("the rate limiter is unavailable; retry shortly")]
    ThrottleUnavailable {
        headers: Vec<(http::HeaderName, HeaderValue)>,
    },
    /// The audit trail cannot be written and `audit.on_failure` is `refuse` (503): no PHI is
    /// served that could not be recorded.
    #[error("the audit trail cannot be written; retry shortly")]
    AuditUnavailable,
    /// A CORS preflight from an origin the configuration does not allow (403, no CORS
    /// headers, so the browser blocks the app's request).
    #[error("cross-origin requests from this origin are not allowed")]
    CorsOriginDenied,
}

/// Seconds a shed client is told to wait before retrying.
const OVERLOAD_RETRY_AFTER: &str = "1";

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Classify(err) => err.status(),
            GatewayError::BodyRead(_) => StatusCode::BAD_REQUEST,
            GatewayError::RouteNotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            GatewayError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamStatus(status) => *status,
            GatewayError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Authentication { error, .. } => match error.class() {
                ErrorClass::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                ErrorClass::BadRequest { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            },
            GatewayError::Denied { reason, .. } => {
                StatusCode::from_u16(reason.http_status()).unwrap_or(StatusCode::FORBIDDEN)
            }
            GatewayError::VerifyTooLarge { .. } | GatewayError::Unverifiable(_) => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::CorsOriginDenied => StatusCode::FORBIDDEN,
            GatewayError::ThrottleUnavailable { .. } | GatewayError::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    pub fn issue_type(&self) -> IssueType {
        match self {
            GatewayError::Classify(err) => err.issue_type(),
            GatewayError::BodyRead(_) => IssueType::Structure,
            GatewayError::RouteNotFound => IssueType::NotFound,
            GatewayError::MethodNotSupported(_) => IssueType::NotSupported,
            GatewayError::BodyTooLarge { .. }
            | GatewayError::UriTooLong { .. }
            | GatewayError::HeadersTooLarge { .. } => IssueType::TooLong,
            GatewayError::Overloaded => IssueType::Transient,
            GatewayError::UpstreamUnavailable(_) | GatewayError::Internal => IssueType::Exception,
            GatewayError::UpstreamTimeout(_) => IssueType::Timeout,
            GatewayError::UpstreamStatus(status) => issue_type_for_status(*status),
            GatewayError::Authentication { error, .. } => match error.class() {
                ErrorClass::Login => IssueType::Login,
                ErrorClass::InvalidToken { expired: true, .. } => IssueType::Expired,
                ErrorClass::Unavailable { .. } => IssueType::Transient,
                ErrorClass::BadRequest { .. } => IssueType::Invalid,
                _ => IssueType::Unknown,
            },
            GatewayError::Denied { reason, .. } => reason.issue_type(),
            GatewayError::VerifyTooLarge { .. } => IssueType::TooCostly,
            GatewayError::Unverifiable(_) => IssueType::Exception,
            GatewayError::Throttled { .. } => IssueType::Throttled,
            GatewayError::CorsOriginDenied => IssueType::Forbidden,
            GatewayError::ThrottleUnavailable { .. } | GatewayError::AuditUnavailable => {
                IssueType::Transient
            }
        }
    }

    /// The OperationOutcome response: the one place an error becomes HTTP.
    pub fn to_response(&self) -> Response<Body> {
        let outcome = OperationOutcome::error(self.issue_type(), self.to_string());
        let mut response = Response::new(Body::from(outcome.to_bytes()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            GatewayError::Overloaded | GatewayError::AuditUnavailable => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(OVERLOAD_RETRY_AFTER),
                );
            }
            GatewayError::Throttled { headers: extra, .. }
            | GatewayError::ThrottleUnavailable { headers: extra } => {
                for (name, value) in extra {
                    headers.insert(name.clone(), value.clone());
                }
            }
            _ => {}
        }
        if let Some((challenge, retry_after)) = self.auth_headers() {
            if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
            if let Some(secs) = retry_after {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }
        response
    }

    /// Whether this is the gateway's or the upstream's fault (logged louder) rather than the
    /// client's.
    pub fn is_server_side(&self) -> bool {
        self.status().is_server_error()
    }
}

impl GatewayError {
    /// `WWW-Authenticate` (RFC 6750 §3) and `Retry-After` seconds for authentication and
    /// authorization failures.
    fn auth_headers(&self) -> Option<(Option<String>, Option<u64>)> {
        match self {
            GatewayError::Authentication { error, realm } => {
                let class = error.class();
                let retry = match class {
                    ErrorClass::Unavailable { retry_after } => Some(retry_after.as_secs().max(1)),
                    _ => None,
                };
                Some((class.www_authenticate(realm), retry))
            }
            GatewayError::Denied { reason, realm } => {
                let challenge = reason.oauth_error().map(|code| {
                    let realm: String = realm
                        .chars()
                        .filter(|c| *c != '"' && !c.is_control())
                        .collect();
                    format!("Bearer realm=\"{realm}\", error=\"{code}\"")
                });
                Some((challenge, None))
            }
            _ => None,
        }
    }
}

/// What a client is told about its token: fixed texts, never the token or its claims.
fn auth_diagnostic(error: &TokenError) -> &'static str {
    match error.class() {
        ErrorClass::Login => "an access token is required (Authorization: Bearer)",
        ErrorClass::InvalidToken { description, .. } | ErrorClass::BadRequest { description } => {
            description
        }
        ErrorClass::Unavailable { .. } => {
            "the token issuer cannot be reached to check this token; retry shortly"
        }
        _ => "the access token is not acceptable",
    }
}

impl axum::response::IntoResponse for GatewayError {
    fn into_response(self) -> axum::response::Response {
        self.to_response()
    }
}

/// The issue code that best describes an upstream status whose body we had to replace.
fn issue_type_for_status(status: StatusCode) -> IssueType {
    match status.as_u16() {
        400 => IssueType::Invalid,
        401 => IssueType::Login,
        403 => IssueType::Forbidden,
        404 => IssueType::NotFound,
        405 | 501 => IssueType::NotSupported,
        408 | 504 => IssueType::Timeout,
        409 | 412 => IssueType::Conflict,
        410 => IssueType::Deleted,
        413 | 414 | 431 => IssueType::TooLong,
        422 => IssueType::Processing,
        429 => IssueType::Throttled,
        503 => IssueType::Transient,
        _ => IssueType::Exception,
    }
}

/// Every cause in an error chain, for one log field.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_status_codes_follow_the_status() {
        assert_eq!(
            issue_type_for_status(StatusCode::BAD_GATEWAY),
            IssueType::Exception
        );
        assert_eq!(
            issue_type_for_status(StatusCode::SERVICE_UNAVAILABLE),
            IssueType::Transient
        );
        assert_eq!(
            issue_type_for_status(StatusCode::GATEWAY_TIMEOUT),
            IssueType::Timeout
        );
    }

    #[test]
    fn diagnostics_do_not_carry_the_source() {
        let err = GatewayError::UpstreamUnavailable("connect to 10.0.0.7:8080 refused".into());
        assert!(!err.to_string().contains("10.0.0.7"));
        assert!(error_chain(&err).contains("10.0.0.7"));
    }
}

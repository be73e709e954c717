//! CORS for browser SMART apps served from their own origin (issue 7 item 5).
//!
//! Discovery (`/.well-known/smart-configuration`, `/metadata`) is open to any origin because an
//! app reads it before it has a token (SMART App Launch 2.x). The rest of the FHIR API answers
//! only configured origins. Preflights are answered here, before classify and authenticate:
//! a browser never sends a token with a preflight, and the upstream has no business seeing one.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};

use crate::error::GatewayError;

/// Which browser origins may call the FHIR API.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CorsConfig {
    /// Exact origins (`scheme://host[:port]`, no trailing slash). An entry ending in `:*`
    /// (e.g. `http://127.0.0.1:*`) matches that scheme and host on any port.
    pub allowed_origins: Vec<String>,
    /// Answer any origin with `*`. Never combined with credentials (config validation refuses
    /// that), because browsers reject `*` on credentialed requests anyway.
    pub allow_any_origin: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age: Duration,
    /// Send `Access-Control-Allow-Credentials: true` to configured origins.
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allow_any_origin: false,
            max_age: Duration::from_secs(600),
            allow_credentials: false,
        }
    }
}

const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";
const ALLOW_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "accept",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "prefer",
    "x-request-id",
];
const EXPOSE_HEADERS: &str = "Location, ETag, Content-Location, Last-Modified, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, X-Request-ID, WWW-Authenticate";

/// Requested headers never echoed back: they carry identity or routing the gateway sets itself.
const UNSAFE_HEADER_PREFIXES: [&str; 6] = [
    "cookie",
    "host",
    "forwarded",
    "x-forwarded-",
    "proxy-",
    "sec-",
];

/// Paths below the base open to every origin.
fn is_open(path_below_base: &str) -> bool {
    path_below_base == crate::smart_discovery::WELL_KNOWN
        || path_below_base == "/metadata"
        || path_below_base == "/metadata/"
}

/// What the origin of one request is allowed.
enum Grant {
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// The origin echoed back, with `Vary: Origin`.
    Echo(HeaderValue),
}

impl CorsConfig {
    fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| {
            if let Some(prefix) = allowed.strip_suffix(":*") {
                origin
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|port| {
                        !port.is_empty()
                            && port.len() <= 5
                            && port.bytes().all(|b| b.is_ascii_digit())
                    })
            } else {
                allowed == origin
            }
        })
    }

    fn grant(&self, origin: &HeaderValue, path_below_base: &str) -> Option<Grant> {
        let text = origin.to_str().ok()?;
        if self.origin_allowed(text) {
            Some(Grant::Echo(origin.clone()))
        } else if self.allow_any_origin || is_open(path_below_base) {
            Some(Grant::Any)
        } else {
            None
        }
    }

    fn apply(&self, grant: &Grant, headers: &mut HeaderMap) {
        match grant {
            Grant::Any => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            Grant::Echo(origin) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
                if self.allow_credentials {
                    headers.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
            }
        }
    }

    /// The answer to a CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), or `None` for any other request.
    pub(crate) fn preflight(
        &self,
        request: &Request<Body>,
        path_below_base: &str,
    ) -> Option<Response<Body>> {
        let headers = request.headers();
        if request.method() != Method::OPTIONS
            || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        let Some(grant) = self.grant(origin, path_below_base) else {
            return Some(GatewayError::CorsOriginDenied.to_response());
        };
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        self.apply(&grant, out);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        let mut allowed: Vec<String> = ALLOW_HEADERS.iter().map(|h| (*h).to_owned()).collect();
        for requested in headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let name = requested.trim().to_ascii_lowercase();
            let safe = HeaderName::from_bytes(name.as_bytes()).is_ok()
                && !UNSAFE_HEADER_PREFIXES.iter().any(|p| name.starts_with(p));
            if safe && !allowed.contains(&name) {
                allowed.push(name);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(self.max_age.as_secs()),
        );
        Some(response)
    }

    /// Adds the CORS headers to the response of an actual request from an allowed origin,
    /// whatever its status, so the app can read the gateway's 401/403/429 outcomes too.
    pub(crate) fn decorate(
        &self,
        origin: Option<&HeaderValue>,
        path_below_base: &str,
        response: &mut Response<Body>,
    ) {
        let Some(grant) = origin.and_then(|o| self.grant(o, path_below_base)) else {
            return;
        };
        let headers = response.headers_mut();
        self.apply(&grant, headers);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::CorsConfig;

    #[test]
    fn port_wildcard_matches_only_that_host_with_a_port() {
        let config = CorsConfig {
            allowed_origins: vec![
                "http://127.0.0.1:*".into(),
                "https://app.example.org".into(),
            ],
            ..CorsConfig::default()
        };
        assert!(config.origin_allowed("http://127.0.0.1:5173"));
        assert!(config.origin_allowed("https://app.example.org"));
        assert!(!config.origin_allowed("http://127.0.0.1"));
        assert!(!config.origin_allowed("http://127.0.0.1:80.evil.org"));
        assert!(!config.origin_allowed("http://127.0.0.10:80"));
        assert!(!config.origin_allowed("https://app.example.org:8443"));
    }
}

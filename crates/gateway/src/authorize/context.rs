//! What the upstream learns about the caller: the original `Authorization` header (unless
//! `forward_token` is off) and, with `context_headers`, the verified identity as headers.
//! Clients can never set these headers themselves.

use fhirgate_tokens::Principal;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::security_config::AuthorizationConfig;

pub(crate) const X_FHIRGATE_SUB: HeaderName = HeaderName::from_static("x-fhirgate-sub");
pub(crate) const X_FHIRGATE_CLIENT_ID: HeaderName = HeaderName::from_static("x-fhirgate-client-id");
pub(crate) const X_FHIRGATE_PATIENT: HeaderName = HeaderName::from_static("x-fhirgate-patient");
pub(crate) const X_FHIRGATE_SCOPES: HeaderName = HeaderName::from_static("x-fhirgate-scopes");

pub(crate) const CONTEXT_HEADER_NAMES: [HeaderName; 4] = [
    X_FHIRGATE_SUB,
    X_FHIRGATE_CLIENT_ID,
    X_FHIRGATE_PATIENT,
    X_FHIRGATE_SCOPES,
];

/// Remove context headers a client sent: the upstream must be able to trust them.
pub(crate) fn strip_client_context(headers: &mut HeaderMap) {
    // Looked for among the names present (a handful, and these are almost never among
    // them) rather than removed one by one, which hashes each custom name on every request.
    while let Some(name) = headers
        .keys()
        .find(|name| CONTEXT_HEADER_NAMES.contains(name))
        .cloned()
    {
        headers.remove(name);
    }
}

pub(crate) fn set_upstream_context(
    settings: &AuthorizationConfig,
    principal: &Principal,
    headers: &mut HeaderMap,
) {
    if !settings.forward_token {
        headers.remove(header::AUTHORIZATION);
    }
    if !settings.context_headers {
        return;
    }
    let scopes = principal.scopes.join(" ");
    let values = [
        (X_FHIRGATE_SUB, principal.subject.as_deref()),
        (X_FHIRGATE_CLIENT_ID, principal.client_id.as_deref()),
        (X_FHIRGATE_PATIENT, principal.patient.as_deref()),
        (X_FHIRGATE_SCOPES, Some(scopes.as_str())),
    ];
    for (name, value) in values {
        // A claim that is not a valid header value is left out rather than mangled.
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
}

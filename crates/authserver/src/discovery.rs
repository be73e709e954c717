//! Discovery documents: OpenID Provider metadata for the issuer and the SMART
//! configuration for the FHIR base. Every capability listed here is implemented.

use serde_json::{Value, json};

use crate::AuthConfig;

/// Scopes we list; each of them can be granted (subject to a client's allowed scopes).
const SCOPES_SUPPORTED: &[&str] = &[
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "patient/*.read",
    "patient/*.write",
    "user/*.cruds",
    "user/*.rs",
    "user/*.read",
    "user/*.write",
    "system/*.cruds",
    "system/*.rs",
    "system/*.read",
];

const CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
];

pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub jwks: String,
    pub introspect: String,
    pub revoke: String,
}

pub fn endpoints(cfg: &AuthConfig) -> Endpoints {
    let i = &cfg.issuer;
    Endpoints {
        authorize: format!("{i}/authorize"),
        token: format!("{i}/token"),
        jwks: format!("{i}/jwks"),
        introspect: format!("{i}/introspect"),
        revoke: format!("{i}/revoke"),
    }
}

pub fn smart_configuration(cfg: &AuthConfig) -> Value {
    let e = endpoints(cfg);
    json!({
        "issuer": cfg.issuer,
        "jwks_uri": e.jwks,
        "authorization_endpoint": e.authorize,
        "token_endpoint": e.token,
        "introspection_endpoint": e.introspect,
        "revocation_endpoint": e.revoke,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": CAPABILITIES,
    })
}

pub fn openid_configuration(cfg: &AuthConfig) -> Value {
    let e = endpoints(cfg);
    json!({
        "issuer": cfg.issuer,
        "authorization_endpoint": e.authorize,
        "token_endpoint": e.token,
        "jwks_uri": e.jwks,
        "introspection_endpoint": e.introspect,
        "revocation_endpoint": e.revoke,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "bearer"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_configuration_has_required_fields_and_no_plain() {
        let cfg = AuthConfig::new("x.db", "http://h:1/auth", "http://h:1/fhir");
        let doc = smart_configuration(&cfg);
        for f in [
            "issuer",
            "jwks_uri",
            "authorization_endpoint",
            "token_endpoint",
            "grant_types_supported",
            "code_challenge_methods_supported",
            "capabilities",
        ] {
            assert!(doc.get(f).is_some(), "missing {f}");
        }
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["token_endpoint"], "http://h:1/auth/token");
    }
}

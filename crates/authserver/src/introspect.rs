//! Token introspection (RFC 7662, SMART profile) and revocation (RFC 7009). Both look
//! a token up by what it is: a JWT we signed (by `jti`) or a refresh-token handle.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::client_auth::AuthMethod;
use crate::error::OAuthError;
use crate::jws::{JwsAlg, Unverified};
use crate::store::Grant;
use crate::util::{Params, sha256};
use crate::{AuthServer, Inner};

/// What a presented token turned out to be.
enum Known {
    Access {
        claims: Map<String, Value>,
        grant: Grant,
    },
    Refresh {
        grant: Grant,
        exp: u64,
    },
}

impl Inner {
    /// Verifies one of our own access tokens: signature, issuer, expiry, and that its
    /// grant is still alive. `None` for anything else.
    pub fn active_access_token(&self, token: &str) -> Option<(Map<String, Value>, Grant)> {
        let jwt = Unverified::parse(token)?;
        if jwt.header_str("alg") != Some("RS256") || jwt.header_str("typ") != Some("at+jwt") {
            return None;
        }
        let jwk = self.keys.public_jwk(jwt.header_str("kid")?)?;
        if !jwt.verify(JwsAlg::Rs256, &jwk) {
            return None;
        }
        let now = self.config.clock.now();
        if jwt.claim_str("iss") != Some(self.config.issuer.as_str())
            || jwt.claims.get("exp").and_then(Value::as_u64)? <= now
        {
            return None;
        }
        let rec = self.store.access(jwt.claim_str("jti")?).ok()??;
        if rec.grant.revoked || rec.expires_at <= now {
            return None;
        }
        Some((jwt.claims.clone(), rec.grant))
    }

    fn known_token(&self, token: &str) -> Option<Known> {
        if let Some((claims, grant)) = self.active_access_token(token) {
            return Some(Known::Access { claims, grant });
        }
        let (rec, used) = self.store.peek_refresh(&sha256(token.as_bytes())).ok()??;
        let grant = self.store.grant(&rec.grant_id).ok()??;
        let now = self.config.clock.now();
        if used || grant.revoked || rec.expires_at <= now {
            return None;
        }
        Some(Known::Refresh {
            grant,
            exp: rec.expires_at,
        })
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn inactive() -> Response {
    Json(json!({"active": false})).into_response()
}

pub async fn introspect(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &server.inner;
    let params = Params::parse(&body);
    // SMART: the endpoint SHALL accept a SMART or backend-services bearer token; we
    // also accept confidential-client authentication. Public clients cannot introspect.
    let caller_ok = match bearer(&headers) {
        Some(t) => inner.active_access_token(t).is_some(),
        None => match inner.authenticate_client(&headers, &params).await {
            Ok(auth) => auth.method != AuthMethod::None,
            Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => return e.into_response(),
            Err(_) => false,
        },
    };
    if !caller_ok {
        let mut e = OAuthError::invalid_client("introspection needs an authenticated caller");
        e.basic_challenge = true;
        return e.into_response();
    }
    let token = match params.get("token") {
        Ok(Some(t)) => t,
        Ok(None) => return OAuthError::invalid_request("token is missing").into_response(),
        Err(e) => return OAuthError::invalid_request(e).into_response(),
    };
    let mut resp = match inner.known_token(token) {
        None => inactive(),
        Some(Known::Access { claims, grant }) => {
            let mut out = Map::new();
            out.insert("active".into(), Value::Bool(true));
            for k in [
                "scope",
                "client_id",
                "exp",
                "iat",
                "sub",
                "iss",
                "aud",
                "patient",
                "encounter",
                "fhirUser",
                "jti",
            ] {
                if let Some(v) = claims.get(k) {
                    out.insert(k.into(), v.clone());
                }
            }
            out.insert("token_type".into(), Value::String("Bearer".into()));
            if grant.need_patient_banner && grant.patient.is_some() {
                out.insert("need_patient_banner".into(), Value::Bool(true));
            }
            Json(Value::Object(out)).into_response()
        }
        Some(Known::Refresh { grant, exp }) => {
            let mut out = json!({
                "active": true,
                "scope": grant.scope,
                "client_id": grant.client_id,
                "exp": exp,
                "iss": inner.config.issuer,
                "token_type": "refresh_token",
                "sub": grant.user_id.as_deref().unwrap_or(&grant.client_id),
            });
            if let Some(obj) = out.as_object_mut() {
                if let Some(p) = &grant.patient {
                    obj.insert("patient".into(), Value::String(p.clone()));
                }
                if let Some(e) = &grant.encounter {
                    obj.insert("encounter".into(), Value::String(e.clone()));
                }
                if let Some(u) = &grant.fhir_user {
                    obj.insert("fhirUser".into(), Value::String(inner.fhir_user_url(u)));
                }
            }
            Json(out).into_response()
        }
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub async fn revoke(State(server): State<AuthServer>, headers: HeaderMap, body: Bytes) -> Response {
    let inner = &server.inner;
    let params = Params::parse(&body);
    let auth = match inner.authenticate_client(&headers, &params).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let token = match params.get("token") {
        Ok(Some(t)) => t,
        Ok(None) => return OAuthError::invalid_request("token is missing").into_response(),
        Err(e) => return OAuthError::invalid_request(e).into_response(),
    };
    // RFC 7009 §2.2: answer 200 whether or not the token was known, so the endpoint
    // cannot be used to probe for valid tokens. Revoking either token of a grant ends
    // the whole grant (§2.1 allows it; it is what a user pressing "revoke" expects).
    let grant = match inner.known_token(token) {
        Some(Known::Access { grant, .. } | Known::Refresh { grant, .. }) => Some(grant),
        None => None,
    };
    if let Some(grant) = grant
        && grant.client_id == auth.client.client_id
        && let Err(e) = inner.revoke_grant(&grant.id)
    {
        return OAuthError::from(e).into_response();
    }
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

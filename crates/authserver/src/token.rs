//! The token endpoint (RFC 6749 §3.2): authorization_code with PKCE, refresh_token with
//! rotation and reuse detection, client_credentials for SMART Backend Services.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::client_auth::{AuthMethod, Authenticated};
use crate::error::{OAuthError, OAuthErrorCode};
use crate::issue::{Flow, TokenResponse, new_grant_id};
use crate::store::{ClientKind, Grant, Redeem};
use crate::util::{Params, b64url, ct_eq, is_pkce_char, sha256};
use crate::{AuthServer, Inner, scope};

/// Keep recently expired codes and refresh tokens this long so a late replay is still
/// detected (and still revokes the family) instead of looking unknown.
pub const REPLAY_MEMORY_SECS: u64 = 24 * 3600;

pub async fn token(State(server): State<AuthServer>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&server.inner, &headers, &body).await {
        Ok(resp) => {
            let mut r = Json(resp).into_response();
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(
    inner: &Inner,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let params = Params::parse(body);
    let grant_type = params
        .get("grant_type")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
    if !matches!(
        grant_type,
        "authorization_code" | "refresh_token" | "client_credentials"
    ) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "supported: authorization_code, refresh_token, client_credentials",
        ));
    }
    let client = inner.authenticate_client(headers, &params).await?;
    maybe_purge(inner);
    match grant_type {
        "authorization_code" => authorization_code(inner, &client, &params),
        "refresh_token" => refresh_token(inner, &client, &params),
        _ => client_credentials(inner, &client, &params),
    }
}

/// Housekeeping without a background task: roughly one request in 500 purges.
fn maybe_purge(inner: &Inner) {
    if rand::random::<u16>().is_multiple_of(500) {
        let now = inner.config.clock.now();
        if let Err(e) = inner.store.purge_expired(now, REPLAY_MEMORY_SECS) {
            tracing::warn!(error = %e, "purging expired rows failed");
        }
    }
}

/// RFC 7636 §4.1: 43–128 unreserved characters.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.chars().all(is_pkce_char)
}

fn authorization_code(
    inner: &Inner,
    auth: &Authenticated,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let p = |n| params.get(n).map_err(OAuthError::invalid_request);
    let code = p("code")?.ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let redirect_uri = p("redirect_uri")?;
    let verifier = p("code_verifier")?;
    let now = inner.config.clock.now();
    let rec = match inner.store.redeem_code(&sha256(code.as_bytes()))? {
        Redeem::Unknown => return Err(OAuthError::invalid_grant("unknown authorization code")),
        Redeem::Replayed(rec) => {
            // RFC 6749 §4.1.2: a replayed code revokes what the first use obtained.
            inner.revoke_grant(&rec.grant_id)?;
            tracing::warn!(client_id = %rec.client_id, "authorization code replayed; grant revoked");
            return Err(OAuthError::invalid_grant(
                "authorization code was already used",
            ));
        }
        Redeem::Fresh(rec) => rec,
    };
    // From here on the code is spent: a failed attempt cannot be retried, so neither a
    // short verifier nor an injected code can be brute-forced.
    if rec.expires_at <= now {
        return Err(OAuthError::invalid_grant("authorization code has expired"));
    }
    if rec.client_id != auth.client.client_id {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    if redirect_uri != Some(rec.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    let verifier = verifier.ok_or_else(|| OAuthError::invalid_grant("code_verifier is missing"))?;
    if !valid_verifier(verifier) {
        return Err(OAuthError::invalid_grant(
            "code_verifier must be 43-128 unreserved characters",
        ));
    }
    let computed = b64url(&sha256(verifier.as_bytes()));
    if !ct_eq(computed.as_bytes(), rec.code_challenge.as_bytes()) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    let grant = inner
        .store
        .grant(&rec.grant_id)?
        .filter(|g| !g.revoked)
        .ok_or_else(|| OAuthError::invalid_grant("the authorization was revoked"))?;
    let scopes = scope::split(&grant.scope);
    Ok(inner.token_response(&grant, &scopes, Flow::User, rec.nonce.as_deref())?)
}

fn refresh_token(
    inner: &Inner,
    auth: &Authenticated,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let token = params
        .get("refresh_token")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let requested = params.one("scope").map_err(OAuthError::invalid_request)?;
    let now = inner.config.clock.now();
    let hash = sha256(token.as_bytes());
    let (rec, used) = inner
        .store
        .peek_refresh(&hash)?
        .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
    if rec.client_id != auth.client.client_id {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    if used {
        // Rotation reuse: someone holds a copy. Revoke the whole family (RFC 9700 §4.14).
        inner.revoke_grant(&rec.grant_id)?;
        tracing::warn!(client_id = %rec.client_id, "refresh token reused; family revoked");
        return Err(OAuthError::invalid_grant("refresh token was already used"));
    }
    if rec.expires_at <= now {
        return Err(OAuthError::invalid_grant("refresh token has expired"));
    }
    let grant = inner
        .store
        .grant(&rec.grant_id)?
        .filter(|g| !g.revoked)
        .ok_or_else(|| OAuthError::invalid_grant("the authorization was revoked"))?;
    let granted = scope::split(&grant.scope);
    // Scope is checked before the token is spent: a bad scope is not a theft signal.
    let scopes = match requested {
        None => granted,
        Some(s) => {
            let asked = scope::split(s);
            if asked.is_empty() || !scope::all_covered(&granted, &asked) {
                return Err(OAuthError::invalid_scope(
                    "a refresh may only keep or narrow the granted scope",
                ));
            }
            asked
        }
    };
    match inner.store.redeem_refresh(&hash)? {
        Redeem::Fresh(_) => {}
        Redeem::Unknown | Redeem::Replayed(_) => {
            inner.revoke_grant(&rec.grant_id)?;
            return Err(OAuthError::invalid_grant("refresh token was already used"));
        }
    }
    Ok(inner.token_response(&grant, &scopes, Flow::User, None)?)
}

fn client_credentials(
    inner: &Inner,
    auth: &Authenticated,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    if auth.method != AuthMethod::PrivateKeyJwt
        || auth.client.kind != ClientKind::ConfidentialAsymmetric
    {
        return Err(OAuthError::unauthorized_client(
            "client_credentials needs a private_key_jwt client (SMART Backend Services)",
        ));
    }
    let requested = params
        .get("scope")
        .map_err(OAuthError::invalid_request)?
        .map(scope::split)
        .unwrap_or_else(|| auth.client.allowed_scopes.clone());
    let scopes: Vec<String> = requested
        .into_iter()
        .filter(|s| s.starts_with("system/"))
        .filter(|s| {
            auth.client.allowed_scopes.is_empty()
                || auth
                    .client
                    .allowed_scopes
                    .iter()
                    .any(|a| scope::covers(a, s))
        })
        .collect();
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope(
            "no requested system/ scope is allowed for this client",
        ));
    }
    let grant = Grant {
        id: new_grant_id(),
        client_id: auth.client.client_id.clone(),
        user_id: None,
        scope: scope::join(&scopes),
        patient: None,
        encounter: None,
        fhir_user: None,
        need_patient_banner: false,
        revoked: false,
    };
    inner.store.insert_grant(&grant, inner.config.clock.now())?;
    Ok(inner.token_response(&grant, &scopes, Flow::Backend, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_length_and_alphabet() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&"a-._~".repeat(25)));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }
}

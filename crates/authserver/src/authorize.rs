//! The authorization endpoint (GET and POST): validates the request, then parks it as a
//! [`Pending`] request and sends the browser to the interaction pages (`interact`).
//!
//! Order matters (RFC 6749 §4.1.2.1): until the client and its redirect URI are known
//! good, errors are shown on our own error page; after that they redirect to the client.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::OAuthErrorCode;
use crate::session::{COOKIE_NAME, PENDING_TTL, Pending, SESSION_TTL};
use crate::store::Client;
use crate::util::{Params, b64url_decode, sha256};
use crate::{AuthServer, Inner, scope};

/// Codes live one minute (SMART suggests about that; RFC 6749 caps at ten).
pub const CODE_TTL: u64 = 60;

pub async fn authorize_get(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    authorize(&server.inner, &headers, &params)
}

pub async fn authorize_post(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    authorize(&server.inner, &headers, &Params::parse(&body))
}

/// RFC 8252 §7.3: for loopback IP redirect URIs any port is accepted; everything else
/// (scheme, host, path, query) must still match the registered string exactly. No URL
/// normalisation happens, so `@`, `\`, case, trailing `/` and the like never match.
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    for host in ["http://127.0.0.1", "http://[::1]"] {
        if let (Some(a), Some(b)) = (registered.strip_prefix(host), requested.strip_prefix(host)) {
            return strip_port(a).is_some_and(|a| strip_port(b) == Some(a));
        }
    }
    false
}

/// `":1234/cb"` → `"/cb"`; `"/cb"` → `"/cb"`; anything else → `None`.
fn strip_port(rest: &str) -> Option<&str> {
    let Some(after) = rest.strip_prefix(':') else {
        return rest.starts_with('/').then_some(rest);
    };
    let digits = after.chars().take_while(char::is_ascii_digit).count();
    let tail = after.get(digits..)?;
    (digits > 0 && digits <= 5 && tail.starts_with('/')).then_some(tail)
}

/// A 303 to the client's redirect URI with the given query members appended.
pub fn redirect_to_client(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    see_other(url.as_str())
}

pub fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => (StatusCode::BAD_REQUEST, "invalid redirect").into_response(),
    }
}

/// An RFC 6749 §4.1.2.1 error redirect (state echoed when the client sent one).
pub fn error_redirect(
    redirect_uri: &str,
    state: Option<&str>,
    code: OAuthErrorCode,
    description: &str,
) -> Response {
    let mut pairs = vec![("error", code.as_str()), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    redirect_to_client(redirect_uri, &pairs)
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Inner {
    pub fn session_cookie(&self, value: &str) -> Option<HeaderValue> {
        let path = url::Url::parse(&self.config.issuer)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| "/".into());
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE_NAME}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL}{secure}"
        ))
        .ok()
    }

    fn interact_url(&self, id: &str) -> String {
        format!("{}/interact/{id}", self.config.issuer)
    }
}

struct Validated {
    client: Client,
    redirect_uri: String,
    state: String,
    scopes: Vec<String>,
    code_challenge: String,
    nonce: Option<String>,
    launch: Option<crate::store::LaunchContext>,
}

fn authorize(inner: &Inner, headers: &HeaderMap, params: &Params) -> Response {
    let page_err = |msg: &str| {
        inner.pages.error(
            StatusCode::BAD_REQUEST,
            OAuthErrorCode::InvalidRequest.as_str(),
            msg,
        )
    };
    let client = match params.get("client_id") {
        Err(e) => return page_err(&e),
        Ok(None) => return page_err("client_id is missing."),
        Ok(Some(id)) => match inner.store.client(id) {
            Ok(Some(c)) => c,
            Ok(None) => return page_err("This application is not registered."),
            Err(e) => {
                tracing::error!(error = %e, "client lookup failed");
                return inner.pages.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    OAuthErrorCode::ServerError.as_str(),
                    "Internal error.",
                );
            }
        },
    };
    let redirect_uri = match params.get("redirect_uri") {
        Err(e) => return page_err(&e),
        Ok(None) => return page_err("redirect_uri is missing."),
        Ok(Some(r)) => r,
    };
    if !client
        .redirect_uris
        .iter()
        .any(|reg| redirect_matches(reg, redirect_uri))
    {
        return page_err("The redirect_uri is not registered for this application.");
    }
    // The redirect URI is trustworthy from here on.
    let state = params.one("state").ok().flatten().filter(|s| !s.is_empty());
    match validate(inner, params, client, redirect_uri) {
        Err((code, msg)) => error_redirect(redirect_uri, state, code, &msg),
        Ok(v) => park(inner, headers, v),
    }
}

fn validate(
    inner: &Inner,
    params: &Params,
    client: Client,
    redirect_uri: &str,
) -> Result<Validated, (OAuthErrorCode, String)> {
    let invalid = |m: &str| (OAuthErrorCode::InvalidRequest, m.to_string());
    let get = |n: &str| {
        params
            .get(n)
            .map_err(|e| (OAuthErrorCode::InvalidRequest, e))
    };
    match get("response_type")? {
        None => return Err(invalid("response_type is missing")),
        Some("code") => {}
        Some(_) => {
            return Err((
                OAuthErrorCode::UnsupportedResponseType,
                "only response_type=code is supported".into(),
            ));
        }
    }
    let state = get("state")?.ok_or_else(|| invalid("state is required"))?;
    let aud = match (get("aud")?, get("resource")?) {
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err(invalid("aud is required (the FHIR base URL)")),
    };
    if aud.trim_end_matches('/') != inner.config.fhir_base {
        return Err(invalid("aud does not name this server's FHIR base URL"));
    }
    let challenge = get("code_challenge")?
        .ok_or_else(|| invalid("PKCE is required: send code_challenge with S256"))?;
    if get("code_challenge_method")? != Some("S256") {
        return Err(invalid(
            "code_challenge_method must be S256 (plain is refused)",
        ));
    }
    if challenge.len() != 43 || b64url_decode(challenge).is_none_or(|b| b.len() != 32) {
        return Err(invalid(
            "code_challenge must be a base64url SHA-256 (43 characters)",
        ));
    }
    let nonce = get("nonce")?.map(str::to_string);
    let launch = match get("launch")? {
        None => None,
        Some(id) => {
            let now = inner.config.clock.now();
            let ctx = inner
                .store
                .launch(id)
                .map_err(|_| (OAuthErrorCode::ServerError, "internal error".to_string()))?
                .filter(|l| l.expires_at > now)
                .filter(|l| l.client_id.as_ref().is_none_or(|c| *c == client.client_id))
                .ok_or_else(|| invalid("unknown or expired launch"))?;
            Some(ctx)
        }
    };
    let requested = scope::split(get("scope")?.unwrap_or_default());
    let scopes: Vec<String> = requested
        .into_iter()
        // system/ scopes belong to backend services, not to a user's launch.
        .filter(|s| !s.starts_with("system/"))
        // `launch` means nothing without a launch parameter; `launch/encounter` in a
        // standalone launch is not offered (no encounter picker).
        .filter(|s| s != "launch" || launch.is_some())
        .filter(|s| s != "launch/encounter")
        .filter(|s| {
            client.allowed_scopes.is_empty()
                || client.allowed_scopes.iter().any(|a| scope::covers(a, s))
        })
        .collect();
    if scopes.is_empty() {
        return Err((
            OAuthErrorCode::InvalidScope,
            "none of the requested scopes can be granted to this application".into(),
        ));
    }
    Ok(Validated {
        client,
        redirect_uri: redirect_uri.to_string(),
        state: state.to_string(),
        scopes,
        code_challenge: challenge.to_string(),
        nonce,
        launch,
    })
}

fn park(inner: &Inner, headers: &HeaderMap, v: Validated) -> Response {
    let now = inner.config.clock.now();
    let existing = cookie_value(headers, COOKIE_NAME)
        .filter(|c| inner.sessions.get(c, now).is_some())
        .map(str::to_string);
    let (cookie, fresh) = match existing {
        Some(c) => (c, false),
        None => match inner.sessions.create(now) {
            Some((c, _)) => (c, true),
            None => return server_error_page(inner),
        },
    };
    let patient = v.launch.as_ref().and_then(|l| l.patient.clone());
    let pending = Pending {
        session_key: sha256(cookie.as_bytes()),
        client_id: v.client.client_id,
        client_name: v.client.name,
        redirect_uri: v.redirect_uri,
        state: v.state,
        scopes: v.scopes,
        code_challenge: v.code_challenge,
        nonce: v.nonce,
        launch: v.launch,
        patient,
        expires_at: now + PENDING_TTL,
    };
    let Some(id) = inner.sessions.put_pending(pending, now) else {
        return server_error_page(inner);
    };
    let mut resp = see_other(&inner.interact_url(&id));
    if fresh && let Some(c) = inner.session_cookie(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

pub fn server_error_page(inner: &Inner) -> Response {
    inner.pages.error(
        StatusCode::INTERNAL_SERVER_ERROR,
        OAuthErrorCode::ServerError.as_str(),
        "Internal error.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_matching_table() {
        let reg = "https://app.example/cb";
        let cases = [
            ("https://app.example/cb", true),
            ("https://app.example/cb/", false),
            ("https://app.example/cb/extra", false),
            ("https://app.example/cbx", false),
            ("https://APP.example/cb", false),
            ("https://app.example.evil/cb", false),
            ("https://evil.app.example/cb", false),
            ("https://app.example@evil.example/cb", false),
            ("https://app.example:443/cb", false),
            ("https://app.example//cb", false),
            ("https://app.example/\\cb", false),
            ("https://app.example/cb#frag", false),
            ("https://user@app.example/cb", false),
            ("http://app.example/cb", false),
        ];
        for (req, want) in cases {
            assert_eq!(redirect_matches(reg, req), want, "{req}");
        }
    }

    #[test]
    fn loopback_port_is_free_but_nothing_else() {
        let reg = "http://127.0.0.1/cb";
        assert!(redirect_matches(reg, "http://127.0.0.1:53127/cb"));
        assert!(redirect_matches(
            "http://127.0.0.1:8000/cb",
            "http://127.0.0.1:9/cb"
        ));
        assert!(redirect_matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        assert!(!redirect_matches(reg, "http://127.0.0.1:53127/cb2"));
        assert!(!redirect_matches(reg, "http://127.0.0.1:53127@evil/cb"));
        assert!(!redirect_matches(reg, "http://127.0.0.1.evil.example/cb"));
        assert!(!redirect_matches(reg, "http://127.0.0.1:/cb"));
        assert!(!redirect_matches(
            "http://localhost/cb",
            "http://localhost:5/cb"
        ));
    }
}

//! Client authentication at the token, introspection and revocation endpoints:
//! `client_secret_basic` (constant-time, with lockout), `private_key_jwt` (SMART
//! asymmetric profile) and public clients naming themselves with `client_id`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine;
use serde_json::Value;

use crate::Inner;
use crate::error::{AuthError, OAuthError};
use crate::jws::{JwsAlg, Unverified};
use crate::store::{Client, ClientKind};
use crate::util::{Params, ct_eq, sha256};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// SMART: an assertion may live at most five minutes.
const MAX_ASSERTION_LIFETIME: u64 = 300;
const CLOCK_SKEW: u64 = 30;
const MAX_JWKS_BYTES: usize = 64 * 1024;
const JWKS_CACHE_SECS: u64 = 300;
/// A kid missing from a cached key set triggers a refetch at most this often.
const JWKS_REFETCH_SECS: u64 = 10;
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    SecretBasic,
    PrivateKeyJwt,
}

#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: Client,
    pub method: AuthMethod,
}

// === lockout ===

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first_at: u64,
    locked_until: u64,
}

/// Per-client brute-force lockout for shared secrets.
#[derive(Debug)]
pub struct Lockout {
    threshold: u32,
    duration: u64,
    map: Mutex<HashMap<String, Failures>>,
}

impl Lockout {
    pub fn new(threshold: u32, duration: u64) -> Self {
        Self {
            threshold,
            duration,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while the client is locked out.
    pub(crate) fn check(&self, key: &str, now: u64) -> Result<(), u64> {
        let Ok(map) = self.map.lock() else {
            return Ok(());
        };
        match map.get(key) {
            Some(f) if f.locked_until > now => Err(f.locked_until - now),
            _ => Ok(()),
        }
    }

    pub(crate) fn fail(&self, key: &str, now: u64) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            let window = self.duration;
            map.retain(|_, f| f.locked_until > now || f.first_at + window > now);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let f = map.entry(key.to_string()).or_insert(Failures {
            count: 0,
            first_at: now,
            locked_until: 0,
        });
        if f.first_at + self.duration <= now {
            *f = Failures {
                count: 0,
                first_at: now,
                locked_until: 0,
            };
        }
        f.count += 1;
        if f.count >= self.threshold {
            f.locked_until = now + self.duration;
        }
    }

    pub(crate) fn succeed(&self, key: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }
}

// === JWKS by URL ===

#[derive(Debug)]
pub struct JwksCache {
    http: reqwest::Client,
    map: Mutex<HashMap<String, (Value, u64)>>,
}

impl JwksCache {
    pub fn new(timeout: Duration) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::Config(format!("http client: {e}")))?;
        Ok(Self {
            http,
            map: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, url: &str) -> Option<(Value, u64)> {
        self.map.lock().ok()?.get(url).cloned()
    }

    async fn fetch(&self, url: &str, now: u64) -> Option<Value> {
        let mut resp = self.http.get(url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        // Size cap while streaming: a hostile JWKS URL cannot make us buffer gigabytes.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.ok()? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&body).ok()?;
        value.get("keys")?.as_array()?;
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= 1000 {
                map.clear();
            }
            map.insert(url.to_string(), (value.clone(), now));
        }
        Some(value)
    }

    /// The key set, from cache when fresh; refetched when `kid` is missing from a
    /// cached copy older than [`JWKS_REFETCH_SECS`] (the client may have rotated).
    async fn get(&self, url: &str, kid: &str, now: u64) -> Option<Value> {
        if let Some((set, at)) = self.cached(url) {
            let fresh = at + JWKS_CACHE_SECS > now;
            let has_kid = matching_keys(&set, kid, None) > 0;
            if fresh && (has_kid || at + JWKS_REFETCH_SECS > now) {
                return Some(set);
            }
        }
        self.fetch(url, now).await
    }
}

fn matching_keys(set: &Value, kid: &str, kty: Option<&str>) -> usize {
    set.get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
                .filter(|k| kty.is_none() || k.get("kty").and_then(Value::as_str) == kty)
                .count()
        })
        .unwrap_or(0)
}

fn the_key<'a>(set: &'a Value, kid: &str, kty: &str) -> Option<&'a Value> {
    if matching_keys(set, kid, Some(kty)) != 1 {
        return None;
    }
    set.get("keys")?.as_array()?.iter().find(|k| {
        k.get("kid").and_then(Value::as_str) == Some(kid)
            && k.get("kty").and_then(Value::as_str) == Some(kty)
    })
}

// === authentication ===

fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(decoded) = decoded else {
        return Some(Err(()));
    };
    let Some((id, secret)) = decoded.split_once(':') else {
        return Some(Err(()));
    };
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    match (dec(id), dec(secret)) {
        (Some(i), Some(s)) => Some(Ok((i, s))),
        _ => Some(Err(())),
    }
}

fn basic_error(description: &str) -> OAuthError {
    let mut e = OAuthError::invalid_client(description);
    e.basic_challenge = true;
    e
}

impl Inner {
    /// Authenticates the caller of a token-style endpoint.
    pub async fn authenticate_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Authenticated, OAuthError> {
        let now = self.config.clock.now();
        let body_client = params
            .get("client_id")
            .map_err(OAuthError::invalid_request)?;
        let assertion_type = params
            .get("client_assertion_type")
            .map_err(OAuthError::invalid_request)?;
        let basic = basic_credentials(headers);
        if basic.is_some() && assertion_type.is_some() {
            return Err(OAuthError::invalid_request(
                "use exactly one client authentication method",
            ));
        }
        let auth = if let Some(creds) = basic {
            let (id, secret) = creds.map_err(|()| basic_error("malformed Basic credentials"))?;
            self.authenticate_secret(&id, &secret, now)?
        } else if let Some(kind) = assertion_type {
            if kind != JWT_BEARER {
                return Err(OAuthError::invalid_client(
                    "unsupported client_assertion_type",
                ));
            }
            let assertion = params
                .get("client_assertion")
                .map_err(OAuthError::invalid_request)?
                .ok_or_else(|| OAuthError::invalid_client("client_assertion is missing"))?;
            self.authenticate_assertion(assertion, now).await?
        } else if let Some(id) = body_client {
            let client = self
                .store
                .client(id)?
                .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
            if client.kind != ClientKind::Public {
                return Err(OAuthError::invalid_client(
                    "this client must authenticate (client_secret_basic or private_key_jwt)",
                ));
            }
            Authenticated {
                client,
                method: AuthMethod::None,
            }
        } else {
            return Err(OAuthError::invalid_client(
                "client authentication is missing",
            ));
        };
        if let Some(id) = body_client
            && id != auth.client.client_id
        {
            return Err(OAuthError::invalid_client(
                "client_id does not match the authenticated client",
            ));
        }
        Ok(auth)
    }

    fn authenticate_secret(
        &self,
        id: &str,
        secret: &str,
        now: u64,
    ) -> Result<Authenticated, OAuthError> {
        if let Err(retry) = self.lockout.check(id, now) {
            return Err(OAuthError::locked_out(retry));
        }
        let client = self.store.client(id)?;
        // Hash the presented secret even for unknown clients so timing says nothing.
        let presented = sha256(secret.as_bytes());
        let ok = match &client {
            Some(c) if c.kind == ClientKind::ConfidentialSymmetric => c
                .secret_hash
                .as_deref()
                .is_some_and(|stored| ct_eq(stored, &presented)),
            _ => false,
        };
        match client {
            Some(client) if ok => {
                self.lockout.succeed(id);
                Ok(Authenticated {
                    client,
                    method: AuthMethod::SecretBasic,
                })
            }
            _ => {
                self.lockout.fail(id, now);
                if let Err(retry) = self.lockout.check(id, now) {
                    return Err(OAuthError::locked_out(retry));
                }
                Err(basic_error("client authentication failed"))
            }
        }
    }

    async fn authenticate_assertion(
        &self,
        assertion: &str,
        now: u64,
    ) -> Result<Authenticated, OAuthError> {
        let bad = OAuthError::invalid_client;
        let jwt = Unverified::parse(assertion).ok_or_else(|| bad("malformed client_assertion"))?;
        let alg = jwt
            .header_str("alg")
            .and_then(JwsAlg::parse)
            .filter(|a| matches!(a, JwsAlg::Rs384 | JwsAlg::Es384))
            .ok_or_else(|| bad("client_assertion alg must be RS384 or ES384"))?;
        let kid = jwt
            .header_str("kid")
            .ok_or_else(|| bad("client_assertion header lacks kid"))?;
        if jwt.header_str("typ").is_some_and(|t| t != "JWT") {
            return Err(bad("client_assertion typ must be JWT"));
        }
        let iss = jwt.claim_str("iss").ok_or_else(|| bad("iss is missing"))?;
        if jwt.claim_str("sub") != Some(iss) {
            return Err(bad("iss and sub must both be the client_id"));
        }
        let client = self
            .store
            .client(iss)?
            .filter(|c| c.kind == ClientKind::ConfidentialAsymmetric)
            .ok_or_else(|| bad("unknown client or not registered for private_key_jwt"))?;
        let token_url = format!("{}/token", self.config.issuer);
        let aud_ok = match jwt.claims.get("aud") {
            Some(Value::String(a)) => *a == token_url,
            Some(Value::Array(a)) => {
                a.len() == 1 && a.first().and_then(Value::as_str) == Some(&token_url)
            }
            _ => false,
        };
        if !aud_ok {
            return Err(bad("aud must be the token endpoint URL"));
        }
        let exp = jwt
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("exp is missing"))?;
        if exp <= now {
            return Err(bad("client_assertion has expired"));
        }
        if exp > now + MAX_ASSERTION_LIFETIME {
            return Err(bad("exp may be at most five minutes ahead"));
        }
        if jwt
            .claims
            .get("nbf")
            .and_then(Value::as_u64)
            .is_some_and(|nbf| nbf > now + CLOCK_SKEW)
        {
            return Err(bad("client_assertion is not valid yet"));
        }
        let jti = jwt
            .claim_str("jti")
            .filter(|j| !j.is_empty())
            .ok_or_else(|| bad("jti is missing"))?;
        if let Some(jku) = jwt.header_str("jku")
            && client.jwks_url.as_deref() != Some(jku)
        {
            return Err(bad("jku is not the registered JWKS URL"));
        }
        let set = match (&client.jwks, &client.jwks_url) {
            (Some(inline), _) => Some(inline.clone()),
            (None, Some(url)) => self.jwks_cache.get(url, kid, now).await,
            (None, None) => None,
        }
        .ok_or_else(|| bad("the client's key set is unavailable"))?;
        let key = the_key(&set, kid, alg.kty())
            .ok_or_else(|| bad("no single key matches kid and kty"))?;
        if !jwt.verify(alg, key) {
            return Err(bad("client_assertion signature is invalid"));
        }
        if !self.store.record_jti(&client.client_id, jti, exp)? {
            return Err(bad("client_assertion jti was already used"));
        }
        Ok(Authenticated {
            client,
            method: AuthMethod::PrivateKeyJwt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_after_threshold_then_expires() {
        let l = Lockout::new(3, 60);
        l.fail("c", 100);
        l.fail("c", 101);
        assert!(l.check("c", 101).is_ok());
        l.fail("c", 102);
        assert_eq!(l.check("c", 110), Err(52));
        assert!(l.check("other", 110).is_ok());
        assert!(l.check("c", 162).is_ok());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let raw = base64::engine::general_purpose::STANDARD.encode("my%20app:s%3Acret");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {raw}").parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(Ok(("my app".to_string(), "s:cret".to_string())))
        );
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
    }
}

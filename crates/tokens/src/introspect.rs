//! RFC 7662 introspection for opaque tokens, with a cache: active answers are reused until
//! min(`exp`, TTL), inactive ones briefly; an unreachable endpoint fails closed (503).

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use moka::future::Cache;
use reqwest::Client;
use serde_json::{Value, json};

use crate::Principal;
use crate::clock::Clock;
use crate::config::{ClientAuth, IssuerSettings};
use crate::error::{Reason, TokenError};
use crate::fetch;
use crate::json::parse_object;
use crate::jwt::principal_from;

/// Cached outcome of one introspection call.
#[derive(Clone)]
struct Entry {
    outcome: Result<Arc<Principal>, Reason>,
    valid_until: Duration,
}

pub(crate) struct Introspector {
    settings: Arc<IssuerSettings>,
    clock: Clock,
    http: Client,
    cache: Cache<[u8; 32], Entry>,
}

const CACHE_CAPACITY: u64 = 50_000;

impl Introspector {
    pub(crate) fn new(settings: Arc<IssuerSettings>, clock: Clock, http: Client) -> Self {
        let ttl = settings
            .introspection
            .as_ref()
            .map_or(Duration::from_secs(60), |i| i.cache_ttl);
        let cache = Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            // Real-time bound for memory; the injected clock decides validity.
            .time_to_live(ttl.max(Duration::from_secs(1)))
            .build();
        Self {
            settings,
            clock,
            http,
            cache,
        }
    }

    pub(crate) async fn introspect(
        &self,
        token: &str,
        key: [u8; 32],
    ) -> Result<Arc<Principal>, TokenError> {
        let now = self.clock.now();
        if let Some(e) = self.cache.get(&key).await {
            if now < e.valid_until {
                return e.outcome.map_err(TokenError::Invalid);
            }
            self.cache.invalidate(&key).await;
        }
        let entry = self
            .cache
            .try_get_with(key, self.call(token))
            .await
            .map_err(|e| (*e).clone())?;
        entry.outcome.map_err(TokenError::Invalid)
    }

    async fn call(&self, token: &str) -> Result<Entry, TokenError> {
        let s = &self.settings;
        let Some(cfg) = &s.introspection else {
            return Err(Reason::NoIntrospection.into());
        };
        let now = self.clock.now();
        let mut form: Vec<(&str, String)> = vec![
            ("token", token.to_owned()),
            ("token_type_hint", "access_token".to_owned()),
        ];
        let mut req = self
            .http
            .post(cfg.endpoint.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        match &cfg.auth {
            ClientAuth::ClientSecretBasic(secret) => {
                // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
                let id: String =
                    form_urlencoded::byte_serialize(cfg.client_id.as_bytes()).collect();
                let pw: String = form_urlencoded::byte_serialize(secret.expose()).collect();
                req = req.basic_auth(id, Some(pw));
            }
            ClientAuth::PrivateKeyJwt { key, alg, kid } => {
                let assertion =
                    client_assertion(&cfg.client_id, cfg.endpoint.as_str(), key, *alg, kid, now)?;
                form.push(("client_id", cfg.client_id.clone()));
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        let f = fetch::send(req.form(&form), s.fetch_timeout, s.fetch_max_bytes)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %s.issuer, error = %e, "introspection failed");
                unavailable(s)
            })?;
        let doc = parse_object(&f.body).map_err(|_| unavailable(s))?;
        let inactive = |reason| Entry {
            outcome: Err(reason),
            valid_until: now + cfg.negative_cache_ttl,
        };
        if doc.get("active") != Some(&Value::Bool(true)) {
            return Ok(inactive(Reason::Inactive));
        }
        match doc.get("iss") {
            None => {}
            Some(Value::String(i)) if *i == s.issuer => {}
            Some(_) => return Ok(inactive(Reason::Issuer)),
        }
        let now_s = now.as_secs();
        let ttl_end = now + cfg.cache_ttl;
        let exp = match doc.get("exp") {
            None => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| unavailable(s))?),
            Some(_) => return Err(unavailable(s)),
        };
        if exp.is_some_and(|e| now_s > e.saturating_add(s.clock_skew.as_secs())) {
            return Ok(inactive(Reason::Expired));
        }
        let expires_at = exp.unwrap_or(ttl_end.as_secs());
        // A wrong-typed member in the IdP's own answer is the dependency's fault, not the
        // client's; refuse (fail closed) without caching.
        let principal =
            principal_from(&doc, &s.claims, &s.issuer, expires_at).map_err(|_| unavailable(s))?;
        let valid_until = ttl_end.min(Duration::from_secs(expires_at.saturating_add(1)));
        Ok(Entry {
            outcome: Ok(Arc::new(principal)),
            valid_until,
        })
    }
}

fn unavailable(s: &IssuerSettings) -> TokenError {
    TokenError::Unavailable {
        retry_after: s.jwks_refetch_interval.max(Duration::from_secs(1)),
        detail: "introspection unavailable",
    }
}

fn client_assertion(
    client_id: &str,
    aud: &str,
    key: &EncodingKey,
    alg: jsonwebtoken::Algorithm,
    kid: &Option<String>,
    now: Duration,
) -> Result<String, TokenError> {
    let mut header = Header::new(alg);
    header.kid.clone_from(kid);
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| assertion_failed())?;
    let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
    let t = now.as_secs();
    let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": t, "exp": t + 60, "jti": jti});
    jsonwebtoken::encode(&header, &claims, key).map_err(|_| assertion_failed())
}

fn assertion_failed() -> TokenError {
    TokenError::Unavailable {
        retry_after: Duration::from_secs(1),
        detail: "cannot sign client assertion",
    }
}

//! The verifier: picks the issuer, checks the token, and remembers verified tokens.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use moka::sync::Cache;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Principal;
use crate::clock::Clock;
use crate::config::{IssuerSettings, is_hmac};
use crate::error::{Reason, TokenError};
use crate::introspect::Introspector;
use crate::jwt::{self, Shape};
use crate::keys::KeyStore;

/// Tuning that applies across issuers.
#[derive(Debug, Clone)]
pub struct VerifierOptions {
    /// Most verified tokens remembered at once.
    pub token_cache_capacity: u64,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            token_cache_capacity: 100_000,
        }
    }
}

struct IssuerState {
    settings: Arc<IssuerSettings>,
    keys: KeyStore,
    hs_key: Option<Arc<DecodingKey>>,
    introspector: Option<Introspector>,
}

#[derive(Clone)]
struct CachedPrincipal {
    principal: Arc<Principal>,
    /// Clock time after which the entry must be re-verified.
    valid_until: Duration,
    /// Clock time after which the token itself is expired (`exp` + skew).
    expired_after: Duration,
}

struct Inner {
    issuers: HashMap<String, Arc<IssuerState>>,
    /// Opaque tokens go to the first issuer with introspection configured.
    introspection: Option<Arc<IssuerState>>,
    cache: Cache<[u8; 32], CachedPrincipal>,
    clock: Clock,
}

/// Verifies bearer tokens against the configured issuers. Cheap to clone; share one.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.inner.issuers.keys().collect();
        names.sort();
        f.debug_struct("Verifier").field("issuers", &names).finish()
    }
}

impl Verifier {
    /// A verifier for these issuers, with default options.
    pub fn new(issuers: Vec<IssuerSettings>, clock: Clock) -> Self {
        Self::with_options(issuers, clock, VerifierOptions::default())
    }

    /// A verifier with explicit options. Later duplicates of an issuer are ignored.
    pub fn with_options(
        issuers: Vec<IssuerSettings>,
        clock: Clock,
        options: VerifierOptions,
    ) -> Self {
        let http = crate::fetch::client();
        let mut map = HashMap::new();
        let mut introspection = None;
        let mut longest_ttl = Duration::from_secs(1);
        for s in issuers {
            if map.contains_key(&s.issuer) {
                continue;
            }
            longest_ttl = longest_ttl.max(s.token_cache_ttl);
            let settings = Arc::new(s);
            let state = Arc::new(IssuerState {
                keys: KeyStore::new(settings.clone(), clock.clone(), http.clone()),
                hs_key: settings
                    .hs_secret
                    .as_ref()
                    .map(|s| Arc::new(DecodingKey::from_secret(s.expose()))),
                introspector: settings
                    .introspection
                    .is_some()
                    .then(|| Introspector::new(settings.clone(), clock.clone(), http.clone())),
                settings,
            });
            if introspection.is_none() && state.introspector.is_some() {
                introspection = Some(state.clone());
            }
            map.insert(state.settings.issuer.clone(), state);
        }
        let cache = Cache::builder()
            .max_capacity(options.token_cache_capacity)
            .time_to_live(longest_ttl)
            .build();
        Self {
            inner: Arc::new(Inner {
                issuers: map,
                introspection,
                cache,
                clock,
            }),
        }
    }

    /// Verify a bearer token and return who it speaks for.
    ///
    /// JWTs are routed by their (unverified) `iss` to a configured issuer, then checked in
    /// full; opaque tokens go to the introspection issuer. A token verified before costs a
    /// hash and a cache lookup until it expires or its cache lifetime ends.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, TokenError> {
        // Oversized tokens are refused before hashing; the rest of the form check waits for
        // a cache miss, as a cached token is the very string that passed it (it walks every
        // byte, which cost more than the hash and the lookup together).
        if token.len() > jwt::MAX_TOKEN_BYTES {
            return Err(Reason::Malformed.into());
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = self.inner.clock.now();
        if let Some(hit) = self.inner.cache.get(&key) {
            if now < hit.valid_until {
                return Ok(hit.principal);
            }
            self.inner.cache.invalidate(&key);
            // Fully verified once; the only thing that can have changed is the time.
            if now > hit.expired_after {
                return Err(Reason::Expired.into());
            }
        }
        match jwt::shape(token)? {
            Shape::Opaque => {
                let issuer = self
                    .inner
                    .introspection
                    .as_ref()
                    .ok_or(Reason::NoIntrospection)?;
                match &issuer.introspector {
                    Some(i) => Box::pin(i.introspect(token, key)).await,
                    None => Err(Reason::NoIntrospection.into()),
                }
            }
            Shape::Jws => {
                // Boxed, as introspection is: a cache hit should not carry (and copy) the
                // space of the key-fetch and introspection futures.
                let (principal, state) = Box::pin(self.verify_jwt(token)).await?;
                let p = Arc::new(principal);
                let s = &state.settings;
                let until_exp =
                    Duration::from_secs(p.expires_at.saturating_add(s.clock_skew.as_secs()));
                let valid_until = until_exp.min(now + s.token_cache_ttl);
                let entry = CachedPrincipal {
                    principal: p.clone(),
                    valid_until,
                    expired_after: until_exp,
                };
                self.inner.cache.insert(key, entry);
                Ok(p)
            }
        }
    }

    async fn verify_jwt(&self, token: &str) -> Result<(Principal, Arc<IssuerState>), TokenError> {
        let jwt = jwt::parse(token)?;
        let state = match jwt.claims.get("iss") {
            Some(Value::String(iss)) => self.inner.issuers.get(iss).ok_or(Reason::Issuer)?,
            _ => return Err(Reason::Issuer.into()),
        };
        let alg = jwt.header.alg;
        if !state.settings.algorithms.contains(&alg) {
            return Err(Reason::Algorithm.into());
        }
        let key = if is_hmac(alg) {
            state.hs_key.clone().ok_or(Reason::Algorithm)?
        } else {
            state.keys.key_for(jwt.header.kid.as_deref(), alg).await?
        };
        let valid = jsonwebtoken::crypto::verify(
            jwt.signature_b64,
            jwt.signing_input.as_bytes(),
            &key,
            alg,
        )
        .unwrap_or(false);
        if !valid {
            return Err(Reason::Signature.into());
        }
        let p = jwt::check_claims(&jwt, &state.settings, self.inner.clock.unix_secs())?;
        Ok((p, state.clone()))
    }

    /// Fetch every issuer's keys now (at start-up, or for `/readyz`), instead of on the
    /// first request. Returns each issuer with whether it has a key set; issuers that only
    /// use a shared secret or introspection report `true` without fetching.
    pub async fn prefetch_keys(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for (name, state) in &self.inner.issuers {
            let s = &state.settings;
            let needs_jwks = s.algorithms.iter().any(|a| !is_hmac(*a))
                && (s.introspection.is_none() || s.jwks_uri.is_some());
            let ok = !needs_jwks || state.keys.ensure_loaded().await;
            out.push((name.clone(), ok));
        }
        out.sort();
        out
    }

    /// JWKS fetch attempts for an issuer so far (metrics: "JWKS refreshes").
    pub fn jwks_fetches(&self, issuer: &str) -> Option<u64> {
        self.inner.issuers.get(issuer).map(|s| s.keys.fetch_count())
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.issuers.keys().map(String::as_str)
    }
}

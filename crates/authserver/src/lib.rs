//! Embedded SMART on FHIR authorization server, mounted under `/auth` next to the gateway.
//!
//! It plays the part Okta or Keycloak play in a production deployment: apps are sent to
//! its `authorize` endpoint, users sign in and consent on its pages, and apps swap codes
//! (or, for backend services, signed assertions) for JWT access tokens at `token`. The
//! gateway never calls into this crate on the request path: it trusts these tokens only
//! through the discovery document and the JWKS, exactly as it would trust any issuer.
//!
//! Layout: [`AuthServer`] owns the SQLite [`store`], the signing [`keys`] and in-memory
//! browser sessions; `authorize` + `pages` run the browser flow, `token` + `client_auth`
//! the token endpoint, `introspect` RFC 7662/7009, `admin` the functions behind the CLI.

mod admin;
mod authorize;
mod client_auth;
pub mod clock;
mod discovery;
pub mod error;
mod http;
mod interact;
mod introspect;
mod issue;
pub mod jws;
mod keys;
pub mod notices;
mod pages;
pub mod scope;
mod session;
pub mod store;
mod token;
mod util;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use admin::{ClientCreated, LaunchCreated, MintRequest, MintedToken, NewClient, NewUser};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{AuthError, OAuthErrorCode, Result};
pub use notices::RevocationNotices;
pub use store::{Client, ClientKind, PatientEntry, User};

/// Settings for the embedded server. URLs are absolute and without a trailing slash.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The SQLite file (created if missing).
    pub db_path: PathBuf,
    /// This server's issuer URL, where its router is mounted (e.g. `http://127.0.0.1:8080/auth`).
    pub issuer: String,
    /// The FHIR base URL the tokens are for; the only accepted `aud`.
    pub fhir_base: String,
    /// Access-token lifetime for user launches; capped at one hour.
    pub access_token_ttl: Duration,
    /// Access-token lifetime for backend services; capped at five minutes.
    pub backend_token_ttl: Duration,
    /// Lifetime of `offline_access` refresh tokens.
    pub refresh_token_ttl: Duration,
    /// Lifetime of `online_access` refresh tokens (the sign-in session).
    pub online_refresh_ttl: Duration,
    /// Browser origins allowed to call the token, introspection and revocation endpoints
    /// (besides the origins of registered redirect URIs).
    pub cors_origins: Vec<String>,
    /// Bearer secret for `POST /launch` (EHR launch contexts); the endpoint is off without it.
    pub admin_token: Option<String>,
    /// Failed client authentications before a client is locked out.
    pub lockout_threshold: u32,
    pub lockout_duration: Duration,
    /// Timeout for fetching a client's JWKS URL.
    pub jwks_fetch_timeout: Duration,
    /// Time source for every expiry decision (inject [`ManualClock`] in tests).
    pub clock: Arc<dyn Clock>,
    /// Announce ended access tokens through Redis, for gateways that verify JWTs locally
    /// (see [`notices`]). Needs a tokio runtime when [`AuthServer::open`] runs.
    pub revocation_notices: Option<RevocationNotices>,
}

impl AuthConfig {
    /// Defaults for everything but the store path and the two URLs.
    pub fn new(
        db_path: impl Into<PathBuf>,
        issuer: impl Into<String>,
        fhir_base: impl Into<String>,
    ) -> Self {
        Self {
            db_path: db_path.into(),
            issuer: issuer.into(),
            fhir_base: fhir_base.into(),
            access_token_ttl: Duration::from_secs(3600),
            backend_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(90 * 24 * 3600),
            online_refresh_ttl: Duration::from_secs(12 * 3600),
            cors_origins: Vec::new(),
            admin_token: None,
            lockout_threshold: 5,
            lockout_duration: Duration::from_secs(300),
            jwks_fetch_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            revocation_notices: None,
        }
    }

    /// The conventional file inside a data directory.
    pub fn db_path_in(data_dir: &std::path::Path) -> PathBuf {
        data_dir.join("auth.sqlite")
    }

    fn validate(mut self) -> Result<Self> {
        for (name, value) in [
            ("issuer", &mut self.issuer),
            ("fhir_base", &mut self.fhir_base),
        ] {
            while value.ends_with('/') {
                value.pop();
            }
            let parsed = url::Url::parse(value)
                .map_err(|e| AuthError::Config(format!("{name} `{value}`: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
                return Err(AuthError::Config(format!(
                    "{name} must be an http(s) URL without query"
                )));
            }
        }
        self.access_token_ttl = self.access_token_ttl.min(Duration::from_secs(3600));
        self.backend_token_ttl = self.backend_token_ttl.min(Duration::from_secs(300));
        if self.lockout_threshold == 0 {
            return Err(AuthError::Config(
                "lockout_threshold must be at least 1".into(),
            ));
        }
        Ok(self)
    }
}

/// The embedded authorization server. Cheap to clone; all clones share state.
#[derive(Debug, Clone)]
pub struct AuthServer {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: AuthConfig,
    pub store: store::Store,
    pub keys: keys::Keys,
    pub sessions: session::Sessions,
    pub lockout: client_auth::Lockout,
    pub jwks_cache: client_auth::JwksCache,
    pub pages: pages::Pages,
    pub secure_cookies: bool,
    pub notices: Option<notices::Publisher>,
}

impl AuthServer {
    /// Opens (or creates) the store, runs migrations and loads or generates signing keys.
    pub fn open(config: AuthConfig) -> Result<Self> {
        let config = config.validate()?;
        if let Some(parent) = config.db_path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let store = store::Store::open(&config.db_path)?;
        let now = config.clock.now();
        let keys = keys::Keys::load_or_create(&store, now)?;
        store.purge_expired(now, 3600)?;
        let secure_cookies = config.issuer.starts_with("https://");
        let jwks_cache = client_auth::JwksCache::new(config.jwks_fetch_timeout)?;
        let notices = config
            .revocation_notices
            .as_ref()
            .map(notices::Publisher::start)
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                lockout: client_auth::Lockout::new(
                    config.lockout_threshold,
                    config.lockout_duration.as_secs(),
                ),
                config,
                store,
                keys,
                sessions: session::Sessions::default(),
                jwks_cache,
                pages: pages::Pages::new()?,
                secure_cookies,
                notices,
            }),
        })
    }

    /// Whether ended access tokens are announced through Redis.
    pub fn publishes_revocations(&self) -> bool {
        self.inner.notices.is_some()
    }

    /// The issuer URL (where the router is mounted).
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    /// The FHIR base URL tokens are issued for.
    pub fn fhir_base(&self) -> &str {
        &self.inner.config.fhir_base
    }

    /// The HTTP interface. Mount it at the issuer's path, e.g. `Router::nest("/auth", ..)`.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// The `{fhir base}/.well-known/smart-configuration` document (SMART App Launch 2.2).
    pub fn smart_configuration(&self) -> serde_json::Value {
        discovery::smart_configuration(&self.inner.config)
    }

    /// The OpenID Provider metadata served at `{issuer}/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> serde_json::Value {
        discovery::openid_configuration(&self.inner.config)
    }

    /// The current public key set (same as `GET {issuer}/jwks`).
    pub fn jwks(&self) -> Result<serde_json::Value> {
        self.inner.keys.reload(&self.inner.store)?;
        self.inner.keys.jwks()
    }
}

impl Inner {
    /// Revokes a grant (every token issued under it) and announces its access tokens.
    pub(crate) fn revoke_grant(&self, grant_id: &str) -> Result<()> {
        let ended = self.store.revoke_grant(grant_id)?;
        self.announce(ended);
        Ok(())
    }

    pub(crate) fn announce(&self, ended: Vec<(String, u64)>) {
        if let Some(notices) = &self.notices {
            notices.publish(ended, self.config.clock.now());
        }
    }
}

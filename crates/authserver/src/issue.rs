//! Minting tokens from a grant: the JWT access token, the rotated refresh token, the
//! OpenID Connect id_token, and the SMART token-response body around them.

use serde::Serialize;
use serde_json::{Value, json};

use crate::Inner;
use crate::error::Result;
use crate::scope;
use crate::store::{Grant, RefreshRecord};
use crate::util::{random_id, random_token, sha256};

/// The token endpoint's success body (SMART App Launch 2.2 §token response).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
}

/// What kind of token request this is; decides lifetime and the extra members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// A user launch (authorization_code or refresh_token).
    User,
    /// SMART Backend Services (client_credentials): short-lived, no refresh, no context.
    Backend,
}

impl Inner {
    /// `fhirUser` as an absolute URL (stored relative to the FHIR base).
    pub fn fhir_user_url(&self, fhir_user: &str) -> String {
        if fhir_user.starts_with("http://") || fhir_user.starts_with("https://") {
            fhir_user.to_string()
        } else {
            format!("{}/{}", self.config.fhir_base, fhir_user)
        }
    }

    /// Signs and records an access token; returns it with its lifetime in seconds.
    pub fn mint_access_token(
        &self,
        grant: &Grant,
        scopes: &[String],
        ttl: u64,
    ) -> Result<(String, u64)> {
        let now = self.config.clock.now();
        let jti = random_id();
        let mut claims = json!({
            "iss": self.config.issuer,
            "sub": grant.user_id.as_deref().unwrap_or(&grant.client_id),
            "aud": self.config.fhir_base,
            "exp": now + ttl,
            "iat": now,
            "nbf": now,
            "jti": jti,
            "client_id": grant.client_id,
            "scope": scope::join(scopes),
        });
        if let Some(obj) = claims.as_object_mut() {
            if let Some(p) = &grant.patient {
                obj.insert("patient".into(), Value::String(p.clone()));
            }
            if let Some(e) = &grant.encounter {
                obj.insert("encounter".into(), Value::String(e.clone()));
            }
            if let Some(u) = &grant.fhir_user {
                obj.insert("fhirUser".into(), Value::String(self.fhir_user_url(u)));
            }
        }
        let token = self.keys.signer()?.sign("at+jwt", &claims)?;
        self.store
            .insert_access(&jti, &grant.id, &grant.client_id, now + ttl)?;
        Ok((token, ttl))
    }

    fn mint_id_token(
        &self,
        grant: &Grant,
        scopes: &[String],
        nonce: Option<&str>,
    ) -> Result<Option<String>> {
        let Some(user_id) = &grant.user_id else {
            return Ok(None);
        };
        let now = self.config.clock.now();
        let mut claims = json!({
            "iss": self.config.issuer,
            "sub": user_id,
            "aud": grant.client_id,
            "exp": now + self.config.access_token_ttl.as_secs(),
            "iat": now,
            "auth_time": now,
        });
        if let Some(obj) = claims.as_object_mut() {
            // SMART: the claim comes with the `fhirUser` scope.
            if let Some(u) = grant
                .fhir_user
                .as_ref()
                .filter(|_| scopes.iter().any(|s| s == "fhirUser"))
            {
                obj.insert("fhirUser".into(), Value::String(self.fhir_user_url(u)));
            }
            if let Some(n) = nonce {
                obj.insert("nonce".into(), Value::String(n.to_string()));
            }
        }
        Ok(Some(self.keys.signer()?.sign("JWT", &claims)?))
    }

    fn mint_refresh_token(&self, grant: &Grant, granted: &[String]) -> Result<Option<String>> {
        let now = self.config.clock.now();
        let ttl = if granted.iter().any(|s| s == "offline_access") {
            self.config.refresh_token_ttl.as_secs()
        } else if granted.iter().any(|s| s == "online_access") {
            self.config.online_refresh_ttl.as_secs()
        } else {
            return Ok(None);
        };
        let token = random_token();
        self.store.insert_refresh(
            &sha256(token.as_bytes()),
            &RefreshRecord {
                grant_id: grant.id.clone(),
                client_id: grant.client_id.clone(),
                expires_at: now + ttl,
            },
        )?;
        Ok(Some(token))
    }

    /// Builds the full token response for `grant`, with `scopes` (⊆ the grant's) in the
    /// access token.
    pub fn token_response(
        &self,
        grant: &Grant,
        scopes: &[String],
        flow: Flow,
        nonce: Option<&str>,
    ) -> Result<TokenResponse> {
        let ttl = match flow {
            Flow::User => self.config.access_token_ttl.as_secs(),
            Flow::Backend => self.config.backend_token_ttl.as_secs(),
        };
        let (access_token, expires_in) = self.mint_access_token(grant, scopes, ttl)?;
        if flow == Flow::Backend {
            return Ok(TokenResponse {
                access_token,
                token_type: "Bearer",
                expires_in,
                scope: scope::join(scopes),
                refresh_token: None,
                id_token: None,
                patient: None,
                encounter: None,
                need_patient_banner: None,
                smart_style_url: None,
            });
        }
        // Refresh and id tokens follow the grant (what the user allowed), not a narrowed
        // refresh request, so narrowing once does not lose the family for good.
        let granted = scope::split(&grant.scope);
        let id_token = if scopes.iter().any(|s| s == "openid") {
            self.mint_id_token(grant, scopes, nonce)?
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            scope: scope::join(scopes),
            refresh_token: self.mint_refresh_token(grant, &granted)?,
            id_token,
            patient: grant.patient.clone(),
            encounter: grant.encounter.clone(),
            need_patient_banner: Some(grant.need_patient_banner),
            smart_style_url: Some(format!("{}/smart-style.json", self.config.issuer)),
        })
    }
}

/// A new grant id.
pub fn new_grant_id() -> String {
    random_id()
}

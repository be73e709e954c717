//! Administration: what `fhirgate auth ...` and `fhirgate demo` call. Users, clients,
//! the picker's patient list, EHR launch contexts, key rotation and minted tokens.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use serde::Serialize;
use std::time::Duration;

use crate::error::{AuthError, Result};
use crate::issue::new_grant_id;
use crate::keys::Keys;
use crate::store::{Client, ClientKind, Grant, LaunchContext, PatientEntry, User};
use crate::util::{random_id, random_token, sha256};
use crate::{AuthServer, scope};

/// EHR launch contexts are valid this long after creation.
pub const LAUNCH_TTL: u64 = 3600;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
    /// `Patient/123` or `Practitioner/abc` (relative to the FHIR base).
    pub fhir_user: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewClient {
    /// Generated when absent.
    pub client_id: Option<String>,
    pub name: String,
    pub kind: ClientKind,
    pub redirect_uris: Vec<String>,
    /// Empty means "anything a launch may ask for".
    pub allowed_scopes: Vec<String>,
    pub jwks: Option<serde_json::Value>,
    pub jwks_url: Option<String>,
    pub launch_url: Option<String>,
    /// For symmetric clients; generated when absent.
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientCreated {
    pub client_id: String,
    /// Shown once; only its hash is stored.
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LaunchCreated {
    pub launch: String,
    /// The `iss` the EHR passes to the app: the FHIR base.
    pub iss: String,
    /// `{launch_url}?iss=..&launch=..` when the client has a launch URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MintRequest {
    pub client_id: String,
    pub scope: String,
    pub patient: Option<String>,
    /// Username whose `fhirUser` goes into the token.
    pub user: Option<String>,
    /// At most one hour.
    pub expires_in: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct MintedToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

fn check_fhir_user(r: &str) -> Result<()> {
    let ok = [
        "Patient/",
        "Practitioner/",
        "PractitionerRole/",
        "RelatedPerson/",
        "Person/",
    ]
    .iter()
    .any(|p| {
        r.strip_prefix(p)
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
    });
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "fhir_user `{r}` must look like Patient/ID or Practitioner/ID"
        )))
    }
}

fn check_absolute_url(u: &str, what: &str) -> Result<()> {
    let parsed =
        url::Url::parse(u).map_err(|e| AuthError::Invalid(format!("{what} `{u}`: {e}")))?;
    if parsed.fragment().is_some() || parsed.cannot_be_a_base() {
        return Err(AuthError::Invalid(format!(
            "{what} `{u}` must be absolute and without a fragment"
        )));
    }
    Ok(())
}

pub(crate) fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| AuthError::Crypto(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Crypto(e.to_string()))
}

impl AuthServer {
    fn now(&self) -> u64 {
        self.inner.config.clock.now()
    }

    pub fn add_user(&self, new: NewUser) -> Result<User> {
        if new.username.trim().is_empty() || new.password.len() < 8 {
            return Err(AuthError::Invalid(
                "username must be non-empty and password at least 8 characters".into(),
            ));
        }
        if let Some(r) = &new.fhir_user {
            check_fhir_user(r)?;
        }
        let user = User {
            id: random_id(),
            display_name: new.display_name.unwrap_or_else(|| new.username.clone()),
            username: new.username,
            fhir_user: new.fhir_user,
            password_hash: hash_password(&new.password)?,
        };
        self.inner.store.insert_user(&user, self.now())?;
        Ok(user)
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        self.inner.store.users()
    }

    /// Removes a user; false when there was none.
    pub fn remove_user(&self, username: &str) -> Result<bool> {
        self.inner.store.delete_user(username)
    }

    pub fn add_client(&self, new: NewClient) -> Result<ClientCreated> {
        for u in &new.redirect_uris {
            check_absolute_url(u, "redirect URI")?;
        }
        if let Some(u) = &new.jwks_url {
            check_absolute_url(u, "JWKS URL")?;
        }
        if let Some(u) = &new.launch_url {
            check_absolute_url(u, "launch URL")?;
        }
        if let Some(j) = &new.jwks
            && !j.get("keys").is_some_and(serde_json::Value::is_array)
        {
            return Err(AuthError::Invalid("jwks must be a JSON Web Key Set".into()));
        }
        match new.kind {
            ClientKind::ConfidentialAsymmetric if new.jwks.is_none() && new.jwks_url.is_none() => {
                return Err(AuthError::Invalid(
                    "an asymmetric client needs a JWKS or a JWKS URL".into(),
                ));
            }
            ClientKind::Public | ClientKind::ConfidentialSymmetric
                if new.redirect_uris.is_empty() =>
            {
                return Err(AuthError::Invalid(
                    "this client needs a redirect URI".into(),
                ));
            }
            _ => {}
        }
        let secret = match new.kind {
            ClientKind::ConfidentialSymmetric => {
                Some(new.client_secret.unwrap_or_else(random_token))
            }
            _ => None,
        };
        let client = Client {
            client_id: new.client_id.unwrap_or_else(random_id),
            name: new.name,
            kind: new.kind,
            secret_hash: secret.as_ref().map(|s| sha256(s.as_bytes())),
            jwks: new.jwks,
            jwks_url: new.jwks_url,
            redirect_uris: new.redirect_uris,
            allowed_scopes: new.allowed_scopes,
            launch_url: new.launch_url,
        };
        self.inner.store.insert_client(&client, self.now())?;
        Ok(ClientCreated {
            client_id: client.client_id,
            client_secret: secret,
        })
    }

    pub fn list_clients(&self) -> Result<Vec<Client>> {
        self.inner.store.clients()
    }

    /// Removes a client and revokes everything issued to it.
    pub fn remove_client(&self, client_id: &str) -> Result<bool> {
        let (removed, ended) = self.inner.store.delete_client(client_id)?;
        self.inner.announce(ended);
        Ok(removed)
    }

    /// Adds or updates patients offered by the picker (the demo mirrors the FHIR store).
    pub fn upsert_patients(&self, patients: &[PatientEntry]) -> Result<()> {
        self.inner.store.upsert_patients(patients)
    }

    pub fn search_patients(&self, query: &str, limit: usize) -> Result<Vec<PatientEntry>> {
        self.inner.store.search_patients(query, limit)
    }

    /// Creates an EHR launch context.
    pub fn create_launch(
        &self,
        patient: Option<&str>,
        encounter: Option<&str>,
        client_id: Option<&str>,
        need_patient_banner: bool,
    ) -> Result<LaunchCreated> {
        let client = match client_id {
            Some(id) => Some(
                self.inner
                    .store
                    .client(id)?
                    .ok_or_else(|| AuthError::NotFound(format!("client {id}")))?,
            ),
            None => None,
        };
        let ctx = LaunchContext {
            id: random_token(),
            patient: patient.map(str::to_string),
            encounter: encounter.map(str::to_string),
            client_id: client_id.map(str::to_string),
            need_patient_banner,
            expires_at: self.now() + LAUNCH_TTL,
        };
        self.inner.store.insert_launch(&ctx)?;
        let iss = self.inner.config.fhir_base.clone();
        let launch_url = client.and_then(|c| c.launch_url).and_then(|base| {
            let mut u = url::Url::parse(&base).ok()?;
            u.query_pairs_mut()
                .append_pair("iss", &iss)
                .append_pair("launch", &ctx.id);
            Some(u.to_string())
        });
        Ok(LaunchCreated {
            launch: ctx.id,
            iss,
            launch_url,
        })
    }

    /// Generates a new signing key; older keys stay published for a day.
    pub fn rotate_keys(&self) -> Result<String> {
        let kid = Keys::rotate(&self.inner.store, self.now())?;
        self.inner.keys.reload(&self.inner.store)?;
        Ok(kid)
    }

    /// Mints an access token for scripts and tests, as the token endpoint would, within
    /// the client's allowed scopes.
    pub fn mint_token(&self, req: MintRequest) -> Result<MintedToken> {
        let client = self
            .inner
            .store
            .client(&req.client_id)?
            .ok_or_else(|| AuthError::NotFound(format!("client {}", req.client_id)))?;
        let scopes = scope::split(&req.scope);
        if scopes.is_empty() {
            return Err(AuthError::Invalid("scope is empty".into()));
        }
        if !client.allowed_scopes.is_empty() && !scope::all_covered(&client.allowed_scopes, &scopes)
        {
            return Err(AuthError::Invalid(format!(
                "scope exceeds what client {} is allowed ({})",
                client.client_id,
                client.allowed_scopes.join(" ")
            )));
        }
        let ttl = req.expires_in.as_secs();
        if ttl == 0 || ttl > 3600 {
            return Err(AuthError::Invalid(
                "expires-in must be between 1s and 1h".into(),
            ));
        }
        let user = match &req.user {
            Some(name) => Some(
                self.inner
                    .store
                    .user_by_username(name)?
                    .ok_or_else(|| AuthError::NotFound(format!("user {name}")))?,
            ),
            None => None,
        };
        let patient = req.patient.clone().or_else(|| {
            user.as_ref()
                .and_then(|u| u.patient_id().map(str::to_string))
        });
        if scopes.iter().any(|s| scope::is_patient_scope(s)) && patient.is_none() {
            return Err(AuthError::Invalid("patient/ scopes need --patient".into()));
        }
        let grant = Grant {
            id: new_grant_id(),
            client_id: client.client_id.clone(),
            user_id: user.as_ref().map(|u| u.id.clone()),
            scope: scope::join(&scopes),
            patient,
            encounter: None,
            fhir_user: user.and_then(|u| u.fhir_user),
            need_patient_banner: false,
            revoked: false,
        };
        self.inner.store.insert_grant(&grant, self.now())?;
        let (access_token, expires_in) = self.inner.mint_access_token(&grant, &scopes, ttl)?;
        Ok(MintedToken {
            access_token,
            token_type: "Bearer",
            expires_in,
            scope: grant.scope,
        })
    }
}

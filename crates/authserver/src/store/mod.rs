//! The authorization server's SQLite file (WAL mode): keys, users, patients, clients
//! here; grants, codes and tokens in [`grants`]. One connection behind a mutex: the
//! statements are short, and a single writer is what SQLite wants anyway.

mod grants;
mod schema;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::{AuthError, Result};

pub use grants::{AccessRecord, CodeRecord, Grant, LaunchContext, Redeem, RefreshRecord};

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// `client-public`: PKCE only, no secret.
    Public,
    /// `client-confidential-symmetric`: `client_secret_basic`.
    ConfidentialSymmetric,
    /// `client-confidential-asymmetric`: `private_key_jwt` (also backend services).
    ConfidentialAsymmetric,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::ConfidentialSymmetric => "confidential-symmetric",
            Self::ConfidentialAsymmetric => "confidential-asymmetric",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "confidential-symmetric" | "symmetric" => Some(Self::ConfidentialSymmetric),
            "confidential-asymmetric" | "asymmetric" => Some(Self::ConfidentialAsymmetric),
            _ => None,
        }
    }
}

/// A registered client application.
#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub kind: ClientKind,
    #[serde(skip)]
    pub secret_hash: Option<Vec<u8>>,
    /// Inline JWKS for `private_key_jwt`.
    pub jwks: Option<serde_json::Value>,
    /// JWKS URL for `private_key_jwt`; also the only `jku` accepted.
    pub jwks_url: Option<String>,
    pub redirect_uris: Vec<String>,
    /// Scopes the client may ever be granted; requests are narrowed to these.
    pub allowed_scopes: Vec<String>,
    pub launch_url: Option<String>,
}

/// A user who can sign in.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    /// `Patient/123` or `Practitioner/abc`, relative to the FHIR base.
    pub fhir_user: Option<String>,
    #[serde(skip)]
    pub password_hash: String,
}

impl User {
    /// The patient id when this user *is* a patient (they may only see their own record).
    pub fn patient_id(&self) -> Option<&str> {
        self.fhir_user.as_deref()?.strip_prefix("Patient/")
    }
}

/// A patient the picker can offer (id and a display name, mirrored from the FHIR store).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PatientEntry {
    pub id: String,
    pub display_name: String,
    pub birth_date: Option<String>,
}

#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

/// A stored signing key.
#[derive(Debug)]
pub struct KeyRow {
    pub kid: String,
    pub pkcs8: Vec<u8>,
    pub created_at: u64,
    pub retired_at: Option<u64>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| AuthError::Crypto("database mutex poisoned".into()))
    }

    // === keys ===

    pub fn keys(&self) -> Result<Vec<KeyRow>> {
        let c = self.conn()?;
        let mut st = c.prepare(
            "SELECT kid, pkcs8, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
        )?;
        let rows = st.query_map([], |r| {
            Ok(KeyRow {
                kid: r.get(0)?,
                pkcs8: r.get(1)?,
                created_at: r.get(2)?,
                retired_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Adds `kid` as the active key and retires every other one (retired keys stay
    /// published until [`Store::prune_keys`] drops them).
    pub fn add_key(&self, kid: &str, pkcs8: &[u8], now: u64) -> Result<()> {
        let mut c = self.conn()?;
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
            params![now],
        )?;
        tx.execute(
            "INSERT INTO signing_keys (kid, alg, pkcs8, created_at) VALUES (?1, 'RS256', ?2, ?3)",
            params![kid, pkcs8, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn prune_keys(&self, retired_before: u64) -> Result<usize> {
        Ok(self.conn()?.execute(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?1",
            params![retired_before],
        )?)
    }

    // === users ===

    pub fn insert_user(&self, user: &User, now: u64) -> Result<()> {
        let res = self.conn()?.execute(
            "INSERT INTO users (id, username, display_name, password_hash, fhir_user, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                user.id,
                user.username,
                user.display_name,
                user.password_hash,
                user.fhir_user,
                now
            ],
        );
        map_conflict(res, || format!("user {}", user.username))
    }

    fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
        Ok(User {
            id: r.get(0)?,
            username: r.get(1)?,
            display_name: r.get(2)?,
            password_hash: r.get(3)?,
            fhir_user: r.get(4)?,
        })
    }

    pub fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id, username, display_name, password_hash, fhir_user FROM users WHERE username = ?1",
                params![username],
                Self::user_from_row,
            )
            .optional()?)
    }

    pub fn user(&self, id: &str) -> Result<Option<User>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id, username, display_name, password_hash, fhir_user FROM users WHERE id = ?1",
                params![id],
                Self::user_from_row,
            )
            .optional()?)
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let c = self.conn()?;
        let mut st = c.prepare(
            "SELECT id, username, display_name, password_hash, fhir_user FROM users ORDER BY username",
        )?;
        let rows = st.query_map([], Self::user_from_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn delete_user(&self, username: &str) -> Result<bool> {
        Ok(self
            .conn()?
            .execute("DELETE FROM users WHERE username = ?1", params![username])?
            > 0)
    }

    // === patients ===

    pub fn upsert_patients(&self, patients: &[PatientEntry]) -> Result<()> {
        let mut c = self.conn()?;
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare(
                "INSERT INTO patients (id, display_name, birth_date) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET display_name = excluded.display_name,
                 birth_date = excluded.birth_date",
            )?;
            for p in patients {
                st.execute(params![p.id, p.display_name, p.birth_date])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Patients whose name or id contains `query` (case-insensitive), at most `limit`.
    pub fn search_patients(&self, query: &str, limit: usize) -> Result<Vec<PatientEntry>> {
        let c = self.conn()?;
        let escaped = query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        let mut st = c.prepare(
            "SELECT id, display_name, birth_date FROM patients
             WHERE display_name LIKE ?1 ESCAPE '\\' OR id LIKE ?1 ESCAPE '\\'
             ORDER BY display_name, id LIMIT ?2",
        )?;
        let rows = st.query_map(params![pattern, limit as i64], |r| {
            Ok(PatientEntry {
                id: r.get(0)?,
                display_name: r.get(1)?,
                birth_date: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn patient(&self, id: &str) -> Result<Option<PatientEntry>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id, display_name, birth_date FROM patients WHERE id = ?1",
                params![id],
                |r| {
                    Ok(PatientEntry {
                        id: r.get(0)?,
                        display_name: r.get(1)?,
                        birth_date: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    // === clients ===

    pub fn insert_client(&self, client: &Client, now: u64) -> Result<()> {
        let res = self.conn()?.execute(
            "INSERT INTO clients (client_id, name, kind, secret_hash, jwks, jwks_url,
                 redirect_uris, allowed_scopes, launch_url, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                client.client_id,
                client.name,
                client.kind.as_str(),
                client.secret_hash,
                client.jwks.as_ref().map(|j| j.to_string()),
                client.jwks_url,
                serde_json::to_string(&client.redirect_uris).unwrap_or_default(),
                serde_json::to_string(&client.allowed_scopes).unwrap_or_default(),
                client.launch_url,
                now
            ],
        );
        map_conflict(res, || format!("client {}", client.client_id))
    }

    fn client_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Client> {
        let kind: String = r.get(2)?;
        let jwks: Option<String> = r.get(4)?;
        let redirects: String = r.get(6)?;
        let scopes: String = r.get(7)?;
        Ok(Client {
            client_id: r.get(0)?,
            name: r.get(1)?,
            kind: ClientKind::parse(&kind).unwrap_or(ClientKind::Public),
            secret_hash: r.get(3)?,
            jwks: jwks.and_then(|j| serde_json::from_str(&j).ok()),
            jwks_url: r.get(5)?,
            redirect_uris: serde_json::from_str(&redirects).unwrap_or_default(),
            allowed_scopes: serde_json::from_str(&scopes).unwrap_or_default(),
            launch_url: r.get(8)?,
        })
    }

    pub fn client(&self, client_id: &str) -> Result<Option<Client>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT client_id, name, kind, secret_hash, jwks, jwks_url, redirect_uris,
                        allowed_scopes, launch_url FROM clients WHERE client_id = ?1",
                params![client_id],
                Self::client_from_row,
            )
            .optional()?)
    }

    pub fn clients(&self) -> Result<Vec<Client>> {
        let c = self.conn()?;
        let mut st = c.prepare(
            "SELECT client_id, name, kind, secret_hash, jwks, jwks_url, redirect_uris,
                    allowed_scopes, launch_url FROM clients ORDER BY client_id",
        )?;
        let rows = st.query_map([], Self::client_from_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Deletes a client and revokes its grants; also returns the access tokens (`jti`,
    /// `exp`) that ended with them.
    pub fn delete_client(&self, client_id: &str) -> Result<(bool, Vec<(String, u64)>)> {
        let mut c = self.conn()?;
        let tx = c.transaction()?;
        let n = tx.execute(
            "DELETE FROM clients WHERE client_id = ?1",
            params![client_id],
        )?;
        // A removed client's outstanding grants die with it.
        let ended = grants::live_access_tokens(&tx, "client_id", client_id)?;
        tx.execute(
            "UPDATE grants SET revoked = 1 WHERE client_id = ?1",
            params![client_id],
        )?;
        tx.commit()?;
        Ok((n > 0, ended))
    }
}

fn map_conflict(res: rusqlite::Result<usize>, what: impl FnOnce() -> String) -> Result<()> {
    match res {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(AuthError::Conflict(what()))
        }
        Err(e) => Err(e.into()),
    }
}

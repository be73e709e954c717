//! Grants and everything hanging off them: launch contexts, authorization codes,
//! refresh tokens (stored as SHA-256 hashes), issued access-token ids and used
//! assertion `jti`s. Revoking a grant revokes every token issued under it.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::Result;

/// An EHR launch context (`launch` parameter).
#[derive(Debug, Clone)]
pub struct LaunchContext {
    pub id: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// When set, only this client may use the launch.
    pub client_id: Option<String>,
    pub need_patient_banner: bool,
    pub expires_at: u64,
}

/// What a user (or a backend client) authorised: the root of a token family.
#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    pub user_id: Option<String>,
    pub scope: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub fhir_user: Option<String>,
    pub need_patient_banner: bool,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct CodeRecord {
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub expires_at: u64,
}

#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub grant_id: String,
    pub client_id: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub grant: Grant,
    pub expires_at: u64,
}

/// The outcome of presenting a single-use handle.
#[derive(Debug)]
pub enum Redeem<T> {
    Unknown,
    /// First use: the caller now owns it.
    Fresh(T),
    /// Already used: a replay.
    Replayed(T),
}

fn grant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        client_id: r.get(1)?,
        user_id: r.get(2)?,
        scope: r.get(3)?,
        patient: r.get(4)?,
        encounter: r.get(5)?,
        fhir_user: r.get(6)?,
        need_patient_banner: r.get(7)?,
        revoked: r.get(8)?,
    })
}

const GRANT_COLS: &str =
    "id, client_id, user_id, scope, patient, encounter, fhir_user, need_patient_banner, revoked";

impl Store {
    pub fn insert_launch(&self, l: &LaunchContext) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO launch_contexts (id, patient, encounter, client_id, need_patient_banner, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![l.id, l.patient, l.encounter, l.client_id, l.need_patient_banner, l.expires_at],
        )?;
        Ok(())
    }

    pub fn launch(&self, id: &str) -> Result<Option<LaunchContext>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id, patient, encounter, client_id, need_patient_banner, expires_at
                 FROM launch_contexts WHERE id = ?1",
                params![id],
                |r| {
                    Ok(LaunchContext {
                        id: r.get(0)?,
                        patient: r.get(1)?,
                        encounter: r.get(2)?,
                        client_id: r.get(3)?,
                        need_patient_banner: r.get(4)?,
                        expires_at: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn insert_grant(&self, g: &Grant, now: u64) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO grants (id, client_id, user_id, scope, patient, encounter, fhir_user,
                 need_patient_banner, created_at, revoked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
            params![
                g.id,
                g.client_id,
                g.user_id,
                g.scope,
                g.patient,
                g.encounter,
                g.fhir_user,
                g.need_patient_banner,
                now
            ],
        )?;
        Ok(())
    }

    pub fn grant(&self, id: &str) -> Result<Option<Grant>> {
        Ok(self
            .conn()?
            .query_row(
                &format!("SELECT {GRANT_COLS} FROM grants WHERE id = ?1"),
                params![id],
                grant_from_row,
            )
            .optional()?)
    }

    /// Revokes a grant and so every access and refresh token issued under it. Returns the
    /// access tokens (`jti`, `exp`) it ended, for revocation notices to gateways that verify
    /// JWTs locally.
    pub fn revoke_grant(&self, id: &str) -> Result<Vec<(String, u64)>> {
        let mut c = self.conn()?;
        let tx = c.transaction()?;
        let ended = live_access_tokens(&tx, "id", id)?;
        tx.execute("UPDATE grants SET revoked = 1 WHERE id = ?1", params![id])?;
        tx.commit()?;
        Ok(ended)
    }

    pub fn insert_code(&self, hash: &[u8], c: &CodeRecord) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO codes (hash, grant_id, client_id, redirect_uri, code_challenge, nonce, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![hash, c.grant_id, c.client_id, c.redirect_uri, c.code_challenge, c.nonce, c.expires_at],
        )?;
        Ok(())
    }

    /// Marks the code used and says whether this was its first use. Atomic under the
    /// connection lock, so two concurrent redemptions cannot both win.
    pub fn redeem_code(&self, hash: &[u8]) -> Result<Redeem<CodeRecord>> {
        let c = self.conn()?;
        let row = c
            .query_row(
                "SELECT grant_id, client_id, redirect_uri, code_challenge, nonce, expires_at, used
                 FROM codes WHERE hash = ?1",
                params![hash],
                |r| {
                    Ok((
                        CodeRecord {
                            grant_id: r.get(0)?,
                            client_id: r.get(1)?,
                            redirect_uri: r.get(2)?,
                            code_challenge: r.get(3)?,
                            nonce: r.get(4)?,
                            expires_at: r.get(5)?,
                        },
                        r.get::<_, bool>(6)?,
                    ))
                },
            )
            .optional()?;
        Ok(match row {
            None => Redeem::Unknown,
            Some((rec, true)) => Redeem::Replayed(rec),
            Some((rec, false)) => {
                c.execute("UPDATE codes SET used = 1 WHERE hash = ?1", params![hash])?;
                Redeem::Fresh(rec)
            }
        })
    }

    pub fn insert_refresh(&self, hash: &[u8], r: &RefreshRecord) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO refresh_tokens (hash, grant_id, client_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, r.grant_id, r.client_id, r.expires_at],
        )?;
        Ok(())
    }

    /// Like [`Store::redeem_code`], for refresh-token rotation.
    pub fn redeem_refresh(&self, hash: &[u8]) -> Result<Redeem<RefreshRecord>> {
        let c = self.conn()?;
        let row = c
            .query_row(
                "SELECT grant_id, client_id, expires_at, used FROM refresh_tokens WHERE hash = ?1",
                params![hash],
                |r| {
                    Ok((
                        RefreshRecord {
                            grant_id: r.get(0)?,
                            client_id: r.get(1)?,
                            expires_at: r.get(2)?,
                        },
                        r.get::<_, bool>(3)?,
                    ))
                },
            )
            .optional()?;
        Ok(match row {
            None => Redeem::Unknown,
            Some((rec, true)) => Redeem::Replayed(rec),
            Some((rec, false)) => {
                c.execute(
                    "UPDATE refresh_tokens SET used = 1 WHERE hash = ?1",
                    params![hash],
                )?;
                Redeem::Fresh(rec)
            }
        })
    }

    /// A refresh token's record without using it (introspection, revocation).
    pub fn peek_refresh(&self, hash: &[u8]) -> Result<Option<(RefreshRecord, bool)>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT grant_id, client_id, expires_at, used FROM refresh_tokens WHERE hash = ?1",
                params![hash],
                |r| {
                    Ok((
                        RefreshRecord {
                            grant_id: r.get(0)?,
                            client_id: r.get(1)?,
                            expires_at: r.get(2)?,
                        },
                        r.get::<_, bool>(3)?,
                    ))
                },
            )
            .optional()?)
    }

    pub fn insert_access(
        &self,
        jti: &str,
        grant_id: &str,
        client_id: &str,
        exp: u64,
    ) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO access_tokens (jti, grant_id, client_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![jti, grant_id, client_id, exp],
        )?;
        Ok(())
    }

    /// The grant behind an access token we issued, if we know the `jti`.
    pub fn access(&self, jti: &str) -> Result<Option<AccessRecord>> {
        let cols = GRANT_COLS
            .split(", ")
            .map(|c| format!("g.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(self
            .conn()?
            .query_row(
                &format!(
                    "SELECT {cols}, a.expires_at FROM access_tokens a JOIN grants g ON g.id = a.grant_id
                     WHERE a.jti = ?1"
                ),
                params![jti],
                |r| {
                    Ok(AccessRecord {
                        grant: grant_from_row(r)?,
                        expires_at: r.get(9)?,
                    })
                },
            )
            .optional()?)
    }

    /// Records an assertion `jti`; false when it was already seen (a replay).
    pub fn record_jti(&self, client_id: &str, jti: &str, expires_at: u64) -> Result<bool> {
        let n = self.conn()?.execute(
            "INSERT OR IGNORE INTO used_jtis (client_id, jti, expires_at) VALUES (?1, ?2, ?3)",
            params![client_id, jti, expires_at],
        )?;
        Ok(n == 1)
    }

    /// Drops rows nobody can use any more. `grace` keeps recently expired rows so a late
    /// replay is still recognised as one.
    pub fn purge_expired(&self, now: u64, grace: u64) -> Result<()> {
        let cutoff = now.saturating_sub(grace);
        let c = self.conn()?;
        c.execute("DELETE FROM codes WHERE expires_at < ?1", params![cutoff])?;
        c.execute(
            "DELETE FROM refresh_tokens WHERE expires_at < ?1",
            params![cutoff],
        )?;
        c.execute(
            "DELETE FROM access_tokens WHERE expires_at < ?1",
            params![cutoff],
        )?;
        // A jti must be remembered at least until the assertion it came from expires.
        c.execute("DELETE FROM used_jtis WHERE expires_at < ?1", params![now])?;
        c.execute(
            "DELETE FROM launch_contexts WHERE expires_at < ?1",
            params![cutoff],
        )?;
        Ok(())
    }
}

/// `(jti, exp)` of the access tokens of not yet revoked grants whose `column` (`id` or
/// `client_id`) is `value`: what revoking those grants ends (announced once, not again).
pub(crate) fn live_access_tokens(
    c: &rusqlite::Connection,
    column: &'static str,
    value: &str,
) -> Result<Vec<(String, u64)>> {
    let mut st = c.prepare(&format!(
        "SELECT a.jti, a.expires_at FROM access_tokens a JOIN grants g ON g.id = a.grant_id
         WHERE g.{column} = ?1 AND g.revoked = 0"
    ))?;
    let rows = st.query_map(params![value], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

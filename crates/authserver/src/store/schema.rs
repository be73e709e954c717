//! Versioned schema migrations. Each entry runs once, in order, inside a transaction;
//! `PRAGMA user_version` records how far a database file has come. Append, never edit.

use rusqlite::Connection;

use crate::error::Result;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        pkcs8 BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        retired_at INTEGER
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        fhir_user TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE patients (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        birth_date TEXT
    );
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        secret_hash BLOB,
        jwks TEXT,
        jwks_url TEXT,
        redirect_uris TEXT NOT NULL,
        allowed_scopes TEXT NOT NULL,
        launch_url TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE launch_contexts (
        id TEXT PRIMARY KEY,
        patient TEXT,
        encounter TEXT,
        client_id TEXT,
        need_patient_banner INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        user_id TEXT,
        scope TEXT NOT NULL,
        patient TEXT,
        encounter TEXT,
        fhir_user TEXT,
        need_patient_banner INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE codes (
        hash BLOB PRIMARY KEY,
        grant_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        nonce TEXT,
        expires_at INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE refresh_tokens (
        hash BLOB PRIMARY KEY,
        grant_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX refresh_tokens_grant ON refresh_tokens(grant_id);
    CREATE TABLE access_tokens (
        jti TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX access_tokens_grant ON access_tokens(grant_id);
    CREATE TABLE used_jtis (
        client_id TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (client_id, jti)
    );
    "#,
];

/// Brings `conn` up to the latest schema version.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len());
    }
}

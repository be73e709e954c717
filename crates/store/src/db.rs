//! The SQLite file: schema, migrations and connections.
//!
//! One writer connection behind a mutex (SQLite allows one writer at a time anyway) and a
//! small pool of reader connections; WAL mode lets readers run while a write commits.
//! The schema version is kept in `PRAGMA user_version`; `migrate` brings an older file
//! forward step by step inside one transaction.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::Connection;

use crate::error::{Result, StoreError};

/// Current schema version. Bump it and add a step to `MIGRATIONS` when the schema changes.
pub const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[n]` takes a file from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: initial schema.
    r#"
    CREATE TABLE resources (
        rid INTEGER PRIMARY KEY,
        rtype TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        body TEXT NOT NULL,
        UNIQUE (rtype, id)
    );
    CREATE INDEX resources_by_type ON resources (rtype, deleted, rid);
    CREATE TABLE history (
        hid INTEGER PRIMARY KEY,
        rtype TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        method TEXT NOT NULL,
        body TEXT,
        UNIQUE (rtype, id, version)
    );
    CREATE INDEX history_by_type ON history (rtype, hid);
    CREATE TABLE idx_string (
        rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
        norm TEXT NOT NULL, exact TEXT NOT NULL
    );
    CREATE INDEX idx_string_lookup ON idx_string (rtype, param, norm);
    CREATE INDEX idx_string_rid ON idx_string (rid);
    CREATE TABLE idx_token (
        rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
        system TEXT NOT NULL, code TEXT NOT NULL
    );
    CREATE INDEX idx_token_lookup ON idx_token (rtype, param, code, system);
    CREATE INDEX idx_token_rid ON idx_token (rid, param, code);
    CREATE TABLE idx_date (
        rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
        lo INTEGER NOT NULL, hi INTEGER NOT NULL
    );
    CREATE INDEX idx_date_lookup ON idx_date (rtype, param, lo);
    CREATE INDEX idx_date_rid ON idx_date (rid, param);
    CREATE TABLE idx_ref (
        rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
        target_type TEXT NOT NULL, target_id TEXT NOT NULL, url TEXT NOT NULL
    );
    CREATE INDEX idx_ref_lookup ON idx_ref (rtype, param, target_id, target_type);
    CREATE INDEX idx_ref_target ON idx_ref (target_type, target_id);
    CREATE INDEX idx_ref_rid ON idx_ref (rid, param);
    CREATE TABLE idx_number (
        rid INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
        value REAL NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL
    );
    CREATE INDEX idx_number_lookup ON idx_number (rtype, param, value);
    CREATE INDEX idx_number_rid ON idx_number (rid, param);
    "#,
];

/// Reader connections, all opened up front so every read finds a warm statement cache.
const READERS: usize = 8;

/// The connections to one store file.
pub struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Signalled when a reader connection is returned to the pool.
    reader_free: Condvar,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode keeps every committed transaction across a process crash; only an
    // OS crash or power loss can drop the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

impl Db {
    /// Open (creating if needed) and migrate the store file.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let c = Connection::open(path)?;
                configure(&c)?;
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Db {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(readers),
            reader_free: Condvar::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer connection (held for the duration of one write transaction).
    pub fn writer(&self) -> Result<MutexGuard<'_, Connection>> {
        self.writer.lock().map_err(|_| StoreError::Worker)
    }

    /// Run `f` on a pooled reader connection, waiting for one when all are busy (reads are
    /// short, and a bounded pool keeps memory and open files bounded under load).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = {
            let mut pool = self.readers.lock().map_err(|_| StoreError::Worker)?;
            loop {
                if let Some(c) = pool.pop() {
                    break c;
                }
                pool = self
                    .reader_free
                    .wait(pool)
                    .map_err(|_| StoreError::Worker)?;
            }
        };
        let out = f(&conn);
        self.readers
            .lock()
            .map_err(|_| StoreError::Worker)?
            .push(conn);
        self.reader_free.notify_one();
        out
    }
}

/// Bring the file to `SCHEMA_VERSION`; refuse files written by a newer fhirgate.
fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NotSupported(format!(
            "store file has schema version {current}, newer than this fhirgate ({SCHEMA_VERSION})"
        )));
    }
    let tx = conn.transaction()?;
    for (version, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(step)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(version + 1).unwrap_or(0),
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The schema version recorded in a connection's file.
pub fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_file_gets_current_schema_and_reopening_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let db = Db::open(&path).unwrap();
        assert_eq!(db.read(schema_version).unwrap(), SCHEMA_VERSION);
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.read(schema_version).unwrap(), SCHEMA_VERSION);
        let mode: String = db
            .read(|c| Ok(c.pragma_query_value(None, "journal_mode", |r| r.get(0))?))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_file_from_a_newer_fhirgate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = Db::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotSupported(_)), "{err}");
    }
}

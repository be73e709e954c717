//! Embedded FHIR R4 server on SQLite, with a sample-data generator and a bundle importer.
//!
//! Sits behind the gateway like any other upstream FHIR server (HAPI, Azure, ...): the
//! gateway has authenticated and authorized the request before it arrives here, and the
//! store knows nothing about tokens or scopes. It serves FHIR REST under its own base URL
//! ([`router`], [`serve`]); `fhirgate store serve` runs it standalone and `fhirgate demo`
//! runs it in-process. Storage is one SQLite file: current versions, full history and
//! search-index tables built from the official SearchParameter expressions
//! (`search_params_generated.rs`, produced by `tools/gen-search-params.py`).

pub(crate) use fhirgate_fhir as fhir;

mod db;
pub mod error;
pub mod fhirtime;
pub mod generate;
pub mod import;
pub mod index;
pub mod ops;
mod rest;
pub mod search;
pub mod search_params;

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};

pub use error::{Result, StoreError};
pub use ops::Stored;
pub use rest::{router, serve};

/// A handle on one store file. Cheap to clone; all clones share the connections.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<db::Db>,
}

impl Store {
    /// Open or create the store at `path`, migrating the schema when needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Ok(Store {
            db: Arc::new(db::Db::open(path.as_ref())?),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Run read-only work on a pooled connection (blocking).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.db.read(f)
    }

    /// Run `f` in one write transaction (blocking): committed when `f` returns `Ok`, rolled
    /// back otherwise.
    pub fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.db.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// [`Store::read`] on the blocking thread pool.
    pub async fn read_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read(f))
            .await
            .map_err(|_| StoreError::Worker)?
    }

    /// [`Store::write`] on the blocking thread pool. The write completes even if the client
    /// that asked for it disconnects.
    pub async fn write_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write(f))
            .await
            .map_err(|_| StoreError::Worker)?
    }

    /// Number of current (not deleted) resources of each type, sorted by type.
    pub fn counts(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT rtype, COUNT(*) FROM resources WHERE deleted = 0 GROUP BY rtype ORDER BY rtype",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(db::schema_version)
    }
}

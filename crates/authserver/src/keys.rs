//! Signing keys: generated on first start, stored in SQLite, all published in the JWKS.
//! The newest key signs; older keys stay published so tokens they signed keep verifying
//! until they expire (`fhirgate auth rotate-keys` adds a key, it never deletes a live one).

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::error::{AuthError, Result};
use crate::jws::RsaSigner;
use crate::store::Store;
use crate::util::random_id;

/// Keys retired longer ago than this are no longer published: every token they signed
/// (access ≤ 1 h, id_token ≤ 1 h) has expired by then.
pub const RETIRED_KEY_PUBLISH_SECS: u64 = 24 * 3600;

#[derive(Debug)]
struct KeySet {
    active: Arc<RsaSigner>,
    all: Vec<Arc<RsaSigner>>,
}

/// The in-memory key set, swapped whole on reload so signing never waits on a rotation.
#[derive(Debug)]
pub struct Keys {
    set: RwLock<Arc<KeySet>>,
}

impl Keys {
    /// Loads the stored keys, generating the first one when there is none.
    pub fn load_or_create(store: &Store, now: u64) -> Result<Self> {
        if store.keys()?.is_empty() {
            Self::rotate(store, now)?;
        }
        let set = Self::read(store)?;
        Ok(Self {
            set: RwLock::new(Arc::new(set)),
        })
    }

    /// Adds a new active key to the store; returns its `kid`.
    pub fn rotate(store: &Store, now: u64) -> Result<String> {
        let kid = random_id();
        let (_, der) = RsaSigner::generate(kid.clone())?;
        store.add_key(&kid, &der, now)?;
        store.prune_keys(now.saturating_sub(RETIRED_KEY_PUBLISH_SECS))?;
        Ok(kid)
    }

    fn read(store: &Store) -> Result<KeySet> {
        let rows = store.keys()?;
        let mut all = Vec::with_capacity(rows.len());
        let mut active = None;
        for row in rows {
            let signer = Arc::new(RsaSigner::from_pkcs8(row.kid.clone(), &row.pkcs8)?);
            if row.retired_at.is_none() {
                active = Some(signer.clone());
            }
            all.push(signer);
        }
        let active = active
            .or_else(|| all.last().cloned())
            .ok_or_else(|| AuthError::Crypto("no signing key".into()))?;
        Ok(KeySet { active, all })
    }

    /// Re-reads the store (another process may have rotated keys).
    pub fn reload(&self, store: &Store) -> Result<()> {
        let fresh = Arc::new(Self::read(store)?);
        if let Ok(mut guard) = self.set.write() {
            *guard = fresh;
        }
        Ok(())
    }

    fn current(&self) -> Result<Arc<KeySet>> {
        self.set
            .read()
            .map(|g| g.clone())
            .map_err(|_| AuthError::Crypto("key set lock poisoned".into()))
    }

    pub fn signer(&self) -> Result<Arc<RsaSigner>> {
        Ok(self.current()?.active.clone())
    }

    /// The published JWK of `kid`, to verify our own tokens.
    pub fn public_jwk(&self, kid: &str) -> Option<Value> {
        let set = self.current().ok()?;
        set.all
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.public_jwk())
    }

    pub fn jwks(&self) -> Result<Value> {
        let set = self.current()?;
        let keys: Vec<Value> = set.all.iter().rev().map(|k| k.public_jwk()).collect();
        Ok(json!({ "keys": keys }))
    }
}

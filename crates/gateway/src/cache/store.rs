//! The bounded entry store (moka, weighed by bytes, per-entry TTL) and invalidation.
//!
//! A write through the gateway invalidates after the upstream answered. A read that fetched
//! its answer before the write landed could otherwise store a stale copy after the
//! invalidation ran; so every invalidation bumps a generation under a write lock, and an
//! answer is stored only if the generation it saw at lookup is still current, checked and
//! inserted under the read lock.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fhirgate_fhir::ResourceType;
use http::{HeaderMap, HeaderValue, StatusCode};
use moka::notification::RemovalCause;
use moka::sync::Cache;

/// Bookkeeping bytes per entry beyond the key, headers and body.
const ENTRY_OVERHEAD: usize = 256;

/// One stored answer, exactly as it was sent to its partition.
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) etag: Option<HeaderValue>,
    pub(crate) stored_at: Instant,
    pub(crate) ttl: Duration,
    /// What phase 7 found in the answer, so a hit's audit record names the same patients.
    pub(crate) patients: Option<BTreeSet<String>>,
    /// Types the answer is made of: a write to any of them drops it.
    pub(crate) types: Vec<ResourceType>,
    /// The answer may depend on any type (includes, chains): every write drops it.
    pub(crate) any_type: bool,
}

impl Entry {
    pub(crate) fn is_fresh(&self) -> bool {
        self.stored_at.elapsed() < self.ttl
    }

    fn weight(&self, key: &str) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let total = key.len() + headers + self.body.len() + ENTRY_OVERHEAD;
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}

/// What a write invalidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    All,
    Type(ResourceType),
}

struct PerEntryTtl;

impl moka::Expiry<Arc<str>, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        value: &Arc<Entry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) bypasses: AtomicU64,
    pub(crate) evicted_size: AtomicU64,
    pub(crate) evicted_expired: AtomicU64,
    pub(crate) invalidations: AtomicU64,
}

/// Figures for the metrics scrape.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CacheStats {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) bypasses: u64,
    pub(crate) evicted_size: u64,
    pub(crate) evicted_expired: u64,
    pub(crate) invalidations: u64,
    pub(crate) bytes: u64,
    pub(crate) entries: u64,
}

pub(crate) struct Store {
    entries: Cache<Arc<str>, Arc<Entry>>,
    generation: AtomicU64,
    gate: RwLock<()>,
    pub(crate) counters: Arc<Counters>,
}

impl Store {
    pub(crate) fn new(max_memory: u64) -> Self {
        let counters = Arc::new(Counters::default());
        let listener_counters = Arc::clone(&counters);
        let entries = Cache::builder()
            .max_capacity(max_memory)
            .weigher(|key: &Arc<str>, entry: &Arc<Entry>| entry.weight(key))
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |_key, _entry, cause| match cause {
                RemovalCause::Size => {
                    listener_counters
                        .evicted_size
                        .fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    listener_counters
                        .evicted_expired
                        .fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        Store {
            entries,
            generation: AtomicU64::new(0),
            gate: RwLock::new(()),
            counters,
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.entries.get(key).filter(|e| e.is_fresh())
    }

    /// Store unless an invalidation ran since `seen_generation` was read.
    pub(crate) fn insert(&self, key: String, entry: Entry, seen_generation: u64) -> bool {
        let _shared = self
            .gate
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.generation.load(Ordering::Acquire) != seen_generation {
            return false;
        }
        self.entries.insert(Arc::from(key), Arc::new(entry));
        true
    }

    pub(crate) fn invalidate(&self, scope: Scope) {
        let _exclusive = self
            .gate
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        match scope {
            Scope::All => self.entries.invalidate_all(),
            Scope::Type(t) => {
                let dropped = self.entries.invalidate_entries_if(move |_, entry| {
                    entry.any_type || entry.types.contains(&t)
                });
                if let Err(err) = dropped {
                    // Only possible without `support_invalidation_closures`; never serve
                    // what might be stale.
                    tracing::error!(error = %err, "cache: type invalidation failed; purging all");
                    self.entries.invalidate_all();
                }
            }
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        // Pending evictions and invalidations are applied first so the figures are current.
        self.entries.run_pending_tasks();
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            bypasses: c.bypasses.load(Ordering::Relaxed),
            evicted_size: c.evicted_size.load(Ordering::Relaxed),
            evicted_expired: c.evicted_expired.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            bytes: self.entries.weighted_size(),
            entries: self.entries.entry_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: usize, types: Vec<ResourceType>) -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; size]),
            etag: None,
            stored_at: Instant::now(),
            ttl: Duration::from_secs(60),
            patients: None,
            types,
            any_type: false,
        }
    }

    #[test]
    fn total_weight_stays_under_the_bound() {
        let store = Store::new(100_000);
        for i in 0..500 {
            store.insert(format!("k{i}"), entry(1000, vec![]), 0);
        }
        let stats = store.stats();
        assert!(stats.bytes <= 100_000, "{stats:?}");
        assert!(stats.entries > 10 && stats.entries < 500, "{stats:?}");
        assert!(stats.evicted_size > 0, "{stats:?}");
    }

    #[test]
    fn invalidation_drops_the_type_and_refuses_stale_inserts() {
        let store = Store::new(1_000_000);
        let seen = store.generation();
        store.insert(
            "obs".into(),
            entry(10, vec![ResourceType::Observation]),
            seen,
        );
        store.insert(
            "prac".into(),
            entry(10, vec![ResourceType::Practitioner]),
            seen,
        );
        let mut chained = entry(10, vec![ResourceType::PractitionerRole]);
        chained.any_type = true;
        store.insert("role?practitioner.name=x".into(), chained, seen);
        store.invalidate(Scope::Type(ResourceType::Observation));
        assert!(store.get("obs").is_none());
        assert!(store.get("prac").is_some());
        assert!(store.get("role?practitioner.name=x").is_none());
        // A read that looked up before the write must not store what it fetched.
        assert!(!store.insert(
            "obs".into(),
            entry(10, vec![ResourceType::Observation]),
            seen
        ));
        assert!(store.get("obs").is_none());
        assert!(store.insert(
            "obs".into(),
            entry(10, vec![ResourceType::Observation]),
            store.generation()
        ));
        store.invalidate(Scope::All);
        assert!(store.get("prac").is_none() && store.get("obs").is_none());
    }

    #[test]
    fn expired_entries_are_not_served() {
        let store = Store::new(1_000_000);
        let mut e = entry(10, vec![]);
        e.ttl = Duration::from_millis(1);
        e.stored_at = Instant::now() - Duration::from_millis(5);
        store.insert("k".into(), e, 0);
        assert!(store.get("k").is_none());
    }
}

//! Phase 5, cache: answers to cacheable reads are kept and served again without the
//! upstream, never across an authorization boundary (DESIGN.md §3 step 5).
//!
//! The phase runs after authorize and throttle, so a request that lacks the scope or is over
//! its limit never reaches it. The key holds the authorization partition (see [`key`]); the
//! stored answer is the one sent to that partition, after phase 7's check and the base-URL
//! rewrite, together with the patients phase 7 found in it, so a hit needs no re-check and
//! its audit record names the same patients. Writes through the gateway drop the entries of
//! the type they touch once the upstream has answered (see [`store`]).

mod config;
mod key;
mod policy;
mod respond;
mod store;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use fhirgate_fhir::{Interaction, ResourceType};
use http::{HeaderValue, Method, Response, header};

pub use config::{CacheConfig, CacheInteraction, CacheRule};
pub(crate) use store::CacheStats;

use crate::classify::Classified;
use crate::ctx::RequestCtx;
use crate::verify::{Verification, VerifyPlan};
use key::Partition;
use policy::RequestDirective;
use respond::Collected;
use store::{Entry, Scope, Store};

pub(crate) struct Cache {
    config: CacheConfig,
    store: Store,
}

/// The outcome of the lookup, carried to [`Cache::complete`] after forward and verify.
pub(crate) enum Lookup {
    /// Not a cacheable request: forwarded as usual, marked `Bypass`.
    Bypass,
    /// Cacheable, not found (or the client asked for a fresh copy).
    Miss(Box<Pending>),
    /// Answered from the cache.
    Hit(Response<Body>),
}

pub(crate) struct Pending {
    key: String,
    partition: Partition,
    ttl: Duration,
    types: Vec<ResourceType>,
    any_type: bool,
    generation: u64,
    /// Taken off the forwarded request so the upstream sends the whole answer to store.
    if_none_match: Option<HeaderValue>,
    /// HEAD answers have no body to store.
    head: bool,
}

impl Cache {
    pub(crate) fn new(config: Option<&CacheConfig>) -> Option<Cache> {
        let config = config?.clone();
        Some(Cache {
            store: Store::new(config.max_memory),
            config,
        })
    }

    /// Look the request up. On a miss the conditional headers are taken off the request, so
    /// the upstream answers in full and the entry can serve later `If-None-Match` checks.
    pub(crate) fn lookup(
        &self,
        ctx: &mut RequestCtx,
        classified: &mut Classified,
        plan: &VerifyPlan,
    ) -> Lookup {
        let Some(pending) = self.cacheable(ctx, classified, plan) else {
            self.count(|c| &c.bypasses);
            return Lookup::Bypass;
        };
        let headers = &mut classified.parts.headers;
        match policy::request_directive(headers) {
            RequestDirective::Bypass => {
                self.count(|c| &c.bypasses);
                return Lookup::Bypass;
            }
            RequestDirective::Refresh => {}
            RequestDirective::Normal => {
                if let Some(entry) = self.store.get(&pending.key) {
                    self.count(|c| &c.hits);
                    ctx.returned_patients = entry.patients.clone();
                    let inm = headers.get(header::IF_NONE_MATCH);
                    return Lookup::Hit(respond::from_entry(&entry, inm, pending.head));
                }
            }
        }
        self.count(|c| &c.misses);
        let mut pending = pending;
        if !pending.head {
            pending.if_none_match = headers.remove(header::IF_NONE_MATCH);
            headers.remove(header::IF_MODIFIED_SINCE);
        }
        Lookup::Miss(Box::new(pending))
    }

    fn cacheable(
        &self,
        ctx: &RequestCtx,
        classified: &Classified,
        plan: &VerifyPlan,
    ) -> Option<Pending> {
        let fhir = ctx.fhir.as_ref()?;
        if fhir.method != Method::GET && fhir.method != Method::HEAD {
            return None;
        }
        let (kind, rule_type, types) = key::cacheable(&fhir.interaction)?;
        let ttl = config::rule_ttl(&self.config, kind, rule_type)?;
        let checked = !matches!(plan.verification, Verification::None);
        let partition = key::partition(ctx.principal.as_deref(), fhir, &types, checked)?;
        let key = key::build(&partition, fhir, &classified.parts.headers);
        Some(Pending {
            key,
            partition,
            ttl,
            types,
            any_type: key::reaches_other_types(fhir),
            generation: self.store.generation(),
            if_none_match: None,
            head: fhir.method == Method::HEAD,
        })
    }

    /// After forward and verify: store the answer when it may be kept, and mark it.
    pub(crate) async fn complete(
        &self,
        ctx: &RequestCtx,
        lookup: Lookup,
        response: Response<Body>,
    ) -> Response<Body> {
        let mut response = response;
        let pending = match lookup {
            Lookup::Hit(_) => return response,
            Lookup::Bypass => {
                respond::mark(&mut response, "Bypass");
                return response;
            }
            Lookup::Miss(pending) => pending,
        };
        let mut response = self.store_answer(ctx, &pending, response).await;
        respond::mark(&mut response, "Miss");
        response
    }

    async fn store_answer(
        &self,
        ctx: &RequestCtx,
        pending: &Pending,
        response: Response<Body>,
    ) -> Response<Body> {
        let storable = policy::storable_for(
            response.status().as_u16(),
            response.headers(),
            &self.config.statuses,
            &pending.partition,
            pending.ttl,
        );
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // A grant-partition answer is shared by every patient holding the grant: only
        // when phase 7 found no patient's data in it (else it would be per patient).
        let names_a_patient = matches!(pending.partition, Partition::Grant { .. })
            && ctx
                .returned_patients
                .as_ref()
                .is_some_and(|p| !p.is_empty());
        let (Some(ttl), false) = (
            storable,
            names_a_patient
                || pending.head
                || declared.is_some_and(|n| n > self.config.max_entry_size),
        ) else {
            return response;
        };
        let (parts, body) = response.into_parts();
        let bytes = match respond::collect(body, self.config.max_entry_size).await {
            Ok(Collected::Whole(bytes)) => bytes,
            Ok(Collected::TooLarge(body)) => return Response::from_parts(parts, body),
            Err(err) => {
                // The upstream broke off mid-body: the client sees the same failure.
                tracing::debug!(request_id = ctx.request_id_str(), error = %err, "cache: body read failed");
                let failed = futures_util::stream::once(async move { Err::<bytes::Bytes, _>(err) });
                return Response::from_parts(parts, Body::from_stream(failed));
            }
        };
        let etag = parts.headers.get(header::ETAG).cloned();
        let entry = Entry {
            status: parts.status,
            headers: respond::storable_headers(&parts.headers),
            body: bytes.clone(),
            etag: etag.clone(),
            stored_at: Instant::now(),
            ttl,
            patients: ctx.returned_patients.clone(),
            types: pending.types.clone(),
            any_type: pending.any_type,
        };
        self.store
            .insert(pending.key.clone(), entry, pending.generation);
        let client_has_it = parts.status == http::StatusCode::OK
            && matches!((&pending.if_none_match, &etag), (Some(inm), Some(etag)) if policy::etag_matches(inm, etag));
        if client_has_it {
            return respond::not_modified_from(&parts.headers);
        }
        Response::from_parts(parts, Body::from(bytes))
    }

    /// For a request that may change upstream state: a guard that invalidates what it may
    /// have changed when dropped (after the answer, or when the client gave up mid-way,
    /// since the write may have landed either way).
    pub(crate) fn on_write(&self, ctx: &RequestCtx) -> Option<Invalidation<'_>> {
        let fhir = ctx.fhir.as_ref()?;
        if fhir.interaction.is_read_only()
            || fhir.method == Method::GET
            || fhir.method == Method::HEAD
        {
            return None;
        }
        let scope = match &fhir.interaction {
            // Entries of a batch or transaction may touch any type.
            Interaction::BatchOrTransaction => Scope::All,
            other => other.resource_type().map_or(Scope::All, Scope::Type),
        };
        Some(Invalidation { cache: self, scope })
    }

    /// `POST /admin/cache/purge[?type=T]`.
    pub(crate) fn purge(&self, resource_type: Option<ResourceType>) {
        self.store
            .invalidate(resource_type.map_or(Scope::All, Scope::Type));
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.store.stats()
    }

    fn count(&self, which: impl Fn(&store::Counters) -> &std::sync::atomic::AtomicU64) {
        which(&self.store.counters).fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) struct Invalidation<'a> {
    cache: &'a Cache,
    scope: Scope,
}

impl Drop for Invalidation<'_> {
    fn drop(&mut self) {
        self.cache.store.invalidate(self.scope);
    }
}

//! One upstream target and its connections: a bounded LIFO list of idle HTTP/1.1
//! connections (or one shared HTTP/2 connection when TLS negotiated `h2`), its in-flight
//! count for least-requests balancing, and its passive health.
//!
//! A connection is checked out before the request is built, so a connect failure leaves the
//! request (and its body) untouched and free to go to another target. It goes back to the idle
//! list when its response body ends; a body dropped early takes the connection with it, since
//! the unread rest of the response would otherwise be read as the next answer.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::HeaderValue;
use hyper::client::conn::{http1, http2};

use super::connect::Address;

/// Pool limits shared by every target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) failures_to_eject: u32,
    pub(crate) eject_for: Duration,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// Counters copied into the metrics at scrape time.
#[derive(Default)]
pub(crate) struct TargetStats {
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    pub(crate) reused: AtomicU64,
    pub(crate) ejections: AtomicU64,
    pub(crate) retries: AtomicU64,
}

pub(crate) struct Target {
    pub(crate) address: Address,
    /// This target's FHIR base without a trailing slash, rewritten to the public base.
    pub(crate) base: Arc<str>,
    /// `host[:port]` as sent in `Host` to an HTTP/1.1 upstream.
    pub(crate) host_header: HeaderValue,
    pub(crate) settings: PoolSettings,
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    pub(crate) in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the target is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    epoch: Instant,
    pub(crate) stats: TargetStats,
}

/// A connection ready to take one request.
pub(crate) enum Conn {
    Http1 {
        sender: http1::SendRequest<Body>,
        reused: bool,
    },
    Http2(http2::SendRequest<Body>),
}

impl Target {
    pub(crate) fn new(
        address: Address,
        base: String,
        host_header: HeaderValue,
        settings: PoolSettings,
        epoch: Instant,
    ) -> Self {
        Target {
            address,
            base: Arc::from(base),
            host_header,
            settings,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch,
            stats: TargetStats::default(),
        }
    }

    /// A pooled connection that is still open and ready, if there is one.
    pub(crate) async fn pooled(&self) -> Option<Conn> {
        if let Some(sender) = self.shared_h2() {
            return Some(Conn::Http2(sender));
        }
        loop {
            let idle = self.idle.lock().ok()?.pop()?;
            if idle.since.elapsed() >= self.settings.idle_timeout || idle.sender.is_closed() {
                continue;
            }
            let mut sender = idle.sender;
            // An idle connection is ready at once unless the upstream closed it meanwhile.
            if sender.ready().await.is_ok() {
                return Some(Conn::Http1 {
                    sender,
                    reused: true,
                });
            }
        }
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<Body>> {
        let mut slot = self.h2.lock().ok()?;
        match slot.as_ref() {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    pub(crate) fn share_h2(&self, sender: &http2::SendRequest<Body>) {
        if let Ok(mut slot) = self.h2.lock() {
            *slot = Some(sender.clone());
        }
    }

    fn check_in(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() || self.settings.max_idle == 0 {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        // The oldest connections are at the front; expired ones are closed by dropping them.
        let expired = idle
            .iter()
            .take_while(|i| i.since.elapsed() >= self.settings.idle_timeout)
            .count();
        idle.drain(..expired);
        if idle.len() >= self.settings.max_idle {
            return;
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.len())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// A connect failure, reset, timeout or 5xx. Enough of them in a row eject the target.
    pub(crate) fn record_failure(&self) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.settings.failures_to_eject {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let for_ms = u64::try_from(self.settings.eject_for.as_millis()).unwrap_or(u64::MAX);
            self.ejected_until.store(
                self.now_ms().saturating_add(for_ms).max(1),
                Ordering::Relaxed,
            );
            self.stats.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target_base = %self.base,
                failures,
                eject_for = %humantime::format_duration(self.settings.eject_for),
                "upstream target ejected after consecutive failures"
            );
        }
    }

    pub(crate) fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }
}

/// A target's share of one request: counted in flight until dropped, and holding the HTTP/1.1
/// connection until the response body ends.
pub(crate) struct Lease {
    target: Arc<Target>,
    sender: Option<http1::SendRequest<Body>>,
}

impl Lease {
    pub(crate) fn new(target: Arc<Target>) -> Self {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        Lease {
            target,
            sender: None,
        }
    }

    pub(crate) fn hold(&mut self, sender: http1::SendRequest<Body>) {
        self.sender = Some(sender);
    }

    pub(crate) fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// The response is complete: the connection can serve the next request.
    pub(super) fn release(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.target.check_in(sender);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.target.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

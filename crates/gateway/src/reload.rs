//! Live reload: a new [`GatewayConfig`] becomes a new [`Pipeline`] that is swapped in
//! atomically. Requests already running keep the pipeline they started with (they hold an
//! `Arc` to it); new requests get the new one. Parts with state are carried over when their
//! section did not change, so a reload loses no rate-limit counter, token cache, upstream
//! connection or metric, and the audit hash chain goes on in the same writer.
//!
//! Settings fixed at start-up (listen addresses, the transport limits built into the listener,
//! the drain time, the audit trail) are refused with a message saying a restart is needed, so
//! an operator never believes a change is active when it is not.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use fhirgate_tokens::Verifier;

use crate::audit::Audit;
use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::throttle::Throttle;
use crate::upstream::{BuildError, Upstream};

/// The pipeline every new request uses; swapped whole on reload.
pub(crate) type SharedPipeline = Arc<ArcSwap<Pipeline>>;

/// A request from the admin endpoint to re-read the configuration file; the answer is the
/// log line's text (`Ok`: what was reloaded, `Err`: why nothing changed).
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

/// Parts of the running pipeline handed to the next one instead of being rebuilt.
#[derive(Default)]
pub(crate) struct Reused {
    pub(crate) upstream: Option<Arc<Upstream>>,
    pub(crate) verifier: Option<Option<Verifier>>,
    pub(crate) throttle: Option<Option<Arc<Throttle>>>,
    pub(crate) audit: Option<Option<Audit>>,
    pub(crate) metrics: Option<Option<Arc<Metrics>>>,
}

/// Why a new configuration was not applied; the running one stays active.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("{} cannot change without a restart; the running configuration stays active", .0.join(", "))]
    RestartRequired(Vec<&'static str>),
    #[error("the new configuration could not be built: {0}")]
    Build(#[from] BuildError),
}

/// Applies new configurations to a serving [`crate::Gateway`]. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    pipeline: SharedPipeline,
    /// The configuration of the pipeline in `pipeline`; the lock also serialises reloads.
    current: Arc<Mutex<GatewayConfig>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// The parts of the old pipeline a reload kept, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: Vec<&'static str>,
    pub rebuilt: Vec<&'static str>,
}

impl Reloader {
    pub(crate) fn new(pipeline: SharedPipeline, config: GatewayConfig) -> Self {
        Reloader {
            pipeline,
            current: Arc::new(Mutex::new(config)),
        }
    }

    /// Build a pipeline for `config` and swap it in, or leave everything as it is.
    pub fn reload(&self, config: GatewayConfig) -> Result<ReloadSummary, ReloadError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let fixed = restart_required(&current, &config);
        if !fixed.is_empty() {
            return Err(ReloadError::RestartRequired(fixed));
        }
        let old = self.pipeline.load_full();
        let (reused, summary) = reusable(&old, &current, &config);
        let next = Pipeline::build(&config, reused)?;
        self.pipeline.store(Arc::new(next));
        *current = config;
        Ok(summary)
    }
}

/// Sections fixed once the listener runs.
fn restart_required(old: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let mut fixed = Vec::new();
    if old.listen != new.listen {
        fixed.push("listen");
    }
    if old.metrics.admin_listen != new.metrics.admin_listen {
        fixed.push("metrics.admin_listen");
    }
    if !same(&old.limits, &new.limits) {
        fixed.push("limits");
    }
    if !same(&old.shutdown, &new.shutdown) {
        fixed.push("shutdown");
    }
    // Never two writers on one file: the running writer owns the chain. Its record builder
    // also knows the base URLs, so those are fixed too while auditing.
    if old.audit != new.audit {
        fixed.push("audit");
    } else if old.audit.is_some()
        && (old.public_base_url != new.public_base_url || old.upstream.url != new.upstream.url)
    {
        fixed.push("public_base_url and upstream.url (while audit is on)");
    }
    fixed
}

fn reusable(
    old: &Pipeline,
    old_config: &GatewayConfig,
    new: &GatewayConfig,
) -> (Reused, ReloadSummary) {
    let mut reused = Reused::default();
    let mut summary = ReloadSummary {
        kept: Vec::new(),
        rebuilt: Vec::new(),
    };
    let mut decide = |name: &'static str, keep: bool| {
        if keep {
            summary.kept.push(name);
        } else {
            summary.rebuilt.push(name);
        }
        keep
    };
    if decide(
        "upstream pool",
        same(&old_config.upstream, &new.upstream)
            && old_config.public_base_url == new.public_base_url,
    ) {
        reused.upstream = Some(Arc::clone(&old.upstream));
    }
    if decide("token verifier", same(&old_config.auth, &new.auth)) {
        reused.verifier = Some(old.security.verifier.clone());
    }
    if decide(
        "rate limiter",
        same(&old_config.rate_limit, &new.rate_limit),
    ) {
        reused.throttle = Some(old.throttle.clone());
    }
    if decide("metrics", old_config.metrics == new.metrics) {
        reused.metrics = Some(old.metrics.clone());
    }
    // Always kept: any change to it is refused by `restart_required`.
    summary.kept.push("audit writer");
    reused.audit = Some(old.audit.clone());
    (reused, summary)
}

/// Section equality through `Debug`: several section types (issuer settings, rate-limit
/// rules) have no `PartialEq`, and their `Debug` output lists every setting, secrets
/// redacted the same way on both sides.
fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GatewayConfig {
        let url = |s: &str| url::Url::parse(s).unwrap();
        GatewayConfig::new(url("http://gw.test/fhir"), url("http://up.test/fhir"))
    }

    #[test]
    fn listen_and_limits_need_a_restart() {
        let old = config();
        let mut new = config();
        assert!(restart_required(&old, &new).is_empty());
        new.listen = "127.0.0.1:1".parse().unwrap();
        new.limits.max_connections = 7;
        assert_eq!(restart_required(&old, &new), vec!["listen", "limits"]);
    }

    #[test]
    fn equal_sections_compare_equal() {
        assert!(same(&config().upstream, &config().upstream));
        let mut other = config();
        other.upstream.connect_timeout = std::time::Duration::from_millis(1);
        assert!(!same(&config().upstream, &other.upstream));
    }
}

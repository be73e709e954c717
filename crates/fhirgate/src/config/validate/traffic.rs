//! Stage two for `rate_limit`, `audit` and `metrics`. The first two are the libraries' own
//! config types; their cross-key checks run here so the error names the section.

use fhirgate_gateway::GatewayConfig;

use super::{Problems, Scalar};
use crate::config::raw::RawConfig;

pub(super) fn validate(p: &mut Problems, raw: &RawConfig, config: &mut GatewayConfig) {
    if let Some(rate_limit) = &raw.rate_limit {
        match rate_limit.clone().validate() {
            Ok(valid) => config.rate_limit = Some(valid),
            Err(err) => p.push("rate_limit", err.to_string()),
        }
    }
    if let Some(audit) = &raw.audit {
        match audit.validate() {
            Ok(()) => config.audit = Some(audit.clone()),
            Err(err) => p.push("audit", err.to_string()),
        }
    }
    let m = &raw.metrics;
    let metrics = &mut config.metrics;
    p.flag("metrics.enabled", m.enabled.as_ref(), &mut metrics.enabled);
    if let Some(Scalar(path)) = &m.path {
        let path = path.trim();
        let base = config.public_base_url.path().trim_end_matches('/');
        if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#']) {
            p.push(
                "metrics.path",
                format!("expected an absolute path like \"/metrics\", got {path:?}"),
            );
        } else if !base.is_empty() && (path == base || path.starts_with(&format!("{base}/"))) {
            p.push(
                "metrics.path",
                "must lie outside the FHIR base path (it would shadow a FHIR request)",
            );
        } else {
            metrics.path = path.to_owned();
        }
    }
    p.count(
        "metrics.max_client_labels",
        m.max_client_labels.as_ref(),
        &mut metrics.max_client_labels,
    );
}

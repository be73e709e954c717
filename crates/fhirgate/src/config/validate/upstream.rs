//! Stage two for the upstream's targets, balancing, retries and passive health.

use fhirgate_gateway::{Balance, UpstreamConfig};
use url::Url;

use super::{Problems, Scalar};
use crate::config::raw::RawUpstream;

/// The first target: `upstream.url`, or the first of `upstream.targets` (exactly one of the
/// two must be given).
pub(super) fn url(p: &mut Problems, up: &RawUpstream) -> Option<Url> {
    match (&up.url, &up.targets) {
        (Some(_), Some(_)) => {
            p.push(
                "upstream.targets",
                "give either `upstream.url` or `upstream.targets`, not both",
            );
            None
        }
        (None, Some(targets)) => {
            let Some(first) = targets.first() else {
                p.push("upstream.targets", "must list at least one URL");
                return None;
            };
            p.base_url("upstream.targets", Some(first))
        }
        (url, None) => p.base_url("upstream.url", url.as_ref()),
    }
}

pub(super) fn validate(p: &mut Problems, up: &RawUpstream, config: &mut UpstreamConfig) {
    if let (None, Some(targets)) = (&up.url, &up.targets) {
        set_targets(p, targets, config);
    }
    if let Some(Scalar(text)) = &up.balance {
        match text.trim() {
            "round_robin" => config.balance = Balance::RoundRobin,
            "least_requests" => config.balance = Balance::LeastRequests,
            other => p.push(
                "upstream.balance",
                format!("expected round_robin or least_requests, got {other:?}"),
            ),
        }
    }
    if let Some(r) = &up.retries {
        let retries = &mut config.retries;
        whole(
            p,
            "upstream.retries.max",
            r.max.as_ref(),
            0,
            10,
            &mut retries.max,
        );
        whole(
            p,
            "upstream.retries.budget_percent",
            r.budget_percent.as_ref(),
            0,
            100,
            &mut retries.budget_percent,
        );
        if let Some(on) = &r.on {
            retries.on_connect = false;
            retries.on_idempotent = false;
            for Scalar(text) in on {
                match text.trim() {
                    "connect" => retries.on_connect = true,
                    "idempotent" => retries.on_idempotent = true,
                    other => p.push(
                        "upstream.retries.on",
                        format!("expected connect or idempotent, got {other:?}"),
                    ),
                }
            }
        }
    }
    if let Some(h) = &up.health {
        whole(
            p,
            "upstream.health.failures_to_eject",
            h.failures_to_eject.as_ref(),
            1,
            1000,
            &mut config.health.failures_to_eject,
        );
        p.duration(
            "upstream.health.eject_for",
            h.eject_for.as_ref(),
            &mut config.health.eject_for,
        );
    }
}

fn set_targets(p: &mut Problems, targets: &[Scalar], config: &mut UpstreamConfig) {
    let mut urls = Vec::with_capacity(targets.len());
    for target in targets {
        if let Some(url) = p.base_url("upstream.targets", Some(target)) {
            urls.push(url);
        }
    }
    if urls.len() != targets.len() {
        return;
    }
    let path = |u: &Url| u.path().trim_end_matches('/').to_owned();
    if let Some(first) = urls.first()
        && urls.iter().any(|u| path(u) != path(first))
    {
        p.push(
            "upstream.targets",
            "every target must have the same FHIR base path",
        );
        return;
    }
    if urls.len() > 64 {
        p.push("upstream.targets", "at most 64 targets");
        return;
    }
    config.targets = urls;
}

fn whole(
    p: &mut Problems,
    key: &'static str,
    value: Option<&Scalar>,
    min: u32,
    max: u32,
    target: &mut u32,
) {
    let Some(Scalar(text)) = value else { return };
    match text.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => *target = n,
        _ => p.push(
            key,
            format!("expected a whole number from {min} to {max}, got {text:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fhirgate_gateway::{Balance, RetryConfig};

    use crate::config::parse;

    const HEAD: &str = "public_base_url: https://fhir.example.org/fhir\nauth: { mode: disabled }\n";

    #[test]
    fn targets_balance_retries_and_health_are_read() {
        let config = parse(&format!(
            "{HEAD}upstream:\n  targets: [http://10.0.0.5:8080/fhir, https://b.example/fhir/]\n  balance: least_requests\n  retries: {{ max: 2, budget_percent: 10, on: [connect] }}\n  health: {{ failures_to_eject: 3, eject_for: 10s }}\n"
        ))
        .unwrap();
        let up = &config.gateway.upstream;
        assert_eq!(up.url.as_str(), "http://10.0.0.5:8080/fhir");
        assert_eq!(up.target_urls().len(), 2);
        assert_eq!(up.balance, Balance::LeastRequests);
        assert_eq!((up.retries.max, up.retries.budget_percent), (2, 10));
        assert!(up.retries.on_connect && !up.retries.on_idempotent);
        assert_eq!(up.health.failures_to_eject, 3);
        assert_eq!(up.health.eject_for, Duration::from_secs(10));

        let single = parse(&format!(
            "{HEAD}upstream: {{ url: http://10.0.0.5/fhir }}\n"
        ))
        .unwrap();
        let up = &single.gateway.upstream;
        assert_eq!(up.target_urls(), std::slice::from_ref(&up.url));
        assert_eq!(up.retries, RetryConfig::default());
    }

    #[test]
    fn bad_upstream_settings_are_refused_with_their_key() {
        for (bad, key) in [
            (
                "upstream: { url: http://a/fhir, targets: [http://b/fhir] }",
                "upstream.targets",
            ),
            ("upstream: { targets: [] }", "upstream.targets"),
            (
                "upstream: { targets: [http://a/fhir, http://b/r4] }",
                "upstream.targets",
            ),
            ("upstream: { targets: [ftp://a/fhir] }", "upstream.targets"),
            (
                "upstream: { url: http://a/fhir, balance: random }",
                "upstream.balance",
            ),
            (
                "upstream: { url: http://a/fhir, retries: { on: [always] } }",
                "upstream.retries.on",
            ),
            (
                "upstream: { url: http://a/fhir, retries: { max: 50 } }",
                "upstream.retries.max",
            ),
            (
                "upstream: { url: http://a/fhir, health: { failures_to_eject: 0 } }",
                "upstream.health.failures_to_eject",
            ),
            (
                "upstream: { url: http://a/fhir, health: { eject_for: soon } }",
                "upstream.health.eject_for",
            ),
        ] {
            let errors = parse(&format!("{HEAD}{bad}\n")).unwrap_err();
            assert!(errors.iter().any(|e| e.key == key), "{bad}: {errors:?}");
        }
    }
}

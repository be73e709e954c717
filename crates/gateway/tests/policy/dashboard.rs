//! The Grafana dashboard in `deploy/grafana` refers only to metrics the gateway exports.

use std::collections::BTreeSet;

use fhirgate_audit::AuditConfig;

use crate::metrics::parse;
use crate::{Env, rate_limit};

fn repo_file(path: &str) -> String {
    let root = format!(
        "{}/../..",
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
    );
    std::fs::read_to_string(format!("{root}/{path}")).unwrap()
}

/// Every `fhirgate_...` name in a text, histogram suffixes taken off.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("fhirgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn the_dashboard_only_uses_exported_metrics() {
    let dashboard = repo_file("deploy/grafana/fhirgate-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let wanted = referenced(&exprs.join("\n"));
    assert!(wanted.len() >= 8, "{wanted:?}");

    // Every kind of event, so every series exists.
    let dir = tempfile::tempdir().unwrap();
    let env = Env::start_with(|c| {
        c.audit = Some(AuditConfig::file(dir.path().join("audit")));
        c.rate_limit = Some(rate_limit(serde_json::json!({
            "rules": [{"name": "per-client", "key": "client_id", "per_minute": 1}]
        })));
        c.cache = Some(fhirgate_gateway::CacheConfig::new());
    })
    .await;
    let t1 = env.t1();
    env.get("/Patient/P1", &t1).await;
    env.get("/Patient/P2", &t1).await;
    env.get("/Patient/P1", &t1).await;
    env.get_anonymous("/Patient/P1").await;
    let exported: BTreeSet<String> = parse(&env.scrape().await)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    let missing: Vec<_> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "dashboard uses unexported metrics {missing:?}"
    );

    // The documentation names every exported metric.
    let docs = repo_file("docs/metrics.md");
    let undocumented: Vec<_> = exported
        .iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    n.strip_suffix(s)
                        .filter(|b| exported.contains(&format!("{b}_count")))
                })
                .unwrap_or(n)
        })
        .filter(|n| !docs.contains(*n))
        .collect();
    assert!(undocumented.is_empty(), "{undocumented:?}");
}

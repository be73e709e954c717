//! Stage two for `rate_limit`, `audit`, `metrics` and `cors`. The first two are the libraries' own
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
    if let Some(Scalar(text)) = &m.admin_listen {
        match text.trim().parse::<std::net::SocketAddr>() {
            Ok(addr) if addr.port() != 0 && Some(addr) == raw_listen(raw) => p.push(
                "metrics.admin_listen",
                "must differ from listen (leave it out to serve metrics on the main listener)",
            ),
            Ok(addr) => metrics.admin_listen = Some(addr),
            Err(_) => p.push(
                "metrics.admin_listen",
                format!("expected an IP address and port like \"127.0.0.1:9090\", got {text:?}"),
            ),
        }
    }
    p.count(
        "metrics.max_client_labels",
        m.max_client_labels.as_ref(),
        &mut metrics.max_client_labels,
    );
    cors(p, raw, config);
}

fn cors(p: &mut Problems, raw: &RawConfig, config: &mut GatewayConfig) {
    let c = &raw.cors;
    let cors = &mut config.cors;
    p.flag(
        "cors.allow_any_origin",
        c.allow_any_origin.as_ref(),
        &mut cors.allow_any_origin,
    );
    p.flag(
        "cors.allow_credentials",
        c.allow_credentials.as_ref(),
        &mut cors.allow_credentials,
    );
    p.duration("cors.max_age", c.max_age.as_ref(), &mut cors.max_age);
    if cors.allow_any_origin && cors.allow_credentials {
        // Browsers refuse `*` on credentialed requests; echoing every origin instead would let
        // any site read responses with the user's credentials.
        p.push(
            "cors.allow_any_origin",
            "cannot be combined with allow_credentials; list the origins instead",
        );
    }
    for Scalar(text) in &c.allowed_origins {
        match origin(text.trim()) {
            Some(origin) => cors.allowed_origins.push(origin),
            None => p.push(
                "cors.allowed_origins",
                format!(
                    "expected an origin like \"https://app.example.org\" or \"http://127.0.0.1:*\" (scheme, host and optional port, no path), got {text:?}"
                ),
            ),
        }
    }
}

/// The origin as browsers send it (`scheme://host[:port]`, default port omitted), or `None`
/// when `text` is not one. A `:*` port is kept: it matches any port on that host.
fn origin(text: &str) -> Option<String> {
    let (base, any_port) = match text.strip_suffix(":*") {
        Some(base) => (base, true),
        None => (text.strip_suffix('/').unwrap_or(text), false),
    };
    let url = url::Url::parse(base).ok()?;
    let plain = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    let bare = url.username().is_empty() && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || !plain || !bare || url.host().is_none() {
        return None;
    }
    if any_port && url.port().is_some() {
        return None;
    }
    let serialized = url.origin().ascii_serialization();
    Some(if any_port {
        format!("{serialized}:*")
    } else {
        serialized
    })
}

fn raw_listen(raw: &RawConfig) -> Option<std::net::SocketAddr> {
    raw.listen.as_ref()?.0.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = "public_base_url: https://fhir.example.org/fhir\nupstream: { url: http://10.0.0.5:8080/fhir }\nauth: { mode: disabled }\n";

    #[test]
    fn cors_origins_are_normalised_and_checked() {
        let config = parse(&format!(
            "{BASE}cors:\n  allowed_origins: [ \"HTTPS://App.Example.org/\", \"https://b.example:443\", \"http://127.0.0.1:*\" ]\n  max_age: 5m\n"
        ))
        .unwrap();
        let cors = &config.gateway.cors;
        assert_eq!(
            cors.allowed_origins,
            [
                "https://app.example.org",
                "https://b.example",
                "http://127.0.0.1:*"
            ]
        );
        assert_eq!(cors.max_age, std::time::Duration::from_secs(300));
        assert!(!cors.allow_any_origin);

        for bad in [
            "cors: { allowed_origins: [ \"https://app.example.org/path\" ] }",
            "cors: { allowed_origins: [ \"ftp://app.example.org\" ] }",
            "cors: { allow_any_origin: true, allow_credentials: true }",
            "cors: { allowed_origin: [] }",
        ] {
            assert!(parse(&format!("{BASE}{bad}\n")).is_err(), "{bad}");
        }
        let any = parse(&format!("{BASE}cors: {{ allow_any_origin: true }}\n")).unwrap();
        assert!(any.gateway.cors.allow_any_origin);
    }

    #[test]
    fn traffic_sections_are_read_and_checked() {
        let config = parse(&format!(
            "{BASE}rate_limit:\n  rules:\n    - {{ name: per-client, key: client_id, per_second: 20, per_minute: 600 }}\naudit:\n  path: /var/lib/fhirgate/audit\n  durability: fsync\nmetrics:\n  path: /internal/metrics\n  max_client_labels: 10\n  admin_listen: 127.0.0.1:9090\n"
        ))
        .unwrap();
        let g = &config.gateway;
        assert!(g.rate_limit.is_some());
        let audit = g.audit.as_ref().unwrap();
        assert_eq!(
            audit.path,
            std::path::PathBuf::from("/var/lib/fhirgate/audit")
        );
        assert_eq!(g.metrics.path, "/internal/metrics");
        assert_eq!(g.metrics.max_client_labels, 10);
        assert!(g.metrics.enabled);
        assert_eq!(g.metrics.admin_listen, Some(([127, 0, 0, 1], 9090).into()));

        // Off unless configured.
        let plain = parse(BASE).unwrap();
        assert!(plain.gateway.rate_limit.is_none() && plain.gateway.audit.is_none());
    }

    #[test]
    fn mistakes_name_their_key() {
        let errors = parse(&format!("{BASE}metrics: {{ path: /fhir/metrics }}\n")).unwrap_err();
        assert_eq!(errors[0].key, "metrics.path");
        let errors = parse(&format!("{BASE}metrics: {{ max_client_labels: none }}\n")).unwrap_err();
        assert_eq!(errors[0].key, "metrics.max_client_labels");
        let errors = parse(&format!(
            "{BASE}audit: {{ sink: stdout, durability: fsync }}\n"
        ))
        .unwrap_err();
        assert_eq!(errors[0].key, "audit");
        let errors = parse(&format!(
            "{BASE}rate_limit: {{ rules: [{{ name: r, key: client_id }}] }}\n"
        ))
        .unwrap_err();
        assert_eq!(errors[0].key, "rate_limit", "{errors:?}");
        // Misspelled keys stop start-up, with their line.
        let errors = parse(&format!("{BASE}audit:\n  durabilty: os\n")).unwrap_err();
        assert_eq!(errors[0].line, Some(5), "{errors:?}");
    }
}

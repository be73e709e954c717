//! Stage two for `tracing`: OTLP/HTTP export of the gateway's phase spans.

use std::time::Duration;

use fhirgate_gateway::{OtlpProtocol, TracingConfig};
use url::Url;

use super::{Problems, Scalar};
use crate::config::raw::RawTracing;

/// The OTLP/HTTP path of traces, added when the endpoint names only a host.
const TRACES_PATH: &str = "/v1/traces";

pub(super) fn validate(p: &mut Problems, raw: Option<&RawTracing>) -> Option<TracingConfig> {
    let raw = raw?;
    let Some(Scalar(text)) = &raw.otlp_endpoint else {
        p.push(
            "tracing.otlp_endpoint",
            "is required when `tracing` is present (e.g. \"http://127.0.0.1:4318/v1/traces\")",
        );
        return None;
    };
    let endpoint = match Url::parse(text.trim()) {
        Ok(mut url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            if url.path() == "/" || url.path().is_empty() {
                url.set_path(TRACES_PATH);
            }
            url
        }
        _ => {
            p.push(
                "tracing.otlp_endpoint",
                format!(
                    "expected an http(s) URL like \"http://127.0.0.1:4318/v1/traces\", got {text:?}"
                ),
            );
            return None;
        }
    };
    let mut config = TracingConfig::new(endpoint);
    if let Some(Scalar(name)) = &raw.service_name {
        if name.trim().is_empty() {
            p.push("tracing.service_name", "must not be empty");
        } else {
            config.service_name = name.trim().to_owned();
        }
    }
    if let Some(Scalar(text)) = &raw.sample_ratio {
        match text.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => config.sample_ratio = r,
            _ => p.push(
                "tracing.sample_ratio",
                format!("expected a number from 0.0 to 1.0, got {text:?}"),
            ),
        }
    }
    if let Some(Scalar(text)) = &raw.protocol {
        match text.trim() {
            "http/protobuf" => config.protocol = OtlpProtocol::HttpProtobuf,
            "http/json" => config.protocol = OtlpProtocol::HttpJson,
            _ => p.push(
                "tracing.protocol",
                format!("expected \"http/protobuf\" or \"http/json\", got {text:?}"),
            ),
        }
    }
    let mut timeout = Duration::ZERO;
    p.duration("tracing.timeout", raw.timeout.as_ref(), &mut timeout);
    if !timeout.is_zero() {
        config.timeout = timeout;
    }
    Some(config)
}

#[cfg(test)]
mod tests {
    use fhirgate_gateway::OtlpProtocol;

    use crate::config::parse;

    const BASE: &str = "public_base_url: https://fhir.example.org/fhir\nupstream:\n  url: http://127.0.0.1:8090/fhir\nauth:\n  mode: disabled\n";

    #[test]
    fn a_tracing_section_is_read_with_defaults_and_a_bare_host_gets_the_traces_path() {
        let config = parse(&format!(
            "{BASE}tracing:\n  otlp_endpoint: http://collector:4318\n  protocol: http/json\n"
        ))
        .unwrap();
        let tracing = config.gateway.tracing.unwrap();
        assert_eq!(
            tracing.otlp_endpoint.as_str(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(tracing.protocol, OtlpProtocol::HttpJson);
        assert_eq!(tracing.service_name, "fhirgate");
        assert!((tracing.sample_ratio - 1.0).abs() < f64::EPSILON);
        assert!(parse(BASE).unwrap().gateway.tracing.is_none());
    }

    #[test]
    fn bad_tracing_values_are_each_reported_at_their_line() {
        let errors = parse(&format!(
            "{BASE}tracing:\n  otlp_endpoint: collector:4318\n  sample_ratio: 1.5\n"
        ))
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "tracing.otlp_endpoint");
        assert_eq!(errors[0].line, Some(7));
        let errors = parse(&format!(
            "{BASE}tracing:\n  otlp_endpoint: http://c:4318/v1/traces\n  sample_ratio: 1.5\n  protocol: grpc\n  timeout: soon\n"
        ))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tracing.sample_ratio",
                "tracing.protocol",
                "tracing.timeout"
            ]
        );
        let errors = parse(&format!("{BASE}tracing:\n  service_name: gw\n")).unwrap_err();
        assert_eq!(errors[0].key, "tracing.otlp_endpoint");
        assert!(errors[0].message.contains("is required"), "{errors:?}");
    }
}

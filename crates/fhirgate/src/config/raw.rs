//! Stage one: the YAML file as written. Every section denies unknown keys, so a misspelled key
//! (a security setting above all) stops start-up instead of being ignored. Values stay text
//! here; `validate` turns them into typed values.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Scalar>,
    pub public_base_url: Option<Scalar>,
    pub upstream: Option<RawUpstream>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub authorization: RawAuthorization,
    #[serde(default)]
    pub smart: RawSmart,
    /// The rate limiter's own raw form (it denies unknown keys itself).
    pub rate_limit: Option<fhirgate_ratelimit::RawRateLimitConfig>,
    /// The audit crate's config (sizes and durations parsed there; unknown keys denied).
    pub audit: Option<fhirgate_audit::AuditConfig>,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub cors: RawCors,
    /// Response cache; absent: nothing cached.
    pub cache: Option<RawCache>,
    /// OpenTelemetry export of the phase spans; absent: off.
    pub tracing: Option<RawTracing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: Option<Scalar>,
    pub service_name: Option<Scalar>,
    pub sample_ratio: Option<Scalar>,
    pub protocol: Option<Scalar>,
    pub timeout: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_memory: Option<Scalar>,
    pub max_entry_size: Option<Scalar>,
    pub default_ttl: Option<Scalar>,
    pub statuses: Option<Vec<Scalar>>,
    #[serde(default)]
    pub rules: Vec<RawCacheRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheRule {
    #[serde(default)]
    pub resource_types: Vec<Scalar>,
    #[serde(default)]
    pub interactions: Vec<Scalar>,
    pub ttl: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    #[serde(default)]
    pub allowed_origins: Vec<Scalar>,
    pub allow_any_origin: Option<Scalar>,
    pub max_age: Option<Scalar>,
    pub allow_credentials: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<Scalar>,
    pub path: Option<Scalar>,
    pub max_client_labels: Option<Scalar>,
    pub admin_listen: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `required` (default) or `disabled`.
    pub mode: Option<Scalar>,
    /// Each entry denies unknown keys itself (`fhirgate_tokens::IssuerConfig`).
    #[serde(default)]
    pub issuers: Vec<fhirgate_tokens::IssuerConfig>,
    /// Revocation notices from the authorization server through Redis.
    pub revocation: Option<RawRevocation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    pub redis_url: Option<Scalar>,
    pub channel: Option<Scalar>,
    pub max_entries: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub resync_interval: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorization {
    pub hide_existence: Option<Scalar>,
    pub inject_patient: Option<Scalar>,
    pub forward_token: Option<Scalar>,
    pub context_headers: Option<Scalar>,
    pub verify_buffer_max: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmart {
    /// The SMART configuration document inline, as a mapping.
    pub configuration: Option<serde_json::Value>,
    /// Or a JSON file holding it.
    pub configuration_file: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<Scalar>,
    pub connect_timeout: Option<Scalar>,
    pub response_timeout: Option<Scalar>,
    pub pool_max_idle_per_host: Option<Scalar>,
    pub pool_idle_timeout: Option<Scalar>,
    /// Several servers instead of `url` (the same FHIR base path on each).
    pub targets: Option<Vec<Scalar>>,
    pub balance: Option<Scalar>,
    pub retries: Option<RawRetries>,
    pub health: Option<RawHealth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    pub max: Option<Scalar>,
    pub budget_percent: Option<Scalar>,
    pub on: Option<Vec<Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub failures_to_eject: Option<Scalar>,
    pub eject_for: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_size: Option<Scalar>,
    pub max_header_size: Option<Scalar>,
    pub max_uri_length: Option<Scalar>,
    pub max_concurrent_requests: Option<Scalar>,
    pub bundle_rewrite_max: Option<Scalar>,
    pub max_form_body_size: Option<Scalar>,
    pub header_read_timeout: Option<Scalar>,
    pub body_read_timeout: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
    pub max_connections: Option<Scalar>,
    pub max_header_count: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub drain_time: Option<Scalar>,
}

/// A YAML scalar kept as text (`30s`, `16MiB`, `8080` all arrive here), so that the validate
/// stage can say what was expected instead of serde's "invalid type".
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a single value (text or number)")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

//! Rate-limit configuration in two stages: [`RawRateLimitConfig`] is what the YAML says
//! (`deny_unknown_fields`, so a misspelled key stops start-up), [`RateLimitConfig`] is what
//! [`RawRateLimitConfig::validate`] proved usable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use crate::gcra::{Limit, Window};

/// FHIR interaction codes a rule may match or weigh (CapabilityStatement codes plus the
/// gateway's own `search-compartment`, `capabilities` and `operation`).
pub const INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "history-system",
    "create",
    "search-type",
    "search-system",
    "search-compartment",
    "capabilities",
    "batch",
    "transaction",
    "operation",
];

/// The `rate_limit` section as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimitConfig {
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// `local` (the default) or `redis: { url: ..., ... }`.
    #[serde(default)]
    pub backend: RawBackend,
    /// When Redis is unreachable: `true` (default) answers from the local limiter, `false`
    /// refuses with 503.
    #[serde(default)]
    pub fault_tolerant: Option<bool>,
    #[serde(default)]
    pub headers: HeadersConfig,
    #[serde(default)]
    pub local: RawLocal,
}

/// Where the counters live: `backend: local` or `backend: { redis: { url: ... } }`.
#[derive(Debug, Clone, Default)]
pub enum RawBackend {
    #[default]
    Local,
    Redis(RawRedis),
}

// By hand because YAML crates want `!redis` tags for enums, and we want the plain
// one-key-map form without losing the precise error for a misspelled Redis setting.
impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BackendVisitor;
        impl<'de> serde::de::Visitor<'de> for BackendVisitor {
            type Value = RawBackend;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`local` or `redis: { url: ... }`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawBackend, E> {
                match v {
                    "local" => Ok(RawBackend::Local),
                    other => Err(E::unknown_variant(other, &["local", "redis"])),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawBackend, A::Error> {
                let Some(name) = map.next_key::<String>()? else {
                    return Err(serde::de::Error::invalid_length(0, &self));
                };
                let backend = match name.as_str() {
                    "redis" => RawBackend::Redis(map.next_value()?),
                    "local" => {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        RawBackend::Local
                    }
                    other => {
                        return Err(serde::de::Error::unknown_variant(
                            other,
                            &["local", "redis"],
                        ));
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(serde::de::Error::custom(
                        "backend takes exactly one of `local` or `redis`",
                    ));
                }
                Ok(backend)
            }
        }
        deserializer.deserialize_any(BackendVisitor)
    }
}

/// Settings of the shared Redis backend.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port/db` (or `rediss://`).
    pub url: String,
    /// Bound on each rate-limit round trip, e.g. `50ms`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Bound on establishing a connection, e.g. `250ms`.
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// How long to stop trying Redis after a failure, e.g. `1s`.
    #[serde(default)]
    pub retry_interval: Option<String>,
    /// Multiplexed connections used round-robin.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Prefix of every key this gateway writes.
    #[serde(default)]
    pub key_prefix: Option<String>,
}

impl fmt::Debug for RawRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRedis")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry_interval", &self.retry_interval)
            .field("pool_size", &self.pool_size)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// Settings of the in-process limiter (the `local` backend and the Redis fallback).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// Most keys remembered; least recently used keys are forgotten beyond it.
    #[serde(default)]
    pub max_keys: Option<u64>,
}

/// Which rate-limit headers responses carry.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    /// Send no `RateLimit-*` headers (a 429 still carries `Retry-After`).
    #[serde(default)]
    pub hide: bool,
    /// Also send Kong's `X-RateLimit-Limit-<Window>` / `X-RateLimit-Remaining-<Window>`.
    #[serde(default)]
    pub x_ratelimit: bool,
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    /// One key part or a list: `client_id`, `sub`, `patient`, `ip`, `header:<Name>`.
    pub key: OneOrMany,
    #[serde(default, rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub per_second: Option<u64>,
    #[serde(default)]
    pub per_minute: Option<u64>,
    #[serde(default)]
    pub per_hour: Option<u64>,
    #[serde(default)]
    pub per_day: Option<u64>,
    /// Cost per interaction code or `$operation`; `default` for the rest (1 if absent).
    #[serde(default)]
    pub weights: BTreeMap<String, u64>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Which requests a rule counts; every present criterion must hold.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Interaction codes or `$operation` names.
    #[serde(default)]
    pub interactions: Vec<String>,
    #[serde(default)]
    pub resource_types: Vec<String>,
    /// Path relative to the FHIR base, matched on segment boundaries.
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// Why a rate-limit configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("rate_limit.rules[{index}] ('{name}'): {message}")]
    Rule {
        index: usize,
        name: String,
        message: String,
    },
    #[error("rate_limit.backend.redis: {0}")]
    Redis(String),
    #[error("rate_limit.local: {0}")]
    Local(String),
}

/// A validated configuration, ready for [`crate::RateLimiter::new`].
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub(crate) rules: Vec<Rule>,
    pub(crate) backend: Backend,
    pub(crate) fault_tolerant: bool,
    pub(crate) headers: HeadersConfig,
    pub(crate) local_max_keys: u64,
}

impl RateLimitConfig {
    /// Rule names, in evaluation order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.name)
    }

    /// Whether Redis holds the counters.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Local,
    Redis(RedisSettings),
}

#[derive(Clone)]
pub(crate) struct RedisSettings {
    pub client: redis::Client,
    pub url_redacted: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_interval: Duration,
    pub pool_size: usize,
    pub key_prefix: String,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.url_redacted)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry_interval", &self.retry_interval)
            .field("pool_size", &self.pool_size)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyPart {
    ClientId,
    Sub,
    Patient,
    Ip,
    Header(HeaderName),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    pub interactions: Vec<String>,
    pub resource_types: Vec<String>,
    pub path_prefix: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub name: Arc<str>,
    pub key: Vec<KeyPart>,
    pub matcher: Matcher,
    /// Shortest window first.
    pub limits: Vec<Limit>,
    pub weights: HashMap<String, u64>,
    pub default_weight: u64,
}

const DEFAULT_MAX_KEYS: u64 = 100_000;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_POOL_SIZE: usize = 2;
const DEFAULT_KEY_PREFIX: &str = "fhirgate:rl:";

impl RawRateLimitConfig {
    /// Check everything that can be checked before start-up.
    pub fn validate(self) -> Result<RateLimitConfig, ConfigError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rules.len());
        for (index, raw) in self.rules.into_iter().enumerate() {
            let name = raw.name.clone();
            let rule = validate_rule(raw).map_err(|message| ConfigError::Rule {
                index,
                name: name.clone(),
                message,
            })?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(ConfigError::Rule {
                    index,
                    name,
                    message: "duplicate rule name (names key the shared counters)".into(),
                });
            }
            rules.push(rule);
        }
        let backend = match self.backend {
            RawBackend::Local => Backend::Local,
            RawBackend::Redis(raw) => Backend::Redis(validate_redis(raw)?),
        };
        let local_max_keys = self.local.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if local_max_keys == 0 {
            return Err(ConfigError::Local("max_keys must be at least 1".into()));
        }
        Ok(RateLimitConfig {
            rules,
            backend,
            fault_tolerant: self.fault_tolerant.unwrap_or(true),
            headers: self.headers,
            local_max_keys,
        })
    }
}

fn validate_rule(raw: RawRule) -> Result<Rule, String> {
    if raw.name.is_empty()
        || raw.name.len() > 64
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("name must be 1-64 characters of A-Z a-z 0-9 - _ .".into());
    }
    let parts = match raw.key {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(ps) => ps,
    };
    if parts.is_empty() {
        return Err("key needs at least one part".into());
    }
    let mut key = Vec::with_capacity(parts.len());
    for part in &parts {
        let parsed = parse_key_part(part)?;
        if key.contains(&parsed) {
            return Err(format!("key part '{part}' is repeated"));
        }
        key.push(parsed);
    }

    let mut limits = Vec::new();
    for (window, value) in [
        (Window::Second, raw.per_second),
        (Window::Minute, raw.per_minute),
        (Window::Hour, raw.per_hour),
        (Window::Day, raw.per_day),
    ] {
        if let Some(n) = value {
            let limit = Limit::new(window, n).ok_or_else(|| {
                format!(
                    "{} must be between 1 and {}",
                    window.config_key(),
                    window.seconds() * 1_000_000
                )
            })?;
            limits.push(limit);
        }
    }
    let Some(smallest) = limits.iter().map(|l| l.limit).min() else {
        return Err("set at least one of per_second, per_minute, per_hour, per_day".into());
    };

    for code in &raw.matcher.interactions {
        check_interaction(code)?;
    }
    for rt in &raw.matcher.resource_types {
        if rt.is_empty()
            || !rt.starts_with(|c: char| c.is_ascii_uppercase())
            || !rt.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(format!("'{rt}' is not a FHIR resource type name"));
        }
    }
    if let Some(prefix) = raw
        .matcher
        .path_prefix
        .as_deref()
        .filter(|p| !p.starts_with('/'))
    {
        return Err(format!("path_prefix '{prefix}' must start with '/'"));
    }

    let mut weights = HashMap::new();
    let mut default_weight = 1;
    for (code, weight) in raw.weights {
        if weight > smallest {
            return Err(format!(
                "weight {weight} for '{code}' exceeds the smallest limit {smallest}, so such requests could never pass"
            ));
        }
        if code == "default" {
            default_weight = weight;
        } else {
            check_interaction(&code)?;
            weights.insert(code, weight);
        }
    }

    Ok(Rule {
        name: Arc::from(raw.name.as_str()),
        key,
        matcher: Matcher {
            interactions: raw.matcher.interactions,
            resource_types: raw.matcher.resource_types,
            path_prefix: raw.matcher.path_prefix,
        },
        limits,
        weights,
        default_weight,
    })
}

fn parse_key_part(part: &str) -> Result<KeyPart, String> {
    Ok(match part {
        "client_id" => KeyPart::ClientId,
        "sub" => KeyPart::Sub,
        "patient" => KeyPart::Patient,
        "ip" => KeyPart::Ip,
        other => match other.strip_prefix("header:") {
            Some(name) => KeyPart::Header(
                HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("'{name}' is not a valid header name"))?,
            ),
            None => {
                return Err(format!(
                    "unknown key part '{other}' (expected client_id, sub, patient, ip or header:<Name>)"
                ));
            }
        },
    })
}

fn check_interaction(code: &str) -> Result<(), String> {
    if let Some(op) = code.strip_prefix('$') {
        if !op.is_empty()
            && op
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Ok(());
        }
    } else if INTERACTIONS.contains(&code) {
        return Ok(());
    }
    Err(format!(
        "unknown interaction '{code}' (expected one of {} or $operation)",
        INTERACTIONS.join(", ")
    ))
}

fn validate_redis(raw: RawRedis) -> Result<RedisSettings, ConfigError> {
    let err = |m: String| ConfigError::Redis(m);
    let url_redacted = redact_url(&raw.url);
    let client = redis::Client::open(raw.url.as_str())
        .map_err(|e| err(format!("url '{url_redacted}' is not a Redis URL: {e}")))?;
    let duration =
        |field: &str, value: Option<String>, default: Duration| -> Result<Duration, ConfigError> {
            match value {
                None => Ok(default),
                Some(text) => {
                    let d = humantime::parse_duration(text.trim()).map_err(|e| {
                        err(format!("{field} '{text}' is not a duration like 50ms: {e}"))
                    })?;
                    if d.is_zero() {
                        return Err(err(format!("{field} must be greater than zero")));
                    }
                    Ok(d)
                }
            }
        };
    let timeout = duration("timeout", raw.timeout, DEFAULT_TIMEOUT)?;
    let connect_timeout = duration(
        "connect_timeout",
        raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    )?;
    let retry_interval = duration("retry_interval", raw.retry_interval, DEFAULT_RETRY_INTERVAL)?;
    let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !(1..=64).contains(&pool_size) {
        return Err(err(format!(
            "pool_size {pool_size} must be between 1 and 64"
        )));
    }
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
    if key_prefix.len() > 128 {
        return Err(err("key_prefix is longer than 128 bytes".into()));
    }
    Ok(RedisSettings {
        client,
        url_redacted,
        timeout,
        connect_timeout,
        retry_interval,
        pool_size,
        key_prefix,
    })
}

/// The URL with any password replaced, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

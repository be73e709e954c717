//! Stage two: raw text → typed values, collecting every error instead of stopping at the
//! first, each tagged with the dotted key it belongs to.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use fhirgate_gateway::{AuthConfig, GatewayConfig};
use url::Url;

use super::raw::{RawConfig, Scalar};

/// `cache`.
mod cache;
/// `tracing` (OpenTelemetry export).
mod tracing;
/// `rate_limit`, `audit` and `metrics`.
mod traffic;
/// `upstream.targets`, `balance`, `retries` and `health`.
mod upstream;

/// One problem with one key; positions are added by the caller, which has the source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: &'static str,
    pub message: String,
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, key: &'static str, message: impl Into<String>) {
        self.0.push(Problem {
            key,
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &'static str, value: Option<&Scalar>, target: &mut Duration) {
        let Some(Scalar(text)) = value else { return };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => *target = d,
            Ok(_) => self.push(key, "must be longer than zero"),
            Err(_) => self.push(
                key,
                format!("expected a duration with a unit like \"30s\" or \"500ms\", got {text:?}"),
            ),
        }
    }

    fn size(&mut self, key: &'static str, value: Option<&Scalar>) -> Option<u64> {
        let Scalar(text) = value?;
        match bytesize::ByteSize::from_str(text.trim()) {
            Ok(size) if size.as_u64() > 0 => Some(size.as_u64()),
            Ok(_) => {
                self.push(key, "must be larger than zero");
                None
            }
            Err(_) => {
                self.push(
                    key,
                    format!(
                        "expected a size like \"16MiB\", \"64KiB\" or a byte count, got {text:?}"
                    ),
                );
                None
            }
        }
    }

    fn size_usize(&mut self, key: &'static str, value: Option<&Scalar>, target: &mut usize) {
        if let Some(size) = self.size(key, value) {
            match usize::try_from(size) {
                Ok(size) => *target = size,
                Err(_) => self.push(key, "is too large for this platform"),
            }
        }
    }

    fn count(&mut self, key: &'static str, value: Option<&Scalar>, target: &mut usize) {
        let Some(Scalar(text)) = value else { return };
        match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => *target = n,
            _ => self.push(
                key,
                format!("expected a whole number above zero, got {text:?}"),
            ),
        }
    }

    fn base_url(&mut self, key: &'static str, value: Option<&Scalar>) -> Option<Url> {
        let Some(Scalar(text)) = value else {
            self.push(key, "is required (an http:// or https:// URL)");
            return None;
        };
        let url = match Url::parse(text.trim()) {
            Ok(url) => url,
            Err(err) => {
                self.push(
                    key,
                    format!("expected an http:// or https:// URL, got {text:?} ({err})"),
                );
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            self.push(
                key,
                format!("expected an http:// or https:// URL with a host, got {text:?}"),
            );
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.push(key, "must not have a query or fragment");
            return None;
        }
        Some(url)
    }
}

/// Validate the raw config into the gateway's typed config, or every problem found.
pub fn validate(raw: &RawConfig) -> Result<GatewayConfig, Vec<Problem>> {
    let mut p = Problems::default();
    let public = p.base_url("public_base_url", raw.public_base_url.as_ref());
    let upstream_raw = raw.upstream.as_ref();
    let upstream_url = match upstream_raw {
        Some(up) => upstream::url(&mut p, up),
        None => {
            p.push("upstream", "is required (at least `upstream.url`)");
            None
        }
    };
    let listen = match &raw.listen {
        None => None,
        Some(Scalar(text)) => match SocketAddr::from_str(text.trim()) {
            Ok(addr) => Some(addr),
            Err(_) => {
                p.push(
                    "listen",
                    format!("expected an IP address and port like \"0.0.0.0:8080\", got {text:?}"),
                );
                None
            }
        },
    };

    let urls_valid = public.is_some() && upstream_url.is_some();
    // Placeholders let every remaining key be checked even when the URLs were bad.
    let placeholder = || Url::parse("http://invalid.invalid/").ok();
    let (Some(public), Some(upstream_url)) = (
        public.or_else(placeholder),
        upstream_url.or_else(placeholder),
    ) else {
        return Err(p.0);
    };
    let mut config = GatewayConfig::new(public, upstream_url);
    if let Some(addr) = listen {
        config.listen = addr;
    }
    if let Some(up) = upstream_raw {
        let c = &mut config.upstream;
        p.duration(
            "upstream.connect_timeout",
            up.connect_timeout.as_ref(),
            &mut c.connect_timeout,
        );
        p.duration(
            "upstream.response_timeout",
            up.response_timeout.as_ref(),
            &mut c.response_timeout,
        );
        p.duration(
            "upstream.pool_idle_timeout",
            up.pool_idle_timeout.as_ref(),
            &mut c.pool_idle_timeout,
        );
        if let Some(Scalar(text)) = &up.pool_max_idle_per_host {
            match text.trim().parse::<usize>() {
                Ok(n) => c.pool_max_idle_per_host = n,
                Err(_) => p.push(
                    "upstream.pool_max_idle_per_host",
                    format!("expected a whole number, got {text:?}"),
                ),
            }
        }
        upstream::validate(&mut p, up, c);
    }
    let l = &raw.limits;
    let limits = &mut config.limits;
    if let Some(size) = p.size("limits.max_body_size", l.max_body_size.as_ref()) {
        limits.max_body_size = size;
    }
    p.size_usize(
        "limits.max_header_size",
        l.max_header_size.as_ref(),
        &mut limits.max_header_size,
    );
    p.size_usize(
        "limits.max_uri_length",
        l.max_uri_length.as_ref(),
        &mut limits.max_uri_length,
    );
    p.count(
        "limits.max_concurrent_requests",
        l.max_concurrent_requests.as_ref(),
        &mut limits.max_concurrent_requests,
    );
    p.size_usize(
        "limits.bundle_rewrite_max",
        l.bundle_rewrite_max.as_ref(),
        &mut limits.bundle_rewrite_max,
    );
    p.size_usize(
        "limits.max_form_body_size",
        l.max_form_body_size.as_ref(),
        &mut limits.max_form_body_size,
    );
    p.duration(
        "limits.header_read_timeout",
        l.header_read_timeout.as_ref(),
        &mut limits.header_read_timeout,
    );
    p.duration(
        "limits.body_read_timeout",
        l.body_read_timeout.as_ref(),
        &mut limits.body_read_timeout,
    );
    p.duration(
        "limits.idle_timeout",
        l.idle_timeout.as_ref(),
        &mut limits.idle_timeout,
    );
    p.count(
        "limits.max_connections",
        l.max_connections.as_ref(),
        &mut limits.max_connections,
    );
    if u32::try_from(limits.max_connections).is_err() {
        p.push("limits.max_connections", "must be at most 4294967295");
    }
    p.count(
        "limits.max_header_count",
        l.max_header_count.as_ref(),
        &mut limits.max_header_count,
    );
    if limits.max_header_size < 1024 {
        p.push("limits.max_header_size", "must be at least 1KiB");
    }
    if limits.max_uri_length < 256 {
        p.push("limits.max_uri_length", "must be at least 256 bytes");
    }
    p.duration(
        "shutdown.drain_time",
        raw.shutdown.drain_time.as_ref(),
        &mut config.shutdown.drain_time,
    );
    security(&mut p, raw, &mut config);
    traffic::validate(&mut p, raw, &mut config);
    cache::validate(&mut p, raw, &mut config);
    config.tracing = tracing::validate(&mut p, raw.tracing.as_ref());

    if p.0.is_empty() && urls_valid {
        Ok(config)
    } else {
        Err(p.0)
    }
}

impl Problems {
    fn flag(&mut self, key: &'static str, value: Option<&Scalar>, target: &mut bool) {
        let Some(Scalar(text)) = value else { return };
        match text.trim() {
            "true" => *target = true,
            "false" => *target = false,
            _ => self.push(key, format!("expected true or false, got {text:?}")),
        }
    }
}

/// `auth`, `authorization` and `smart`: who is trusted, what is enforced, what is announced.
fn security(p: &mut Problems, raw: &RawConfig, config: &mut GatewayConfig) {
    let disabled = match raw.auth.mode.as_ref().map(|Scalar(t)| t.trim()) {
        None | Some("required") => false,
        Some("disabled") => true,
        Some(other) => {
            p.push(
                "auth.mode",
                format!("expected \"required\" or \"disabled\", got {other:?}"),
            );
            false
        }
    };
    // Tokens are for the FHIR base as clients name it.
    let audience = config
        .public_base_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let issuers = &raw.auth.issuers;
    if disabled {
        // Listed issuers are kept out of use: switching checks off for a while should not
        // mean deleting their configuration.
        config.auth = AuthConfig::disabled();
    } else if issuers.is_empty() {
        p.push(
            "auth",
            "needs at least one entry in auth.issuers (or auth.mode: disabled to forward every request unchecked)",
        );
    } else {
        match fhirgate_tokens::validate_issuers(issuers, &audience) {
            Ok(settings) => config.auth = AuthConfig::required(settings),
            Err(e) => p.push(
                "auth.issuers",
                format!("issuer {:?}: {}: {}", e.issuer, e.field, e.message),
            ),
        }
    }

    if let Some(r) = &raw.auth.revocation {
        revocation(p, r, config);
    }

    let a = &raw.authorization;
    let z = &mut config.authorization;
    p.flag(
        "authorization.hide_existence",
        a.hide_existence.as_ref(),
        &mut z.hide_existence,
    );
    p.flag(
        "authorization.inject_patient",
        a.inject_patient.as_ref(),
        &mut z.inject_patient,
    );
    p.flag(
        "authorization.forward_token",
        a.forward_token.as_ref(),
        &mut z.forward_token,
    );
    p.flag(
        "authorization.context_headers",
        a.context_headers.as_ref(),
        &mut z.context_headers,
    );
    p.size_usize(
        "authorization.verify_buffer_max",
        a.verify_buffer_max.as_ref(),
        &mut z.verify_buffer_max,
    );

    let smart = &raw.smart;
    let document = match (&smart.configuration, &smart.configuration_file) {
        (Some(_), Some(_)) => {
            p.push(
                "smart",
                "set either configuration or configuration_file, not both",
            );
            None
        }
        (Some(doc), None) => Some(doc.clone()),
        (None, Some(Scalar(path))) => match std::fs::read(path.trim()) {
            Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(doc) => Some(doc),
                Err(err) => {
                    p.push(
                        "smart.configuration_file",
                        format!("{path} is not JSON: {err}"),
                    );
                    None
                }
            },
            Err(err) => {
                p.push(
                    "smart.configuration_file",
                    format!("cannot read {path}: {err}"),
                );
                None
            }
        },
        (None, None) => None,
    };
    if let Some(doc) = document {
        if doc.is_object() {
            config.smart_configuration = Some(doc);
        } else {
            p.push(
                "smart.configuration",
                "must be a mapping (the SMART configuration document)",
            );
        }
    }
}

/// `auth.revocation`: where the authorization server's revocation notices are read.
fn revocation(p: &mut Problems, raw: &super::raw::RawRevocation, config: &mut GatewayConfig) {
    let Some(Scalar(url)) = &raw.redis_url else {
        p.push(
            "auth.revocation.redis_url",
            "is required (e.g. redis://127.0.0.1:6379/0)",
        );
        return;
    };
    let mut r = match fhirgate_gateway::RevocationConfig::new(url.trim()) {
        Ok(r) => r,
        Err(e) => {
            p.push("auth.revocation.redis_url", e.to_string());
            return;
        }
    };
    if let Some(Scalar(channel)) = &raw.channel {
        let channel = channel.trim();
        if channel.is_empty() {
            p.push("auth.revocation.channel", "must not be empty");
        } else {
            channel.clone_into(&mut r.channel);
        }
    }
    p.count(
        "auth.revocation.max_entries",
        raw.max_entries.as_ref(),
        &mut r.max_entries,
    );
    p.duration(
        "auth.revocation.timeout",
        raw.timeout.as_ref(),
        &mut r.timeout,
    );
    p.duration(
        "auth.revocation.resync_interval",
        raw.resync_interval.as_ref(),
        &mut r.resync_interval,
    );
    if config.auth.mode == fhirgate_gateway::AuthMode::Disabled {
        p.push(
            "auth.revocation",
            "has no effect with auth.mode: disabled (no token is checked)",
        );
    }
    config.auth.revocation = Some(r);
}

//! What the gateway tells the limiter about a request, and how a rule turns that into a
//! counter key and a cost.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::{KeyPart, Rule};

/// The facts about one request that rules key on and match against. The gateway fills it
/// after authentication, so `client_id`, `sub` and `patient` come from the verified token.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestKeyInput<'a> {
    pub client_id: Option<&'a str>,
    pub sub: Option<&'a str>,
    /// The token's patient context.
    pub patient: Option<&'a str>,
    pub ip: Option<IpAddr>,
    /// Request headers, for `header:<Name>` keys.
    pub headers: Option<&'a HeaderMap>,
    /// FHIR interaction code (`read`, `search-type`, ... see [`crate::INTERACTIONS`]).
    pub interaction: &'a str,
    /// Operation name with its `$` (`$everything`) when `interaction` is `operation`.
    pub operation: Option<&'a str>,
    pub resource_type: Option<&'a str>,
    /// Path relative to the FHIR base, as authorized (`/Patient/123/$everything`).
    pub path: &'a str,
}

/// Values longer than this are hashed so one key costs bounded memory locally and in Redis.
const MAX_RAW_VALUE: usize = 128;

impl Rule {
    /// Whether this rule counts the request.
    pub(crate) fn matches(&self, req: &RequestKeyInput<'_>) -> bool {
        let m = &self.matcher;
        if !m.interactions.is_empty()
            && !m
                .interactions
                .iter()
                .any(|code| code == req.interaction || Some(code.as_str()) == req.operation)
        {
            return false;
        }
        if !m.resource_types.is_empty()
            && !req
                .resource_type
                .is_some_and(|rt| m.resource_types.iter().any(|t| t == rt))
        {
            return false;
        }
        m.path_prefix
            .as_deref()
            .is_none_or(|prefix| path_has_prefix(req.path, prefix))
    }

    /// What the request costs under this rule: its operation's weight, else its
    /// interaction's, else the default.
    pub(crate) fn cost(&self, req: &RequestKeyInput<'_>) -> u64 {
        req.operation
            .and_then(|op| self.weights.get(op))
            .or_else(|| self.weights.get(req.interaction))
            .copied()
            .unwrap_or(self.default_weight)
    }

    /// The counter key, or `None` when a key part is absent from this request (then the rule
    /// does not apply: pair such rules with an `ip` rule as the catch-all).
    pub(crate) fn key(&self, req: &RequestKeyInput<'_>) -> Option<String> {
        let mut out = String::with_capacity(self.name.len() + 48);
        out.push_str(&self.name);
        for part in &self.key {
            let (tag, value): (&str, Vec<u8>) = match part {
                KeyPart::ClientId => ("c", req.client_id?.as_bytes().to_vec()),
                KeyPart::Sub => ("s", req.sub?.as_bytes().to_vec()),
                KeyPart::Patient => ("p", req.patient?.as_bytes().to_vec()),
                KeyPart::Ip => ("i", ip_key(req.ip?).into_bytes()),
                KeyPart::Header(name) => ("h", req.headers?.get(name)?.as_bytes().to_vec()),
            };
            if value.is_empty() {
                return None;
            }
            out.push(':');
            out.push_str(tag);
            push_value(&mut out, &value);
        }
        Some(out)
    }
}

/// Length-prefixed so `a|b`+`c` and `a`+`b|c` never share a counter; long or non-printable
/// values become a SHA-256 prefix (128 bits) so they stay bounded and collision-resistant.
fn push_value(out: &mut String, value: &[u8]) {
    let printable = value.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    if printable && value.len() <= MAX_RAW_VALUE {
        let _ = write!(out, "{}=", value.len());
        out.extend(value.iter().map(|b| char::from(*b)));
    } else {
        let digest = Sha256::digest(value);
        out.push('#');
        for b in digest.iter().take(16) {
            let _ = write!(out, "{b:02x}");
        }
    }
}

/// IPv6 clients are counted per /64: one subscriber usually holds a whole /64 and could
/// otherwise use a fresh address per request. IPv4-mapped addresses count as IPv4.
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
    }
}

fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(path_has_prefix("/Patient/1", "/Patient"));
        assert!(path_has_prefix("/Patient", "/Patient/"));
        assert!(!path_has_prefix("/PatientX/1", "/Patient"));
        assert!(path_has_prefix("/anything", "/"));
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(other));
        assert_eq!(ip_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }

    #[test]
    fn values_are_length_prefixed_and_long_ones_hashed() {
        let mut a = String::new();
        push_value(&mut a, b"a|b");
        assert_eq!(a, "3=a|b");
        let mut long = String::new();
        push_value(&mut long, &[b'x'; 4096]);
        assert!(long.starts_with('#'));
        assert_eq!(long.len(), 33);
    }
}

//! HTTP caching rules applied to one request or answer: request and response
//! `Cache-Control`, `Vary`, `Set-Cookie`, and `If-None-Match` matching.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

use super::key::{KEY_HEADERS, Partition};

/// What the client's own `Cache-Control` / `Pragma` asks of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestDirective {
    Normal,
    /// `no-cache`: do not answer from the cache, but the fresh answer may be stored.
    Refresh,
    /// `no-store`: keep the cache out of this exchange entirely.
    Bypass,
}

pub(crate) fn request_directive(headers: &HeaderMap) -> RequestDirective {
    let mut directive = RequestDirective::Normal;
    for (name, value) in directives(headers, header::CACHE_CONTROL) {
        match (name.as_str(), value) {
            ("no-store", _) => return RequestDirective::Bypass,
            ("no-cache", _) | ("max-age", Some(0)) => directive = RequestDirective::Refresh,
            _ => {}
        }
    }
    if directive == RequestDirective::Normal
        && directives(headers, header::PRAGMA).any(|(name, _)| name == "no-cache")
    {
        directive = RequestDirective::Refresh;
    }
    directive
}

/// How long this answer may be kept in `partition`, or `None` when it must not be stored.
pub(crate) fn storable_for(
    status: u16,
    headers: &HeaderMap,
    statuses: &[u16],
    partition: &Partition,
    ttl: Duration,
) -> Option<Duration> {
    if !statuses.contains(&status) || headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    let mut ttl = ttl;
    let mut shared_max_age = None;
    for (name, value) in directives(headers, header::CACHE_CONTROL) {
        match (name.as_str(), value) {
            ("no-store" | "no-cache", _) => return None,
            ("private", _) if !partition.is_private() => return None,
            ("max-age", Some(secs)) => ttl = ttl.min(Duration::from_secs(secs)),
            ("s-maxage", Some(secs)) => shared_max_age = Some(Duration::from_secs(secs)),
            _ => {}
        }
    }
    if let Some(s) = shared_max_age.filter(|_| !partition.is_private()) {
        ttl = ttl.min(s);
    }
    if directives(headers, header::PRAGMA).any(|(name, _)| name == "no-cache") {
        return None;
    }
    // The answer differs by a header the key does not hold: it cannot be told apart.
    let varies_outside_key = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .any(|n| {
            n == "*"
                || !KEY_HEADERS
                    .iter()
                    .any(|k| k.as_str().eq_ignore_ascii_case(n))
        });
    if varies_outside_key || ttl.is_zero() {
        return None;
    }
    Some(ttl)
}

/// `name[=value]` directives of a comma-separated header, names lower-cased; numeric values
/// parsed (a malformed number counts as 0, the cautious reading).
fn directives(
    headers: &HeaderMap,
    name: header::HeaderName,
) -> impl Iterator<Item = (String, Option<u64>)> + '_ {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let (name, value) = match d.split_once('=') {
                Some((n, v)) => (n, Some(v.trim().trim_matches('"').parse().unwrap_or(0))),
                None => (d, None),
            };
            let name = name.trim().to_ascii_lowercase();
            (!name.is_empty()).then_some((name, value))
        })
}

/// `If-None-Match` against an entity tag, by the weak comparison RFC 9110 §13.1.2 asks for.
pub(crate) fn etag_matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let (Ok(candidates), Ok(etag)) = (if_none_match.to_str(), etag.to_str()) else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    candidates
        .split(',')
        .any(|c| c.trim() == "*" || opaque(c) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const TTL: Duration = Duration::from_secs(60);
    const OK: &[u16] = &[200, 404];

    fn patient() -> Partition {
        Partition::Patient {
            patient: "P1".into(),
            grant: "g".into(),
        }
    }

    #[test]
    fn response_directives_decide_storing() {
        let shared = Partition::Shared;
        let store =
            |pairs: &[(&str, &str)], p: &Partition| storable_for(200, &headers(pairs), OK, p, TTL);
        assert_eq!(store(&[], &shared), Some(TTL));
        assert_eq!(store(&[("cache-control", "no-store")], &shared), None);
        assert_eq!(store(&[("cache-control", "No-Cache")], &shared), None);
        assert_eq!(store(&[("cache-control", "private")], &shared), None);
        assert_eq!(
            store(&[("cache-control", "private")], &patient()),
            Some(TTL)
        );
        assert_eq!(
            store(&[("cache-control", "public, max-age=5")], &shared),
            Some(Duration::from_secs(5))
        );
        assert_eq!(store(&[("cache-control", "max-age=0")], &shared), None);
        assert_eq!(
            store(&[("cache-control", "max-age=600")], &shared),
            Some(TTL)
        );
        assert_eq!(
            store(&[("cache-control", "max-age=30, s-maxage=3")], &shared),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            store(&[("vary", "Accept, accept-encoding")], &shared),
            Some(TTL)
        );
        assert_eq!(store(&[("vary", "Accept, Authorization")], &shared), None);
        assert_eq!(store(&[("vary", "*")], &shared), None);
        assert_eq!(store(&[("set-cookie", "a=b")], &shared), None);
        assert_eq!(storable_for(500, &HeaderMap::new(), OK, &shared, TTL), None);
        assert_eq!(
            storable_for(404, &HeaderMap::new(), OK, &shared, TTL),
            Some(TTL)
        );
    }

    #[test]
    fn request_directives_and_etags() {
        assert_eq!(request_directive(&headers(&[])), RequestDirective::Normal);
        assert_eq!(
            request_directive(&headers(&[("cache-control", "no-cache")])),
            RequestDirective::Refresh
        );
        assert_eq!(
            request_directive(&headers(&[("pragma", "no-cache")])),
            RequestDirective::Refresh
        );
        assert_eq!(
            request_directive(&headers(&[("cache-control", "no-cache, no-store")])),
            RequestDirective::Bypass
        );
        let etag = HeaderValue::from_static("W/\"3\"");
        assert!(etag_matches(&HeaderValue::from_static("W/\"3\""), &etag));
        assert!(etag_matches(
            &HeaderValue::from_static("\"1\", \"3\""),
            &etag
        ));
        assert!(etag_matches(&HeaderValue::from_static("*"), &etag));
        assert!(!etag_matches(&HeaderValue::from_static("W/\"4\""), &etag));
    }
}

//! Header rules of the forward phase: hop-by-hop removal (RFC 9110 §7.6.1), `X-Forwarded-*`,
//! and upstream-to-public URL rewriting in `Location`/`Content-Location`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never the message, and so must not cross the proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Remove hop-by-hop headers, including every header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in `Connection` are rare; only allocate when there are some that are not
    // plain `keep-alive`/`close`.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',') {
            let token = token.trim();
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    // One pass over the few names present rather than a hashed probe for each of the nine
    // (two of them custom names, hashed byte by byte): runs twice per proxied request.
    while let Some(name) = headers.keys().find(|name| is_hop_by_hop(name)).cloned() {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE
}

/// Prepare client request headers for the upstream.
///
/// `Host` is dropped so the client sets the upstream's; `X-Forwarded-Host` keeps what the client
/// asked for. `X-Forwarded-For` is appended to, as every proxy in the chain does.
/// `traceparent` and `X-Request-ID` pass unchanged.
pub(crate) fn prepare_request(
    headers: &mut HeaderMap,
    client_ip: Option<HeaderValue>,
    forwarded_proto: &HeaderValue,
    strip_accept_encoding: bool,
) {
    strip_hop_by_hop(headers);
    // `Expect: 100-continue` was answered by our own server side already.
    headers.remove(header::EXPECT);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::to_str) {
        Some(Ok(prior)) if !prior.is_empty() => client_ip
            .as_ref()
            .and_then(|ip| ip.to_str().ok())
            .and_then(|ip| HeaderValue::from_str(&format!("{prior}, {ip}")).ok()),
        _ => client_ip,
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, forwarded_proto.clone());
    if strip_accept_encoding {
        // Bundles must arrive uncompressed to have their URLs rewritten.
        headers.remove(header::ACCEPT_ENCODING);
    }
}

/// `X-Forwarded-Host` for HTTP/2 clients, which send `:authority` instead of `Host`.
pub(crate) fn set_forwarded_host_from_authority(headers: &mut HeaderMap, authority: &str) {
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Ok(value) = HeaderValue::from_str(authority)
    {
        headers.insert(X_FORWARDED_HOST, value);
    }
}

/// Rewrite `Location` and `Content-Location` from the upstream base to the public base.
pub(crate) fn rewrite_locations(headers: &mut HeaderMap, from: &str, to: &str) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let rewritten = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| rewrite_url(v, from, to))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        if let Some(value) = rewritten {
            headers.insert(name, value);
        }
    }
}

/// `url` with the `from` base replaced by `to`, if it is under `from` (whole path segments).
pub(crate) fn rewrite_url(url: &str, from: &str, to: &str) -> Option<String> {
    let rest = url.strip_prefix(from)?;
    if !url_boundary(rest.as_bytes()) {
        return None;
    }
    let mut out = String::with_capacity(to.len() + rest.len());
    out.push_str(to);
    out.push_str(rest);
    Some(out)
}

/// Whether what follows a base URL starts a new path segment, query or fragment (so that
/// `/fhir` matches `/fhir/Patient` but not `/fhirx`).
pub(crate) fn url_boundary(rest: &[u8]) -> bool {
    matches!(rest.first(), None | Some(b'/' | b'?' | b'#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn every_hop_by_hop_name_is_recognised_and_no_other() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "content-type",
            "user-agent",
            "accept",
            "host",
            "trailers",
            "x-request-id",
            "tk",
            "upgrade-insecure-requests",
            "proxy-status",
            "x-keep-alive",
        ] {
            let name = HeaderName::from_static(name);
            assert!(!is_hop_by_hop(&name), "{name}");
        }
    }

    #[test]
    fn rewrite_only_whole_segments() {
        let from = "http://up:8080/fhir";
        let to = "https://gw.example/fhir";
        assert_eq!(
            rewrite_url("http://up:8080/fhir/Patient/1", from, to).as_deref(),
            Some("https://gw.example/fhir/Patient/1")
        );
        assert_eq!(
            rewrite_url("http://up:8080/fhir?x=1", from, to).as_deref(),
            Some("https://gw.example/fhir?x=1")
        );
        assert_eq!(rewrite_url("http://up:8080/fhirx/Patient", from, to), None);
        assert_eq!(rewrite_url("http://other/fhir/Patient", from, to), None);
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.1.1.1"));
        h.insert(header::HOST, HeaderValue::from_static("gw.example"));
        prepare_request(
            &mut h,
            crate::ctx::ip_header(std::net::IpAddr::from([127, 0, 0, 1])),
            &HeaderValue::from_static("https"),
            false,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.1.1, 127.0.0.1");
        assert_eq!(h[&X_FORWARDED_HOST], "gw.example");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert!(h.get(header::HOST).is_none());
    }
}

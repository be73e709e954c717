//! Answers built from entries, and reading a fresh answer's body into an entry.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;

use super::policy::etag_matches;
use super::store::Entry;

pub(crate) const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");

/// Headers that describe this exchange rather than the resource; never stored. Rate-limit
/// and CORS headers are added per request after this phase; the request id is the caller's.
const PER_EXCHANGE: [&str; 8] = [
    "x-request-id",
    "age",
    "x-cache-status",
    "set-cookie",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
];

/// Kept on a 304, as RFC 9110 §15.4.5 lists them.
const ON_NOT_MODIFIED: [HeaderName; 6] = [
    header::ETAG,
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::EXPIRES,
    header::VARY,
    header::DATE,
];

pub(crate) fn storable_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in PER_EXCHANGE {
        kept.remove(name);
    }
    kept
}

/// The answer for a hit: a 304 when the client already holds this version, else the stored
/// status, headers and body (no body for HEAD).
pub(crate) fn from_entry(
    entry: &Entry,
    if_none_match: Option<&HeaderValue>,
    head: bool,
) -> Response<Body> {
    let not_modified = entry.status == StatusCode::OK
        && matches!((if_none_match, &entry.etag), (Some(inm), Some(etag)) if etag_matches(inm, etag));
    let mut response = if not_modified {
        not_modified_from(&entry.headers)
    } else {
        let body = if head {
            Body::empty()
        } else {
            Body::from(entry.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = entry.status;
        *response.headers_mut() = entry.headers.clone();
        response
    };
    let age = entry.stored_at.elapsed().as_secs();
    response
        .headers_mut()
        .insert(header::AGE, HeaderValue::from(age));
    mark(&mut response, "Hit");
    response
}

pub(crate) fn not_modified_from(headers: &HeaderMap) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    for name in &ON_NOT_MODIFIED {
        for value in headers.get_all(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

pub(crate) fn mark(response: &mut Response<Body>, status: &'static str) {
    response
        .headers_mut()
        .insert(X_CACHE_STATUS, HeaderValue::from_static(status));
}

/// The body read whole when it is at most `max` bytes; otherwise a body that replays what
/// was read and streams the rest, so an oversized answer still reaches the client intact.
pub(crate) enum Collected {
    Whole(Bytes),
    TooLarge(Body),
}

pub(crate) async fn collect(body: Body, max: u64) -> Result<Collected, axum::Error> {
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() as u64 > max {
            let head =
                futures_util::stream::once(async move { Ok::<_, axum::Error>(buf.freeze()) });
            let rest = body.into_data_stream();
            return Ok(Collected::TooLarge(Body::from_stream(head.chain(rest))));
        }
    }
    Ok(Collected::Whole(buf.freeze()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn oversized_bodies_arrive_intact() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from("abc")),
            Ok(Bytes::from("def")),
            Ok(Bytes::from("g")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let Collected::TooLarge(body) = collect(body, 4).await.unwrap() else {
            panic!("expected too large");
        };
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all, "abcdefg");
        let Collected::Whole(bytes) = collect(Body::from("abcdefg"), 7).await.unwrap() else {
            panic!("expected whole");
        };
        assert_eq!(bytes, "abcdefg");
    }

    #[test]
    fn hits_answer_304_only_for_a_matching_etag() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("W/\"2\""));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/fhir+json"),
        );
        let entry = Entry {
            status: StatusCode::OK,
            etag: headers.get(header::ETAG).cloned(),
            headers,
            body: Bytes::from("{}"),
            stored_at: Instant::now(),
            ttl: Duration::from_secs(60),
            patients: None,
            types: Vec::new(),
            any_type: false,
        };
        let same = HeaderValue::from_static("W/\"2\"");
        let other = HeaderValue::from_static("W/\"1\"");
        let r = from_entry(&entry, Some(&same), false);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(r.headers().get(header::CONTENT_TYPE).is_none());
        assert_eq!(r.headers()[header::ETAG], "W/\"2\"");
        let r = from_entry(&entry, Some(&other), false);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[X_CACHE_STATUS], "Hit");
        assert_eq!(r.headers()[header::AGE], "0");
    }
}

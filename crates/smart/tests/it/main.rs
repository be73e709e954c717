//! One integration binary for the smart crate (link time): properties and fuzz-corpus replay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only binary

mod corpus;
mod properties;

use fhirgate_fhir::{FhirRequest, classify};

/// Classify `method url` the way the gateway does; `None` for requests classification refuses.
pub fn request(method: &str, url: &str) -> Option<FhirRequest> {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let method = http::Method::from_bytes(method.as_bytes()).ok()?;
    classify(&method, path, query, &http::HeaderMap::new(), None).ok()
}

//! Shared by the `fuzz/` targets and the corpus-replay test, so both read a fuzz input the
//! same way. Not part of the gateway's API.

use crate::request::{ClassifyError, FhirRequest, classify};

/// Split a fuzz input into `method\npath\nquery\nform-body` (query and body optional) and
/// classify it. `None` when the input cannot be a request at all (method not a token, path
/// not UTF-8), which hyper would have refused before the gateway saw it.
pub fn classify_input(data: &[u8]) -> Option<Result<FhirRequest, ClassifyError>> {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let method = http::Method::from_bytes(parts.next()?).ok()?;
    let path = std::str::from_utf8(parts.next()?).ok()?;
    let query = match parts.next() {
        Some(q) => Some(std::str::from_utf8(q).ok()?),
        None => None,
    };
    let body = parts.next();
    Some(classify(
        &method,
        path,
        query,
        &http::HeaderMap::new(),
        body,
    ))
}

/// The properties every accepted request must have, whatever the input: the forwarded path
/// carries none of the constructs path-confusion attacks rely on, and its parameters
/// survive re-serialisation unchanged. Returns a description of the first violation.
pub fn check_accepted(request: &FhirRequest) -> Result<(), String> {
    let path = &request.path;
    for bad in ["..", "//", "%", ";", "\\", "#", "?", "/./"] {
        if path.contains(bad) {
            return Err(format!("accepted path {path:?} contains {bad:?}"));
        }
    }
    if path.ends_with("/.") || (path.len() > 1 && path.ends_with('/')) {
        return Err(format!(
            "accepted path {path:?} ends with a dot segment or slash"
        ));
    }
    if path.bytes().any(|b| b.is_ascii_control() || !b.is_ascii()) {
        return Err(format!(
            "accepted path {path:?} has control or non-ASCII bytes"
        ));
    }
    let query = request.params.to_query_string();
    if query
        .bytes()
        .any(|b| b == b'#' || b == b';' || b <= b' ' || b == 0x7f)
    {
        return Err(format!(
            "accepted query {query:?} has '#', ';', space or control bytes"
        ));
    }
    match crate::search::SearchParams::parse(&query) {
        Ok(again) if again == request.params => Ok(()),
        Ok(again) => Err(format!("params changed on round trip: {again:?}")),
        Err(e) => Err(format!(
            "re-serialised query {query:?} no longer parses: {e}"
        )),
    }
}

//! The request a log line is written for: its method, path and request id, kept in a task
//! local while the request runs, for the log formatter to print with every line written
//! inside it (`fhirgate`'s logging set-up does).
//!
//! This used to be an INFO-level `tracing` span around each request. The span cost about
//! 8 000 instructions per request (callgrind, plain proxy: 68 000 with it, 60 000 without):
//! the subscriber's registry gives every span a slot, reference counts and per-layer filter
//! state, enters and leaves it on every poll, and the log layer formats its fields into a
//! string as it is made, for every request, although almost no request writes a log line.
//! A task local costs one pointer swap per poll, and the fields are only formatted for the
//! lines that are written.

use std::future::Future;

use http::{HeaderValue, Method, Uri};

tokio::task_local! {
    static CURRENT: RequestTag;
}

/// What a log line written inside a request says about the request.
#[derive(Debug, Clone)]
pub struct RequestTag {
    method: Method,
    uri: Uri,
    request_id: HeaderValue,
}

impl RequestTag {
    pub fn new(method: Method, uri: Uri, request_id: HeaderValue) -> Self {
        RequestTag {
            method,
            uri,
            request_id,
        }
    }

    pub fn method(&self) -> &str {
        self.method.as_str()
    }

    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// `-` for an id that is not visible ASCII (the client's own, passed on as it came).
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    /// Run `future` with this tag as the current request's.
    pub(crate) fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }
}

/// `f` of the request the calling task is serving, if it serves one.
pub fn with_current_request<R>(f: impl FnOnce(&RequestTag) -> R) -> Option<R> {
    CURRENT.try_with(f).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tag_is_seen_inside_its_request_only() {
        let tag = RequestTag::new(
            Method::GET,
            Uri::from_static("/fhir/Patient/1?_elements=id"),
            HeaderValue::from_static("id-1"),
        );
        let inside = tag
            .scope(async {
                tokio::task::yield_now().await;
                with_current_request(|tag| {
                    format!("{} {} {}", tag.method(), tag.path(), tag.request_id())
                })
            })
            .await;
        assert_eq!(inside.as_deref(), Some("GET /fhir/Patient/1 id-1"));
        assert_eq!(with_current_request(|_| ()), None);
    }

    #[test]
    fn an_id_that_is_not_text_is_not_printed() {
        let tag = RequestTag::new(
            Method::GET,
            Uri::from_static("/"),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap_or(HeaderValue::from_static("x")),
        );
        assert_eq!(tag.request_id(), "-");
    }
}

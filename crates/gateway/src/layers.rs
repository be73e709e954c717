//! The transport concerns around the router, in one hand-written service ([`Front`]) rather
//! than a stack of tower layers: request ids, the request's log tag (its id on every log line),
//! request limits, load shedding and catch-panic cost one boxed future per request this way,
//! instead of one allocation (and one body wrapper) per layer.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Limited;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Service;

use crate::config::Limits;
use crate::error::GatewayError;
use crate::log_context::RequestTag;
use crate::pipeline::X_REQUEST_ID;

/// Wraps the router: sets or keeps `X-Request-ID` and echoes it, rejects requests over the
/// URI, header and body limits, sheds load over the concurrency limit with 503 `transient`
/// instead of queueing it, and turns a panic into a 500 OperationOutcome.
#[derive(Clone)]
pub(crate) struct Front<S> {
    inner: S,
    state: Arc<FrontState>,
}

struct FrontState {
    permits: Arc<Semaphore>,
    limits: Limits,
    ids: CounterRequestId,
}

impl<S> Front<S> {
    pub(crate) fn new(limits: Limits, inner: S) -> Self {
        Front {
            inner,
            state: Arc::new(FrontState {
                permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
                limits,
                ids: CounterRequestId::new(),
            }),
        }
    }
}

impl<S> Service<Request<Body>> for Front<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let request_id = match request.headers().get(X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = self.state.ids.next();
                request.headers_mut().insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        // Every log line written while the request runs names it (see `log_context`).
        let tag = RequestTag::new(
            request.method().clone(),
            request.uri().clone(),
            request_id.clone(),
        );
        let limits = &self.state.limits;
        let admitted = check_limits(&request, limits).and_then(|()| {
            Arc::clone(&self.state.permits)
                .try_acquire_owned()
                .map_err(|_| {
                    tracing::warn!(
                        limit = limits.max_concurrent_requests,
                        "concurrency limit reached, shedding request"
                    );
                    GatewayError::Overloaded
                })
        });
        let permit = match admitted {
            Ok(permit) => permit,
            Err(err) => {
                let mut response = err.to_response();
                response.headers_mut().insert(X_REQUEST_ID, request_id);
                return Box::pin(std::future::ready(Ok(response)));
            }
        };
        let max_body = limits.max_body_size;
        let request = request.map(|body| {
            if body.is_end_stream() {
                body
            } else {
                Body::new(Limited::new(
                    body,
                    usize::try_from(max_body).unwrap_or(usize::MAX),
                ))
            }
        });
        let future = AssertUnwindSafe(self.inner.call(request)).catch_unwind();
        Box::pin(tag.scope(async move {
            let mut response = match future.await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(panic) => panic_response(panic),
            };
            tracing::debug!(status = response.status().as_u16(), "request finished");
            if !response.headers().contains_key(X_REQUEST_ID) {
                response.headers_mut().insert(X_REQUEST_ID, request_id);
            }
            // The permit lives until the response body is done, so a streaming download
            // counts as in flight for as long as it runs.
            if response.body().is_end_stream() {
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(PermitBody {
                    inner: body,
                    _permit: permit,
                })
            }))
        }))
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "request handler panicked");
    GatewayError::Internal.to_response()
}

fn check_limits(request: &Request<Body>, limits: &Limits) -> Result<(), GatewayError> {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_length {
        return Err(GatewayError::UriTooLong {
            limit: limits.max_uri_length,
        });
    }
    // Counted as on the wire: `name: value\r\n`.
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > limits.max_header_size {
        return Err(GatewayError::HeadersTooLarge {
            limit: limits.max_header_size,
        });
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_body_size) {
        return Err(GatewayError::BodyTooLarge {
            limit: limits.max_body_size,
        });
    }
    Ok(())
}

/// A response body that holds a concurrency permit until it is finished or dropped.
struct PermitBody {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for PermitBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Request ids that cost no system call: a random per-process prefix and a counter.
struct CounterRequestId {
    prefix: Box<str>,
    next: AtomicU64,
}

impl CounterRequestId {
    fn new() -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string();
        CounterRequestId {
            prefix: Box::from(random.get(..12).unwrap_or("fhirgate")),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Written by hand: `format!` cost more than the rest of making the id.
        let mut text = IdText {
            bytes: [0; ID_CAPACITY],
            len: 0,
        };
        self.prefix.bytes().for_each(|b| text.push(b));
        text.push(b'-');
        push_hex(n, |digit| text.push(digit));
        // Hex digits and a dash: always a valid header value.
        HeaderValue::from_maybe_shared(Bytes::from_owner(text))
            .unwrap_or(HeaderValue::from_static("fhirgate"))
    }
}

/// Room for a 12-character prefix, a dash and 16 hex digits.
const ID_CAPACITY: usize = 32;

/// A request id's text, inline: `Bytes::from_owner` makes one allocation for it, where a
/// `String` makes two (its own, and the shared header the value's first clone adds).
struct IdText {
    bytes: [u8; ID_CAPACITY],
    len: usize,
}

impl IdText {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }
}

impl AsRef<[u8]> for IdText {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// `n` in lower-case hex without leading zeros, as `{n:x}` writes it, one ASCII digit at a time.
fn push_hex(n: u64, mut push: impl FnMut(u8)) {
    let digits = (u64::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        let nibble = ((n >> (shift * 4)) & 0xf) as u8;
        push(if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        });
    }
}

#[cfg(test)]
mod tests {
    use super::push_hex;

    #[test]
    fn request_id_counters_are_written_as_format_would() {
        let samples = [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::MAX - 1,
            u64::MAX,
        ];
        let powers = (0..64).flat_map(|bit| {
            let p = 1u64 << bit;
            [p - 1, p, p + 1]
        });
        for n in samples.into_iter().chain(powers) {
            let mut text = String::new();
            push_hex(n, |digit| text.push(char::from(digit)));
            assert_eq!(text, format!("{n:x}"));
        }
    }
}

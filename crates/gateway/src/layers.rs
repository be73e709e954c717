//! Generic transport concerns as tower layers around the router: request limits and load
//! shedding ([`GuardLayer`]), and request ids ([`CounterRequestId`]). Tracing and catch-panic
//! come from tower-http and are stacked in `server`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Limited;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::config::Limits;
use crate::error::GatewayError;

/// Rejects requests over the URI, header and body limits, and sheds load over the concurrency
/// limit with 503 `transient` instead of queueing it.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    state: Arc<GuardState>,
}

struct GuardState {
    permits: Arc<Semaphore>,
    limits: Limits,
}

impl GuardLayer {
    pub(crate) fn new(limits: Limits) -> Self {
        GuardLayer {
            state: Arc::new(GuardState {
                permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
                limits,
            }),
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    state: Arc<GuardState>,
}

impl<S> Service<Request<Body>> for Guard<S>
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

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let limits = &self.state.limits;
        if let Err(err) = check_limits(&request, limits) {
            return Box::pin(std::future::ready(Ok(err.to_response())));
        }
        let Ok(permit) = Arc::clone(&self.state.permits).try_acquire_owned() else {
            tracing::warn!(
                limit = limits.max_concurrent_requests,
                "concurrency limit reached, shedding request"
            );
            return Box::pin(std::future::ready(Ok(
                GatewayError::Overloaded.to_response()
            )));
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
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // The permit lives until the response body is done, so a streaming download
            // counts as in flight for as long as it runs.
            Ok(response.map(|body| {
                Body::new(PermitBody {
                    inner: body,
                    _permit: permit,
                })
            }))
        })
    }
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
#[derive(Clone)]
pub(crate) struct CounterRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl CounterRequestId {
    pub(crate) fn new() -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string();
        CounterRequestId {
            prefix: Arc::from(random.get(..12).unwrap_or("fhirgate")),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for CounterRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

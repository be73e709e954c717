//! The upstream's response body as the gateway reads it: the connection goes back to the pool
//! when the body ends, and an upstream that goes silent mid-body is cut off.
//!
//! `upstream.response_timeout` bounds the wait for the response headers; without a bound on
//! the body as well, an upstream that sends headers and then stalls would hold the client (and
//! a verify buffer) for ever. The same limit therefore applies to every wait for the next piece
//! of the body. It only counts time spent waiting on the upstream: a slow client that leaves
//! the body unpolled does not use it up, and a slow but steady trickle never trips it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::pool::Lease;

/// Why the upstream's response body ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("reading the upstream response body failed")]
    Read(#[source] hyper::Error),
    #[error("the upstream response body stalled: nothing received for {}", humantime::format_duration(*.0))]
    Stalled(Duration),
}

impl BodyError {
    /// The stall limit, if `err` or one of its causes is a stalled upstream body.
    pub(crate) fn stalled_in(err: &(dyn std::error::Error + 'static)) -> Option<Duration> {
        let mut source = Some(err);
        while let Some(cause) = source {
            if let Some(BodyError::Stalled(after)) = cause.downcast_ref::<BodyError>() {
                return Some(*after);
            }
            source = cause.source();
        }
        None
    }
}

pub(crate) struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
    /// The base URL of the target that answered, for rewriting its URLs. Kept here rather
    /// than in the response's extensions, whose first entry costs two allocations.
    answered_by: Arc<str>,
    idle_limit: Duration,
    /// Created on the first wait, so bodies that arrive whole never allocate a timer.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether `deadline` counts the current wait; cleared by every frame received.
    armed: bool,
    failed: bool,
}

impl UpstreamBody {
    pub(crate) fn new(
        inner: Incoming,
        lease: Lease,
        answered_by: Arc<str>,
        idle_limit: Duration,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            lease: Some(lease),
            answered_by,
            idle_limit,
            deadline: None,
            armed: false,
            failed: false,
        };
        if http_body::Body::is_end_stream(&body.inner) {
            body.finish();
        }
        body
    }

    /// The base URL of the target that sent this body.
    pub(crate) fn answered_by(&self) -> &Arc<str> {
        &self.answered_by
    }

    fn finish(&mut self) {
        if let Some(mut lease) = self.lease.take() {
            lease.release();
        }
    }

    /// The body broke: its connection is not reused and the target's health hears of it.
    fn fail(&mut self) {
        self.failed = true;
        if let Some(lease) = self.lease.take() {
            lease.target().record_failure();
        }
    }

    /// Poll the wait for the next frame against the idle limit.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let until = Instant::now() + self.idle_limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if !self.armed {
            deadline.as_mut().reset(until);
            self.armed = true;
        }
        deadline.as_mut().poll(cx)
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.fail();
                Poll::Ready(Some(Err(BodyError::Read(err))))
            }
            Poll::Pending => match this.poll_stall(cx) {
                Poll::Ready(()) => {
                    this.fail();
                    Poll::Ready(Some(Err(BodyError::Stalled(this.idle_limit))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            return SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_found_through_wrapping_errors() {
        let stalled = BodyError::Stalled(Duration::from_secs(5));
        let wrapped = axum::Error::new(stalled);
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(wrapped);
        assert_eq!(BodyError::stalled_in(&*boxed), Some(Duration::from_secs(5)));
        let other: Box<dyn std::error::Error + Send + Sync> = "reset".into();
        assert_eq!(BodyError::stalled_in(&*other), None);
    }
}

//! When a FHIR request is over: metrics are recorded and the audit record is written before
//! the response's last byte leaves (DESIGN.md §7).
//!
//! One design for every response, buffered or streamed: the body is wrapped so that it
//! always holds back one frame. When the inner body ends, the wrapper writes the audit
//! record and only then releases the held frame and the end of the stream. A client (or a
//! process killed at any moment) therefore never has the complete answer without its record
//! having been handed to the OS. If the record fails and `on_failure` is `refuse`, the held
//! frame is dropped and the stream ends with an error, so the client sees a cut-off answer
//! rather than an unaudited complete one. A body dropped before its end (client gone, HEAD,
//! hyper not polling an empty body) writes its record from the drop, marked `aborted` when
//! data was cut off. Holding one frame costs at most one chunk of extra latency.
//!
//! A response whose whole body is already at hand (no body at all, or one the gateway holds in
//! memory: checked, rewritten or cached answers, refusals) is accounted for before it is
//! returned, so a failed record under `refuse` still becomes a 503. It also keeps the
//! response one write: handed to hyper with its body pending on the audit record, the headers
//! would go out in a write of their own (measured: three writes to the client socket per
//! request instead of two once records were group-committed).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;
use http_body::{Body as _, Frame, SizeHint};

use crate::audit::{self, Audit, RequestFacts};
use crate::ctx::RequestCtx;
use crate::metrics::{Metrics, Observation};

/// Everything needed to account for one request once its response is done.
pub(crate) struct Completion {
    pub(crate) ctx: RequestCtx,
    pub(crate) facts: RequestFacts,
    pub(crate) metrics: Option<Arc<Metrics>>,
    pub(crate) audit: Option<Audit>,
}

type RecordFuture = BoxFuture<'static, Result<(), fhirgate_audit::AuditError>>;

impl Completion {
    /// Record metrics; return the audit write to await, if auditing is on.
    fn finish(self, body: Option<&[u8]>, aborted: bool) -> Option<RecordFuture> {
        if let Some(metrics) = &self.metrics {
            let fhir = self.ctx.fhir.as_ref();
            metrics.observe(&Observation {
                status: self.facts.status,
                interaction: fhir.map_or("unclassified", |f| f.interaction.label()),
                resource_type: fhir
                    .and_then(|f| f.interaction.resource_type())
                    .map(|t| t.as_str()),
                client: self
                    .ctx
                    .principal
                    .as_ref()
                    .and_then(|p| p.client_id.as_deref()),
                total: self.ctx.timings.received.elapsed(),
                upstream: self.ctx.timings.upstream_headers,
            });
        }
        let audit = self.audit?;
        let input = audit::build_input(&audit, &self.ctx, &self.facts, body, aborted);
        let sink = audit.sink.clone();
        let request_id = self.ctx.request_id_str().to_owned();
        Some(Box::pin(async move {
            let result = sink.record(input).await;
            if let Err(err) = &result {
                tracing::error!(request_id, error = %err, "audit record not written");
            }
            result
        }))
    }
}

/// Most frames and bytes taken from a body that is ready at once; a longer body is streamed.
const READY_FRAMES: usize = 16;
const READY_BYTES: usize = audit::MAX_SCANNED_BODY;

/// Account for the request: at once when the response's whole body is at hand (the record
/// can then still turn it into a 503), else when its body ends.
pub(crate) async fn complete(completion: Completion, response: Response<Body>) -> Response<Body> {
    let (parts, mut body) = response.into_parts();
    let data = match take_ready(&mut body) {
        Ready::Whole(data) => Some(data),
        Ready::Empty => None,
        Ready::Started(frames) => {
            let body = if frames.is_empty() {
                body
            } else {
                Body::new(Prefixed { frames, rest: body })
            };
            return wrap(completion, Response::from_parts(parts, body));
        }
    };
    let refuse = refuses(&completion);
    let scanned = data.as_ref().filter(|data| {
        data.len() <= audit::MAX_SCANNED_BODY
            && completion.audit.is_some()
            && audit::wants_body(&completion.ctx, completion.facts.status, &parts.headers)
    });
    let record = completion.finish(scanned.map(|data| &data[..]), false);
    let response = match data {
        Some(data) => Response::from_parts(parts, Body::from(data)),
        None => Response::from_parts(parts, body),
    };
    let Some(record) = record else {
        return response;
    };
    if record.await.is_err() && refuse {
        return crate::error::GatewayError::AuditUnavailable.to_response();
    }
    response
}

enum Ready {
    /// The body had ended before anything was taken from it.
    Empty,
    /// The body ended: these are all its bytes.
    Whole(Bytes),
    /// The body goes on (or ended with an error or trailers) after these frames.
    Started(VecDeque<Result<Frame<Bytes>, axum::Error>>),
}

/// Take the frames `body` has ready without waiting: all of it when it is short and at hand.
fn take_ready(body: &mut Body) -> Ready {
    // No waker is registered here that anything relies on: a body that is not ready is
    // polled again, with the connection's waker, once it is returned.
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = VecDeque::new();
    let mut bytes = 0;
    loop {
        if body.is_end_stream() {
            return whole(frames);
        }
        if frames.len() == READY_FRAMES || bytes > READY_BYTES {
            return Ready::Started(frames);
        }
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(None) => return whole(frames),
            Poll::Ready(Some(Ok(frame))) => {
                let Some(data) = frame.data_ref() else {
                    frames.push_back(Ok(frame));
                    return Ready::Started(frames);
                };
                bytes += data.len();
                frames.push_back(Ok(frame));
            }
            Poll::Ready(Some(Err(err))) => {
                frames.push_back(Err(err));
                return Ready::Started(frames);
            }
            Poll::Pending => return Ready::Started(frames),
        }
    }
}

/// The data of `frames`, which are all data frames.
fn whole(mut frames: VecDeque<Result<Frame<Bytes>, axum::Error>>) -> Ready {
    if frames.is_empty() {
        return Ready::Empty;
    }
    let mut data = frames.iter().filter_map(|f| f.as_ref().ok()?.data_ref());
    match (data.next(), data.next()) {
        (None, _) => Ready::Whole(Bytes::new()),
        (Some(only), None) => Ready::Whole(only.clone()),
        _ => {
            let mut all = Vec::new();
            for frame in frames.drain(..).flatten() {
                if let Some(data) = frame.data_ref() {
                    all.extend_from_slice(data);
                }
            }
            Ready::Whole(Bytes::from(all))
        }
    }
}

/// A body whose first frames were already taken by [`take_ready`].
struct Prefixed {
    frames: VecDeque<Result<Frame<Bytes>, axum::Error>>,
    rest: Body,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(frame));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let taken: u64 = self
            .frames
            .iter()
            .filter_map(|f| f.as_ref().ok()?.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        plus(&self.rest.size_hint(), taken)
    }
}

/// `hint` with `len` more bytes.
fn plus(hint: &SizeHint, len: u64) -> SizeHint {
    // Built from an unbounded hint: `set_lower` and `set_upper` assert lower <= upper.
    let mut sum = SizeHint::new();
    sum.set_lower(hint.lower().saturating_add(len));
    if let Some(upper) = hint.upper() {
        sum.set_upper(upper.saturating_add(len).max(sum.lower()));
    }
    sum
}

/// Whether a failed record must stop this response. Only answers that carry data are
/// stopped; a refusal or the CapabilityStatement reveals nothing worth withholding.
fn refuses(completion: &Completion) -> bool {
    completion.facts.status < 400
        && audit::is_phi(&completion.ctx)
        && completion
            .audit
            .as_ref()
            .is_some_and(Audit::refuses_on_failure)
}

/// Wrap the response so that `completion` runs when its body ends.
fn wrap(completion: Completion, response: Response<Body>) -> Response<Body> {
    let collect = completion.audit.is_some()
        && audit::wants_body(&completion.ctx, completion.facts.status, response.headers());
    let refuse = refuses(&completion);
    let (parts, inner) = response.into_parts();
    let body = Finishing {
        inner,
        completion: Some(completion),
        held: None,
        collected: collect.then(Vec::new),
        error: None,
        record: None,
        refuse,
        done: false,
    };
    Response::from_parts(parts, Body::new(body))
}

struct Finishing {
    inner: Body,
    completion: Option<Completion>,
    /// The frame held back until the record is written.
    held: Option<Frame<Bytes>>,
    /// Body bytes kept for the patient scan; `None` when not wanted or over the limit.
    collected: Option<Vec<u8>>,
    error: Option<axum::Error>,
    record: Option<RecordFuture>,
    refuse: bool,
    done: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the audit record of this response could not be written")]
struct AuditFailed;

impl Finishing {
    fn keep(&mut self, frame: &Frame<Bytes>) {
        let Some(buf) = self.collected.as_mut() else {
            return;
        };
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > audit::MAX_SCANNED_BODY {
                self.collected = None;
            } else {
                buf.extend_from_slice(data);
            }
        }
    }

    fn start_record(&mut self, aborted: bool) {
        if let Some(completion) = self.completion.take() {
            let body = if aborted { None } else { self.collected.take() };
            self.record = completion.finish(body.as_deref(), aborted);
        }
    }
}

impl http_body::Body for Finishing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                if let Some(err) = this.error.take() {
                    this.held = None;
                    return Poll::Ready(Some(Err(err)));
                }
                return Poll::Ready(this.held.take().map(Ok));
            }
            if let Some(record) = this.record.as_mut() {
                let result = std::task::ready!(record.as_mut().poll(cx));
                this.record = None;
                this.done = true;
                if result.is_err() && this.refuse {
                    this.held = None;
                    this.error = None;
                    return Poll::Ready(Some(Err(axum::Error::new(AuditFailed))));
                }
                continue;
            }
            if this.completion.is_none() {
                // Finished without an audit future: release what is held.
                this.done = true;
                continue;
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    this.keep(&frame);
                    if let Some(previous) = this.held.replace(frame) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.error = Some(err);
                    this.start_record(true);
                }
                Poll::Ready(None) => {
                    this.start_record(false);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.held.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done || self.completion.is_none() {
            let held = self
                .held
                .as_ref()
                .and_then(Frame::data_ref)
                .map_or(0, |d| d.len() as u64);
            return SizeHint::with_exact(held);
        }
        let inner = self.inner.size_hint();
        let Some(data) = self.held.as_ref().and_then(Frame::data_ref) else {
            return inner;
        };
        plus(&inner, data.len() as u64)
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        let Some(completion) = self.completion.take() else {
            return;
        };
        // Nothing was cut off when the body had nothing (left) to send.
        let aborted = !(self.inner.is_end_stream()
            || completion.facts.method == "HEAD"
            || matches!(completion.facts.status, 204 | 304));
        let Some(record) = completion.finish(None, aborted) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(record);
            }
            Err(_) => tracing::error!("audit record of a dropped response could not be scheduled"),
        }
    }
}

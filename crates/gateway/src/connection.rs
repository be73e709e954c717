//! One client connection's life after accept: the idle timer, the request-body stall timer and
//! graceful shutdown. hyper bounds the header read time itself (`limits.header_read_timeout`);
//! what it does not bound is a connection where nothing moves (an idle HTTP/2 connection, a
//! client that stops reading a response) or an upload that stalls between body frames, so
//! those are watched here.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};

use crate::error::BoxError;

/// When a connection last moved a byte, as milliseconds since `base`.
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    /// Set by a stalled request body: the connection is dropped, not drained.
    stalled: Notify,
    /// Requests whose response body hyper has not finished with.
    in_flight: AtomicUsize,
    /// Requests answered so far, and a signal at each.
    answered: AtomicU64,
    answered_signal: Notify,
    /// Reads that delivered bytes, and their count when the last request was answered: more
    /// reads since then mean the client has started another request.
    reads: AtomicU64,
    reads_when_answered: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            stalled: Notify::new(),
            in_flight: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            answered_signal: Notify::new(),
            reads: AtomicU64::new(0),
            reads_when_answered: AtomicU64::new(0),
        })
    }

    /// Count a request as in flight until the returned guard is dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Nothing in progress: every request answered and no byte of another one read.
    pub(crate) fn quiescent(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.reads.load(Ordering::Relaxed)
                == self.reads_when_answered.load(Ordering::Relaxed)
    }

    /// Resolves when a request is answered (at once if one was since the last call).
    pub(crate) async fn request_answered(&self) {
        self.answered_signal.notified().await;
    }

    /// Resolves when a request body on this connection has stalled.
    pub(crate) async fn stalled(&self) {
        self.stalled.notified().await;
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn idle_for(&self) -> Duration {
        let now = self.base.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A request in flight on a connection; dropping it counts the request as answered.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .reads_when_answered
            .store(activity.reads.load(Ordering::Relaxed), Ordering::Relaxed);
        activity.answered.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        activity.answered_signal.notify_one();
    }
}

/// The socket, noting every successful read and write in its [`Activity`]. Bytes an earlier
/// hyper connection read from it but did not use (`keepalive.rs`) are served first.
pub(crate) struct TrackedIo<S> {
    inner: S,
    activity: Arc<Activity>,
    read_ahead: Bytes,
}

impl<S> TrackedIo<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        TrackedIo::with_read_ahead(inner, activity, Bytes::new())
    }

    pub(crate) fn with_read_ahead(inner: S, activity: Arc<Activity>, read_ahead: Bytes) -> Self {
        TrackedIo {
            inner,
            activity,
            read_ahead,
        }
    }

    /// The socket and the read-ahead bytes not served yet.
    pub(crate) fn into_parts(self) -> (S, Bytes) {
        (self.inner, self.read_ahead)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read_ahead.is_empty() {
            // Already counted as read when it first arrived.
            let n = self.read_ahead.len().min(buf.remaining());
            buf.put_slice(&self.read_ahead[..n]);
            self.read_ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
            self.activity.reads.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails, and has its connection dropped, when no frame arrives for
/// `limit` while the body is being read.
pub(crate) struct StallGuard {
    body: Incoming,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    activity: Arc<Activity>,
}

impl StallGuard {
    pub(crate) fn new(body: Incoming, limit: Duration, activity: Arc<Activity>) -> Self {
        StallGuard {
            body,
            limit,
            timer: None,
            activity,
        }
    }
}

/// The request body stalled for longer than `limits.body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled for longer than {}", humantime::format_duration(*.0))]
pub(crate) struct BodyStalled(Duration);

impl Body for StallGuard {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        let limit = this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            this.timer = None;
            // Only a whole-connection close stops a client that keeps the socket open;
            // notify_one keeps the permit if the driver is not waiting yet.
            this.activity.stalled.notify_one();
            return Poll::Ready(Some(Err(Box::new(BodyStalled(limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Run one connection to its end: closed by the client, idle for `idle_timeout` (graceful:
/// a request in progress completes; if nothing moves for another `idle_timeout` the socket
/// is dropped), dropped at once when a request body stalls, or drained on shutdown.
pub(crate) async fn drive<C>(
    connection: C,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DriveEnd>
where
    C: GracefulConnection,
    C::Error: Into<BoxError>,
{
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    activity.touch();
    loop {
        let wait = idle_timeout.saturating_sub(activity.idle_for());
        tokio::select! {
            ended = connection.as_mut() => return ended.map_err(|e| DriveEnd::Error(e.into())),
            () = activity.stalled.notified() => return Err(DriveEnd::BodyStalled),
            changed = shutdown.changed(), if !closing => {
                if changed.is_err() || *shutdown.borrow() {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = tokio::time::sleep(wait) => {
                if activity.idle_for() < idle_timeout {
                    continue;
                }
                if closing {
                    return Err(DriveEnd::Idle);
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
                // A second period from here before the socket is simply dropped.
                activity.touch();
            }
        }
    }
}

/// Why a connection ended other than by the client closing it.
#[derive(Debug)]
pub(crate) enum DriveEnd {
    Error(BoxError),
    BodyStalled,
    Idle,
}

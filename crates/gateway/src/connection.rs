//! One client connection's life after accept: the idle timer, the request-body stall timer and
//! graceful shutdown. hyper bounds the header read time itself (`limits.header_read_timeout`);
//! what it does not bound is a connection where nothing moves (an idle HTTP/2 connection, a
//! client that stops reading a response) or an upload that stalls between body frames, so
//! those are watched here.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
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
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            stalled: Notify::new(),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.base.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The socket, noting every successful read and write in its [`Activity`].
pub(crate) struct TrackedIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> TrackedIo<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        TrackedIo { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
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

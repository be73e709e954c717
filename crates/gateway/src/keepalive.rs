//! Client connections that hold no HTTP buffers while idle.
//!
//! hyper keeps an HTTP/1.1 connection's read and write buffers (about 25 KB once a request
//! has been served) for as long as the connection is open, so 10 000 idle keep-alive clients
//! would cost a quarter of a gigabyte. Here hyper serves an HTTP/1.1 connection only while it
//! is busy: once every request on it is answered and no byte has moved for
//! [`HIBERNATE_AFTER`], hyper is asked to stop. It stops at once, since it is idle, and without
//! a `Connection: close` (the last response head went out long ago). The socket is taken back
//! with any bytes hyper had read ahead, and the connection waits for its next byte holding
//! nothing but the socket; that byte starts a fresh hyper connection on it. Busy connections
//! never pay for this.
//!
//! HTTP/2 (h2c, recognised by its preface) is handed to hyper for the connection's lifetime.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::connection::{self, Activity, DriveEnd, InFlight, TrackedIo};
use crate::error::BoxError;

/// How long an answered HTTP/1.1 connection stays with hyper before its buffers are released.
/// Long enough that a client sending requests back to back never pays for a fresh hyper
/// connection; short enough that a burst of new clients does not pile up buffers.
pub(crate) const HIBERNATE_AFTER: Duration = Duration::from_millis(100);

/// The HTTP/2 connection preface (RFC 9113 §3.4) a prior-knowledge h2c client starts with.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The per-connection settings of [`serve`].
pub(crate) struct Protocols {
    pub(crate) http1: http1::Builder,
    pub(crate) http2: http2::Builder<TokioExecutor>,
    pub(crate) idle_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
}

/// Serve one accepted client connection until it closes, goes idle past `idle_timeout`, or
/// `shutdown` turns true (then a request in progress completes first).
pub(crate) async fn serve<S, B>(
    stream: TcpStream,
    protocols: Arc<Protocols>,
    service: S,
    activity: Arc<Activity>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriveEnd>
where
    S: HttpService<Incoming, ResBody = B> + Clone + Unpin + Send + 'static,
    S::Future: Unpin + Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    activity.touch();
    let mut shutdown = shutdown;
    match sniff(&stream, &protocols, &activity, &mut shutdown).await? {
        Sniffed::Closed => Ok(()),
        Sniffed::Http2 => {
            let io = TokioIo::new(TrackedIo::new(stream, Arc::clone(&activity)));
            let connection = protocols.http2.serve_connection(io, service);
            // Boxed: an HTTP/2 connection is large and this future is sized for its
            // largest state, which would make every hibernating HTTP/1.1 connection pay.
            Box::pin(connection::drive(
                connection,
                activity,
                protocols.idle_timeout,
                shutdown,
            ))
            .await
        }
        Sniffed::Http1 => serve_http1(stream, protocols, service, activity, shutdown).await,
    }
}

enum Sniffed {
    Http1,
    Http2,
    Closed,
}

/// Tell HTTP/2 prior knowledge from HTTP/1.1 by peeking, so nothing needs to be replayed.
async fn sniff(
    stream: &TcpStream,
    protocols: &Protocols,
    activity: &Activity,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Sniffed, DriveEnd> {
    let mut head = [0u8; H2_PREFACE.len()];
    // A silent client is closed at the idle timeout or on shutdown; one that has started is
    // given the header timeout to finish the preface.
    let first = tokio::select! {
        peeked = stream.peek(&mut head) => peeked.map_err(|e| DriveEnd::Error(e.into()))?,
        () = tokio::time::sleep(protocols.idle_timeout) => return Err(DriveEnd::Idle),
        () = shutting_down(shutdown) => return Ok(Sniffed::Closed),
    };
    let deadline = tokio::time::Instant::now() + protocols.header_read_timeout;
    let mut seen = first;
    loop {
        if seen == 0 {
            return Ok(Sniffed::Closed);
        }
        if head[..seen] != H2_PREFACE[..seen] {
            return Ok(Sniffed::Http1);
        }
        if seen == H2_PREFACE.len() {
            activity.touch();
            return Ok(Sniffed::Http2);
        }
        // Only a real HTTP/2 client whose preface was split, or a slowloris, gets here: no
        // HTTP/1.1 method starts like the preface. peek does not wait for more than it saw.
        if tokio::time::Instant::now() >= deadline {
            return Err(DriveEnd::Idle);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen = stream
            .peek(&mut head)
            .await
            .map_err(|e| DriveEnd::Error(e.into()))?;
    }
}

async fn serve_http1<S, B>(
    mut stream: TcpStream,
    protocols: Arc<Protocols>,
    service: S,
    activity: Arc<Activity>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DriveEnd>
where
    S: HttpService<Incoming, ResBody = B> + Clone + Unpin + Send + 'static,
    S::Future: Unpin + Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let idle_timeout = protocols.idle_timeout;
    let mut read_ahead = Bytes::new();
    loop {
        if read_ahead.is_empty() {
            match wait_for_request(&stream, &activity, idle_timeout, &mut shutdown).await? {
                Waited::Request => {}
                Waited::Closed => return Ok(()),
            }
        }
        let io = TokioIo::new(TrackedIo::with_read_ahead(
            stream,
            Arc::clone(&activity),
            read_ahead,
        ));
        // Boxed so that this task's future stays small while hibernating.
        let mut connection = Box::new(protocols.http1.serve_connection(io, service.clone()));
        let answered_before = activity.answered();
        let mut hibernating = false;
        let mut closing = false;
        loop {
            let idle = activity.idle_for();
            let until_idle_timeout = idle_timeout.saturating_sub(idle);
            let may_hibernate = !hibernating
                && !closing
                && activity.answered() > answered_before
                && activity.quiescent();
            // A connection with a request in progress is looked at again when that request
            // is answered, not on a timer: a thousand slow clients cost no wake-ups. Once the
            // hibernation timer runs, answers are not listened for: the timer looks again
            // within HIBERNATE_AFTER anyway, and a busy connection would otherwise wake this
            // loop (a fresh timer, notifications, clock reads) for every request it serves.
            let wait = if may_hibernate {
                HIBERNATE_AFTER.saturating_sub(idle).min(until_idle_timeout)
            } else {
                until_idle_timeout
            };
            // The events watched besides hyper, in a `FuturesUnordered`: it polls only the
            // futures whose own wakers fired. hyper wakes this task several times for every
            // request, and `select!` would poll each of these again every time.
            let mut watches: FuturesUnordered<Watcher<'_>> = FuturesUnordered::new();
            watches.push(Box::pin(async {
                activity.stalled().await;
                Watch::Stalled
            }));
            if !may_hibernate && !hibernating && !closing {
                watches.push(Box::pin(async {
                    activity.request_answered().await;
                    Watch::Answered
                }));
            }
            if !closing {
                let shutdown = &mut shutdown;
                watches.push(Box::pin(async move {
                    Watch::Shutdown {
                        sender_gone: shutdown.changed().await.is_err(),
                    }
                }));
            }
            watches.push(Box::pin(async move {
                tokio::time::sleep(wait).await;
                Watch::Timer
            }));
            let watched = tokio::select! {
                ended = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                    ended.map_err(|e| DriveEnd::Error(e.into()))?;
                    break;
                }
                Some(watched) = watches.next() => watched,
            };
            drop(watches);
            match watched {
                Watch::Stalled => return Err(DriveEnd::BodyStalled),
                Watch::Answered => {}
                Watch::Shutdown { sender_gone } => {
                    if sender_gone || *shutdown.borrow() {
                        Pin::new(&mut *connection).graceful_shutdown();
                        closing = true;
                    }
                }
                Watch::Timer => {
                    let idle = activity.idle_for();
                    // Quiescent again now: a request may have come in since the timer was set
                    // and still wait for its upstream with no byte moving on this socket.
                    if may_hibernate && activity.quiescent() && idle >= HIBERNATE_AFTER {
                        // hyper is idle, so this ends it now and without `Connection: close`.
                        Pin::new(&mut *connection).graceful_shutdown();
                        hibernating = true;
                    } else if idle >= idle_timeout {
                        if closing {
                            return Err(DriveEnd::Idle);
                        }
                        Pin::new(&mut *connection).graceful_shutdown();
                        closing = true;
                        // A second period from here before the socket is simply dropped.
                        activity.touch();
                    }
                }
            }
        }
        let parts = connection.into_parts();
        let (socket, unread) = parts.io.into_inner().into_parts();
        stream = socket;
        if closing || !hibernating {
            // hyper ended the connection itself (the client asked for close, HTTP/1.0, an
            // error answered) or the gateway is shutting down: close as hyper would have.
            let _ = stream.shutdown().await;
            return Ok(());
        }
        read_ahead = join(parts.read_buf, unread);
    }
}

/// What woke an HTTP/1.1 connection's driver, other than hyper.
enum Watch {
    Stalled,
    Answered,
    Shutdown { sender_gone: bool },
    Timer,
}

type Watcher<'a> = Pin<Box<dyn Future<Output = Watch> + Send + 'a>>;

enum Waited {
    Request,
    Closed,
}

/// Wait, holding no buffer, until the client sends its next byte.
async fn wait_for_request(
    stream: &TcpStream,
    activity: &Activity,
    idle_timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Waited, DriveEnd> {
    let mut probe = [0u8; 1];
    loop {
        let wait = idle_timeout.saturating_sub(activity.idle_for());
        tokio::select! {
            peeked = stream.peek(&mut probe) => {
                return match peeked {
                    Ok(0) => Ok(Waited::Closed),
                    Ok(_) => Ok(Waited::Request),
                    Err(err) => Err(DriveEnd::Error(err.into())),
                };
            }
            () = shutting_down(shutdown) => return Ok(Waited::Closed),
            () = tokio::time::sleep(wait) => {
                if activity.idle_for() >= idle_timeout {
                    return Err(DriveEnd::Idle);
                }
            }
        }
    }
}

/// Resolves once the server is shutting down (or whoever signals it is gone).
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}

/// The bytes read ahead, copied out: even an empty slice of hyper's read buffer would keep
/// the whole buffer alive through the hibernation.
fn join(first: Bytes, second: Bytes) -> Bytes {
    if first.is_empty() && second.is_empty() {
        return Bytes::new();
    }
    let mut joined = BytesMut::with_capacity(first.len() + second.len());
    joined.extend_from_slice(&first);
    joined.extend_from_slice(&second);
    joined.freeze()
}

/// A response body that counts its request as answered when hyper is done with it (sent in
/// full, or dropped because the client went away).
pub(crate) struct Answering<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Answering<B> {
    pub(crate) fn new(body: B, in_flight: InFlight) -> Self {
        Answering {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Answering<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

//! A scripted upstream on raw TCP, for faults hyper-based mocks cannot produce: a body cut
//! off by a reset after its headers, a body that trickles, one that stalls for good.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What every response of a [`RawUpstream`] does after its headers.
#[derive(Clone, Debug)]
pub enum Script {
    /// Declare `Content-Length: declared`, send `body` (shorter), then reset the connection.
    ResetMidBody { declared: usize, body: Vec<u8> },
    /// Send `body` (length declared) in `chunk`-byte pieces with `pause` between them.
    Trickle {
        body: Vec<u8>,
        chunk: usize,
        pause: Duration,
    },
    /// Declare `declared` bytes, send `body` (shorter), then send nothing more while the
    /// connection stays open (until the upstream is dropped).
    StallMidBody { declared: usize, body: Vec<u8> },
    /// Send `body` whole; with `chunked`, without a length (chunked encoding) so only
    /// reading it tells how big it is.
    Whole { body: Vec<u8>, chunked: bool },
}

pub struct RawUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    pub async fn start(script: Script) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let script = script.clone();
                let counter = Arc::clone(&counter);
                // Owned by the accept task, so aborting it ends stalled connections too.
                connections.spawn(serve(stream, script, counter));
            }
        });
        RawUpstream { addr, hits, task }
    }

    /// `http://127.0.0.1:PORT/fhir`
    pub fn base_url(&self) -> String {
        format!("http://{}/fhir", self.addr)
    }

    /// Requests whose head was read.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, script: Script, hits: Arc<AtomicUsize>) {
    // One request per connection: read its head (the gateway's GETs have no body).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let start = |len: Option<usize>| {
        let length = len.map_or_else(
            || "Transfer-Encoding: chunked\r\n".to_owned(),
            |l| format!("Content-Length: {l}\r\n"),
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n{length}Connection: close\r\n\r\n"
        )
    };
    match script {
        Script::ResetMidBody { declared, body } => {
            let _ = stream.write_all(start(Some(declared)).as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.flush().await;
            // A reset (RST), not an orderly close: SO_LINGER 0 then drop.
            #[allow(deprecated)]
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Script::Trickle { body, chunk, pause } => {
            let _ = stream.write_all(start(Some(body.len())).as_bytes()).await;
            for piece in body.chunks(chunk.max(1)) {
                if stream.write_all(piece).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
                tokio::time::sleep(pause).await;
            }
        }
        Script::StallMidBody { declared, body } => {
            let _ = stream.write_all(start(Some(declared)).as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.flush().await;
            // Hold the connection open without sending; ends when the gateway closes it.
            let _ = stream.read(&mut buf).await;
        }
        Script::Whole { body, chunked } => {
            if chunked {
                let _ = stream.write_all(start(None).as_bytes()).await;
                for piece in body.chunks(16 * 1024) {
                    let framed = format!("{:x}\r\n", piece.len());
                    let _ = stream.write_all(framed.as_bytes()).await;
                    let _ = stream.write_all(piece).await;
                    let _ = stream.write_all(b"\r\n").await;
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            } else {
                let _ = stream.write_all(start(Some(body.len())).as_bytes()).await;
                let _ = stream.write_all(&body).await;
            }
            let _ = stream.flush().await;
        }
    }
}

/// An Observation of `patient` padded with a `note` to at least `size` bytes of JSON, with
/// `marker` inside the padding so tests can tell whether any of it reached the client.
pub fn observation(patient: &str, size: usize, marker: &str) -> Vec<u8> {
    let head = format!(
        r#"{{"resourceType":"Observation","id":"o1","status":"final","code":{{"text":"x"}},"subject":{{"reference":"Patient/{patient}"}},"note":[{{"text":"{marker}"#
    );
    let tail = r#""}]}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = head.into_bytes();
    body.extend(std::iter::repeat_n(b'x', pad));
    body.extend_from_slice(tail.as_bytes());
    body
}

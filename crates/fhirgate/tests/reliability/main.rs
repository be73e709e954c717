//! The reliability suite (issue #10): the real `fhirgate` binary on loopback under slow,
//! hostile and changing conditions, with bounded request counts and time. One file per
//! item: connection limits, slowloris, live reload; the 10 000-connection and soak memory
//! checks are `#[ignore]`d and run by `scripts/bench-memory.sh` (see docs/reliability.md).

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod limits;
mod memory;
mod reload;
mod slowloris;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_fhirgate");

/// A small upstream that answers every request at once and keeps nothing, so long runs
/// measure the gateway and not a growing request log.
pub struct Upstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

const PATIENT: &str = r#"{"resourceType":"Patient","id":"1","name":[{"family":"Doe"}]}"#;

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(|request: http::Request<Incoming>| async move {
                            let created = request.method() == http::Method::POST;
                            // Read the whole body, as a FHIR server would.
                            let _ = request.into_body().collect().await;
                            let mut response = http::Response::new(Full::new(Bytes::from_static(
                                PATIENT.as_bytes(),
                            )));
                            if created {
                                *response.status_mut() = http::StatusCode::CREATED;
                            }
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/fhir+json"),
                            );
                            Ok::<_, Infallible>(response)
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/fhir", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway config on an ephemeral port without token checks (these tests are about
/// transport), plus `extra` YAML sections.
pub fn config(upstream: &Upstream, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\npublic_base_url: http://gateway.test/fhir\nupstream:\n  url: {}\nauth:\n  mode: disabled\n{extra}",
        upstream.base_url()
    )
}

/// `host:port` of `http://host:port`.
pub fn socket(address: &str) -> SocketAddr {
    address.trim_start_matches("http://").parse().unwrap()
}

/// One raw HTTP/1.1 connection, for what reqwest hides (connection reuse, stalls, EOF).
pub struct Raw {
    stream: BufReader<TcpStream>,
}

/// A parsed response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Raw> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Raw {
            stream: BufReader::new(stream),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes).await
    }

    pub async fn get(&mut self, path: &str) -> std::io::Result<RawResponse> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n\r\n").as_bytes())
            .await?;
        self.read_response().await
    }

    pub async fn read_response(&mut self) -> std::io::Result<RawResponse> {
        let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(eof());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(eof());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let mut response = RawResponse {
            status,
            headers,
            body: String::new(),
        };
        let mut body = Vec::new();
        if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().map_err(std::io::Error::other)?;
            body.resize(len, 0);
            self.stream.read_exact(&mut body).await?;
        } else if response
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        response.body = String::from_utf8_lossy(&body).into_owned();
        Ok(response)
    }

    /// How long until the server closes the connection (EOF or reset), or `None` if it is
    /// still open after `limit`. Anything the server sends before closing is skipped.
    pub async fn wait_closed(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut buf = [0u8; 1024];
        tokio::time::timeout(limit, async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return start.elapsed(),
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
    }
}

/// The `q`-quantile of `samples` (sorted in place).
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let at = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[at.min(samples.len() - 1)]
}

/// Number of log lines containing `needle`.
pub fn count_logs(process: &fhirgate_testkit::process::FhirgateProcess, needle: &str) -> usize {
    process.logs().iter().filter(|l| l.contains(needle)).count()
}

/// Raise this process's open-file limit (children inherit it) to at least `want`, as far as
/// the hard limit allows; returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let pid = std::process::id().to_string();
    let read = || -> u64 {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    if read() < want {
        // Raising the hard limit needs privileges; try, then fall back to the hard limit.
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={want}:{want}")])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("prlimit")
                .args(["--pid", &pid, "--nofile=unlimited:"])
                .status();
        }
    }
    read()
}

//! The cost floor of a proxy built on the same stack as the gateway, for the throughput
//! benchmark: hyper's HTTP/1.1 server and hyper-util's pooled client on a Tokio runtime with
//! the gateway's allocator, and nothing else. No classification, no header rewriting, no
//! timeouts, no logging, no error bodies: it is not a usable proxy, only the yardstick that
//! tells how much of the gap between the gateway and nginx is the stack's and how much is
//! the gateway's own work (docs/scaling.md, "The stack's floor").
//!
//! `hyper_floor LISTEN UPSTREAM_ORIGIN`, e.g. `hyper_floor 127.0.0.1:8400 http://127.0.0.1:18080`
//! (the request's path and query are appended to the origin unchanged).

use std::convert::Infallible;

use anyhow::Context;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(origin)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: hyper_floor LISTEN UPSTREAM_ORIGIN");
    };
    // Pinned to one core like the gateway in the benchmark, the gateway runs on a
    // current-thread runtime too (`fhirgate serve` picks it when it sees one CPU).
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()?
        .block_on(serve(listen, origin.trim_end_matches('/').to_owned()))
}

async fn serve(listen: String, origin: String) -> anyhow::Result<()> {
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        let origin = origin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| forward(client.clone(), &origin, request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn forward(
    client: Client<HttpConnector, Incoming>,
    origin: &str,
    mut request: Request<Incoming>,
) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> + use<> {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("{origin}{target}").parse::<Uri>();
    async move {
        let answer = match uri {
            Ok(uri) => {
                *request.uri_mut() = uri;
                client.request(request).await.ok()
            }
            Err(_) => None,
        };
        Ok(match answer {
            Some(response) => response.map(BodyExt::boxed),
            None => {
                let mut response = Response::new(
                    Full::new(Bytes::new())
                        .map_err(|never| match never {})
                        .boxed(),
                );
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response
            }
        })
    }
}

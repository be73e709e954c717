//! Opening a connection to one target: TCP (with `TCP_NODELAY`), TLS for `https` targets with
//! ALPN offering `h2` and `http/1.1`, then the HTTP handshake. The connection itself is driven
//! by a spawned task that ends when either side closes it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::UpstreamError;
use super::pool::Conn;

/// Where a target is reached.
#[derive(Debug, Clone)]
pub(crate) struct Address {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Some` for `https` targets.
    pub(crate) tls: Option<ServerName<'static>>,
    /// `scheme://host:port` for error messages and logs.
    pub(crate) label: Arc<str>,
}

pub(crate) fn tls_connector() -> Result<TlsConnector, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // An explicit provider: the process-wide default would panic if several crypto providers
    // end up linked into the binary.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Connect and shake hands within `timeout` (TCP and TLS together).
pub(crate) async fn connect(
    address: &Address,
    tls: &TlsConnector,
    timeout: Duration,
) -> Result<Conn, UpstreamError> {
    match tokio::time::timeout(timeout, open(address, tls)).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::ConnectTimeout {
            target: Arc::clone(&address.label),
            after: timeout,
        }),
    }
}

async fn open(address: &Address, tls: &TlsConnector) -> Result<Conn, UpstreamError> {
    let connect_error = |source| UpstreamError::Connect {
        target: Arc::clone(&address.label),
        source,
    };
    let stream = TcpStream::connect((address.host.as_str(), address.port))
        .await
        .map_err(connect_error)?;
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "TCP_NODELAY not set on an upstream connection");
    }
    let Some(server_name) = &address.tls else {
        return http1_handshake(address, TokioIo::new(stream)).await;
    };
    let stream = tls
        .connect(server_name.clone(), stream)
        .await
        .map_err(connect_error)?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    if !h2 {
        return http1_handshake(address, io).await;
    }
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(io)
        .await
        .map_err(|source| UpstreamError::Handshake {
            target: Arc::clone(&address.label),
            source,
        })?;
    let label = Arc::clone(&address.label);
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(upstream = %label, error = %err, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(Conn::Http2(sender))
}

async fn http1_handshake<T>(address: &Address, io: TokioIo<T>) -> Result<Conn, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake::<_, Body>(io)
        .await
        .map_err(|source| UpstreamError::Handshake {
            target: Arc::clone(&address.label),
            source,
        })?;
    let label = Arc::clone(&address.label);
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(upstream = %label, error = %err, "upstream connection ended with an error");
        }
    });
    Ok(Conn::Http1 {
        sender,
        reused: false,
    })
}

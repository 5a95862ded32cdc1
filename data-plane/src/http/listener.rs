//! Accepts gateway connections and serves HTTP/1.1 and HTTP/2 on them
//! (negotiated by ALPN over TLS; HTTP/2 with prior knowledge in plaintext).
//! Each connection has its own task, so one bad client harms no other.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tracing::Instrument as _;

use super::gateway::{Conn, Shared, handle};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS configuration the gateway serves: the node's, offering HTTP/2
/// and HTTP/1.1 by ALPN.
pub fn tls_acceptor(config: &rustls::ServerConfig) -> tokio_rustls::TlsAcceptor {
    let mut c = config.clone();
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(c))
}

/// How the gateway's connections may speak.
#[derive(Clone)]
pub struct Transport {
    /// TLS, when the node has a certificate.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Plaintext too (only ever on a loopback address).
    pub plaintext: bool,
}

/// Accepts connections until shutdown. With both TLS and plaintext
/// allowed, the first byte tells them apart (a TLS handshake record starts
/// with 0x16, which no HTTP method does).
pub async fn serve(listener: TcpListener, transport: Transport, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let transport = transport.clone();
        let span = tracing::info_span!("http_conn", peer = %peer);
        tokio::spawn(
            async move {
                let mut first = [0u8; 1];
                let is_tls =
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, tcp.peek(&mut first)).await {
                        Ok(Ok(1)) => first[0] == 0x16,
                        _ => return,
                    };
                let conn = Conn { peer, tls: is_tls };
                match (is_tls, &transport.tls) {
                    (true, Some(acceptor)) => {
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(tcp)).await
                        {
                            Ok(Ok(stream)) => serve_conn(stream, conn, shared).await,
                            _ => tracing::info!("TLS handshake failed"),
                        }
                    }
                    (false, _) if transport.plaintext => serve_conn(tcp, conn, shared).await,
                    _ => tracing::info!("connection refused: this gateway requires TLS"),
                }
            }
            .instrument(span),
        );
    }
}

async fn serve_conn<S>(io: S, conn: Conn, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_headers = shared.http.max_header_bytes;
    let shutdown = shared.shutdown.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        req.extensions_mut().insert(conn);
        async move { Ok::<_, std::convert::Infallible>(handle(shared, req.map(Body::new)).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Hyper answers 431 itself past its buffer; the gateway's own
        // check (per request) gives the problem document below that.
        .max_buf_size((max_headers * 2).max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_headers * 2).unwrap_or(u32::MAX));
    let served = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(served);
    tokio::select! {
        r = served.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
        }
    }
}

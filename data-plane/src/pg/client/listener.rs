//! Accepts client connections; each gets its own task and span, so one bad
//! connection never harms another.

use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::Instrument as _;

use super::session::{Shared, serve_connection};

/// Accepts connections until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let span = tracing::info_span!(
            "conn",
            peer = %peer,
            session_id = tracing::field::Empty,
            identity = tracing::field::Empty,
            target = tracing::field::Empty,
        );
        tokio::spawn(serve_connection(tcp, peer, shared.clone()).instrument(span));
    }
}

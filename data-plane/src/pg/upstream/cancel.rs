//! Forwards a client's cancel request to the upstream backend it maps to.

use tokio::io::AsyncWriteExt as _;

use super::connect::{UpstreamError, open};
use crate::pg::codec::startup;
use crate::sessions::CancelTarget;

/// Sends a CancelRequest to the upstream backend described by `t`.
pub async fn forward(t: &CancelTarget) -> Result<(), UpstreamError> {
    let target = sluice_proto::v1::Target {
        host: t.host.clone(),
        port: u32::from(t.port),
        tls_mode: t.tls_mode.clone(),
        ..Default::default()
    };
    let addr = format!("{}:{}", t.host, t.port);
    let mut stream = open(&target, &addr).await?;
    stream
        .write_all(&startup::encode_cancel(t.pid, &t.secret))
        .await?;
    stream.flush().await?;
    // The server closes the connection once it has read the request.
    let _ = stream.shutdown().await;
    Ok(())
}

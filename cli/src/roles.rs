//! `sluice control-plane` and `sluice data-plane`: one role per process.

use std::process::ExitCode;

use anyhow::Context as _;
use sluice_common::Shutdown;
use sluice_common::health::Readiness;
use sluice_control_plane::{ControlPlane, ControlPlaneConfig};
use sluice_data_plane::{BoundNode, DataPlaneConfig};
use tokio::net::TcpListener;

use crate::cli::RoleArgs;

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Cancels `shutdown` on the first stop signal.
pub fn cancel_on_signal(shutdown: &Shutdown) {
    let s = shutdown.clone();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping");
        s.cancel();
    });
}

/// Starts a control plane and serves gRPC and HTTP until shutdown.
pub async fn serve_control_plane(
    cp: &ControlPlane,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let ready = Readiness::default();
    ready.set(true);
    let router = sluice_web_api::router(cp.clone(), ready);
    let http = tokio::spawn(sluice_common::health::serve(http, router, shutdown.clone()));
    cp.serve_grpc(grpc).await.context("gRPC server")?;
    http.await
        .context("HTTP server task")?
        .context("HTTP server")?;
    Ok(())
}

pub async fn control_plane(args: RoleArgs) -> anyhow::Result<ExitCode> {
    let config: ControlPlaneConfig = crate::config::load(args.config.as_deref(), "SLUICE_CP_")?;
    let shutdown = Shutdown::new();
    cancel_on_signal(&shutdown);
    let grpc = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.grpc_listen))?;
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let cp = ControlPlane::start(config, shutdown.clone()).await?;
    tracing::info!(
        grpc = %grpc.local_addr()?,
        http = %http.local_addr()?,
        store = cp.store.backend(),
        "control plane serving"
    );
    serve_control_plane(&cp, grpc, http, &shutdown).await?;
    cp.store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn data_plane(args: RoleArgs) -> anyhow::Result<ExitCode> {
    let config: DataPlaneConfig = crate::config::load(args.config.as_deref(), "SLUICE_DP_")?;
    let shutdown = Shutdown::new();
    cancel_on_signal(&shutdown);
    let node = BoundNode::bind(config).await?;
    tracing::info!(pg = %node.pg_addr()?, http = %node.http_addr()?, "data plane listening");
    node.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

//! One client connection from accept to close: handshake, token check,
//! upstream connection, then the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::Shutdown;
use sluice_identity::Identity;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::handshake::{Handshake, HandshakeConfig, Hello, handshake};
use crate::auth::AuthRefusal;
use crate::control::audit::AuditSink;
use crate::control::credentials::CredentialSource;
use crate::control::snapshot::{NodeSnapshot, SnapshotCell};
use crate::pg::catalogs::Catalogs;
use crate::pg::codec::backend;
use crate::pg::error::{ClientError, sqlstate};
use crate::pg::relay::session::{ClientInfo, Limits, OnExpiry};
use crate::pg::relay::{Pids, SessionCtx, relay};
use crate::pg::upstream::cancel;
use crate::pg::upstream::connect::{self, UpstreamLimits};
use crate::sessions::{CancelTarget, Sessions};

/// What every connection of a node shares.
pub struct Shared {
    /// Handshake settings.
    pub handshake: HandshakeConfig,
    /// Session limits.
    pub limits: Limits,
    /// Upstream limits.
    pub upstream: UpstreamLimits,
    /// The current snapshot.
    pub snapshot: Arc<SnapshotCell>,
    /// Where audit events go.
    pub audit: AuditSink,
    /// Live sessions.
    pub sessions: Arc<Sessions>,
    /// Upstream credentials held by the control plane.
    pub credentials: CredentialSource,
    /// Where sessions ask the control plane for approvals.
    pub approvals: Arc<crate::control::approvals::Approvals>,
    /// What masking knows of each target's schema.
    pub catalogs: Arc<Catalogs>,
    /// Node shutdown.
    pub shutdown: Shutdown,
}

/// Serves one connection to its end. Never panics into the runtime: every
/// failure becomes a client error and a log line.
pub async fn serve_connection(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    metrics::counter!("sluice_pg_connections_total").increment(1);
    let hello = match handshake(tcp, &shared.handshake).await {
        Ok(Handshake::Session(h)) => h,
        Ok(Handshake::Cancel { pid, secret }) => {
            return forward_cancel(&shared, pid, &secret).await;
        }
        Ok(Handshake::Gone) => return,
        Err(e) => {
            tracing::info!(error = %e, "handshake failed");
            return;
        }
    };
    let mut hello = *hello;
    match open_session(&mut hello, peer, &shared).await {
        Ok(()) => {}
        Err(e) => {
            tracing::info!(code = e.code, error = %e.message, "session refused");
            let w = hello.reader.get_mut();
            let _ = w.write_all(&e.frame().raw).await;
            let _ = w.shutdown().await;
        }
    }
}

async fn open_session(
    hello: &mut Hello,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<(), ClientError> {
    let snapshot = shared
        .snapshot
        .usable()
        .map_err(|e| ClientError::fatal(sqlstate::CONNECTION_REJECTED, e.to_string()))?;
    let identity = match authenticate(&snapshot, &hello.token, peer).await {
        Ok(id) => id,
        Err(e) => {
            record_auth_failure(shared, hello, peer, &e);
            return Err(e);
        }
    };
    let span = tracing::Span::current();
    span.record("identity", identity.name.as_str());
    span.record("target", hello.database.as_str());
    let Some(target) = snapshot.targets.get(&hello.database).cloned() else {
        let e = ClientError::fatal(
            sqlstate::INVALID_CATALOG_NAME,
            format!(
                "target \"{}\" does not exist or is not available to you",
                bounded_name(&hello.database)
            ),
        )
        .with_hint("the database name in the connection string selects the target");
        let ctx = SessionCtx::new(
            identity,
            bounded_name(&hello.database),
            shared.limits,
            shared.audit.clone(),
            shared.snapshot.clone(),
        );
        let tls = hello.reader.get_mut().is_tls();
        ctx.refused(
            &ClientInfo {
                peer,
                tls,
                protocol: "postgres",
                application_name: "",
            },
            &e.message,
        );
        return Err(e);
    };
    let ctx = SessionCtx::new(
        identity,
        hello.database.clone(),
        shared.limits,
        shared.audit.clone(),
        shared.snapshot.clone(),
    )
    .with_approvals(shared.approvals.clone())
    .with_catalogs(shared.catalogs.clone());
    span.record("session_id", ctx.session_id.as_str());
    let unavailable = || {
        ClientError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("target \"{}\" is unavailable", hello.database),
        )
        .with_hint("the gateway could not connect to it; try again later or ask an administrator")
    };
    let login = shared
        .credentials
        .for_session(&target.0, &ctx.identity, &hello.token, &ctx.session_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "no upstream credential for the session");
            unavailable()
        })?;
    let upstream = connect::connect(&login, &hello.forward, shared.upstream)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot reach target");
            unavailable()
        })?;
    if let Ok(policies) = &snapshot.policies {
        let tables = policies.masked_tables(&hello.database);
        shared
            .catalogs
            .prepare(&hello.database, tables, &login)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read the target's catalog for masking");
                ClientError::fatal(
                    sqlstate::CONNECTION_FAILURE,
                    format!(
                        "target \"{}\" is unavailable: the gateway could not read the views and columns it needs to mask results",
                        hello.database
                    ),
                )
                .with_hint("try again later or ask an administrator")
            })?;
    }
    drop(login);
    // The gateway splits statements as the server does only if backslashes
    // in ordinary strings are ordinary characters. A target configured
    // otherwise could read a statement differently: refuse it.
    if !upstream
        .params
        .iter()
        .any(|(k, v)| k == "standard_conforming_strings" && v == "on")
    {
        tracing::warn!("target runs with standard_conforming_strings off; refusing the session");
        return Err(ClientError::fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "target \"{}\" runs with standard_conforming_strings off, which this gateway refuses",
                hello.database
            ),
        )
        .with_hint("an administrator must set standard_conforming_strings = on for the target"));
    }
    let is_tls = hello.reader.get_mut().is_tls();
    ctx.emit(
        ctx.start_event(&ClientInfo {
            peer,
            tls: is_tls,
            protocol: "postgres",
            application_name: hello
                .forward
                .iter()
                .find(|(k, _)| k == "application_name")
                .map_or("", |(_, v)| v.as_str()),
        }),
    )
    .map_err(|e| ClientError::fatal(sqlstate::CONNECTION_REJECTED, e.to_string()))?;
    let (pid, secret) = shared.sessions.register_cancel(CancelTarget {
        client_secret: 0,
        host: target.0.host.clone(),
        port: u16::try_from(target.0.port).unwrap_or(5432),
        tls_mode: target.0.tls_mode.clone(),
        pid: upstream.pid,
        secret: upstream.secret.clone(),
        held: ctx.cancel_held.clone(),
    });
    let kill = shared
        .sessions
        .open(&ctx.session_id, &ctx.identity.token_id, &shared.shutdown);
    let expiry = tokio::spawn(end_at_expiry(
        shared.sessions.clone(),
        ctx.session_id.clone(),
        ctx.identity.expires_at,
        shared.limits.on_expiry,
    ));
    let mut greeting = Vec::with_capacity(512);
    greeting.extend_from_slice(&backend::auth_ok().raw);
    for (k, v) in &upstream.params {
        // The upstream role is the gateway's business; the client sees its own name.
        let v = if k == "session_authorization" {
            hello.user.as_str()
        } else {
            v.as_str()
        };
        greeting.extend_from_slice(&backend::parameter_status(k, v).raw);
    }
    greeting.extend_from_slice(&backend::backend_key_data(pid, secret).raw);
    greeting.extend_from_slice(&backend::ready_for_query(b'I').raw);
    let client = std::mem::replace(
        &mut hello.reader,
        crate::pg::io::FrameReader::new(
            crate::pg::stream::MaybeTls::Closed,
            0,
            shared.limits.stall,
        ),
    );
    let mut client = client;
    if let Err(e) = client.get_mut().write_all(&greeting).await {
        tracing::info!(error = %e, "client left during startup");
    } else {
        tracing::info!("session started");
        let pids = Pids {
            upstream: upstream.pid,
            client: pid,
        };
        let end = relay(client, upstream.reader, &ctx, &kill, pids).await;
        tracing::info!(reason = %end, "session ended");
        let _ = ctx.emit(ctx.end_event(&end.audit_reason()));
    }
    expiry.abort();
    shared.sessions.close(&ctx.session_id, Some(pid));
    Ok(())
}

/// Checks the token sent as the password (with the checks every protocol
/// shares, [`crate::auth::verify_token`]), and tells a refusal to the client
/// as SQLSTATE 28P01 with the reason.
async fn authenticate(
    snapshot: &NodeSnapshot,
    token: &str,
    peer: SocketAddr,
) -> Result<Identity, ClientError> {
    crate::auth::verify_token(snapshot, token, peer, "postgres")
        .await
        .map_err(|e| {
            metrics::counter!("sluice_pg_auth_failures_total").increment(1);
            let err = ClientError::fatal(sqlstate::INVALID_PASSWORD, e.to_string());
            match e {
                AuthRefusal::NoKeys => err,
                AuthRefusal::Revoked | AuthRefusal::Expired => err.with_hint("ask for a new token"),
                AuthRefusal::Invalid(_) => err.with_hint(
                    "connect with a valid Sluice or identity-provider access token as the password",
                ),
            }
        })
}

/// Ends the session when its token expires: a token is a lease on access,
/// not a key to a connection that outlives it.
async fn end_at_expiry(sessions: Arc<Sessions>, session_id: String, expires_at: u64, on: OnExpiry) {
    let now_ms = u64::try_from(sluice_common::unix_ms()).unwrap_or(0);
    let left = Duration::from_millis(expires_at.saturating_mul(1000).saturating_sub(now_ms));
    tokio::time::sleep(left).await;
    let reason = "the access token expired";
    match on {
        OnExpiry::End => sessions.kill(&session_id, reason),
        OnExpiry::AfterStatement => sessions.drain(&session_id, reason),
    }
}

/// Records a refused sign-in as a session of one event, so auditors find
/// it with every other session. Best effort: with the audit buffer full the
/// refusal still stands, and the log line remains.
/// At most 64 characters of a name a client gave, for messages and records.
fn bounded_name(name: &str) -> String {
    name.chars().take(64).collect()
}

fn record_auth_failure(shared: &Shared, hello: &mut Hello, peer: SocketAddr, e: &ClientError) {
    let tls = hello.reader.get_mut().is_tls();
    crate::auth::record_refused_sign_in(
        &shared.audit,
        crate::auth::RefusedSignIn {
            peer,
            user: &hello.user,
            target: &hello.database,
            token: &hello.token,
            reason: e.message.clone(),
            protocol: "postgres",
            tls,
        },
    );
}

async fn forward_cancel(shared: &Shared, pid: i32, secret: &[u8]) {
    match shared.sessions.cancel_target(pid, secret) {
        Some(t) => {
            t.held.notify_waiters();
            if let Err(e) = cancel::forward(&t).await {
                tracing::warn!(error = %e, "cancel request could not be forwarded");
            } else {
                tracing::info!(pid, "cancel request forwarded");
            }
        }
        None => tracing::info!(pid, "cancel request with an unknown key ignored"),
    }
}

//! Audit sessions of the HTTP gateway: HTTP has no connection that lasts as
//! long as an agent's work, so a session is one token on one target through
//! this node. It opens with the first request (recording who, from where,
//! and fetching the upstream credential once), and ends when idle, killed,
//! at the token's expiry, or at shutdown, like a SQL session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_identity::Identity;
use tokio::sync::OnceCell;

use super::problem::GatewayError;
use super::scrub::Secrets;
use super::upstream::Credential;
use crate::control::snapshot::NodeTarget;
use crate::pg::relay::SessionCtx;
use crate::pg::relay::session::ClientInfo;
use crate::sessions::Kill;

/// One live session.
#[derive(Debug)]
pub struct HttpSession {
    /// Identity, audit trail and approvals (shared with the SQL path).
    pub ctx: SessionCtx,
    /// The upstream credential, resolved once for the session.
    pub credential: Credential,
    /// What must never be echoed to the client.
    pub secrets: Secrets,
    last_used_ms: AtomicI64,
    in_flight: AtomicU64,
    /// Fires once the session is ending, so no new request joins it and a
    /// request held for approval stops waiting.
    ended: sluice_common::Shutdown,
}

impl HttpSession {
    /// Marks a request as started; the returned guard marks it finished.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// Fires when the session ends (killed, expired, idle, shutdown).
    pub fn ended(&self) -> &sluice_common::Shutdown {
        &self.ended
    }

    fn touch(&self) {
        self.last_used_ms
            .store(sluice_common::unix_ms(), Ordering::Release);
    }
}

/// A request in flight; the session is not ended as idle while one is.
#[derive(Debug)]
pub struct InFlight(Arc<HttpSession>);

impl InFlight {
    /// The session.
    pub fn session(&self) -> &Arc<HttpSession> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

type Slot = Arc<OnceCell<Arc<HttpSession>>>;

/// What opening a session needs from the node.
#[derive(Clone)]
pub struct Opening<'a> {
    /// Who.
    pub identity: Identity,
    /// Their token (to fetch a sealed credential, and to scrub its echo).
    pub token: &'a str,
    /// The target.
    pub target: &'a NodeTarget,
    /// From where.
    pub peer: SocketAddr,
    /// Over TLS?
    pub tls: bool,
}

/// The node's HTTP sessions.
#[derive(Debug, Default)]
pub struct HttpSessions {
    live: Mutex<HashMap<(String, String), Slot>>,
}

impl HttpSessions {
    /// The session of this token on this target, opened if there is none.
    pub async fn get_or_open(
        self: &Arc<Self>,
        shared: &Arc<super::gateway::Shared>,
        o: Opening<'_>,
    ) -> Result<Arc<HttpSession>, GatewayError> {
        let key = (o.identity.token_id.clone(), o.target.0.name.clone());
        // At most twice: a session caught between its end and its removal
        // is removed here, and the second round opens a new one.
        for _ in 0..2 {
            let slot = match self.live.lock() {
                Ok(mut g) => g.entry(key.clone()).or_default().clone(),
                Err(_) => break,
            };
            let session = slot
                .get_or_try_init(|| open(shared, o.clone()))
                .await?
                .clone();
            if !session.ended.is_cancelled() {
                return Ok(session);
            }
            self.forget(&key, &session);
        }
        Err(GatewayError::Unavailable(
            "session table unavailable".to_owned(),
        ))
    }

    /// Removes the session of `key` if it is still `session` (not a newer
    /// one opened since).
    fn forget(&self, key: &(String, String), session: &Arc<HttpSession>) {
        if let Ok(mut g) = self.live.lock()
            && g.get(key)
                .and_then(|slot| slot.get())
                .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            g.remove(key);
        }
    }
}

async fn open(
    shared: &Arc<super::gateway::Shared>,
    o: Opening<'_>,
) -> Result<Arc<HttpSession>, GatewayError> {
    let target = &o.target.0;
    let ctx = SessionCtx::new(
        o.identity,
        target.name.clone(),
        shared.limits,
        shared.audit.clone(),
        shared.snapshot.clone(),
    )
    .with_approvals(shared.approvals.clone());
    let unavailable =
        || GatewayError::BadGateway(format!("target \"{}\" is unavailable", target.name));
    let login = shared
        .credentials
        .for_session(target, &ctx.identity, o.token, &ctx.session_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, target_name = %target.name, "no upstream credential for the session");
            unavailable()
        })?;
    let credential = Credential::new(&target.http_auth, login.password).map_err(|e| {
        tracing::warn!(error = %e, target_name = %target.name, "unusable HTTP target");
        unavailable()
    })?;
    let mut secrets = Secrets::default();
    credential.add_secrets(&mut secrets);
    secrets.add(o.token);
    ctx.emit(ctx.start_event(&ClientInfo {
        peer: o.peer,
        tls: o.tls,
        protocol: "http",
        application_name: "",
    }))
    .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
    tracing::info!(session_id = %ctx.session_id, identity = %ctx.identity.name, target_name = %target.name, "http session started");
    let kill = shared
        .sessions
        .open(&ctx.session_id, &ctx.identity.token_id, &shared.shutdown);
    let session = Arc::new(HttpSession {
        ctx,
        credential,
        secrets,
        last_used_ms: AtomicI64::new(sluice_common::unix_ms()),
        in_flight: AtomicU64::new(0),
        ended: sluice_common::Shutdown::new(),
    });
    let key = (session.ctx.identity.token_id.clone(), target.name.clone());
    tokio::spawn(watch(shared.clone(), session.clone(), kill, key));
    Ok(session)
}

/// Why a session's watch ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Shutdown,
    Killed,
    TokenExpired,
    Idle,
}

/// The recorded end reason: a kill carries the reason it was pulled with
/// (a revoked token, a revoked grant), recorded as `killed: REASON` like a
/// SQL session's, so the record says why, not only that it was killed.
fn end_reason(end: End, pulled: Option<&str>) -> String {
    match (end, pulled) {
        (End::Killed, Some(why)) if !why.is_empty() => format!("killed: {why}"),
        (End::Killed, _) => "killed".to_owned(),
        (End::Shutdown, _) => "shutdown".to_owned(),
        (End::TokenExpired, _) => "token_expired".to_owned(),
        (End::Idle, _) => "idle".to_owned(),
    }
}

/// Ends a session when it is killed, its token expires, the node shuts
/// down, or it has been idle too long.
async fn watch(
    shared: Arc<super::gateway::Shared>,
    s: Arc<HttpSession>,
    kill: Kill,
    key: (String, String),
) {
    let idle_ms = i64::try_from(shared.http.session_idle.as_millis()).unwrap_or(i64::MAX);
    let tick =
        (shared.http.session_idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(15));
    let now_ms = u64::try_from(sluice_common::unix_ms()).unwrap_or(0);
    let expiry = tokio::time::sleep(Duration::from_millis(
        s.ctx
            .identity
            .expires_at
            .saturating_mul(1000)
            .saturating_sub(now_ms),
    ));
    tokio::pin!(expiry);
    let end = loop {
        tokio::select! {
            () = kill.token.cancelled() => break if shared.shutdown.is_cancelled() { End::Shutdown } else { End::Killed },
            () = kill.drain.cancelled() => break End::Killed,
            () = &mut expiry => break End::TokenExpired,
            () = tokio::time::sleep(tick) => {
                let idle = sluice_common::unix_ms() - s.last_used_ms.load(Ordering::Acquire);
                if idle >= idle_ms && s.in_flight.load(Ordering::Acquire) == 0 {
                    break End::Idle;
                }
            }
        }
    };
    s.ended.cancel();
    shared.http_sessions.forget(&key, &s);
    shared.sessions.close(&s.ctx.session_id, None);
    let reason = end_reason(end, kill.reason().as_deref());
    let _ = s.ctx.emit(s.ctx.end_event(&reason));
    tracing::info!(session_id = %s.ctx.session_id, reason, "http session ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_records_the_reason_it_was_pulled_with() {
        assert_eq!(
            end_reason(End::Killed, Some("the access token was revoked")),
            "killed: the access token was revoked"
        );
        assert_eq!(end_reason(End::Killed, None), "killed");
        assert_eq!(end_reason(End::Killed, Some("")), "killed");
        assert_eq!(end_reason(End::Idle, Some("ignored")), "idle");
        assert_eq!(end_reason(End::TokenExpired, None), "token_expired");
        assert_eq!(end_reason(End::Shutdown, None), "shutdown");
    }
}

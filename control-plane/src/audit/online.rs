//! Verification against the live store: thin I/O around the pure
//! [`super::verify`] and [`super::seal`] checks. A session's events are read
//! in order and checked against the newest signed checkpoint that recorded
//! the session; the whole store is checked by walking every checkpoint and
//! comparing the heads they signed with the heads the store holds now.

use serde::Serialize;

use super::seal::{self, CheckpointError, LostHead};
use super::verify::{self, Anchor, Item, Options, Report};
use crate::store::{Store, StoreError};

/// Records read per store round trip while verifying.
const PAGE: u32 = 5000;

/// Verifies one session as stored. `trusted_public_key` is this control
/// plane's own key (base64url): checkpoints signed by any other key fail.
pub async fn verify_session(
    store: &Store,
    session_id: &str,
    trusted_public_key: &str,
) -> Result<Report, StoreError> {
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let page = store.session_records(session_id, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == PAGE as usize;
        items.extend(page.into_iter().map(|r| Item::Event(r.record)));
        if !full {
            break;
        }
    }
    let mut anchors = Vec::new();
    let mut checkpoint_problem = None;
    if let Some(c) = store.checkpoint_for_session(session_id).await? {
        match c.check(Some(trusted_public_key)) {
            Ok(()) => {
                if let Some(h) = c
                    .checkpoint
                    .heads
                    .iter()
                    .find(|h| h.session_id == session_id)
                {
                    anchors.push(Anchor {
                        seq: h.seq,
                        hash: h.hash.clone(),
                        source: format!("checkpoint {}", c.checkpoint.seq),
                    });
                }
            }
            Err(e) => checkpoint_problem = Some(e),
        }
    }
    let mut report = verify::verify(
        &items,
        &Options {
            session_id: Some(session_id.to_owned()),
            anchors,
            ..Options::default()
        },
    );
    if let (Some(e), None) = (checkpoint_problem, &report.problem) {
        report.status = verify::Status::Tampered;
        report.problem = Some(verify::Problem {
            line: 0,
            seq: None,
            kind: verify::ProblemKind::Modified,
            detail: format!("the checkpoint covering this session does not check: {e}"),
        });
    }
    Ok(report)
}

/// Verifies one session as stored and, if it has no end, whether it can
/// still get one: a session whose node stopped or restarted since its last
/// event has lost its undelivered tail, which is reported as a gap.
/// `node_stale_after` is how long a silent node counts as alive.
pub async fn verify_session_live(
    store: &Store,
    session_id: &str,
    trusted_public_key: &str,
    node_stale_after: std::time::Duration,
) -> Result<Report, StoreError> {
    let mut report = verify_session(store, session_id, trusted_public_key).await?;
    if report.ended || report.problem.is_some() {
        return Ok(report);
    }
    let Some(session) = store.get_session(session_id).await? else {
        return Ok(report);
    };
    let last_at = store
        .session_records(session_id, report.last_seq.saturating_sub(1), 1)
        .await?
        .first()
        .and_then(|r| r.record.get("at").and_then(serde_json::Value::as_i64))
        .unwrap_or(session.started_at);
    let node = store
        .get_node(&session.node_id)
        .await?
        .map(|n| (n.last_seen_at, n.process_started_at));
    let stale = i64::try_from(node_stale_after.as_micros()).unwrap_or(i64::MAX);
    if verify::tail_lost(last_at, node, sluice_common::unix_us(), stale) {
        report.set_lost_tail();
    }
    Ok(report)
}

/// The verdict on the store as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// True only if every checkpoint checks and every checkpointed session
    /// still reaches its signed head.
    pub ok: bool,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Sessions the checkpoints cover.
    pub sessions: usize,
    /// The first broken checkpoint, if any.
    pub checkpoint_error: Option<String>,
    /// Sessions deleted or cut short since they were checkpointed.
    pub lost_sessions: Vec<LostSession>,
}

/// A checkpointed session the store no longer matches.
#[derive(Debug, Clone, Serialize)]
pub struct LostSession {
    /// The session.
    pub session_id: String,
    /// The signed head.
    pub checkpointed_seq: u64,
    /// The stored head, if any events remain.
    pub stored_seq: Option<u64>,
}

impl From<LostHead> for LostSession {
    fn from(l: LostHead) -> Self {
        Self {
            session_id: l.session_id,
            checkpointed_seq: l.checkpointed.0,
            stored_seq: l.stored.map(|s| s.0),
        }
    }
}

/// Checks every checkpoint and that no checkpointed session was deleted or
/// truncated since.
pub async fn verify_store(
    store: &Store,
    trusted_public_key: &str,
) -> Result<StoreReport, StoreError> {
    let chain = store.checkpoints().await?;
    let checked: Result<_, CheckpointError> =
        seal::check_checkpoints(&chain, Some(trusted_public_key));
    let heads = match checked {
        Ok(h) => h,
        Err(e) => {
            return Ok(StoreReport {
                ok: false,
                checkpoints: chain.len(),
                sessions: 0,
                checkpoint_error: Some(e.to_string()),
                lost_sessions: Vec::new(),
            });
        }
    };
    let current = store.chain_heads().await?;
    let lost: Vec<LostSession> = seal::head_changes(&current, &heads)
        .lost
        .into_iter()
        .map(LostSession::from)
        .collect();
    Ok(StoreReport {
        ok: lost.is_empty(),
        checkpoints: chain.len(),
        sessions: heads.len(),
        checkpoint_error: None,
        lost_sessions: lost,
    })
}

//! The periodic checkpoint: every interval, sign the heads of every session
//! whose chain moved since the last checkpoint, linked to that checkpoint.
//! Any replica may run it; two replicas racing for the same checkpoint
//! number store one and skip the other. Heads the store no longer matches
//! (a deleted or cut session) are logged as errors and counted. With a
//! retention period, sessions that ended before it are then retired: a
//! checkpoint of tombstones is signed and the sessions deleted with it.

use std::time::Duration;

use sluice_common::Shutdown;
use sluice_identity::SigningKey;

use super::chain::{GENESIS, Head};
use super::changes::{self, Change};
use super::seal::{Checkpoint, head_changes, tombstones};
use crate::store::{Store, StoreError};

/// What one checkpoint round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The checkpoint stored, if any: (number, sessions covered).
    pub stored: Option<(u64, usize)>,
    /// Sessions whose checkpointed head the store no longer matches.
    pub lost: Vec<String>,
}

/// Makes one checkpoint if any chain moved.
pub async fn checkpoint_once(store: &Store, key: &SigningKey) -> Result<Round, StoreError> {
    // Checkpoints first: chains only grow, so heads read afterwards are never
    // behind what any replica has checkpointed in between.
    let (last, checkpointed) = store.checkpoint_state().await?;
    let current = store.chain_heads().await?;
    let changes = head_changes(&current, &checkpointed);
    let lost: Vec<String> = changes.lost.iter().map(|l| l.session_id.clone()).collect();
    for l in &changes.lost {
        metrics::counter!("sluice_cp_audit_checkpoint_mismatch_total").increment(1);
        tracing::error!(
            session = %l.session_id,
            checkpointed_seq = l.checkpointed.0,
            stored_seq = l.stored.as_ref().map(|s| s.0),
            "audit record no longer matches its signed checkpoint: events were deleted or rewritten"
        );
    }
    if changes.moved.is_empty() {
        return Ok(Round { stored: None, lost });
    }
    let covered = changes.moved.len();
    let signed = next_checkpoint(last, changes.moved, key);
    let seq = signed.checkpoint.seq;
    let stored = store
        .insert_checkpoint(&signed)
        .await?
        .then_some((seq, covered));
    if stored.is_some() {
        metrics::counter!("sluice_cp_audit_checkpoints_total").increment(1);
        tracing::debug!(
            checkpoint = seq,
            sessions = covered,
            "audit checkpoint signed"
        );
    }
    Ok(Round { stored, lost })
}

/// Sessions retired per round at most, so one round stays one short
/// transaction; a backlog drains over successive rounds.
const RETIRE_BATCH: u32 = 500;

/// Signs the next checkpoint with `heads`, linked to the newest one.
fn next_checkpoint(
    last: Option<(u64, String)>,
    heads: Vec<Head>,
    key: &SigningKey,
) -> crate::audit::seal::SignedCheckpoint {
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    Checkpoint {
        seq,
        created_at: sluice_common::unix_us(),
        prev_hash,
        heads,
    }
    .sign(key)
}

/// Retires sessions that ended before `cutoff_us` and whose last event a
/// checkpoint already signed, and records the retirement as a
/// `config_change` event. Returns how many sessions were removed.
pub async fn retire_once(
    store: &Store,
    key: &SigningKey,
    cutoff_us: i64,
) -> Result<usize, StoreError> {
    let (last, checkpointed) = store.checkpoint_state().await?;
    let expired = store.expired_heads(cutoff_us, RETIRE_BATCH).await?;
    let heads = tombstones(&expired, &checkpointed);
    if heads.is_empty() {
        return Ok(0);
    }
    let n = heads.len();
    let signed = next_checkpoint(last, heads, key);
    if !store.retire_sessions(&signed).await? {
        return Ok(0);
    }
    metrics::counter!("sluice_cp_audit_sessions_retired_total").increment(n as u64);
    tracing::info!(
        sessions = n,
        checkpoint = signed.checkpoint.seq,
        "audit retention retired sessions"
    );
    let name = format!(
        "{n} sessions (tombstones in checkpoint {})",
        signed.checkpoint.seq
    );
    let record = changes::event(
        Change {
            actor: "retention",
            action: "deleted",
            resource: "sessions",
            name: &name,
            version: signed.checkpoint.seq,
            document: None,
        },
        sluice_common::unix_us(),
    );
    store.append_events(&[record]).await?;
    Ok(n)
}

/// Runs [`checkpoint_once`] every `interval` until shutdown, and once more
/// on the way out so the newest events are covered. With `retention`,
/// each round then retires sessions that ended longer ago than that.
pub async fn run(
    store: Store,
    key: SigningKey,
    interval: Duration,
    retention: Option<Duration>,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        if let Err(e) = checkpoint_once(&store, &key).await {
            tracing::warn!(error = %e, "audit checkpoint failed; retrying next interval");
        }
        if let Some(keep) = retention {
            let cutoff = sluice_common::unix_us()
                .saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
            if let Err(e) = retire_once(&store, &key, cutoff).await {
                tracing::warn!(error = %e, "audit retention failed; retrying next interval");
            }
        }
    }
    if let Err(e) = checkpoint_once(&store, &key).await {
        tracing::warn!(error = %e, "final audit checkpoint failed");
    }
}

//! The periodic checkpoint: every interval, sign the heads of every session
//! whose chain moved since the last checkpoint, linked to that checkpoint.
//! Any replica may run it; two replicas racing for the same checkpoint
//! number store one and skip the other. Heads the store no longer matches
//! (a deleted or cut session) are logged as errors and counted.

use std::time::Duration;

use sluice_common::Shutdown;
use sluice_identity::SigningKey;

use super::chain::GENESIS;
use super::seal::{Checkpoint, head_changes};
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
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let covered = changes.moved.len();
    let signed = Checkpoint {
        seq,
        created_at: sluice_common::unix_us(),
        prev_hash,
        heads: changes.moved,
    }
    .sign(key);
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

/// Runs [`checkpoint_once`] every `interval` until shutdown, and once more
/// on the way out so the newest events are covered.
pub async fn run(store: Store, key: SigningKey, interval: Duration, shutdown: Shutdown) {
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
    }
    if let Err(e) = checkpoint_once(&store, &key).await {
        tracing::warn!(error = %e, "final audit checkpoint failed");
    }
}

//! The expiry sweeper: pending requests past their deadline (and access
//! grants past their end) are recorded as expired even when nobody reads
//! them, so the `approval.decided`
//! webhook, the audit record and the node holding the statement all learn
//! of it. Any replica may run it: the store's version check lets only one
//! record each expiry.

use std::time::Duration;

use sluice_common::Shutdown;

use crate::control_plane::ControlPlane;

/// Requests expired per pass (the rest wait for the next one).
const BATCH: u32 = 100;

impl ControlPlane {
    /// Records the expiry of every pending request past its deadline at
    /// `now` (µs), up to a batch. Returns how many were looked at.
    pub async fn sweep_expired_approvals(&self, now: i64) -> Result<usize, super::ApprovalError> {
        let lapsed = self.store.lapsed_approvals(now, BATCH).await?;
        for a in &lapsed {
            self.record_expiry(a, now).await?;
        }
        Ok(lapsed.len())
    }
}

/// Sweeps lapsed approval requests and access grants every `interval` until
/// shutdown, so their expiry is recorded (and an expired grant's sessions
/// end) even when nobody reads them.
pub async fn run(cp: ControlPlane, interval: Duration, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let now = sluice_common::unix_us();
        report("approval requests", cp.sweep_expired_approvals(now).await);
        report("access grants", cp.sweep_expired_grants(now).await);
    }
}

fn report<E: std::fmt::Display>(what: &str, swept: Result<usize, E>) {
    match swept {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, what, "lapsed items recorded as expired"),
        Err(e) => tracing::warn!(error = %e, what, "expiry sweep failed; retrying next interval"),
    }
}

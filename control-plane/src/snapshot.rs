//! Builds the versioned snapshots pushed to nodes, and keeps the newest one
//! in a watch channel that every attached node stream follows.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1;
use tokio::sync::watch;

use crate::bus::{Bus, BusEvent};
use crate::store::{Store, StoreError, Target};
use crate::targets::snapshot_form;

/// Builds a snapshot from the store at its current revision.
pub async fn build(store: &Store, trust: &v1::TokenTrust) -> Result<v1::Snapshot, StoreError> {
    // Read the revision first: a change racing with this read bumps it again,
    // so the next poll rebuilds and nothing is missed.
    let version = store.revision().await?;
    let targets = store.list_targets().await?;
    let policies = store.list_policies().await?;
    let revoked_token_ids = store.revoked_token_ids().await?;
    let grants = store.live_grants(sluice_common::unix_us()).await?;
    Ok(v1::Snapshot {
        version,
        issued_at_unix_ms: sluice_common::unix_ms(),
        targets: targets.into_iter().map(target_to_proto).collect(),
        token_trust: Some(trust.clone()),
        policies: policies
            .into_iter()
            .map(|p| v1::PolicyDocument {
                name: p.name,
                version: p.version,
                source: p.source,
            })
            .collect(),
        revoked_token_ids,
        grants: grants
            .into_iter()
            .map(|g| v1::Grant {
                id: g.id,
                identity: g.identity,
                target: g.target,
                scope: g.scope,
                expires_at_unix_us: g.expires_at.unwrap_or(0),
            })
            .collect(),
    })
}

fn target_to_proto(t: Target) -> v1::Target {
    v1::Target {
        credential: snapshot_form(&t.secret),
        logins: t
            .logins
            .into_iter()
            .map(|l| v1::Login {
                credential: snapshot_form(&l.secret),
                group: l.group,
                username: l.username,
            })
            .collect(),
        name: t.name,
        kind: t.kind,
        host: t.host,
        port: u32::from(t.port),
        database: t.database,
        username: t.username,
        password: String::new(),
        tls_mode: t.tls_mode,
        base_url: t.http.base_url,
        http_auth: t.http.auth,
        ca_pem: t.http.ca_pem,
    }
}

/// Keeps `tx` holding the newest snapshot: rebuilds on every
/// [`BusEvent::ConfigChanged`] and whenever the store's revision moved (a
/// change made through another replica).
pub async fn follow(
    store: Store,
    trust: v1::TokenTrust,
    bus: Bus,
    tx: watch::Sender<Arc<v1::Snapshot>>,
    poll: Duration,
    shutdown: sluice_common::Shutdown,
) {
    let mut events = bus.subscribe();
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            ev = events.recv() => match ev {
                Ok(BusEvent::ConfigChanged) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                match store.revision().await {
                    Ok(rev) if rev == tx.borrow().version => continue,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the configuration revision");
                        continue;
                    }
                }
            }
        }
        match build(&store, &trust).await {
            Ok(snap) if snap.version != tx.borrow().version => {
                tracing::info!(
                    version = snap.version,
                    targets = snap.targets.len(),
                    "new snapshot"
                );
                tx.send_replace(Arc::new(snap));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot build a snapshot"),
        }
    }
}

//! The policy/config snapshot a node decides from, and whether it may still
//! be trusted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use sluice_identity::oidc::OidcIssuerConfig;
use sluice_identity::{IssuerRegistry, TrustStore, Verifier};
use sluice_policy::{Policy, PolicySet};
use sluice_proto::v1;

/// A target as the node holds it: in memory only.
#[derive(Clone)]
pub struct NodeTarget(pub v1::Target);

impl std::fmt::Debug for NodeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTarget")
            .field("name", &self.0.name)
            .field("host", &self.0.host)
            .field("port", &self.0.port)
            .finish_non_exhaustive()
    }
}

/// One snapshot, prepared for fast lookups.
#[derive(Debug)]
pub struct NodeSnapshot {
    /// The control plane's version number.
    pub version: u64,
    /// Targets by name.
    pub targets: HashMap<String, Arc<NodeTarget>>,
    /// Validates access tokens; `None` if the snapshot's key set was unusable
    /// (then every token is refused).
    pub verifier: Option<Verifier>,
    /// External OpenID Connect issuers whose tokens are accepted too.
    pub external: Vec<OidcIssuerConfig>,
    /// Every trusted issuer behind one call; built when the snapshot is
    /// installed, so external issuers keep their fetched keys across
    /// snapshots.
    pub trust: TrustStore,
    /// The policies; an error if any failed to compile (then every statement
    /// is refused, since a rule of the broken policy might have forbidden it).
    pub policies: Result<PolicySet, String>,
    /// Ids of revoked, unexpired tokens, sorted.
    pub revoked_token_ids: Vec<String>,
    /// Approved access grants; each one's expiry is checked on every
    /// statement against the node's clock.
    pub grants: Vec<sluice_policy::grants::Grant>,
}

impl NodeSnapshot {
    /// Whether the token with this id has been revoked.
    pub fn is_revoked(&self, token_id: &str) -> bool {
        self.revoked_token_ids
            .binary_search_by(|id| id.as_str().cmp(token_id))
            .is_ok()
    }
}

impl NodeSnapshot {
    /// Prepares a snapshot received from the control plane.
    pub fn from_proto(s: v1::Snapshot) -> Self {
        let verifier = s.token_trust.as_ref().and_then(|t| {
            Verifier::from_jwks(&t.issuer, &t.audience, &t.jwks_json, 30)
                .map_err(|e| tracing::error!(error = %e, "snapshot carries an unusable key set; refusing all tokens"))
                .ok()
        });
        let external = s
            .token_trust
            .iter()
            .flat_map(|t| &t.external_issuers)
            .filter_map(|p| {
                super::oidc::from_proto(p)
                    .map_err(|e| tracing::error!(error = %e, "snapshot carries an unusable external issuer; refusing its tokens"))
                    .ok()
            })
            .collect();
        let policies = s
            .policies
            .iter()
            .map(|p| Policy::from_yaml(&p.source).map_err(|e| format!("policy {:?} is invalid: {e}", p.name)))
            .collect::<Result<Vec<_>, _>>()
            .map(PolicySet::new)
            .inspect_err(|e| tracing::error!(error = %e, "snapshot carries a policy that does not compile; refusing all statements"));
        let grants = s
            .grants
            .into_iter()
            .map(|g| sluice_policy::grants::Grant {
                scope: (!g.scope.is_empty()).then_some(g.scope),
                id: g.id,
                identity: g.identity,
                target: g.target,
                expires_at: g.expires_at_unix_us,
            })
            .collect();
        let mut revoked_token_ids = s.revoked_token_ids;
        revoked_token_ids.sort_unstable();
        let targets = s
            .targets
            .into_iter()
            .map(|t| (t.name.clone(), Arc::new(NodeTarget(t))))
            .collect();
        Self {
            version: s.version,
            targets,
            trust: TrustStore::new(verifier.clone(), Vec::new()),
            verifier,
            external,
            policies,
            revoked_token_ids,
            grants,
        }
    }
}

/// Why the node will not decide anything right now.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// No snapshot has arrived since the node started.
    #[error("the gateway has not yet received its configuration from the control plane")]
    NoSnapshot,
    /// The control plane has been out of reach for too long.
    #[error(
        "the gateway has lost contact with its control plane for {0}s, longer than the allowed {1}s"
    )]
    Stale(u64, u64),
}

/// The current snapshot, swapped atomically, and the time of the last
/// contact with the control plane.
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwapOption<NodeSnapshot>,
    last_contact_ms: AtomicI64,
    max_age: Duration,
    issuers: IssuerRegistry,
}

impl SnapshotCell {
    /// An empty cell: nothing is usable until the first snapshot.
    pub fn new(max_age: Duration) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            last_contact_ms: AtomicI64::new(0),
            max_age,
            issuers: IssuerRegistry::default(),
        }
    }

    /// Installs a newer snapshot; older or equal versions are ignored.
    pub fn install(&self, mut snap: NodeSnapshot) {
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|cur| cur.version >= snap.version)
        {
            return;
        }
        snap.trust = TrustStore::new(snap.verifier.clone(), self.issuers.resolve(&snap.external));
        tracing::info!(
            version = snap.version,
            targets = snap.targets.len(),
            "snapshot installed"
        );
        self.current.store(Some(Arc::new(snap)));
        self.touch();
    }

    /// Records contact with the control plane.
    pub fn touch(&self) {
        self.last_contact_ms
            .store(sluice_common::unix_ms(), Ordering::Release);
    }

    /// The version held (0 for none).
    pub fn version(&self) -> u64 {
        self.current.load().as_ref().map_or(0, |s| s.version)
    }

    /// The snapshot, if it may still be trusted.
    pub fn usable(&self) -> Result<Arc<NodeSnapshot>, Unusable> {
        let snap = self.current.load_full().ok_or(Unusable::NoSnapshot)?;
        let age_ms = sluice_common::unix_ms() - self.last_contact_ms.load(Ordering::Acquire);
        let max_ms = i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX);
        if age_ms > max_ms {
            return Err(Unusable::Stale(
                u64::try_from(age_ms / 1000).unwrap_or(0),
                self.max_age.as_secs(),
            ));
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(version: u64) -> NodeSnapshot {
        NodeSnapshot::from_proto(v1::Snapshot {
            version,
            ..Default::default()
        })
    }

    #[test]
    fn nothing_is_usable_before_the_first_snapshot() {
        let cell = SnapshotCell::new(Duration::from_secs(60));
        assert_eq!(cell.usable().unwrap_err(), Unusable::NoSnapshot);
        cell.install(snap(3));
        assert_eq!(cell.usable().unwrap().version, 3);
    }

    #[test]
    fn older_snapshots_never_replace_newer_ones() {
        let cell = SnapshotCell::new(Duration::from_secs(60));
        cell.install(snap(5));
        cell.install(snap(4));
        assert_eq!(cell.version(), 5);
    }

    #[test]
    fn a_snapshot_goes_stale_without_contact() {
        let cell = SnapshotCell::new(Duration::ZERO);
        cell.install(snap(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(cell.usable(), Err(Unusable::Stale(..))));
        assert!(
            snap(1).verifier.is_none(),
            "no key set: no verifier, every token refused"
        );
    }
}

//! Just-in-time access grants: an identity asks for a time-boxed exemption
//! from per-statement approval on one target (optionally one policy rule).
//! Approvers decide it under the approval rules of the policy governing that
//! identity on that target. Active grants reach nodes in the snapshot; a
//! node checks each grant's expiry on every statement. Revoking a grant, or
//! its expiry, ends the sessions of its identity on its target. The rules
//! are pure ([`rules`]); this module is the thin I/O around them.

mod record;
pub mod rules;

use std::time::Duration;

pub use rules::{GrantRefusal, GrantState, effective};

use sluice_identity::Identity;
use sluice_policy::{Policy, Subject};

use crate::approvals::{Action, Approver, Channel, Refusal};
use crate::bus::BusEvent;
use crate::control_plane::ControlPlane;
use crate::store::{Grant, GrantEntry, GrantTransition, NewGrant, SessionFilter, StoreError};

/// How often a vote is retried when another write raced it.
const MAX_RACES: usize = 8;
/// Grants expired per sweep.
const SWEEP_BATCH: u32 = 100;
/// The longest reason or scope, in bytes.
const MAX_TEXT: usize = 2000;

/// Why a grant request or change failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// No such grant (or not one the caller may see).
    #[error("no access grant {0:?}")]
    NotFound(String),
    /// The request is malformed, or no policy can govern it.
    #[error("{0}")]
    Invalid(String),
    /// The rules refuse it.
    #[error(transparent)]
    Refused(#[from] GrantRefusal),
    /// Too many concurrent writes.
    #[error("the grant changed while it was being decided; try again")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refusal> for GrantError {
    fn from(r: Refusal) -> Self {
        Self::Refused(GrantRefusal::Vote(r))
    }
}

/// What an identity asks for.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    /// The target.
    pub target: String,
    /// How long, once approved.
    pub duration: Duration,
    /// Why.
    pub reason: String,
    /// A rule name of the governing policy, or `None` for the whole target.
    pub scope: Option<String>,
}

fn approved_by(history: &[GrantEntry]) -> Vec<String> {
    history
        .iter()
        .filter(|e| e.action == Action::Approve.as_str())
        .map(|e| e.actor.clone())
        .collect()
}

/// Parses a requested duration such as `30m` or `4h`.
pub fn parse_duration(text: &str) -> Result<Duration, GrantError> {
    humantime_serde::re::humantime::parse_duration(text.trim()).map_err(|e| {
        GrantError::Invalid(format!(
            "duration must be a span such as \"30m\" or \"4h\": {e}"
        ))
    })
}

fn us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl ControlPlane {
    /// Where a grant is shown.
    pub fn grant_url(&self, id: &str) -> String {
        format!(
            "{}/api/v1/grants/{id}",
            self.config().issuer_url.trim_end_matches('/')
        )
    }

    /// Stores a pending grant for `who`, governed by the first policy that
    /// applies to them on the target (and holds the scope's rule, if one is
    /// named); refused if that policy does not allow grants or the duration
    /// exceeds its limit.
    pub async fn request_grant(
        &self,
        who: &Identity,
        r: GrantRequest,
    ) -> Result<Grant, GrantError> {
        if r.reason.trim().is_empty() || r.reason.len() > MAX_TEXT {
            return Err(GrantError::Invalid(format!(
                "a grant needs a reason of 1 to {MAX_TEXT} bytes"
            )));
        }
        if r.scope
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > MAX_TEXT)
        {
            return Err(GrantError::Invalid(
                "scope must be a rule name of the governing policy".to_owned(),
            ));
        }
        if self.store.get_target(&r.target).await?.is_none() {
            return Err(GrantError::Invalid(format!("no target {:?}", r.target)));
        }
        let policy = self
            .governing_policy(who, &r.target, r.scope.as_deref())
            .await?;
        let a = policy.approval();
        rules::check_request(policy.name(), &a.grants, r.duration)?;
        let g = self
            .store
            .create_grant(NewGrant {
                identity: who.name.clone(),
                target: r.target.clone(),
                scope: r.scope.clone().unwrap_or_default(),
                reason: r.reason.clone(),
                policy: policy.name().to_owned(),
                duration_us: us(r.duration),
                approvers: a.approvers.clone(),
                required: a.required,
                ttl_us: us(a.expires_after),
            })
            .await?;
        tracing::info!(grant_id = %g.id, identity = %g.identity, target_name = %g.target, "access grant requested");
        self.record_grant(&[record::requested(&g)]).await;
        metrics::counter!("sluice_grants_requested_total").increment(1);
        Ok(g)
    }

    async fn governing_policy(
        &self,
        who: &Identity,
        target: &str,
        scope: Option<&str>,
    ) -> Result<Policy, GrantError> {
        let subject = Subject {
            identity: &who.name,
            groups: &who.groups,
            target,
        };
        for stored in self.store.list_policies().await? {
            let Ok(p) = Policy::from_yaml(&stored.source) else {
                continue;
            };
            let has_rule = |s: &str| {
                p.doc
                    .statements
                    .as_ref()
                    .is_some_and(|st| st.rules.iter().any(|r| r.name == s))
            };
            if p.applies(&subject) && scope.is_none_or(has_rule) {
                return Ok(p);
            }
        }
        Err(GrantError::Invalid(match scope {
            Some(s) => format!("no policy governing you on {target:?} has a rule {s:?}"),
            None => format!("no policy governs you on {target:?}"),
        }))
    }

    /// One grant and its history, with a lapsed grant shown (and recorded)
    /// as expired.
    pub async fn grant(&self, id: &str) -> Result<(Grant, Vec<GrantEntry>), GrantError> {
        let g = self.load_grant(id).await?;
        let now = sluice_common::unix_us();
        if effective(g.state, g.request_expires_at, g.expires_at, now) == GrantState::Expired
            && g.state != GrantState::Expired
        {
            self.record_grant_expiry(&g, now).await?;
        }
        let g = self.load_grant(id).await?;
        let history = self.store.grant_history(id).await?;
        Ok((g, history))
    }

    async fn load_grant(&self, id: &str) -> Result<Grant, GrantError> {
        self.store
            .get_grant(id)
            .await?
            .ok_or_else(|| GrantError::NotFound(id.to_owned()))
    }

    /// Records one approver's vote on a pending grant, with the approval
    /// rules of its policy. Returns the grant after the vote.
    pub async fn vote_grant(
        &self,
        id: &str,
        approver: &Approver<'_>,
        action: Action,
        channel: Channel,
        reason: &str,
    ) -> Result<Grant, GrantError> {
        for _ in 0..MAX_RACES {
            let g = self.load_grant(id).await?;
            let history = self.store.grant_history(id).await?;
            let by = approved_by(&history);
            let now = sluice_common::unix_us();
            let pending = rules::Pending {
                state: g.state,
                requester: &g.identity,
                request_expires_at: g.request_expires_at,
                approvers: &g.approvers,
                required: g.required,
                approved_by: &by,
            };
            let state = match rules::vote(&pending, approver, action, now) {
                Ok(s) => s,
                Err(Refusal::Expired) => {
                    self.record_grant_expiry(&g, now).await?;
                    return Err(Refusal::Expired.into());
                }
                Err(e) => return Err(e.into()),
            };
            let t = GrantTransition {
                version: g.version,
                state,
                expires_at: (state == GrantState::Active)
                    .then(|| now.saturating_add(g.duration_us)),
                entry: GrantEntry {
                    at: now,
                    actor: approver.name.to_owned(),
                    action: action.as_str().to_owned(),
                    channel: channel.as_str().to_owned(),
                    reason: reason.to_owned(),
                },
            };
            if self.store.transition_grant(id, &t).await? {
                tracing::info!(grant_id = %id, approver = %approver.name, action = action.as_str(), state = %state, "grant vote recorded");
                self.record_grant(&[record::changed(id, g.version + 1, &t.entry, state)])
                    .await;
                if state == GrantState::Active {
                    self.bus.publish(BusEvent::ConfigChanged);
                }
                return self.load_grant(id).await;
            }
        }
        Err(GrantError::Busy)
    }

    /// Revokes a pending or active grant (an admin, or its requester), and
    /// ends the sessions relying on it.
    pub async fn revoke_grant(
        &self,
        id: &str,
        actor: &Identity,
        reason: &str,
    ) -> Result<Grant, GrantError> {
        let is_admin = actor.has_role(sluice_identity::Role::Admin);
        for _ in 0..MAX_RACES {
            let g = self.load_grant(id).await?;
            if !is_admin && actor.name != g.identity {
                // Someone else's grant is not even shown to them.
                return Err(GrantError::NotFound(id.to_owned()));
            }
            let state = rules::revoke(g.state, &g.identity, &actor.name, is_admin)?;
            let entry = GrantEntry {
                at: sluice_common::unix_us(),
                actor: actor.name.clone(),
                action: "revoke".to_owned(),
                channel: Channel::Api.as_str().to_owned(),
                reason: reason.to_owned(),
            };
            if self.end_grant(&g, state, entry).await? {
                return self.load_grant(id).await;
            }
        }
        Err(GrantError::Busy)
    }

    /// Records a lapsed grant as expired (if nobody changed it first).
    async fn record_grant_expiry(&self, g: &Grant, now: i64) -> Result<(), GrantError> {
        let entry = GrantEntry {
            at: now,
            actor: "sluice".to_owned(),
            action: "expire".to_owned(),
            channel: "system".to_owned(),
            reason: if g.state == GrantState::Active {
                "the grant's window ended".to_owned()
            } else {
                "nobody decided before the request expired".to_owned()
            },
        };
        self.end_grant(g, GrantState::Expired, entry).await?;
        Ok(())
    }

    /// Moves `g` to a final state; if it was active, pushes a snapshot
    /// without it and ends the sessions of its identity on its target.
    async fn end_grant(
        &self,
        g: &Grant,
        state: GrantState,
        entry: GrantEntry,
    ) -> Result<bool, GrantError> {
        let t = GrantTransition {
            version: g.version,
            state,
            expires_at: None,
            entry,
        };
        if !self.store.transition_grant(&g.id, &t).await? {
            return Ok(false);
        }
        tracing::info!(grant_id = %g.id, state = %state, actor = %t.entry.actor, "access grant ended");
        self.record_grant(&[record::changed(&g.id, g.version + 1, &t.entry, state)])
            .await;
        metrics::counter!("sluice_grants_ended_total", "state" => state.as_str()).increment(1);
        if g.state == GrantState::Active {
            self.bus.publish(BusEvent::ConfigChanged);
            self.end_sessions_of(g, state).await?;
        }
        Ok(true)
    }

    /// Ends every open session of the grant's identity on its target: they
    /// may have relied on the grant.
    async fn end_sessions_of(&self, g: &Grant, state: GrantState) -> Result<(), GrantError> {
        let mut filter = SessionFilter {
            identity: Some(g.identity.clone()),
            target: Some(g.target.clone()),
            limit: 500,
            ..Default::default()
        };
        loop {
            let page = self.store.list_sessions(&filter).await?;
            for s in page.items.iter().filter(|s| s.ended_at.is_none()) {
                tracing::info!(session_id = %s.id, grant_id = %g.id, "ending a session that may rely on an ended grant");
                self.bus.publish(BusEvent::KillSession {
                    session_id: s.id.clone(),
                    reason: format!("access grant {} was {state}", g.id),
                });
            }
            match page.next_cursor {
                Some(c) => filter.cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// Records every lapsed grant as expired, up to a batch. Returns how
    /// many were looked at.
    pub async fn sweep_expired_grants(&self, now: i64) -> Result<usize, GrantError> {
        let lapsed = self.store.lapsed_grants(now, SWEEP_BATCH).await?;
        for g in &lapsed {
            self.record_grant_expiry(g, now).await?;
        }
        Ok(lapsed.len())
    }
}

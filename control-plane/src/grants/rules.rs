//! The access grant state machine, as pure functions: the caller passes the
//! time, so every rule is unit-tested alone. Votes reuse the approval rules
//! ([`crate::approvals::decide`]): the same groups, N-of-M and no
//! self-approval.

use std::fmt;
use std::time::Duration;

use sluice_policy::model::GrantsDoc;

use crate::approvals::{self, Action, Approver, Refusal};

/// Where a grant stands. `Pending` and `Active` change; the rest are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantState {
    /// Waiting for approvers.
    Pending,
    /// Approved: it applies until it expires or is revoked.
    Active,
    /// An approver said no.
    Denied,
    /// Nobody decided in time, or its window ended.
    Expired,
    /// Ended early by an admin or its requester.
    Revoked,
}

impl GrantState {
    /// The name used in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// Parses a stored name; unknown names are `None` (the caller fails closed).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }

    /// The approval state a vote is judged against.
    fn as_approval(self) -> approvals::State {
        match self {
            Self::Pending => approvals::State::Pending,
            Self::Active => approvals::State::Approved,
            Self::Denied => approvals::State::Denied,
            Self::Expired => approvals::State::Expired,
            Self::Revoked => approvals::State::Cancelled,
        }
    }
}

impl fmt::Display for GrantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a grant request or a change to a grant is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefusal {
    /// The vote breaks an approval rule.
    #[error(transparent)]
    Vote(#[from] Refusal),
    /// The governing policy does not allow grants.
    #[error("policy {0:?} does not allow access grants (approval.grants.allowed)")]
    NotAllowed(String),
    /// The duration is zero or above the policy's limit.
    #[error("a grant lasts more than zero seconds and at most {0}s under this policy")]
    Duration(u64),
    /// Only an admin or the requester revokes a grant.
    #[error("only an admin or the identity that requested it may revoke a grant")]
    NotRevoker,
    /// Only a pending or active grant can be revoked.
    #[error("the grant is already {0}")]
    Final(GrantState),
}

/// Checks a requested duration against the governing policy's settings.
pub fn check_request(
    policy: &str,
    doc: &GrantsDoc,
    duration: Duration,
) -> Result<(), GrantRefusal> {
    if !doc.allowed {
        return Err(GrantRefusal::NotAllowed(policy.to_owned()));
    }
    if duration.is_zero() || duration > doc.max_duration {
        return Err(GrantRefusal::Duration(doc.max_duration.as_secs()));
    }
    Ok(())
}

/// The facts about a grant a vote is judged against.
#[derive(Debug, Clone)]
pub struct Pending<'a> {
    /// Current state.
    pub state: GrantState,
    /// Who asked.
    pub requester: &'a str,
    /// When an undecided grant lapses, µs.
    pub request_expires_at: i64,
    /// Groups whose members may decide; empty means any approver.
    pub approvers: &'a [String],
    /// Approvals needed.
    pub required: u32,
    /// Identities that approved already.
    pub approved_by: &'a [String],
}

/// Judges one vote on a grant with the approval rules; an approval that
/// reaches the required count makes the grant active.
pub fn vote(
    g: &Pending<'_>,
    who: &Approver<'_>,
    action: Action,
    now: i64,
) -> Result<GrantState, Refusal> {
    let req = approvals::Request {
        state: g.state.as_approval(),
        requester: g.requester,
        expires_at: g.request_expires_at,
        approvers: g.approvers,
        required: g.required,
        approved_by: g.approved_by,
    };
    let out = approvals::decide(&req, who, action, now)?;
    Ok(match out.state {
        approvals::State::Approved => GrantState::Active,
        approvals::State::Denied => GrantState::Denied,
        _ => GrantState::Pending,
    })
}

/// Revoking: an admin or the requester ends a pending or active grant.
pub fn revoke(
    state: GrantState,
    requester: &str,
    actor: &str,
    is_admin: bool,
) -> Result<GrantState, GrantRefusal> {
    if !is_admin && actor != requester {
        return Err(GrantRefusal::NotRevoker);
    }
    match state {
        GrantState::Pending | GrantState::Active => Ok(GrantState::Revoked),
        other => Err(GrantRefusal::Final(other)),
    }
}

/// The state a reader should see at `now`: a pending grant past its request
/// deadline, or an active one past its window, is expired even before
/// anyone recorded it.
pub fn effective(
    state: GrantState,
    request_expires_at: i64,
    expires_at: Option<i64>,
    now: i64,
) -> GrantState {
    match state {
        GrantState::Pending if now >= request_expires_at => GrantState::Expired,
        GrantState::Active if expires_at.is_none_or(|e| now >= e) => GrantState::Expired,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending<'a>(approvers: &'a [String], by: &'a [String], required: u32) -> Pending<'a> {
        Pending {
            state: GrantState::Pending,
            requester: "agent",
            request_expires_at: 1_000,
            approvers,
            required,
            approved_by: by,
        }
    }

    #[test]
    fn grants_follow_the_approval_rules() {
        let none: Vec<String> = vec![];
        let ops = vec!["ops".to_owned()];
        let me = Approver {
            name: "agent",
            groups: &ops,
        };
        assert_eq!(
            vote(&pending(&none, &none, 1), &me, Action::Approve, 10),
            Err(Refusal::SelfApproval)
        );
        let alice = Approver {
            name: "alice",
            groups: &ops,
        };
        assert_eq!(
            vote(&pending(&none, &none, 1), &alice, Action::Approve, 10),
            Ok(GrantState::Active)
        );
        assert_eq!(
            vote(&pending(&none, &none, 2), &alice, Action::Approve, 10),
            Ok(GrantState::Pending)
        );
        assert_eq!(
            vote(&pending(&none, &none, 1), &alice, Action::Deny, 10),
            Ok(GrantState::Denied)
        );
        let dba = vec!["dba".to_owned()];
        assert!(matches!(
            vote(&pending(&dba, &none, 1), &alice, Action::Approve, 10),
            Err(Refusal::NotAnApprover(_))
        ));
        assert_eq!(
            vote(&pending(&none, &none, 1), &alice, Action::Approve, 1_000),
            Err(Refusal::Expired)
        );
        let active = Pending {
            state: GrantState::Active,
            ..pending(&none, &none, 1)
        };
        assert!(matches!(
            vote(&active, &alice, Action::Approve, 10),
            Err(Refusal::Final(_))
        ));
    }

    #[test]
    fn requests_are_bounded_by_policy() {
        let on = GrantsDoc {
            allowed: true,
            max_duration: Duration::from_secs(3600),
        };
        assert!(check_request("p", &on, Duration::from_secs(3600)).is_ok());
        assert_eq!(
            check_request("p", &on, Duration::from_secs(3601)),
            Err(GrantRefusal::Duration(3600))
        );
        assert!(check_request("p", &on, Duration::ZERO).is_err());
        let off = GrantsDoc::default();
        assert_eq!(
            check_request("p", &off, Duration::from_secs(60)),
            Err(GrantRefusal::NotAllowed("p".to_owned()))
        );
    }

    #[test]
    fn only_admins_and_requesters_revoke_live_grants() {
        assert_eq!(
            revoke(GrantState::Active, "agent", "agent", false),
            Ok(GrantState::Revoked)
        );
        assert_eq!(
            revoke(GrantState::Active, "agent", "root", true),
            Ok(GrantState::Revoked)
        );
        assert_eq!(
            revoke(GrantState::Pending, "agent", "mallory", false),
            Err(GrantRefusal::NotRevoker)
        );
        assert_eq!(
            revoke(GrantState::Expired, "agent", "root", true),
            Err(GrantRefusal::Final(GrantState::Expired))
        );
    }

    #[test]
    fn lapsed_grants_read_as_expired() {
        assert_eq!(
            effective(GrantState::Pending, 100, None, 100),
            GrantState::Expired
        );
        assert_eq!(
            effective(GrantState::Pending, 100, None, 99),
            GrantState::Pending
        );
        assert_eq!(
            effective(GrantState::Active, 0, Some(500), 499),
            GrantState::Active
        );
        assert_eq!(
            effective(GrantState::Active, 0, Some(500), 500),
            GrantState::Expired
        );
        assert_eq!(
            effective(GrantState::Revoked, 0, Some(500), 1),
            GrantState::Revoked
        );
        for s in ["pending", "active", "denied", "expired", "revoked"] {
            assert_eq!(GrantState::parse(s).map(GrantState::as_str), Some(s));
        }
        assert_eq!(GrantState::parse("maybe"), None);
    }
}

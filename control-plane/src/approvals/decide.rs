//! The approval state machine, as pure functions: a request and a vote in,
//! the new state (or why the vote is refused) out. No clock is read here;
//! the caller passes the time, so every rule is unit-tested alone.

use std::fmt;

/// Where an approval request stands. `Pending` is the only state that
/// changes; every other state is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for approvers.
    Pending,
    /// Enough approvers said yes: the bound statement may run.
    Approved,
    /// An approver said no.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// The requester withdrew it (cancel or disconnect).
    Cancelled,
}

impl State {
    /// The name used in the store, the API and the node protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name; unknown names are `None` (the caller fails closed).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an approver does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Votes for running the statement.
    Approve,
    /// Refuses it; one denial is final.
    Deny,
}

impl Action {
    /// The name recorded in the decision history.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// The facts about a request a vote is judged against.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Current state.
    pub state: State,
    /// Who asked (the identity whose statement it is).
    pub requester: &'a str,
    /// When the request lapses, µs since the epoch.
    pub expires_at: i64,
    /// Groups whose members may decide; empty means any approver.
    pub approvers: &'a [String],
    /// Approvals needed.
    pub required: u32,
    /// Identities that approved already.
    pub approved_by: &'a [String],
}

/// Who votes: a verified identity and its groups at the moment of the vote.
#[derive(Debug, Clone, Copy)]
pub struct Approver<'a> {
    /// The identity's name.
    pub name: &'a str,
    /// Its groups now (checked at vote time, not when the request was made).
    pub groups: &'a [String],
}

/// Why a vote is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is already decided.
    #[error("the request is already {0}")]
    Final(State),
    /// The request lapsed before the vote.
    #[error("the request expired before it was decided")]
    Expired,
    /// Nobody approves their own statement.
    #[error("a request cannot be decided by the identity that made it")]
    SelfApproval,
    /// The approver is in none of the groups the policy names.
    #[error("only members of {0} may decide this request")]
    NotAnApprover(String),
    /// The same approver counts once.
    #[error("this approver has already approved the request")]
    AlreadyApproved,
}

/// What a vote does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The state after the vote.
    pub state: State,
    /// Approvals counted after the vote.
    pub approvals: u32,
}

/// Judges one vote. A request past its expiry is refused (the caller then
/// records it as expired with [`expire`]); a denial by any eligible approver
/// is final; an approval counts once per approver, and the request is
/// approved when `required` distinct approvers said yes.
pub fn decide(
    req: &Request<'_>,
    who: &Approver<'_>,
    action: Action,
    now: i64,
) -> Result<Outcome, Refusal> {
    if req.state != State::Pending {
        return Err(Refusal::Final(req.state));
    }
    if now >= req.expires_at {
        return Err(Refusal::Expired);
    }
    if who.name == req.requester {
        return Err(Refusal::SelfApproval);
    }
    if !req.approvers.is_empty() && !who.groups.iter().any(|g| req.approvers.contains(g)) {
        return Err(Refusal::NotAnApprover(req.approvers.join(", ")));
    }
    let so_far = u32::try_from(req.approved_by.len()).unwrap_or(u32::MAX);
    match action {
        Action::Deny => Ok(Outcome {
            state: State::Denied,
            approvals: so_far,
        }),
        Action::Approve => {
            if req.approved_by.iter().any(|a| a == who.name) {
                return Err(Refusal::AlreadyApproved);
            }
            let approvals = so_far.saturating_add(1);
            let state = if approvals >= req.required.max(1) {
                State::Approved
            } else {
                State::Pending
            };
            Ok(Outcome { state, approvals })
        }
    }
}

/// Whether a pending request has lapsed at `now` and should be recorded as
/// expired.
pub fn expire(state: State, expires_at: i64, now: i64) -> Option<State> {
    (state == State::Pending && now >= expires_at).then_some(State::Expired)
}

/// Withdrawing a request: only a pending one can be cancelled.
pub fn cancel(state: State) -> Result<State, Refusal> {
    match state {
        State::Pending => Ok(State::Cancelled),
        other => Err(Refusal::Final(other)),
    }
}

/// The state a reader should see: a pending request past its expiry is
/// expired even before anyone recorded it.
pub fn effective(state: State, expires_at: i64, now: i64) -> State {
    expire(state, expires_at, now).unwrap_or(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| (*s).to_owned()).collect()
    }

    fn req<'a>(approvers: &'a [String], approved_by: &'a [String], required: u32) -> Request<'a> {
        Request {
            state: State::Pending,
            requester: "agent",
            expires_at: 1_000,
            approvers,
            required,
            approved_by,
        }
    }

    #[test]
    fn one_approval_approves_by_default() {
        let (a, b) = (vec![], vec![]);
        let g = groups(&["ops"]);
        let who = Approver {
            name: "alice",
            groups: &g,
        };
        let out = decide(&req(&a, &b, 1), &who, Action::Approve, 10).unwrap();
        assert_eq!(out.state, State::Approved);
        assert_eq!(out.approvals, 1);
    }

    #[test]
    fn n_of_m_needs_distinct_approvers() {
        let a = groups(&["dba"]);
        let g = groups(&["dba"]);
        let alice = Approver {
            name: "alice",
            groups: &g,
        };
        let bob = Approver {
            name: "bob",
            groups: &g,
        };
        let none = vec![];
        let first = decide(&req(&a, &none, 2), &alice, Action::Approve, 10).unwrap();
        assert_eq!(first.state, State::Pending);
        let after_alice = groups(&["alice"]);
        assert_eq!(
            decide(&req(&a, &after_alice, 2), &alice, Action::Approve, 10),
            Err(Refusal::AlreadyApproved)
        );
        let second = decide(&req(&a, &after_alice, 2), &bob, Action::Approve, 10).unwrap();
        assert_eq!(second.state, State::Approved);
        assert_eq!(second.approvals, 2);
    }

    #[test]
    fn nobody_approves_their_own_statement() {
        let (a, b) = (vec![], vec![]);
        let g = groups(&["admins"]);
        let me = Approver {
            name: "agent",
            groups: &g,
        };
        assert_eq!(
            decide(&req(&a, &b, 1), &me, Action::Approve, 10),
            Err(Refusal::SelfApproval)
        );
        assert_eq!(
            decide(&req(&a, &b, 1), &me, Action::Deny, 10),
            Err(Refusal::SelfApproval)
        );
    }

    #[test]
    fn approvers_outside_the_groups_are_refused() {
        let a = groups(&["dba", "oncall"]);
        let b = vec![];
        let g = groups(&["devs"]);
        let who = Approver {
            name: "carol",
            groups: &g,
        };
        assert!(matches!(
            decide(&req(&a, &b, 1), &who, Action::Approve, 10),
            Err(Refusal::NotAnApprover(_))
        ));
        let g = groups(&["devs", "oncall"]);
        let who = Approver {
            name: "carol",
            groups: &g,
        };
        assert!(decide(&req(&a, &b, 1), &who, Action::Approve, 10).is_ok());
    }

    #[test]
    fn a_denial_is_final_and_decided_requests_take_no_votes() {
        let (a, b) = (vec![], vec![]);
        let g = vec![];
        let who = Approver {
            name: "alice",
            groups: &g,
        };
        let out = decide(&req(&a, &b, 3), &who, Action::Deny, 10).unwrap();
        assert_eq!(out.state, State::Denied);
        for s in [
            State::Approved,
            State::Denied,
            State::Expired,
            State::Cancelled,
        ] {
            let r = Request {
                state: s,
                ..req(&a, &b, 1)
            };
            assert_eq!(
                decide(&r, &who, Action::Approve, 10),
                Err(Refusal::Final(s))
            );
        }
    }

    #[test]
    fn votes_after_expiry_are_refused() {
        let (a, b) = (vec![], vec![]);
        let g = vec![];
        let who = Approver {
            name: "alice",
            groups: &g,
        };
        assert_eq!(
            decide(&req(&a, &b, 1), &who, Action::Approve, 1_000),
            Err(Refusal::Expired)
        );
        assert_eq!(expire(State::Pending, 1_000, 1_000), Some(State::Expired));
        assert_eq!(expire(State::Pending, 1_000, 999), None);
        assert_eq!(expire(State::Approved, 1_000, 5_000), None);
        assert_eq!(effective(State::Pending, 1_000, 2_000), State::Expired);
    }

    #[test]
    fn only_pending_requests_are_cancelled() {
        assert_eq!(cancel(State::Pending), Ok(State::Cancelled));
        assert_eq!(
            cancel(State::Approved),
            Err(Refusal::Final(State::Approved))
        );
    }

    #[test]
    fn state_names_round_trip() {
        for s in [
            State::Pending,
            State::Approved,
            State::Denied,
            State::Expired,
            State::Cancelled,
        ] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("maybe"), None);
    }
}

//! Whether an approved access grant covers a statement. Pure: the caller
//! passes the grants it holds, the decision and the time, so the rule is
//! tested alone and the node checks expiry on every statement by its own
//! clock rather than trusting a sweeper.

use crate::decision::{Decision, Verdict};

/// An approved access grant, as a node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its id, named in the audit record of every statement it lets run.
    pub id: String,
    /// The identity it was granted to.
    pub identity: String,
    /// The target it opens.
    pub target: String,
    /// A rule name of the deciding policy, or `None` for every statement of
    /// the target that needs approval.
    pub scope: Option<String>,
    /// When it stops applying, µs since the epoch.
    pub expires_at: i64,
}

/// The grant, among `grants`, that lets `identity` run a statement on
/// `target` decided as `decision` at `now` (µs) without a per-statement
/// approval. Only a decision of `approval` is ever covered: a grant never
/// lifts a denial, and allowed statements need none. A scoped grant covers
/// only statements whose deciding rule is its scope.
pub fn covering<'a>(
    grants: &'a [Grant],
    identity: &str,
    target: &str,
    decision: &Decision,
    now: i64,
) -> Option<&'a Grant> {
    if decision.verdict != Verdict::Approval {
        return None;
    }
    grants.iter().find(|g| {
        g.identity == identity
            && g.target == target
            && now < g.expires_at
            && g.scope
                .as_deref()
                .is_none_or(|s| decision.rule.as_deref() == Some(s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, scope: Option<&str>, expires_at: i64) -> Grant {
        Grant {
            id: id.to_owned(),
            identity: "agent".to_owned(),
            target: "demo".to_owned(),
            scope: scope.map(str::to_owned),
            expires_at,
        }
    }

    fn decided(verdict: Verdict, rule: &str) -> Decision {
        Decision {
            verdict,
            rule: Some(rule.to_owned()),
            ..Decision::deny("test")
        }
    }

    #[test]
    fn a_grant_covers_statements_needing_approval_until_it_expires() {
        let g = [grant("g1", None, 1_000)];
        let d = decided(Verdict::Approval, "writes-need-approval");
        assert_eq!(
            covering(&g, "agent", "demo", &d, 999).map(|g| g.id.as_str()),
            Some("g1")
        );
        assert!(covering(&g, "agent", "demo", &d, 1_000).is_none());
        assert!(covering(&g, "agent", "demo", &d, 5_000).is_none());
    }

    #[test]
    fn a_grant_never_lifts_a_denial() {
        let g = [grant("g1", None, 1_000)];
        let d = decided(Verdict::Deny, "no-critical-deletes");
        assert!(covering(&g, "agent", "demo", &d, 10).is_none());
        let d = decided(Verdict::Allow, "reads");
        assert!(covering(&g, "agent", "demo", &d, 10).is_none());
    }

    #[test]
    fn a_grant_is_bound_to_its_identity_and_target() {
        let g = [grant("g1", None, 1_000)];
        let d = decided(Verdict::Approval, "writes-need-approval");
        assert!(covering(&g, "other-agent", "demo", &d, 10).is_none());
        assert!(covering(&g, "agent", "billing", &d, 10).is_none());
    }

    #[test]
    fn a_scoped_grant_covers_only_its_rule() {
        let g = [
            grant("g1", Some("locking-reads-need-approval"), 1_000),
            grant("g2", Some("writes-need-approval"), 1_000),
        ];
        let d = decided(Verdict::Approval, "writes-need-approval");
        assert_eq!(
            covering(&g, "agent", "demo", &d, 10).map(|g| g.id.as_str()),
            Some("g2")
        );
        let unnamed = Decision { rule: None, ..d };
        assert!(covering(&g, "agent", "demo", &unnamed, 10).is_none());
        let other = decided(Verdict::Approval, "some-other-rule");
        assert!(covering(&g, "agent", "demo", &other, 10).is_none());
    }

    #[test]
    fn an_expired_grant_gives_way_to_a_live_one() {
        let g = [grant("old", None, 100), grant("new", None, 1_000)];
        let d = decided(Verdict::Approval, "writes-need-approval");
        assert_eq!(
            covering(&g, "agent", "demo", &d, 500).map(|g| g.id.as_str()),
            Some("new")
        );
    }
}

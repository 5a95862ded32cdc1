//! Approvals for HTTP requests, through the same channel and rules as SQL
//! statements: the request is bound to its method, normalised path, query
//! and body by a hash, so what runs after approval is exactly what the
//! approver saw. In `answer` mode the client is told at once (403 with the
//! approval's id and URL) and resends the identical request once approved;
//! in `hold` mode the request waits, bounded, for the decision.

use std::time::Duration;

use sluice_common::Shutdown;
use sluice_policy::Decision;
use sluice_policy::model::ApprovalMode;
use sluice_proto::v1;

use super::problem::GatewayError;
use crate::control::approvals::statement_hash;
use crate::pg::relay::SessionCtx;

/// How long the node waits for the control plane's first answer.
const FIRST_ANSWER: Duration = Duration::from_secs(10);

/// The most request body an approver is shown.
const SHOWN_BODY: usize = 4096;

/// What an approval covers.
pub struct Bound<'a> {
    /// The policy's binding of method, path, query and body.
    pub hash: &'a str,
    /// `METHOD PATH?QUERY` as decided.
    pub line: &'a str,
    /// The request body.
    pub body: &'a [u8],
}

/// The text an approver sees: the request line and the start of the body.
fn shown(b: &Bound<'_>) -> String {
    let mut text = b.line.to_owned();
    if !b.body.is_empty() {
        text.push_str("\n\n");
        let end = b.body.len().min(SHOWN_BODY);
        text.push_str(&String::from_utf8_lossy(&b.body[..end]));
        if b.body.len() > SHOWN_BODY {
            text.push_str(&format!("\n[{} more bytes]", b.body.len() - SHOWN_BODY));
        }
    }
    text
}

/// Who decided and why, as the approver gave it (" by NAME: REASON"), so a
/// denied client learns what to change.
fn decided(d: &v1::ApprovalDecision) -> String {
    let mut text = String::new();
    if !d.decided_by.is_empty() {
        text.push_str(&format!(" by {}", d.decided_by));
    }
    if !d.reason.is_empty() {
        text.push_str(&format!(": {}", d.reason));
    }
    text
}

/// Asks for (or finds) the approval of this exact request. `Ok` carries the
/// approval id under which it may be forwarded, once.
///
/// `ended` fires when the session ends: a held request stops waiting then
/// and its approval request is withdrawn, so a revoked or expired token's
/// request is never forwarded by a later approval.
pub async fn approve(
    ctx: &SessionCtx,
    decision: &Decision,
    bound: &Bound<'_>,
    hold: Duration,
    ended: &Shutdown,
) -> Result<String, GatewayError> {
    let lead = if decision.reason.is_empty() {
        "approval required".to_owned()
    } else {
        format!("approval required: {}", decision.reason)
    };
    let refuse = |approval_id: Option<String>, url: Option<String>, why: String| {
        GatewayError::ApprovalRequired {
            approval_id,
            url,
            rule: decision.rule.clone(),
            reason: why,
        }
    };
    let Some(approvals) = ctx.approvals() else {
        return Err(refuse(
            None,
            None,
            format!("{lead}; the approval service is unreachable"),
        ));
    };
    let (mode, ttl_ms) = ctx
        .approval_settings(decision)
        .unwrap_or((ApprovalMode::Answer, 0));
    let request = v1::ApprovalRequest {
        request_id: uuid::Uuid::now_v7().to_string(),
        session_id: ctx.session_id.clone(),
        identity: ctx.identity.name.clone(),
        target: ctx.target.clone(),
        statement: shown(bound),
        statement_hash: statement_hash(bound.hash.as_bytes(), &[], &[]).to_vec(),
        policy: decision.policy.clone().unwrap_or_default(),
        rule: decision.rule.clone().unwrap_or_default(),
        reason: decision.reason.clone(),
        ttl_ms,
    };
    let mut ticket = approvals.ask(request).map_err(|e| {
        refuse(
            None,
            None,
            format!("{lead}; {e}, so the request was not sent"),
        )
    })?;
    let mut answer = ticket.next(FIRST_ANSWER).await.map_err(|e| {
        refuse(
            None,
            None,
            format!("{lead}; {e}, so the request was not sent"),
        )
    })?;
    if mode == ApprovalMode::Hold && answer.state == "pending" {
        ticket.withdraw_on_drop(true);
        tokio::select! {
            a = ticket.next(hold) => if let Ok(a) = a {
                answer = a;
            },
            () = ended.cancelled() => {
                // Dropping the ticket withdraws the request.
                return Err(refuse(
                    Some(answer.approval_id.clone()).filter(|i| !i.is_empty()),
                    None,
                    format!("{lead}; the session ended while the request was held, so it was not sent"),
                ));
            }
        }
        if answer.state != "pending" {
            ticket.withdraw_on_drop(false);
        }
    }
    let id = (!answer.approval_id.is_empty()).then(|| answer.approval_id.clone());
    let url = (!answer.url.is_empty()).then(|| answer.url.clone());
    match answer.state.as_str() {
        "approved" if id.is_some() => Ok(answer.approval_id),
        // Held past the wait: the request was withdrawn with the ticket.
        "pending" if id.is_some() && mode == ApprovalMode::Hold => Err(refuse(
            id,
            url,
            format!(
                "{lead}; approval request {} was not decided within {}s and was withdrawn: send the request again to ask anew",
                answer.approval_id,
                hold.as_secs()
            ),
        )),
        "pending" if id.is_some() => Err(refuse(
            id,
            url,
            format!(
                "{lead}; approval request {} is pending: approve it, then send the same request again",
                answer.approval_id
            ),
        )),
        "denied" => Err(refuse(
            id,
            url,
            format!(
                "{lead}; the approval request was denied{}",
                decided(&answer)
            ),
        )),
        "cancelled" => Err(refuse(
            id,
            url,
            format!("{lead}; the approval request was withdrawn"),
        )),
        "expired" => Err(refuse(
            id,
            url,
            format!("{lead}; the approval request expired"),
        )),
        _ => Err(refuse(
            id,
            url,
            format!("{lead}; the approval service refused the request"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_names_who_decided_and_why() {
        let mut d = v1::ApprovalDecision {
            state: "denied".to_owned(),
            ..Default::default()
        };
        assert_eq!(decided(&d), "");
        d.decided_by = "ops@example.com".to_owned();
        assert_eq!(decided(&d), " by ops@example.com");
        d.reason = "not today".to_owned();
        assert_eq!(decided(&d), " by ops@example.com: not today");
    }

    #[test]
    fn approvers_see_the_line_and_a_bounded_body() {
        let body = vec![b'x'; SHOWN_BODY + 10];
        let b = Bound {
            hash: "h",
            line: "POST /customers",
            body: &body,
        };
        let text = shown(&b);
        assert!(text.starts_with("POST /customers\n\n"));
        assert!(text.ends_with("[10 more bytes]"));
    }
}

//! What a session knows about itself: who, where, its audit sequence, and
//! how it decides statements.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_identity::Identity;
use sluice_policy::{Decision, DecisionCache, Delivery, Subject, Verdict};
use sluice_proto::v1;
use sluice_proto::v1::audit_event::Payload;

use super::tracker::Exec;
use crate::control::approvals::{Approvals, Unavailable, statement_hash};
use crate::control::audit::{AuditFull, AuditSink, NotDurable};
use crate::control::snapshot::SnapshotCell;
use crate::pg::catalogs::{Catalogs, Tables};
use crate::pg::codec::backend::ErrorFields;
use crate::pg::codec::frame::Frame;
use crate::pg::error::{ClientError, sqlstate};
use sluice_policy::model::ApprovalMode;

/// Decisions a session remembers.
const DECISION_CACHE_SIZE: usize = 1024;

/// Message-size and timing limits for a session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest client message.
    pub max_client_message: usize,
    /// Largest server message.
    pub max_server_message: usize,
    /// Longest stall mid-message.
    pub stall: Duration,
    /// When the client's token expires: end at once, or after the statement
    /// in flight.
    pub on_expiry: OnExpiry,
    /// The longest a session ending "after the statement in flight" waits
    /// for that statement.
    pub drain_grace: Duration,
    /// The longest a strict statement waits for its record to be confirmed.
    pub strict_audit_wait: Duration,
}

/// What happens to a session when its access token expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    /// End the session at the moment of expiry, cutting off any statement.
    #[default]
    End,
    /// Let the statement in flight finish (up to the drain grace), then end.
    AfterStatement,
}

/// One session's identity, counters and audit trail.
#[derive(Debug)]
pub struct SessionCtx {
    /// Session id (UUIDv7).
    pub session_id: String,
    /// Who.
    pub identity: Identity,
    /// Which target.
    pub target: String,
    /// Limits.
    pub limits: Limits,
    /// Fired by a client's cancel request, for a statement held for approval.
    pub cancel_held: Arc<tokio::sync::Notify>,
    sink: AuditSink,
    snapshot: Arc<SnapshotCell>,
    seq: AtomicU64,
    cache: Mutex<DecisionCache>,
    statements: AtomicU64,
    bytes_to_client: AtomicU64,
    bytes_from_client: AtomicU64,
    approvals: Option<Arc<Approvals>>,
    catalogs: Option<Arc<Catalogs>>,
    /// The tables the target's policies mask, for the snapshot version.
    masked_tables: Mutex<(u64, Tables)>,
}

/// Statement kinds after which the target's schema may differ.
const SCHEMA_CHANGING: [&str; 6] = ["create", "alter", "drop", "do", "call", "other"];

impl SessionCtx {
    /// The control plane's approval channel, when the session has one.
    pub(crate) fn approvals(&self) -> Option<&Arc<Approvals>> {
        self.approvals.as_ref()
    }

    /// Counts one recorded request of a protocol that records itself.
    pub(crate) fn count_statement(&self, bytes_in: u64, bytes_out: u64) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.bytes_from_client
            .fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_to_client.fetch_add(bytes_out, Ordering::Relaxed);
    }
}

/// How a client came, for its session's start event.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    /// Its address.
    pub peer: std::net::SocketAddr,
    /// Whether it spoke TLS.
    pub tls: bool,
    /// `postgres` or `http`.
    pub protocol: &'static str,
    /// The name it gave itself, if any.
    pub application_name: &'a str,
}

/// Why a held statement was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// A cancel request: the session goes on.
    Cancelled,
    /// The client hung up.
    Hangup,
}

/// The end of a held statement.
#[derive(Debug)]
pub enum Held {
    /// Decided (or refused for want of an answer).
    Answer(ApprovalAnswer),
    /// The client cancelled or went away while waiting; the request was
    /// withdrawn.
    Withdrawn {
        /// The withdrawn request.
        approval_id: Arc<str>,
        /// Why.
        why: Withdrawal,
    },
}

fn lead(decision: &Decision) -> String {
    if decision.reason.is_empty() {
        "approval required".to_owned()
    } else {
        format!("approval required: {}", decision.reason)
    }
}

fn unavailable(lead: &str, why: Unavailable) -> ApprovalAnswer {
    ApprovalAnswer::Refuse {
        approval_id: None,
        error: ClientError::error(
            sqlstate::APPROVAL_REQUIRED,
            format!("{lead}; {why}, so the statement was not run"),
        )
        .with_hint("try again once the gateway reaches its control plane"),
    }
}

/// The refusal for a request that ended without approval.
fn final_answer(lead: &str, d: &v1::ApprovalDecision) -> ApprovalAnswer {
    let id = (!d.approval_id.is_empty()).then(|| Arc::<str>::from(d.approval_id.as_str()));
    let by = if d.decided_by.is_empty() {
        String::new()
    } else {
        format!(" by {}", d.decided_by)
    };
    let why = if d.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", d.reason)
    };
    let error = match d.state.as_str() {
        "denied" if id.is_some() => ClientError::error(
            sqlstate::APPROVAL_DENIED,
            format!("approval request {} was denied{by}{why}", d.approval_id),
        ),
        "expired" => ClientError::error(
            sqlstate::APPROVAL_EXPIRED,
            format!(
                "approval request {} expired before anyone decided",
                d.approval_id
            ),
        ),
        "cancelled" => ClientError::error(
            sqlstate::APPROVAL_DENIED,
            format!("approval request {} was withdrawn", d.approval_id),
        ),
        _ => ClientError::error(
            sqlstate::APPROVAL_REQUIRED,
            format!("{lead}; the approval service refused the request{why}"),
        ),
    };
    ApprovalAnswer::Refuse {
        approval_id: id,
        error,
    }
}

/// A statement that needs approval, as the control plane is asked about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvable {
    /// The statement as approvers see it: a Query's text, or an
    /// extended-protocol statement's text followed by its bound values.
    pub shown: String,
    /// What the approval is bound to ([`statement_hash`]).
    pub hash: [u8; 32],
}

impl Approvable {
    /// A simple-protocol Query: its exact text, no parameters.
    pub fn simple(text: &[u8]) -> Self {
        Self {
            shown: String::from_utf8_lossy(text).into_owned(),
            hash: statement_hash(text, &[], &[]),
        }
    }
}

/// How long a session waits for the control plane's first answer about a
/// statement that needs approval before refusing it.
const APPROVAL_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// What becomes of a statement that needs approval.
#[derive(Debug)]
pub enum ApprovalAnswer {
    /// Approved for exactly these bytes (run it once), or covered by an
    /// access grant.
    Run {
        /// The approval request or access grant it runs under, named in its
        /// audit record.
        approval_id: Arc<str>,
    },
    /// Not (yet) approved: refuse it with this error.
    Refuse {
        /// The request the client can have approved, if one exists.
        approval_id: Option<Arc<str>>,
        /// SQLSTATE SL001 with the request id, and the URL in the hint.
        error: ClientError,
    },
}

impl SessionCtx {
    /// A new session.
    pub fn new(
        identity: Identity,
        target: String,
        limits: Limits,
        sink: AuditSink,
        snapshot: Arc<SnapshotCell>,
    ) -> Self {
        Self {
            session_id: uuid::Uuid::now_v7().to_string(),
            identity,
            target,
            limits,
            sink,
            snapshot,
            seq: AtomicU64::new(0),
            cache: Mutex::new(DecisionCache::new(DECISION_CACHE_SIZE)),
            statements: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            bytes_from_client: AtomicU64::new(0),
            approvals: None,
            catalogs: None,
            masked_tables: Mutex::new((u64::MAX, Arc::from([]))),
            cancel_held: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Lets decisions see the target's catalog (views over masked tables,
    /// column identities); without it, masking goes by the statement alone.
    #[must_use]
    pub fn with_catalogs(mut self, catalogs: Arc<Catalogs>) -> Self {
        self.catalogs = Some(catalogs);
        self
    }

    /// The tables the target's policies mask under `snapshot`'s version.
    fn masked_tables(&self, version: u64, policies: &sluice_policy::PolicySet) -> Tables {
        let Ok(mut held) = self.masked_tables.lock() else {
            return policies.masked_tables(&self.target).into();
        };
        if held.0 != version {
            *held = (version, policies.masked_tables(&self.target).into());
        }
        held.1.clone()
    }

    /// Lets the session ask the control plane for approvals; without it,
    /// every statement that needs approval is refused.
    #[must_use]
    pub fn with_approvals(mut self, approvals: Arc<Approvals>) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// Whether the policy that asked for approval holds the statement
    /// (`hold`) or refuses it at once (`answer`).
    pub fn approval_mode(&self, decision: &Decision) -> ApprovalMode {
        self.approval_settings(decision)
            .map_or(ApprovalMode::Answer, |(mode, _)| mode)
    }

    /// The approval mode and request lifetime (ms) of the policy that asked
    /// for approval; `None` when that policy is no longer in the snapshot.
    pub(crate) fn approval_settings(&self, decision: &Decision) -> Option<(ApprovalMode, u64)> {
        let snapshot = self.snapshot.usable().ok()?;
        let name = decision.policy.as_deref()?;
        let set = snapshot.policies.as_ref().ok()?;
        let p = set.policies().find(|p| p.name() == name)?;
        let a = p.approval();
        Some((
            a.mode,
            u64::try_from(a.expires_after.as_millis()).unwrap_or(u64::MAX),
        ))
    }

    fn approval_request(&self, what: &Approvable, decision: &Decision) -> v1::ApprovalRequest {
        v1::ApprovalRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            session_id: self.session_id.clone(),
            identity: self.identity.name.clone(),
            target: self.target.clone(),
            statement: what.shown.clone(),
            statement_hash: what.hash.to_vec(),
            policy: decision.policy.clone().unwrap_or_default(),
            rule: decision.rule.clone().unwrap_or_default(),
            reason: decision.reason.clone(),
            ttl_ms: self.approval_settings(decision).map_or(0, |(_, t)| t),
        }
    }

    /// The approved access grant that lets this session run a statement
    /// decided as `decision` now without a per-statement approval, checked
    /// against the node's clock (a grant past its expiry never applies, even
    /// before a new snapshot drops it).
    fn covering_grant(&self, decision: &Decision) -> Option<ApprovalAnswer> {
        let snapshot = self.snapshot.usable().ok()?;
        let g = sluice_policy::grants::covering(
            &snapshot.grants,
            &self.identity.name,
            &self.target,
            decision,
            sluice_common::unix_us(),
        )?;
        tracing::info!(grant_id = %g.id, "statement runs under an access grant");
        Some(ApprovalAnswer::Run {
            approval_id: Arc::from(g.id.as_str()),
        })
    }

    /// Asks the control plane about a statement `decision` says needs
    /// approval, bound to its exact bytes (and declared types and bound
    /// values), this identity
    /// and this target; waits for the answer. Fails closed: anything but an
    /// approval for exactly these bytes refuses the statement.
    pub async fn ask_approval(&self, what: &Approvable, decision: &Decision) -> ApprovalAnswer {
        if let Some(granted) = self.covering_grant(decision) {
            return granted;
        }
        let lead = lead(decision);
        let Some(approvals) = &self.approvals else {
            return unavailable(&lead, Unavailable::Disconnected);
        };
        let mut ticket = match approvals.ask(self.approval_request(what, decision)) {
            Ok(t) => t,
            Err(e) => return unavailable(&lead, e),
        };
        let answer = match ticket.next(APPROVAL_ANSWER_WAIT).await {
            Ok(a) => a,
            Err(e) => return unavailable(&lead, e),
        };
        match answer.state.as_str() {
            "approved" if !answer.approval_id.is_empty() => {
                tracing::info!(approval_id = %answer.approval_id, "statement runs under an approval");
                ApprovalAnswer::Run {
                    approval_id: Arc::from(answer.approval_id.as_str()),
                }
            }
            "pending" if !answer.approval_id.is_empty() => ApprovalAnswer::Refuse {
                approval_id: Some(Arc::from(answer.approval_id.as_str())),
                error: ClientError::error(
                    sqlstate::APPROVAL_REQUIRED,
                    format!("{lead}; approval request {} is pending", answer.approval_id),
                )
                .with_hint(format!(
                    "approve it at {}, then send the same statement again",
                    answer.url
                )),
            },
            _ => final_answer(&lead, &answer),
        }
    }

    /// Holds a statement until a human decides: asks the control plane,
    /// tells the client where to approve (`notify` gets a NoticeResponse),
    /// and waits for the decision, the request's expiry, or `gone` (the
    /// client went away or cancelled), which withdraws the request.
    pub async fn hold_for_approval<G>(
        &self,
        what: &Approvable,
        decision: &Decision,
        notify: impl FnOnce(Frame),
        gone: G,
    ) -> Held
    where
        G: std::future::Future<Output = Withdrawal>,
    {
        if let Some(granted) = self.covering_grant(decision) {
            return Held::Answer(granted);
        }
        let lead = lead(decision);
        let Some(approvals) = &self.approvals else {
            return Held::Answer(unavailable(&lead, Unavailable::Disconnected));
        };
        let request = self.approval_request(what, decision);
        let ttl = Duration::from_millis(request.ttl_ms.max(1));
        let mut ticket = match approvals.ask(request) {
            Ok(t) => t,
            Err(e) => return Held::Answer(unavailable(&lead, e)),
        };
        let first = match ticket.next(APPROVAL_ANSWER_WAIT).await {
            Ok(a) => a,
            Err(e) => return Held::Answer(unavailable(&lead, e)),
        };
        if first.state != "pending" || first.approval_id.is_empty() {
            return Held::Answer(final_answer(&lead, &first));
        }
        let id: Arc<str> = Arc::from(first.approval_id.as_str());
        notify(
            ErrorFields {
                severity: "NOTICE",
                code: sqlstate::APPROVAL_REQUIRED,
                message: &format!("waiting for approval: {}", first.url),
                detail: None,
                hint: Some(&format!("approval request {id}")),
            }
            .notice(),
        );
        tracing::info!(approval_id = %id, "statement held for approval");
        ticket.withdraw_on_drop(true);
        tokio::pin!(gone);
        // A little past the expiry, the control plane's word is awaited no
        // longer: the statement has expired either way.
        let deadline = tokio::time::sleep(ttl + Duration::from_secs(2));
        tokio::pin!(deadline);
        loop {
            let answer = tokio::select! {
                d = ticket.wait() => match d {
                    Some(d) if d.state == "pending" => continue,
                    Some(d) if d.state == "approved" => ApprovalAnswer::Run { approval_id: id },
                    Some(d) => final_answer(&lead, &d),
                    None => unavailable(&lead, Unavailable::Disconnected),
                },
                () = &mut deadline => final_answer(&lead, &v1::ApprovalDecision {
                    approval_id: id.to_string(),
                    state: "expired".to_owned(),
                    ..Default::default()
                }),
                why = &mut gone => {
                    let reason = match why {
                        Withdrawal::Cancelled => "the client cancelled the statement",
                        Withdrawal::Hangup => "the client disconnected",
                    };
                    ticket.withdraw_on_drop(false);
                    approvals.cancel(ticket.request_id(), reason);
                    return Held::Withdrawn { approval_id: id, why };
                }
            };
            // Decided (or lapsed): nothing left to withdraw.
            ticket.withdraw_on_drop(false);
            return Held::Answer(answer);
        }
    }

    /// Appends an event to the session's audit trail.
    pub fn emit(&self, payload: Payload) -> Result<(), AuditFull> {
        self.emit_seq(payload).map(|_| ())
    }

    /// Appends an event and returns its sequence number.
    fn emit_seq(&self, payload: Payload) -> Result<u64, AuditFull> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let event = v1::AuditEvent {
            session_id: self.session_id.clone(),
            seq,
            at_unix_us: sluice_common::unix_us(),
            payload: Some(payload),
        };
        self.sink.emit(event).map(|()| seq).inspect_err(|_| {
            // The sequence number is burnt: the control plane sees a gap,
            // which is what happened.
            metrics::counter!("sluice_audit_events_dropped_total").increment(1);
            tracing::error!(seq, "audit buffer full: event dropped");
        })
    }

    /// Records that a strict statement is about to be forwarded, and
    /// returns the event's sequence number to wait for with
    /// [`Self::durable`].
    pub fn intend(&self, exec: &Exec) -> Result<u64, AuditFull> {
        // Follow acks before emitting, so the one for this event is not missed.
        if self.sink.watch(&self.session_id).is_none() {
            return Err(AuditFull);
        }
        let d = &exec.decision;
        self.emit_seq(Payload::StatementIntent(v1::StatementIntent {
            text: exec.text.to_string(),
            policy: d.policy.clone().unwrap_or_default(),
            rule: d.rule.clone().unwrap_or_default(),
            kinds: d.kinds.clone(),
            protocol: exec.protocol.as_str().to_owned(),
        }))
    }

    /// Waits until the control plane has stored every event of this session
    /// up to `seq`, or the strict wait runs out.
    pub async fn durable(&self, seq: u64) -> Result<(), NotDurable> {
        let limit = self.limits.strict_audit_wait;
        let mut acks = self.sink.watch(&self.session_id).ok_or(NotDurable(limit))?;
        match tokio::time::timeout(limit, acks.wait_for(|a| *a >= seq)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NotDurable(limit)),
        }
    }

    /// Decides one statement text for this session. Checks that always
    /// depend on the moment (a stale snapshot, a full audit buffer) come
    /// first; the policy's answer for a given text is cached per version.
    pub fn decide(&self, text: &[u8]) -> Arc<Decision> {
        let Ok(text) = std::str::from_utf8(text) else {
            return Arc::new(refusal("the statement is not valid UTF-8"));
        };
        let snapshot = match self.snapshot.usable() {
            Ok(s) => s,
            Err(e) => return Arc::new(refusal(&e.to_string())),
        };
        if self.sink.is_full() {
            return Arc::new(refusal(&AuditFull.to_string()));
        }
        let policies = match &snapshot.policies {
            Ok(p) => p,
            Err(e) => return Arc::new(refusal(e)),
        };
        let subject = Subject {
            identity: &self.identity.name,
            groups: &self.identity.groups,
            target: &self.target,
        };
        let catalog = match &self.catalogs {
            Some(c) => {
                let tables = self.masked_tables(snapshot.version, policies);
                match c.current(&self.target, &tables) {
                    Ok(c) => c,
                    Err(e) => return Arc::new(refusal(&e.to_string())),
                }
            }
            None => None,
        };
        let version = (
            snapshot.version,
            catalog.as_ref().map_or(0, |c| c.generation),
        );
        let decide = || policies.decide_in(&subject, text, catalog.as_ref());
        let decision = match self.cache.lock() {
            Ok(mut cache) => cache.get_or_insert(version, text, decide),
            Err(_) => Arc::new(decide()),
        };
        if decision.verdict == Verdict::Allow
            && decision.delivery == Delivery::Strict
            && !self.sink.is_connected()
        {
            return Arc::new(Decision {
                kinds: decision.kinds.clone(),
                policy: decision.policy.clone(),
                ..refusal(STRICT_UNREACHABLE)
            });
        }
        decision
    }

    /// Records a finished (or refused) statement.
    pub fn record(&self, exec: &Exec) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        let d = &exec.decision;
        metrics::counter!("sluice_statements_total", "decision" => d.verdict.as_str()).increment(1);
        // A statement that needed approval ran if it was not refused.
        let ran = match d.verdict {
            Verdict::Allow => true,
            Verdict::Approval => exec.sqlstate != sqlstate::APPROVAL_REQUIRED,
            Verdict::Deny => false,
        };
        let duration_us = if ran {
            u64::try_from(exec.started.elapsed().as_micros()).unwrap_or(u64::MAX)
        } else {
            0
        };
        if ran
            && exec.sqlstate.is_empty()
            && d.kinds
                .iter()
                .any(|k| SCHEMA_CHANGING.contains(&k.as_str()))
            && let Some(c) = &self.catalogs
        {
            c.invalidate(&self.target);
        }
        let command_tag = if exec.skipped {
            "(not executed: an earlier message failed)".to_owned()
        } else {
            exec.command_tag.clone()
        };
        let _ = self.emit(Payload::Statement(v1::Statement {
            text: exec.text.to_string(),
            decision: d.verdict.as_str().to_owned(),
            rule: d.rule.clone().unwrap_or_default(),
            reason: d.reason.clone(),
            kinds: d.kinds.clone(),
            protocol: exec.protocol.as_str().to_owned(),
            duration_us,
            rows: exec.rows,
            sqlstate: exec.sqlstate.clone(),
            command_tag,
            approval_id: exec.approval_id.as_deref().unwrap_or_default().to_owned(),
            policy: d.policy.clone().unwrap_or_default(),
            policy_version: String::new(),
            masked: exec
                .mask
                .as_ref()
                .map(|m| m.counts().into_iter().collect())
                .unwrap_or_default(),
            sample: exec.sample.as_ref().and_then(|s| s.to_proto()),
            parameters: exec
                .params
                .as_deref()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            bytes: exec.bytes,
            http: None,
        }));
    }

    /// Counts bytes received from the client.
    pub fn add_from_client(&self, n: usize) {
        self.bytes_from_client
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts bytes sent to the client.
    pub fn add_to_client(&self, n: usize) {
        self.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The start-of-session event, as the client came.
    pub fn start_event(&self, client: &ClientInfo<'_>) -> Payload {
        Payload::SessionStart(v1::SessionStart {
            identity: self.identity.name.clone(),
            identity_kind: self.identity.kind.as_str().to_owned(),
            groups: self.identity.groups.clone(),
            target: self.target.clone(),
            client_addr: client.peer.to_string(),
            tls: client.tls,
            protocol: client.protocol.to_owned(),
            token_id: self.identity.token_id.clone(),
            application_name: client.application_name.to_owned(),
        })
    }

    /// Records a session refused once its identity was known (the target
    /// does not exist, or is not of the client's protocol): started and
    /// ended at once, so auditors see who tried to reach what.
    pub fn refused(self, client: &ClientInfo<'_>, reason: &str) {
        let _ = self.emit(self.start_event(client));
        let _ = self.emit(self.end_event(&format!("refused: {reason}")));
    }

    /// The end-of-session event.
    pub fn end_event(&self, reason: &str) -> Payload {
        Payload::SessionEnd(v1::SessionEnd {
            reason: reason.to_owned(),
            statements: self.statements.load(Ordering::Relaxed),
            bytes_to_client: self.bytes_to_client.load(Ordering::Relaxed),
            bytes_from_client: self.bytes_from_client.load(Ordering::Relaxed),
        })
    }
}

/// Why a strict statement is refused while the control plane is out of reach.
const STRICT_UNREACHABLE: &str = "policy requires this statement's audit record to be stored before it runs (strict delivery), and the control plane is unreachable; nothing was run";

impl Drop for SessionCtx {
    fn drop(&mut self) {
        self.sink.forget(&self.session_id);
    }
}

fn refusal(reason: &str) -> Decision {
    Decision::deny(reason)
}

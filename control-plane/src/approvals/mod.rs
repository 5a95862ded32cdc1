//! Just-in-time approvals: a statement policy marks `approval` becomes a
//! request bound to the identity, the target, the exact statement bytes and
//! bound parameters, and the deciding rule. Approvers decide through any
//! channel; the decision reaches the node holding the statement through the
//! bus. The rules are pure ([`decide`]); this module is the thin I/O around
//! them.

mod decide;
pub mod email;
pub mod record;
pub mod slack;
pub mod sweep;
pub mod webhook;

pub use decide::{Action, Approver, Outcome, Refusal, Request, State, cancel, decide, effective};

use sluice_policy::model::ApprovalMode;
use sluice_proto::v1;

use self::slack::SlackError;
use crate::bus::BusEvent;
use crate::control_plane::ControlPlane;
use crate::store::{Approval, ApprovalEntry, NewApproval, StoreError, Transition};

/// Why a Slack interaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum SlackInteractionError {
    /// Slack is not an approval channel here.
    #[error("Slack is not configured")]
    NotConfigured,
    /// The request or the user failed a check.
    #[error(transparent)]
    Slack(#[from] SlackError),
    /// The vote was refused or failed.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}

/// What the interaction endpoint answers Slack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackReply {
    /// A message shown to the clicking user only.
    Text(String),
    /// Deny clicked: the modal asking why is open; nothing is decided yet.
    ModalOpened,
    /// The Deny modal's reason was taken: the modal closes.
    CloseModal,
    /// The Deny modal's submission was not taken: shown in the modal, next
    /// to the reason field.
    ModalError(String),
}

/// Why an email link was refused.
#[derive(Debug, thiserror::Error)]
pub enum EmailLinkError {
    /// Email is not an approval channel here.
    #[error("email approvals are not configured")]
    NotConfigured,
    /// The link itself fails a check.
    #[error(transparent)]
    Link(#[from] email::LinkError),
    /// The vote was refused or failed.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}

/// The longest claimed id or name an `approval_refused` record keeps.
const MAX_CLAIMED: usize = 128;

fn bounded(s: &str) -> String {
    s.chars().take(MAX_CLAIMED).collect()
}

/// How often a vote is retried when another write raced it.
const MAX_RACES: usize = 8;

/// How many times (250 ms apart) a decided request's Slack message is
/// looked for while its post may still be in flight.
const SLACK_POST_WAITS: u32 = 20;

/// The longest a statement shown to approvers may be, in bytes.
const MAX_STATEMENT: usize = 64 * 1024;

/// Why a vote or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such request.
    #[error("no approval request {0:?}")]
    NotFound(String),
    /// The rules refuse the vote.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The request cannot be created (its policy is gone or broken).
    #[error("{0}")]
    Invalid(String),
    /// Too many concurrent writes.
    #[error("the request changed while it was being decided; try again")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a decision came from, recorded in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The REST API.
    Api,
    /// A Slack button.
    Slack,
    /// An email link.
    Email,
    /// The approval pages of the web UI.
    Web,
}

impl Channel {
    /// The recorded name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Slack => "slack",
            Self::Email => "email",
            Self::Web => "web",
        }
    }
}

/// The request's approvers so far (from its history).
fn approved_by(history: &[ApprovalEntry]) -> Vec<String> {
    history
        .iter()
        .filter(|e| e.action == Action::Approve.as_str())
        .map(|e| e.actor.clone())
        .collect()
}

/// The decision message a node gets for `a`.
fn to_decision(
    cp: &ControlPlane,
    request_id: &str,
    a: &Approval,
    state: State,
) -> v1::ApprovalDecision {
    v1::ApprovalDecision {
        request_id: request_id.to_owned(),
        approval_id: a.id.clone(),
        state: state.as_str().to_owned(),
        decided_by: String::new(),
        reason: String::new(),
        url: cp.approval_url(&a.id),
    }
}

fn refused(request_id: &str, reason: impl Into<String>) -> v1::ApprovalDecision {
    v1::ApprovalDecision {
        request_id: request_id.to_owned(),
        state: State::Denied.as_str().to_owned(),
        reason: reason.into(),
        ..Default::default()
    }
}

impl ControlPlane {
    /// Where approvers see request `id`.
    pub fn approval_url(&self, id: &str) -> String {
        format!(
            "{}/api/v1/approvals/{id}",
            self.config().issuer_url.trim_end_matches('/')
        )
    }

    /// Answers a node's approval request. In answer mode: an approved,
    /// unused request for exactly this statement is consumed and `approved`
    /// returned (the node runs it once); an open pending one is returned as
    /// `pending`; otherwise a new pending request is created. Anything that
    /// fails is a denial: the node refuses the statement.
    pub async fn on_approval_request(
        &self,
        node_id: &str,
        r: v1::ApprovalRequest,
    ) -> v1::ApprovalDecision {
        match self.answer_request(node_id, &r).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, request_id = %r.request_id, "approval request refused");
                refused(&r.request_id, format!("approval service: {e}"))
            }
        }
    }

    async fn answer_request(
        &self,
        node_id: &str,
        r: &v1::ApprovalRequest,
    ) -> Result<v1::ApprovalDecision, ApprovalError> {
        if r.statement_hash.len() != 32 {
            return Err(ApprovalError::Invalid(
                "the statement hash must be 32 bytes of SHA-256".to_owned(),
            ));
        }
        if r.statement.len() > MAX_STATEMENT {
            return Err(ApprovalError::Invalid(format!(
                "statements needing approval may be at most {MAX_STATEMENT} bytes"
            )));
        }
        let hash = hex::encode(&r.statement_hash);
        let now = sluice_common::unix_us();
        let rules = self.approval_rules(&r.policy).await?;
        let hold = rules.mode == ApprovalMode::Hold;
        // A held statement waits for its own request; only answer-mode
        // requests are found again when the client resends.
        for _ in 0..if hold { 0 } else { MAX_RACES } {
            let Some(open) = self
                .store
                .find_open_approval(&r.identity, &r.target, &hash, now)
                .await?
            else {
                break;
            };
            match open.state {
                State::Approved => {
                    if self.store.consume_approval(&open.id, now).await? {
                        self.record_approval(&[record::released(&open.id, open.version + 1, now)])
                            .await;
                        tracing::info!(approval_id = %open.id, identity = %r.identity, target_name = %r.target, "approved statement released");
                        return Ok(to_decision(self, &r.request_id, &open, State::Approved));
                    }
                    // Another session used it first: look again.
                }
                _ => return Ok(to_decision(self, &r.request_id, &open, State::Pending)),
            }
        }
        let ttl_us = i64::try_from(rules.expires_after.as_micros()).unwrap_or(i64::MAX);
        let created = self
            .store
            .create_approval(NewApproval {
                mode: if hold { "hold" } else { "answer" }.to_owned(),
                identity: r.identity.clone(),
                target: r.target.clone(),
                session_id: r.session_id.clone(),
                node_id: node_id.to_owned(),
                node_request_id: r.request_id.clone(),
                statement: r.statement.clone(),
                statement_hash: hash,
                policy: r.policy.clone(),
                rule: r.rule.clone(),
                reason: r.reason.clone(),
                approvers: rules.approvers,
                required: rules.required,
                ttl_us,
            })
            .await?;
        tracing::info!(approval_id = %created.id, identity = %r.identity, target_name = %r.target, policy = %r.policy, rule = %r.rule, "approval requested");
        self.record_approval(&[record::requested(&created)]).await;
        self.post_to_slack(&created);
        self.mail_approvers(&created);
        self.send_webhooks("approval.requested", &created, State::Pending);
        metrics::counter!("sluice_approvals_requested_total").increment(1);
        Ok(to_decision(self, &r.request_id, &created, State::Pending))
    }

    /// The approval settings of the stored policy `name`.
    async fn approval_rules(
        &self,
        name: &str,
    ) -> Result<sluice_policy::model::ApprovalDoc, ApprovalError> {
        let stored =
            self.store.get_policy(name).await?.ok_or_else(|| {
                ApprovalError::Invalid(format!("policy {name:?} no longer exists"))
            })?;
        let policy = sluice_policy::Policy::from_yaml(&stored.source)
            .map_err(|e| ApprovalError::Invalid(format!("policy {name:?}: {e}")))?;
        Ok(policy.approval().clone())
    }

    /// One request and its history, with a lapsed pending request shown
    /// (and recorded) as expired.
    pub async fn approval(
        &self,
        id: &str,
    ) -> Result<(Approval, Vec<ApprovalEntry>), ApprovalError> {
        let mut a = self
            .store
            .get_approval(id)
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
        let now = sluice_common::unix_us();
        if effective(a.state, a.expires_at, now) == State::Expired && a.state == State::Pending {
            self.record_expiry(&a, now).await?;
            a = self
                .store
                .get_approval(id)
                .await?
                .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
        }
        let history = self.store.approval_history(id).await?;
        Ok((a, history))
    }

    pub(crate) async fn record_expiry(&self, a: &Approval, now: i64) -> Result<(), ApprovalError> {
        let t = Transition {
            version: a.version,
            state: State::Expired,
            expires_at: None,
            entry: ApprovalEntry {
                at: now,
                actor: "sluice".to_owned(),
                action: "expire".to_owned(),
                channel: "system".to_owned(),
                reason: "nobody decided before the request expired".to_owned(),
            },
        };
        if self.store.transition_approval(&a.id, &t).await? {
            self.record_approval(&[record::changed(
                &a.id,
                a.version + 1,
                &t.entry,
                State::Expired.as_str(),
            )])
            .await;
            self.announce(a, State::Expired, "sluice", "the request expired");
        }
        Ok(())
    }

    /// Records one approver's vote. Group membership is the approver's now,
    /// at the moment of the vote. Returns the request after the vote.
    pub async fn vote(
        &self,
        id: &str,
        approver: &Approver<'_>,
        action: Action,
        channel: Channel,
        reason: &str,
    ) -> Result<Approval, ApprovalError> {
        for _ in 0..MAX_RACES {
            let a = self
                .store
                .get_approval(id)
                .await?
                .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
            let history = self.store.approval_history(id).await?;
            let by = approved_by(&history);
            let now = sluice_common::unix_us();
            let req = Request {
                state: a.state,
                requester: &a.identity,
                expires_at: a.expires_at,
                approvers: &a.approvers,
                required: a.required,
                approved_by: &by,
            };
            let outcome = match decide(&req, approver, action, now) {
                Ok(o) => o,
                Err(Refusal::Expired) => {
                    self.record_expiry(&a, now).await?;
                    return Err(Refusal::Expired.into());
                }
                Err(e) => return Err(e.into()),
            };
            // An approval opens a fresh window for the statement to run in.
            let window = a.expires_at.saturating_sub(a.created_at);
            let t = Transition {
                version: a.version,
                state: outcome.state,
                expires_at: (outcome.state == State::Approved).then(|| now.saturating_add(window)),
                entry: ApprovalEntry {
                    at: now,
                    actor: approver.name.to_owned(),
                    action: action.as_str().to_owned(),
                    channel: channel.as_str().to_owned(),
                    reason: reason.to_owned(),
                },
            };
            if self.store.transition_approval(id, &t).await? {
                tracing::info!(approval_id = %id, approver = %approver.name, action = action.as_str(), channel = channel.as_str(), state = %outcome.state, "approval vote recorded");
                let mut events = vec![record::changed(
                    id,
                    a.version + 1,
                    &t.entry,
                    outcome.state.as_str(),
                )];
                if outcome.state == State::Approved && a.mode == "hold" {
                    // The held statement runs on this decision: it is used.
                    if self.store.consume_approval(id, now).await? {
                        events.push(record::released(id, a.version + 2, now));
                    }
                }
                self.record_approval(&events).await;
                if outcome.state != State::Pending {
                    self.announce(&a, outcome.state, approver.name, reason);
                }
                return self
                    .store
                    .get_approval(id)
                    .await?
                    .ok_or_else(|| ApprovalError::NotFound(id.to_owned()));
            }
        }
        Err(ApprovalError::Busy)
    }

    /// The decision a node missed for its request `request_id` (taken
    /// while it was cut off), for a held statement only: an answer-mode
    /// request is answered once, and its client resends. `None` while the
    /// request is still pending, or when there is no such request.
    pub async fn missed_decision(
        &self,
        node_id: &str,
        request_id: &str,
    ) -> Result<Option<v1::ApprovalDecision>, ApprovalError> {
        let Some(a) = self.store.find_node_approval(node_id, request_id).await? else {
            return Ok(None);
        };
        if a.mode != "hold" {
            return Ok(None);
        }
        let now = sluice_common::unix_us();
        let state = match a.state {
            State::Pending if effective(a.state, a.expires_at, now) == State::Expired => {
                self.record_expiry(&a, now).await?;
                State::Expired
            }
            State::Pending => return Ok(None),
            decided => decided,
        };
        let history = self.store.approval_history(&a.id).await?;
        let last = history.iter().rev().find(|e| e.action != "run");
        let mut d = to_decision(self, request_id, &a, state);
        if let Some(e) = last {
            d.decided_by.clone_from(&e.actor);
            d.reason.clone_from(&e.reason);
        }
        Ok(Some(d))
    }

    /// Withdraws a node's pending request (client cancel or disconnect).
    pub async fn cancel_approval(
        &self,
        node_id: &str,
        request_id: &str,
        reason: &str,
    ) -> Result<(), ApprovalError> {
        let Some(a) = self.store.find_node_approval(node_id, request_id).await? else {
            return Ok(());
        };
        let state = cancel(a.state)?;
        let t = Transition {
            version: a.version,
            state,
            expires_at: None,
            entry: ApprovalEntry {
                at: sluice_common::unix_us(),
                actor: a.identity.clone(),
                action: "cancel".to_owned(),
                channel: "node".to_owned(),
                reason: reason.to_owned(),
            },
        };
        if self.store.transition_approval(&a.id, &t).await? {
            self.record_approval(&[record::changed(
                &a.id,
                a.version + 1,
                &t.entry,
                state.as_str(),
            )])
            .await;
        }
        Ok(())
    }

    /// Posts a new request to Slack in the background; a failure is logged
    /// (the request stays decidable through every other channel).
    fn post_to_slack(&self, a: &Approval) {
        let (Some(client), Some(config)) = (self.slack.clone(), self.config().slack.clone()) else {
            return;
        };
        let store = self.store.clone();
        let url = self.approval_url(&a.id);
        let a = a.clone();
        tokio::spawn(async move {
            let blocks = slack::request_blocks(&a, &url);
            let text = format!("Approval requested by {} on {}", a.identity, a.target);
            match client.post(&config.channel, &text, &blocks).await {
                Ok((channel, ts)) => {
                    if let Err(e) = store.set_approval_slack(&a.id, &channel, &ts).await {
                        tracing::warn!(error = %e, approval_id = %a.id, "cannot record the Slack message");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, approval_id = %a.id, "cannot post the request to Slack")
                }
            }
        });
    }

    /// Mails each eligible email approver a link of its own for `a`, in
    /// the background; a failure is logged (every other channel still works).
    fn mail_approvers(&self, a: &Approval) {
        let (Some((mailer, key)), Some(config)) = (self.email.clone(), self.config().email.clone())
        else {
            return;
        };
        let a = a.clone();
        tokio::spawn(async move {
            let base = config.public_url.trim_end_matches('/');
            for p in email::recipients(&config.approvers, &a) {
                let claims = email::LinkClaims {
                    approval_id: a.id.clone(),
                    identity: p.identity.clone(),
                    expires_at: a.expires_at,
                    nonce: hex::encode(rand::random::<[u8; 16]>()),
                };
                let link = format!("{base}/approvals/email/{}", email::sign_link(&key, &claims));
                let subject = format!("Approval requested by {} on {}", a.identity, a.target);
                if let Err(e) = mailer
                    .send(&p.email, &subject, email::body(&a, &link))
                    .await
                {
                    tracing::warn!(error = %e, approval_id = %a.id, approver = %p.identity, "cannot mail the approval request");
                }
            }
        });
    }

    /// Checks an email link without using it: what its confirmation page
    /// shows. Refusals are logged and counted.
    pub async fn email_link(
        &self,
        token: &str,
    ) -> Result<(email::LinkClaims, Approval), EmailLinkError> {
        let r = self.check_email_link(token).await;
        if let Err(e) = &r {
            self.refused_link(token, e).await;
        }
        r
    }

    async fn check_email_link(
        &self,
        token: &str,
    ) -> Result<(email::LinkClaims, Approval), EmailLinkError> {
        let (Some((_, key)), Some(config)) = (self.email.as_ref(), self.config().email.as_ref())
        else {
            return Err(EmailLinkError::NotConfigured);
        };
        let claims = email::verify_link(key, token, sluice_common::unix_us())?;
        if !config
            .approvers
            .iter()
            .any(|p| p.identity == claims.identity)
        {
            return Err(email::LinkError::UnknownApprover.into());
        }
        if self
            .store
            .email_link_used(&email::link_id(token))
            .await
            .map_err(ApprovalError::from)?
        {
            return Err(email::LinkError::Used.into());
        }
        let (a, _) = self.approval(&claims.approval_id).await?;
        Ok((claims, a))
    }

    /// Decides through an email link: checks it, uses it up (before the
    /// vote, so it never counts twice), and votes as its approver with that
    /// approver's configured groups. Refusals are logged and counted.
    pub async fn email_vote(
        &self,
        token: &str,
        action: Action,
        reason: &str,
    ) -> Result<Approval, EmailLinkError> {
        let r = self.email_vote_inner(token, action, reason).await;
        if let Err(e) = &r {
            self.refused_link(token, e).await;
        }
        r
    }

    async fn email_vote_inner(
        &self,
        token: &str,
        action: Action,
        reason: &str,
    ) -> Result<Approval, EmailLinkError> {
        let (claims, _) = self.check_email_link(token).await?;
        let config = self
            .config()
            .email
            .as_ref()
            .ok_or(EmailLinkError::NotConfigured)?;
        let approver = config
            .approvers
            .iter()
            .find(|p| p.identity == claims.identity)
            .ok_or(email::LinkError::UnknownApprover)?;
        if !self
            .store
            .use_email_link(
                &email::link_id(token),
                &claims.approval_id,
                sluice_common::unix_us(),
            )
            .await
            .map_err(ApprovalError::from)?
        {
            return Err(email::LinkError::Used.into());
        }
        let who = Approver {
            name: &approver.identity,
            groups: &approver.groups,
        };
        Ok(self
            .vote(&claims.approval_id, &who, action, Channel::Email, reason)
            .await?)
    }

    /// Logs, counts and records (as an `approval_refused` event) a refused
    /// email link: who it named and which request, as claimed, and why. The
    /// token itself is never recorded.
    async fn refused_link(&self, token: &str, e: &EmailLinkError) {
        tracing::warn!(error = %e, "email approval link refused");
        metrics::counter!("sluice_approval_email_refusals_total").increment(1);
        if matches!(
            e,
            EmailLinkError::NotConfigured
                | EmailLinkError::Approval(ApprovalError::Store(_) | ApprovalError::Busy)
        ) {
            return;
        }
        let claims = email::claimed(token);
        let event = crate::store::StoredEvent {
            session_id: uuid::Uuid::now_v7().to_string(),
            seq: 1,
            at: sluice_common::unix_us(),
            kind: crate::store::EventKind::ApprovalRefused {
                approval_id: claims
                    .as_ref()
                    .map_or_else(String::new, |c| bounded(&c.approval_id)),
                actor: claims
                    .as_ref()
                    .map_or_else(String::new, |c| bounded(&c.identity)),
                channel: Channel::Email.as_str().to_owned(),
                reason: e.to_string(),
            },
        };
        self.record_approval(&[event]).await;
    }

    /// Tells every configured webhook endpoint about `a` now in `state`.
    fn send_webhooks(&self, kind: &str, a: &Approval, state: State) {
        let endpoints = &self.config().webhooks;
        if endpoints.is_empty() {
            return;
        }
        let body = webhook::payload(
            kind,
            a,
            state.as_str(),
            &self.approval_url(&a.id),
            sluice_common::unix_us() / 1_000_000,
        );
        webhook::deliver(&self.webhook_http, endpoints, &body);
    }

    /// Replaces a decided request's Slack message (whatever channel decided).
    fn update_slack(&self, id: &str, state: State, by: &str, reason: &str) {
        let Some(client) = self.slack.clone() else {
            return;
        };
        let store = self.store.clone();
        let url = self.approval_url(id);
        let (id, by, reason) = (id.to_owned(), by.to_owned(), reason.to_owned());
        tokio::spawn(async move {
            // A decision taken just after the request was created can come
            // before the message's id is stored: give the post a moment.
            let mut tries = SLACK_POST_WAITS;
            let found = loop {
                match (
                    store.get_approval(&id).await,
                    store.approval_slack(&id).await,
                ) {
                    (Ok(Some(a)), Ok(Some(at))) => break (a, at),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, approval_id = %id, "cannot read the Slack message to update");
                        return;
                    }
                    (Ok(None), _) => return,
                    (Ok(Some(_)), Ok(None)) if tries > 0 => {
                        tries -= 1;
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    _ => return,
                }
            };
            let (a, (channel, ts)) = found;
            let blocks = slack::decided_blocks(&a, &url, state.as_str(), &by, &reason);
            let text = format!("Approval request {} {}", a.id, state.as_str());
            if let Err(e) = client.update(&channel, &ts, &text, &blocks).await {
                tracing::warn!(error = %e, approval_id = %id, "cannot update the Slack message");
            }
        });
    }

    /// Handles a Slack interaction: verifies the signature and its
    /// freshness, refuses a replay, maps the Slack user to an approver, and
    /// then either votes (Approve, or the Deny modal's submission, with the
    /// approver's groups as they are now) or, for Deny, opens the modal
    /// that asks why. Returns what to answer Slack.
    pub async fn slack_interaction(
        &self,
        timestamp: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<SlackReply, SlackInteractionError> {
        let (Some(client), Some(config)) = (self.slack.as_ref(), self.config().slack.as_ref())
        else {
            return Err(SlackInteractionError::NotConfigured);
        };
        let now = sluice_common::unix_us();
        slack::verify(
            &config.signing_secret,
            timestamp,
            signature,
            body,
            now / 1_000_000,
        )?;
        let window = slack::MAX_SKEW_SECS * 2 * 1_000_000;
        if !self
            .store
            .remember_slack_request(signature, now, now - window)
            .await
            .map_err(ApprovalError::from)?
        {
            return Err(SlackError::Replay.into());
        }
        let interaction = slack::parse_interaction(body)?;
        let user_id = match &interaction {
            slack::Interaction::Click(c) => &c.user_id,
            slack::Interaction::DenyReason(d) => &d.user_id,
        };
        let approver = match slack::approver_for(&config.approvers, user_id, None) {
            Some(a) => a,
            None => {
                let email = client.confirmed_email(user_id).await?;
                slack::approver_for(&config.approvers, user_id, email.as_deref())
                    .ok_or(SlackError::UnknownUser)?
            }
        };
        let who = Approver {
            name: &approver.identity,
            groups: &approver.groups,
        };
        let (id, action, reason) = match &interaction {
            slack::Interaction::Click(c) if c.approve => {
                (&c.approval_id, Action::Approve, "approved in Slack")
            }
            slack::Interaction::Click(c) => {
                if c.trigger_id.is_empty() {
                    return Err(SlackError::Payload("no trigger_id".to_owned()).into());
                }
                client
                    .open_view(&c.trigger_id, &slack::deny_modal(&c.approval_id))
                    .await?;
                tracing::info!(approval_id = %c.approval_id, approver = %approver.identity, "Slack deny modal opened");
                return Ok(SlackReply::ModalOpened);
            }
            slack::Interaction::DenyReason(d) => (&d.approval_id, Action::Deny, d.reason.as_str()),
        };
        let voted = self.vote(id, &who, action, Channel::Slack, reason).await;
        if let slack::Interaction::DenyReason(_) = interaction {
            return Ok(match voted {
                Ok(_) => SlackReply::CloseModal,
                Err(e) => SlackReply::ModalError(format!("Not recorded: {e}")),
            });
        }
        let a = voted?;
        Ok(SlackReply::Text(format!(
            "Request {} is {} ({} recorded as {}).",
            a.id,
            a.state.as_str(),
            action.as_str(),
            approver.identity
        )))
    }

    /// Tells every replica (and so the node holding the statement) that a
    /// request reached a final state.
    fn announce(&self, a: &Approval, state: State, by: &str, reason: &str) {
        self.update_slack(&a.id, state, by, reason);
        self.send_webhooks("approval.decided", a, state);
        metrics::counter!("sluice_approvals_decided_total", "state" => state.as_str()).increment(1);
        self.bus.publish(BusEvent::ApprovalDecided {
            approval_id: a.id.clone(),
            node_id: a.node_id.clone(),
            request_id: a.node_request_id.clone(),
            state: state.as_str().to_owned(),
            decided_by: by.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

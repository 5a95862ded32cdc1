//! The client side of the relay: decides each Query and Parse, tracks the
//! connection's prepared statements and portals, and puts every forwarded
//! message's expected response on the tracker.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use sluice_policy::{Decision, Delivery, Verdict};

use super::session::{ApprovalAnswer, SessionCtx};
use super::tracker::{Exec, Expect, Protocol, Tracker};
use crate::control::audit::AuditFull;
use crate::pg::codec::frame::Frame;
use crate::pg::codec::frontend;
use crate::pg::error::{ClientError, sqlstate};
use crate::pg::mask::{DescSlot, ExecMask};

/// Text the server is certain to reject at its first (raw) parsing stage, in
/// any transaction state. A refused statement is replaced by it, so the
/// server produces an error exactly where the statement's own result would
/// have been, with its usual effects (the transaction aborts, the rest of an
/// extended-protocol batch is skipped); the tracker then swaps that error
/// for the refusal.
const MARKER: &[u8] = b"SLUICE REFUSED";

/// A statement the client prepared (or a portal bound from one), as the
/// gateway saw it.
#[derive(Debug, Clone)]
struct Prepared {
    text: Arc<str>,
    decision: Arc<Decision>,
    /// Its RowDescription, once described (for masking).
    desc: DescSlot,
    /// For a portal: its statement's description, and the result formats.
    stmt_desc: DescSlot,
    formats: Arc<[i16]>,
    /// For a portal: its bound parameters as the record keeps them.
    params: Option<Arc<[sluice_proto::v1::SampleValue]>>,
}

/// A Query's text and its decision.
pub type NeedsApproval<'f> = (&'f [u8], Arc<Decision>);

/// Per-connection client-side state.
#[derive(Debug, Default)]
pub struct ClientState {
    statements: HashMap<Vec<u8>, Prepared>,
    portals: HashMap<Vec<u8>, Prepared>,
    /// The last audit event that must be stored before the buffered
    /// messages may be forwarded (strict delivery).
    awaiting: Option<u64>,
}

fn malformed(e: &frontend::Malformed) -> ClientError {
    ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string())
}

/// The client-facing error for a decision that is not `allow`.
pub fn refusal_error(d: &Decision) -> ClientError {
    let (code, lead) = match d.verdict {
        Verdict::Approval => (sqlstate::APPROVAL_REQUIRED, "approval required"),
        _ => (
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "statement refused by the gateway",
        ),
    };
    let message = if d.reason.is_empty() {
        lead.to_owned()
    } else {
        format!("{lead}: {}", d.reason)
    };
    ClientError::error(code, message)
}

impl ClientState {
    /// The audit event to wait for before forwarding what was buffered.
    pub fn take_awaiting(&mut self) -> Option<u64> {
        self.awaiting.take()
    }

    /// Records a strict execution's intent before it is forwarded.
    fn intend(&mut self, ctx: &SessionCtx, exec: &Exec) -> Result<(), AuditFull> {
        if exec.decision.delivery == Delivery::Strict {
            self.awaiting = Some(ctx.intend(exec)?);
        }
        Ok(())
    }

    /// A simple-protocol Query's text and decision, decided once here: one
    /// that needs approval goes to the control plane before
    /// [`Self::on_answered_query`]; any other is handed to
    /// [`Self::on_client`] with its decision. Extended-protocol statements
    /// are refused with SL001 by [`Self::on_client`] (their parameters are
    /// bound later, in a separate message).
    pub fn decide_query<'f>(
        frame: &'f Frame,
        ctx: &SessionCtx,
    ) -> Result<Option<NeedsApproval<'f>>, ClientError> {
        if frame.tag() != b'Q' {
            return Ok(None);
        }
        let text = frontend::query(frame.body()).map_err(|e| malformed(&e))?;
        Ok(Some((text, ctx.decide(text))))
    }

    /// Handles a Query whose approval the control plane answered: forwards
    /// it if approved for exactly these bytes, refuses it otherwise.
    pub fn on_answered_query(
        &mut self,
        frame: &Frame,
        decision: Arc<Decision>,
        answer: ApprovalAnswer,
        tracker: &mut Tracker,
        ctx: &SessionCtx,
        out: &mut BytesMut,
    ) -> Result<(), ClientError> {
        let text = frontend::query(frame.body()).map_err(|e| malformed(&e))?;
        let mut exec = Exec::new(
            String::from_utf8_lossy(text).into(),
            decision,
            Protocol::Simple,
        );
        match answer {
            ApprovalAnswer::Run { approval_id } => {
                exec.approval_id = Some(approval_id);
                // What a human approved runs under the same masking, and
                // only once its record is stored (approvals are strict).
                exec.mask = exec
                    .decision
                    .masking
                    .as_ref()
                    .map(|m| Box::new(ExecMask::simple(m.0.clone())));
                self.intend(ctx, &exec).map_err(|e| {
                    ClientError::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, e.to_string())
                })?;
                out.extend_from_slice(&frame.raw);
            }
            ApprovalAnswer::Refuse { approval_id, error } => {
                exec.approval_id = approval_id;
                exec.sqlstate = error.code.to_owned();
                ctx.record(&exec);
                exec.recorded = true;
                exec.denial = Some(error.frame());
                tracing::info!(
                    approval_id = exec.approval_id.as_deref().unwrap_or(""),
                    "statement held for approval refused"
                );
                out.extend_from_slice(&frontend::encode_query(MARKER).raw);
            }
        }
        tracker.push(Expect::Simple(exec));
        Ok(())
    }

    /// Handles one client message: appends what to forward to `out`. A
    /// Query's decision may be given when the caller has already taken it.
    pub fn on_client(
        &mut self,
        frame: &Frame,
        query: Option<NeedsApproval<'_>>,
        tracker: &mut Tracker,
        ctx: &SessionCtx,
        out: &mut BytesMut,
    ) -> Result<(), ClientError> {
        match frame.tag() {
            b'Q' => {
                let mut exec = match query {
                    Some((text, decision)) => Exec::new(
                        String::from_utf8_lossy(text).into(),
                        decision,
                        Protocol::Simple,
                    ),
                    None => {
                        let text = frontend::query(frame.body()).map_err(|e| malformed(&e))?;
                        decided(ctx, text, Protocol::Simple)
                    }
                };
                if exec.decision.verdict == Verdict::Allow
                    && let Err(e) = self.intend(ctx, &exec)
                {
                    exec.decision = Arc::new(Decision::deny(e.to_string()));
                }
                exec.mask = exec
                    .decision
                    .masking
                    .as_ref()
                    .map(|m| Box::new(ExecMask::simple(m.0.clone())));
                if exec.decision.verdict == Verdict::Allow {
                    out.extend_from_slice(&frame.raw);
                } else {
                    refuse(ctx, &mut exec);
                    out.extend_from_slice(&frontend::encode_query(MARKER).raw);
                }
                tracker.push(Expect::Simple(exec));
            }
            b'P' => {
                let p = frontend::parse(frame.body()).map_err(|e| malformed(&e))?;
                let mut exec = decided(ctx, p.query, Protocol::Extended);
                if p.name.is_empty() {
                    // The server drops the unnamed statement before parsing.
                    self.statements.remove(p.name);
                }
                if exec.decision.verdict == Verdict::Allow {
                    self.statements
                        .entry(p.name.to_vec())
                        .or_insert_with(|| Prepared {
                            text: exec.text.clone(),
                            decision: exec.decision.clone(),
                            desc: DescSlot::default(),
                            stmt_desc: DescSlot::default(),
                            formats: Arc::from([]),
                            params: None,
                        });
                    out.extend_from_slice(&frame.raw);
                    tracker.push(Expect::Parse { denial: None });
                } else {
                    refuse(ctx, &mut exec);
                    out.extend_from_slice(&frontend::encode_parse(p.name, MARKER, &[]).raw);
                    tracker.push(Expect::Parse {
                        denial: exec.denial,
                    });
                }
            }
            b'B' => {
                let (portal, statement) =
                    frontend::bind(frame.body()).map_err(|e| malformed(&e))?;
                match self.statements.get(statement) {
                    Some(p) => {
                        let formats = crate::pg::mask::wire::bind_result_formats(frame.body())
                            .unwrap_or_default();
                        let params = recorded_parameters(frame.body(), p.decision.parameters);
                        let portal_entry = Prepared {
                            desc: DescSlot::default(),
                            stmt_desc: p.desc.clone(),
                            formats: Arc::from(formats),
                            params: Some(params),
                            ..p.clone()
                        };
                        self.portals.insert(portal.to_vec(), portal_entry);
                    }
                    None => {
                        self.portals.remove(portal);
                    }
                }
                out.extend_from_slice(&frame.raw);
                tracker.push(Expect::Bind);
            }
            b'E' => {
                let (portal, _) = frontend::execute(frame.body()).map_err(|e| malformed(&e))?;
                let exec = match self.portals.get(portal) {
                    Some(p) => {
                        let mut x =
                            Exec::new(p.text.clone(), p.decision.clone(), Protocol::Extended);
                        x.mask = p.decision.masking.as_ref().map(|m| {
                            Box::new(ExecMask::execute(
                                m.0.clone(),
                                p.stmt_desc.clone(),
                                p.desc.clone(),
                                p.formats.clone(),
                            ))
                        });
                        x.params = p.params.clone();
                        x
                    }
                    // The server will refuse an unknown portal; record what was asked.
                    None => Exec::new(
                        Arc::from(""),
                        Arc::new(unknown_portal()),
                        Protocol::Extended,
                    ),
                };
                self.intend(ctx, &exec).map_err(|e| {
                    ClientError::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, e.to_string())
                })?;
                out.extend_from_slice(&frame.raw);
                tracker.push(Expect::Execute(exec));
            }
            b'D' => {
                let (kind, name) =
                    frontend::target(frame.body(), "Describe").map_err(|e| malformed(&e))?;
                out.extend_from_slice(&frame.raw);
                tracker.push(if kind == b'S' {
                    Expect::DescribeStatement(self.statements.get(name).map(|p| p.desc.clone()))
                } else {
                    Expect::DescribePortal(self.portals.get(name).map(|p| p.desc.clone()))
                });
            }
            b'C' => {
                let (kind, name) =
                    frontend::target(frame.body(), "Close").map_err(|e| malformed(&e))?;
                if kind == b'S' {
                    self.statements.remove(name);
                } else {
                    self.portals.remove(name);
                }
                out.extend_from_slice(&frame.raw);
                tracker.push(Expect::Close);
            }
            b'S' => {
                // Portals do not outlive the transaction; the unnamed one
                // certainly not past Sync. Keeping stale entries is harmless
                // (the server refuses them), so only the count is bounded.
                out.extend_from_slice(&frame.raw);
                tracker.push(Expect::Sync);
            }
            b'H' | b'd' => out.extend_from_slice(&frame.raw),
            b'c' | b'f' => {
                out.extend_from_slice(&frame.raw);
                tracker.copy_ended();
            }
            b'F' => {
                // FunctionCall runs a function by OID, bypassing SQL: refuse.
                let mut exec = Exec::new(
                    Arc::from("<FunctionCall message>"),
                    Arc::new(Decision {
                        kinds: vec!["function_call".to_owned()],
                        ..Decision::deny(
                            "the FunctionCall protocol message is not allowed; call the function from SQL",
                        )
                    }),
                    Protocol::FunctionCall,
                );
                refuse(ctx, &mut exec);
                out.extend_from_slice(&frontend::encode_query(MARKER).raw);
                tracker.push(Expect::Simple(exec));
            }
            other => {
                return Err(ClientError::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("unexpected message type {:?}", other as char),
                ));
            }
        }
        Ok(())
    }
}

fn decided(ctx: &SessionCtx, text: &[u8], protocol: Protocol) -> Exec {
    let decision = ctx.decide(text);
    Exec::new(String::from_utf8_lossy(text).into(), decision, protocol)
}

/// Records the refusal now (nothing will run) and arms its error.
fn refuse(ctx: &SessionCtx, exec: &mut Exec) {
    let err = refusal_error(&exec.decision);
    exec.sqlstate = err.code.to_owned();
    ctx.record(exec);
    exec.recorded = true;
    exec.denial = Some(err.frame());
    tracing::info!(decision = exec.decision.verdict.as_str(), reason = %exec.decision.reason, "statement refused");
}

/// A Bind's parameters as the statement's record keeps them: each value's
/// size when the policy redacts them, else the text (values that are not
/// text are described, not copied). A malformed Bind records nothing here; the
/// server refuses it.
fn recorded_parameters(
    body: &[u8],
    mode: sluice_policy::model::ParameterAudit,
) -> Arc<[sluice_proto::v1::SampleValue]> {
    use sluice_policy::model::ParameterAudit;
    let values = frontend::bind_parameters(body).unwrap_or_default();
    values
        .into_iter()
        .map(|(_, v)| sluice_proto::v1::SampleValue {
            text: v.map(|v| match mode {
                ParameterAudit::Keep => super::sample::text_of(v),
                ParameterAudit::Redact => format!("<redacted: {} bytes>", v.len()),
            }),
        })
        .collect()
}

fn unknown_portal() -> Decision {
    Decision {
        verdict: Verdict::Allow,
        reason: "portal unknown to the gateway; the server refuses it".to_owned(),
        ..Decision::default()
    }
}

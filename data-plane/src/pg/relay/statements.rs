//! The client side of the relay: decides each Query and Parse, tracks the
//! connection's prepared statements and portals, and puts every forwarded
//! message's expected response on the tracker.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use sluice_policy::{Decision, Delivery, Verdict};

use super::session::{Approvable, ApprovalAnswer, SessionCtx};
use super::tracker::{Exec, Expect, Protocol, Tracker};
use crate::control::approvals::statement_hash;
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

/// The statement name the marker is parsed under when it stands in for a
/// refused Execute. A named Parse fails at raw parsing before the server
/// looks at the name, so no statement of the client's (nor the unnamed one)
/// is touched, whatever the client has prepared.
const MARKER_NAME: &[u8] = b"sluice.refused";

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
    /// The parameter type OIDs declared in its Parse.
    param_types: Arc<[u32]>,
    /// For a portal of a statement that needs approval: what its approval
    /// is bound to (text, types and these bound values).
    approval: Option<Arc<Approvable>>,
    /// For such a portal: the approval it started running under. Its later
    /// Executes fetch more of the same run (the server never runs a
    /// portal's statement twice), so they need no new approval.
    approved: Option<Arc<str>>,
}

/// A Query's text and its decision.
pub type NeedsApproval<'f> = (&'f [u8], Arc<Decision>);

/// What to ask the control plane about a statement, and its decision.
pub type ToApprove = (Arc<Approvable>, Arc<Decision>);

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
    /// are asked about at their Execute ([`Self::execute_needing_approval`]),
    /// once their parameters are bound.
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

    /// For an Execute of a portal whose statement needs approval: what to
    /// ask the control plane (the statement with its declared types and
    /// bound values) and the decision. `None` for anything else.
    pub fn execute_needing_approval(
        &self,
        frame: &Frame,
    ) -> Result<Option<ToApprove>, ClientError> {
        if frame.tag() != b'E' {
            return Ok(None);
        }
        let (portal, _) = frontend::execute(frame.body()).map_err(|e| malformed(&e))?;
        Ok(self.portals.get(portal).and_then(|p| {
            if p.approved.is_some() {
                return None;
            }
            let what = p.approval.clone()?;
            (p.decision.verdict == Verdict::Approval).then(|| (what, p.decision.clone()))
        }))
    }

    /// Handles an Execute whose approval the control plane answered: runs
    /// the portal if approved for exactly its binding; otherwise the server
    /// is given the marker in the Execute's place, so the refusal arrives
    /// where the Execute's error would, and the rest of the batch up to Sync
    /// is skipped as after any error.
    pub fn on_answered_execute(
        &mut self,
        frame: &Frame,
        answer: ApprovalAnswer,
        tracker: &mut Tracker,
        ctx: &SessionCtx,
        out: &mut BytesMut,
    ) -> Result<(), ClientError> {
        let (portal, _) = frontend::execute(frame.body()).map_err(|e| malformed(&e))?;
        let Some(mut exec) = self.portal_exec(portal) else {
            // Cannot happen (the portal was just looked up); refuse anyway.
            return self.on_client(frame, None, tracker, ctx, out);
        };
        match answer {
            ApprovalAnswer::Run { approval_id } => {
                if let Some(p) = self.portals.get_mut(portal) {
                    p.approved = Some(approval_id.clone());
                }
                exec.approval_id = Some(approval_id);
                if refused_for_binary(ctx, &mut exec, tracker, out) {
                    return Ok(());
                }
                self.intend(ctx, &exec).map_err(|e| {
                    ClientError::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, e.to_string())
                })?;
                out.extend_from_slice(&frame.raw);
                tracker.push(Expect::Execute(exec));
            }
            ApprovalAnswer::Refuse { approval_id, error } => {
                exec.approval_id = approval_id;
                exec.sqlstate = error.code.to_owned();
                ctx.record(&exec);
                tracing::info!(
                    approval_id = exec.approval_id.as_deref().unwrap_or(""),
                    "extended-protocol statement needing approval refused"
                );
                refuse_execute(error.frame(), tracker, out);
            }
        }
        Ok(())
    }

    /// The execution an Execute of `portal` starts, if the portal is known.
    fn portal_exec(&self, portal: &[u8]) -> Option<Exec> {
        let p = self.portals.get(portal)?;
        let mut x = Exec::new(p.text.clone(), p.decision.clone(), Protocol::Extended);
        x.mask = p.decision.masking.as_ref().map(|m| {
            Box::new(ExecMask::execute(
                m.0.clone(),
                p.stmt_desc.clone(),
                p.desc.clone(),
                p.formats.clone(),
            ))
        });
        x.params = p.params.clone();
        x.approval_id.clone_from(&p.approved);
        Some(x)
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
                // A statement that needs approval is parsed (nothing runs at
                // Parse); its Execute asks, once the parameters are bound.
                if matches!(exec.decision.verdict, Verdict::Allow | Verdict::Approval) {
                    self.statements
                        .entry(p.name.to_vec())
                        .or_insert_with(|| Prepared {
                            text: exec.text.clone(),
                            decision: exec.decision.clone(),
                            desc: DescSlot::default(),
                            stmt_desc: DescSlot::default(),
                            formats: Arc::from([]),
                            params: None,
                            param_types: type_oids(p.param_types).into(),
                            approval: None,
                            approved: None,
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
                        let approval = (p.decision.verdict == Verdict::Approval)
                            .then(|| approvable(&p.text, &p.param_types, frame.body()))
                            .flatten()
                            .map(Arc::new);
                        let portal_entry = Prepared {
                            desc: DescSlot::default(),
                            stmt_desc: p.desc.clone(),
                            formats: Arc::from(formats),
                            params: Some(params),
                            approval,
                            approved: None,
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
                let mut exec = self.portal_exec(portal).unwrap_or_else(|| {
                    // The server will refuse an unknown portal; record what was asked.
                    Exec::new(
                        Arc::from(""),
                        Arc::new(unknown_portal()),
                        Protocol::Extended,
                    )
                });
                if exec.decision.verdict != Verdict::Allow && exec.approval_id.is_none() {
                    // Only a portal whose Bind could not be read gets here
                    // without an answer from the control plane (or one
                    // already running under its approval): fail closed.
                    exec.decision = Arc::new(Decision {
                        reason: "the bound parameters could not be read".to_owned(),
                        ..(*exec.decision).clone()
                    });
                    refuse(ctx, &mut exec);
                    if let Some(denial) = exec.denial.take() {
                        refuse_execute(denial, tracker, out);
                    }
                    return Ok(());
                }
                if refused_for_binary(ctx, &mut exec, tracker, out) {
                    return Ok(());
                }
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

/// Puts the marker in a refused Execute's place: the server fails there,
/// skips the rest of the batch up to Sync, and the tracker shows `denial`
/// instead of its error.
fn refuse_execute(denial: Frame, tracker: &mut Tracker, out: &mut BytesMut) {
    out.extend_from_slice(&frontend::encode_parse(MARKER_NAME, MARKER, &[]).raw);
    tracker.push(Expect::Parse {
        denial: Some(denial),
    });
}

/// Refuses an Execute that would send a masked value in a binary form that
/// cannot hold the mask ([`ExecMask::binary_refusal`]); `true` when refused.
fn refused_for_binary(
    ctx: &SessionCtx,
    exec: &mut Exec,
    tracker: &mut Tracker,
    out: &mut BytesMut,
) -> bool {
    let Some(reason) = exec.mask.as_ref().and_then(|m| m.binary_refusal()) else {
        return false;
    };
    exec.decision = Arc::new(Decision {
        verdict: Verdict::Deny,
        reason,
        ..(*exec.decision).clone()
    });
    refuse(ctx, exec);
    if let Some(denial) = exec.denial.take() {
        refuse_execute(denial, tracker, out);
    }
    true
}

/// The type OIDs of a Parse's (already checked) parameter type section.
fn type_oids(raw: &[u8]) -> Vec<u32> {
    raw.get(2..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// What a Bind of a statement needing approval asks approval for: the text
/// with its parameters as approvers see them, and the hash over text,
/// declared types and exact bound values. Approvers see the values whatever
/// the policy's record keeps of parameters: what runs must be seen by the
/// human who lets it run, as the literals of a simple Query are. Text values
/// are quoted, short binary ones shown in hex. `None` when the Bind cannot
/// be read.
fn approvable(text: &str, param_types: &[u32], bind: &[u8]) -> Option<Approvable> {
    let values = frontend::bind_parameters(bind).ok()?;
    let mut statement = text.to_owned();
    for (i, (format, value)) in values.iter().enumerate() {
        let shown = match value {
            None => "NULL".to_owned(),
            Some(v) if *format == 0 => {
                format!("'{}'", super::sample::text_of(v).replace('\'', "''"))
            }
            Some(v) => binary_shown(v),
        };
        statement.push_str(&format!("\n-- ${} = {shown}", i + 1));
    }
    Some(Approvable {
        hash: statement_hash(text.as_bytes(), param_types, &values),
        shown: statement,
    })
}

/// A binary-format value as approvers see it: its bytes in hex (short
/// values) and, when they are printable text, that text too (binary text
/// types are their UTF-8 bytes; without the server's type for the
/// parameter the gateway cannot tell which reading is meant).
fn binary_shown(v: &[u8]) -> String {
    let text = super::sample::text_of(v);
    let readable = std::str::from_utf8(v).is_ok_and(|s| s == text);
    match (v.len() <= 32, readable) {
        (true, true) => format!(
            "'{}' (binary \\x{})",
            text.replace('\'', "''"),
            hex::encode(v)
        ),
        (true, false) => format!("\\x{} (binary)", hex::encode(v)),
        (false, true) => format!("'{}' (binary)", text.replace('\'', "''")),
        (false, false) => format!("<{} bytes, binary>", v.len()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A Bind of the unnamed portal to statement "s" with text values.
    fn bind(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = b"\0s\0\0\0".to_vec();
        b.extend_from_slice(&i16::try_from(values.len()).unwrap().to_be_bytes());
        for v in values {
            match v {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&i32::try_from(v.len()).unwrap().to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b.extend_from_slice(&[0, 0]);
        b
    }

    #[test]
    fn an_approval_is_bound_to_the_values_and_shows_them() {
        let q = "UPDATE t SET s = $1 WHERE id = $2";
        let a = approvable(q, &[], &bind(&[Some(b"it's"), None])).unwrap();
        assert_eq!(a.shown, format!("{q}\n-- $1 = 'it''s'\n-- $2 = NULL"));
        let same = approvable(q, &[], &bind(&[Some(b"it's"), None])).unwrap();
        assert_eq!(a, same);
        let other = approvable(q, &[], &bind(&[Some(b"it's"), Some(b"")])).unwrap();
        assert_ne!(a.hash, other.hash);
        let typed = approvable(q, &[25, 23], &bind(&[Some(b"it's"), None])).unwrap();
        assert_ne!(a.hash, typed.hash);
        assert_ne!(a.hash, Approvable::simple(q.as_bytes()).hash);
        assert!(
            approvable(q, &[], b"\0s\0\0\0\0\x01").is_none(),
            "truncated Bind"
        );
    }

    #[test]
    fn binary_values_are_shown_in_hex_and_as_text_when_they_read_as_text() {
        assert_eq!(binary_shown(&[0, 0, 0, 2]), "\\x00000002 (binary)");
        assert_eq!(binary_shown(b"paid"), "'paid' (binary \\x70616964)");
        assert_eq!(binary_shown(&[0; 40]), "<40 bytes, binary>");
    }

    #[test]
    fn declared_parameter_types_are_read_from_the_parse_section() {
        assert_eq!(type_oids(&[0, 2, 0, 0, 0, 25, 0, 0, 0, 0]), vec![25, 0]);
        assert!(type_oids(&[0, 0]).is_empty());
        assert!(type_oids(&[]).is_empty());
    }
}

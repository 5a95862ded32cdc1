//! The relay between an authenticated client and its upstream connection.
//!
//! Two loops run side by side, one per direction, so a slow reader on one
//! side never stops the other (a single loop can deadlock when both peers
//! write large pipelines at once). Each loop drains every complete message
//! it has buffered, then writes the batch in one call. The client loop
//! decides every statement before it is forwarded; the server loop attributes
//! every response to its statement through the shared [`tracker::Tracker`].

mod masking;
pub mod sample;
pub mod session;
mod statements;
pub mod tracker;

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use sluice_policy::Verdict;
use sluice_policy::model::ApprovalMode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadHalf};
use tokio::sync::mpsc;

pub use self::session::SessionCtx;
use self::session::{Approvable, ApprovalAnswer, Held, Withdrawal};
use self::statements::ClientState;
use self::tracker::{Action, Desync, Tracker};
use crate::control::audit::NotDurable;
use crate::pg::codec::backend;
use crate::pg::codec::frame::{Frame, FrameError};
use crate::pg::error::{ClientError, sqlstate};
use crate::pg::io::{FrameReader, ReadError};
use crate::pg::stream::MaybeTls;
use crate::sessions::Kill;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum End {
    /// The client said goodbye or hung up.
    #[error("client closed the connection")]
    ClientClosed,
    /// The client broke the protocol.
    #[error("client protocol error: {}", .0.message)]
    ClientProtocol(ClientError),
    /// Reading from or writing to the client failed.
    #[error("client i/o: {0}")]
    ClientIo(ReadError),
    /// The upstream connection ended or failed.
    #[error("upstream connection lost: {0}")]
    UpstreamLost(String),
    /// The server's responses could not be attributed.
    #[error("protocol tracking lost: {0}")]
    Desync(#[from] Desync),
    /// An administrator or policy ended the session.
    #[error("killed: {0}")]
    Killed(String),
    /// A strict statement's audit record was not confirmed in time; the
    /// statement was not forwarded.
    #[error(transparent)]
    NotDurable(#[from] NotDurable),
}

impl End {
    /// The reason recorded in the session's end event: a fixed code, and
    /// for a session the gateway ended, why (the gateway's own words, never
    /// anything a peer sent).
    pub fn audit_reason(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::ClientClosed => "client_closed".into(),
            Self::ClientProtocol(_) | Self::ClientIo(_) => "client_error".into(),
            Self::UpstreamLost(_) => "upstream_closed".into(),
            Self::Desync(_) => "error".into(),
            Self::Killed(reason) => format!("killed: {reason}").into(),
            Self::NotDurable(_) => "audit_unavailable".into(),
        }
    }

    /// What to tell the client, if anything.
    fn client_error(&self) -> Option<ClientError> {
        match self {
            Self::ClientClosed | Self::ClientIo(_) => None,
            Self::ClientProtocol(e) => Some(e.clone()),
            Self::UpstreamLost(_) => Some(ClientError::fatal(
                sqlstate::CONNECTION_FAILURE,
                "the connection to the target was lost",
            )),
            Self::Desync(_) => Some(ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "the gateway lost track of the protocol and closed the session",
            )),
            Self::Killed(reason) => Some(ClientError::fatal(
                sqlstate::ADMIN_SHUTDOWN,
                format!("the session was terminated: {reason}"),
            )),
            Self::NotDurable(e) => Some(ClientError::fatal(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "{e}; policy requires it before the statement runs (strict delivery), so the statement was not run and the session is closed"
                ),
            )),
        }
    }
}

type Reader = FrameReader<ReadHalf<MaybeTls>>;

/// The backend process id the upstream server uses, and the one the client
/// was given in its place.
#[derive(Debug, Clone, Copy)]
pub struct Pids {
    /// The upstream backend's.
    pub upstream: i32,
    /// The client's (the gateway's own).
    pub client: i32,
}

/// Runs the session until either side ends it, then closes both.
pub async fn relay(
    client: FrameReader<MaybeTls>,
    upstream: FrameReader<MaybeTls>,
    ctx: &SessionCtx,
    kill: &Kill,
    pids: Pids,
) -> End {
    let (c_stream, c_buf) = client.into_parts();
    let (u_stream, u_buf) = upstream.into_parts();
    let (c_read, mut c_write) = tokio::io::split(c_stream);
    let (u_read, mut u_write) = tokio::io::split(u_stream);
    let mut c_reader = FrameReader::from_parts(
        c_read,
        c_buf,
        ctx.limits.max_client_message,
        ctx.limits.stall,
    );
    let mut u_reader = FrameReader::from_parts(
        u_read,
        u_buf,
        ctx.limits.max_server_message,
        ctx.limits.stall,
    );
    let tracker = Mutex::new(Tracker::default());
    // Notices the client loop has for the client (a held statement's
    // "waiting for approval"), written by the server loop between messages.
    let (notice_tx, mut notice_rx) = mpsc::unbounded_channel::<Frame>();
    let end = tokio::select! {
        end = client_to_server(&mut c_reader, &mut u_write, &tracker, ctx, &notice_tx) => end,
        end = server_to_client(&mut u_reader, &mut c_write, &tracker, ctx, pids, &mut notice_rx) => end,
        () = kill.token.cancelled() => End::Killed(kill.reason().unwrap_or_else(|| "the gateway is shutting down".to_owned())),
        () = drained(kill, &tracker, ctx.limits.drain_grace) => End::Killed(kill.reason().unwrap_or_else(|| "the session was ended".to_owned())),
    };
    if let Some(e) = end.client_error() {
        let _ = c_write.write_all(&e.frame().raw).await;
    }
    let _ = c_write.shutdown().await;
    // Tell the server we are leaving, so it does not log a broken connection.
    let _ = u_write.write_all(&Frame::new(b'X', &[]).raw).await;
    let _ = u_write.shutdown().await;
    let unfinished = tracker.lock().map(|mut t| t.abandon()).unwrap_or_default();
    for exec in unfinished.iter().filter(|x| worth_recording(x)) {
        ctx.record(exec);
    }
    end
}

async fn client_to_server<W: AsyncWrite + Unpin>(
    client: &mut Reader,
    upstream: &mut W,
    tracker: &Mutex<Tracker>,
    ctx: &SessionCtx,
    notices: &mpsc::UnboundedSender<Frame>,
) -> End {
    let mut state = ClientState::default();
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let mut terminate = false;
        loop {
            let frame = match client.try_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return too_large_or_io(e),
            };
            ctx.add_from_client(frame.raw.len());
            if frame.tag() == b'X' {
                terminate = true;
                break;
            }
            let query = match ClientState::decide_query(&frame, ctx) {
                Ok(q) => q,
                Err(e) => return End::ClientProtocol(e),
            };
            let asked = match &query {
                Some((text, d)) if d.verdict == Verdict::Approval => {
                    Ok(Some((Arc::new(Approvable::simple(text)), d.clone())))
                }
                _ => state.execute_needing_approval(&frame),
            };
            let (what, decision) = match asked {
                Ok(Some(a)) => a,
                Ok(None) => {
                    let Ok(mut t) = tracker.lock() else {
                        return End::UpstreamLost("tracker poisoned".to_owned());
                    };
                    if let Err(e) = state.on_client(&frame, query, &mut t, ctx, &mut out) {
                        return End::ClientProtocol(e);
                    }
                    continue;
                }
                Err(e) => return End::ClientProtocol(e),
            };
            // Send what came before it now: the answer may take a while.
            if let Err(end) = flush(&mut state, ctx, upstream, &mut out).await {
                return end;
            }
            let (answer, gone) = approval_answer(client, ctx, notices, &what, &decision).await;
            let Ok(mut t) = tracker.lock() else {
                return End::UpstreamLost("tracker poisoned".to_owned());
            };
            let answered = if frame.tag() == b'Q' {
                state.on_answered_query(&frame, decision, answer, &mut t, ctx, &mut out)
            } else {
                state.on_answered_execute(&frame, answer, &mut t, ctx, &mut out)
            };
            if let Err(e) = answered {
                return End::ClientProtocol(e);
            }
            if gone {
                return End::ClientClosed;
            }
        }
        if let Err(end) = flush(&mut state, ctx, upstream, &mut out).await {
            return end;
        }
        if terminate {
            return End::ClientClosed;
        }
        match client.fill().await {
            Ok(true) => {}
            Ok(false) => return End::ClientClosed,
            Err(e) => return too_large_or_io(e),
        }
    }
}

/// Waits for the control plane's answer about a statement that needs
/// approval: at once (answer mode) or until a human decides (hold mode),
/// telling the client where to approve meanwhile. Also says whether the
/// client hung up while held.
async fn approval_answer(
    client: &mut Reader,
    ctx: &SessionCtx,
    notices: &mpsc::UnboundedSender<Frame>,
    what: &Approvable,
    decision: &sluice_policy::Decision,
) -> (ApprovalAnswer, bool) {
    if ctx.approval_mode(decision) != ApprovalMode::Hold {
        return (ctx.ask_approval(what, decision).await, false);
    }
    let cancel = ctx.cancel_held.clone();
    let client_gone = async {
        tokio::select! {
            // Keep reading (buffering whatever the client
            // pipelines) until it hangs up.
            () = async { while let Ok(true) = client.fill().await {} } => Withdrawal::Hangup,
            () = cancel.notified() => Withdrawal::Cancelled,
        }
    };
    let notify = |f: Frame| {
        let _ = notices.send(f);
    };
    match ctx
        .hold_for_approval(what, decision, notify, client_gone)
        .await
    {
        Held::Answer(a) => (a, false),
        Held::Withdrawn { approval_id, why } => (
            ApprovalAnswer::Refuse {
                approval_id: Some(approval_id),
                error: ClientError::error(
                    sqlstate::QUERY_CANCELED,
                    "canceling statement due to user request; its approval request was withdrawn",
                ),
            },
            why == Withdrawal::Hangup,
        ),
    }
}

/// Forwards what the client loop has buffered, once every strict statement
/// in it has its record stored.
async fn flush<W: AsyncWrite + Unpin>(
    state: &mut ClientState,
    ctx: &SessionCtx,
    upstream: &mut W,
    out: &mut BytesMut,
) -> Result<(), End> {
    if let Some(seq) = state.take_awaiting() {
        ctx.durable(seq).await?;
    }
    if !out.is_empty() {
        upstream
            .write_all(out)
            .await
            .map_err(|e| End::UpstreamLost(e.to_string()))?;
        out.clear();
    }
    Ok(())
}

/// Completes once a drain was asked for and no statement is in flight, or
/// `grace` after the ask, whichever is first: the session then ends between
/// statements rather than in the middle of one.
async fn drained(kill: &Kill, tracker: &Mutex<Tracker>, grace: std::time::Duration) {
    kill.drain.cancelled().await;
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if tracker.lock().map(|t| t.pending() == 0).unwrap_or(true) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Counts what the client is about to receive (after masking) against its
/// statement, and adds it to the statement's result sample.
fn sample(t: &mut Tracker, frame: &Frame) {
    let tag = frame.tag();
    let Some(tracker::Expect::Simple(x) | tracker::Expect::Execute(x)) = t.front_expect_mut()
    else {
        return;
    };
    if tag != b'Z' {
        x.bytes += frame.raw.len() as u64;
    }
    if let Some(s) = x.sample.as_mut() {
        match tag {
            b'D' => s.on_data_row(frame.body()),
            b'T' => s.on_row_description(frame.body()),
            _ => {}
        }
    }
}

/// Whether an execution belongs in the audit trail: a refusal is recorded
/// when decided, and an Execute of a statement the gateway refused (so the
/// server never had it) that was skipped adds nothing.
fn worth_recording(x: &tracker::Exec) -> bool {
    !(x.recorded || (x.skipped && x.text.is_empty()))
}

fn too_large_or_io(e: ReadError) -> End {
    match e {
        ReadError::Frame(f @ FrameError::TooLarge { .. }) => {
            End::ClientProtocol(ClientError::fatal(sqlstate::PROGRAM_LIMIT, f.to_string()))
        }
        ReadError::Frame(f @ FrameError::BadLength(_)) => End::ClientProtocol(ClientError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            f.to_string(),
        )),
        ReadError::Stalled(_) => End::ClientProtocol(ClientError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "timed out waiting for the rest of a message",
        )),
        other => End::ClientIo(other),
    }
}

async fn server_to_client<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    upstream: &mut FrameReader<R>,
    client: &mut W,
    tracker: &Mutex<Tracker>,
    ctx: &SessionCtx,
    pids: Pids,
    notices: &mut mpsc::UnboundedReceiver<Frame>,
) -> End {
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut last_plan = None;
    loop {
        let done = {
            let Ok(mut t) = tracker.lock() else {
                return End::UpstreamLost("tracker poisoned".to_owned());
            };
            loop {
                let frame = match upstream.try_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return End::UpstreamLost(e.to_string()),
                };
                let frame = masking::on_server(&mut t, &frame, &mut last_plan).unwrap_or(frame);
                sample(&mut t, &frame);
                match t.on_server(frame.tag(), frame.body()) {
                    Ok(Action::Forward) => {
                        match backend::renumber_notification(&frame, pids.upstream, pids.client) {
                            Some(f) => out.extend_from_slice(&f.raw),
                            None => out.extend_from_slice(&frame.raw),
                        }
                    }
                    Ok(Action::Replace(f)) => out.extend_from_slice(&f.raw),
                    Err(d) => return End::Desync(d),
                }
            }
            t.take_done()
        };
        for exec in done.iter().filter(|x| worth_recording(x)) {
            ctx.record(exec);
        }
        if !out.is_empty() {
            ctx.add_to_client(out.len());
            if let Err(e) = client.write_all(&out).await {
                return End::ClientIo(ReadError::Io(e));
            }
            out.clear();
        }
        let filled = tokio::select! {
            r = upstream.fill() => r,
            Some(notice) = notices.recv() => {
                // Between two whole messages: the client's parser stays in step.
                ctx.add_to_client(notice.raw.len());
                if let Err(e) = client.write_all(&notice.raw).await {
                    return End::ClientIo(ReadError::Io(e));
                }
                continue;
            }
        };
        match filled {
            Ok(true) => {}
            Ok(false) => return End::UpstreamLost("the target closed the connection".to_owned()),
            Err(e) => return End::UpstreamLost(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: ReadError) -> &'static str {
        match too_large_or_io(e) {
            End::ClientProtocol(c) => c.code,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_bad_length_is_a_protocol_violation_and_a_huge_message_a_limit() {
        assert_eq!(
            code(ReadError::Frame(FrameError::BadLength(3))),
            sqlstate::PROTOCOL_VIOLATION
        );
        assert_eq!(
            code(ReadError::Frame(FrameError::TooLarge {
                size: 1 << 30,
                limit: 64 << 20
            })),
            sqlstate::PROGRAM_LIMIT
        );
        assert!(matches!(
            too_large_or_io(ReadError::Truncated),
            End::ClientIo(_)
        ));
    }
}

//! Which server response belongs to which client message.
//!
//! The client side pushes one expectation per message that the server will
//! answer; the server side consumes them as responses arrive. This is what
//! lets the gateway attribute results to statements (for audit and masking)
//! and put a refusal exactly where the server would have put an error, even
//! with pipelining. It mirrors the server's rules: after an error in the
//! extended protocol, everything up to the next Sync is skipped; a Sync that
//! arrives while COPY FROM STDIN runs is ignored.
//!
//! Pure: no I/O, unit-tested below.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use sluice_policy::Decision;

use crate::pg::codec::backend;
use crate::pg::codec::frame::Frame;

/// How a statement reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A Query message.
    Simple,
    /// Parse/Bind/Execute.
    Extended,
    /// The legacy FunctionCall message.
    FunctionCall,
}

impl Protocol {
    /// The name used in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Extended => "extended",
            Self::FunctionCall => "function_call",
        }
    }
}

/// One statement execution, from the moment it is forwarded to its outcome.
#[derive(Debug, Clone)]
pub struct Exec {
    /// The exact statement text.
    pub text: Arc<str>,
    /// The decision that let it through (or refused it).
    pub decision: Arc<Decision>,
    /// How it arrived.
    pub protocol: Protocol,
    /// When it was forwarded.
    pub started: Instant,
    /// Rows returned or affected.
    pub rows: u64,
    /// The last command tag.
    pub command_tag: String,
    /// SQLSTATE of the first error.
    pub sqlstate: String,
    /// The refusal sent in place of the server's error (set when the
    /// statement was replaced by a marker that the server rejects).
    pub denial: Option<Frame>,
    /// The server never ran it: an earlier message in its pipeline failed.
    pub skipped: bool,
    /// Already in the audit trail (refusals are recorded when decided).
    pub recorded: bool,
    /// How its results are masked, when masking applies.
    pub mask: Option<Box<crate::pg::mask::ExecMask>>,
    /// The start of its result, for the record.
    pub sample: Option<Box<super::sample::Sample>>,
    /// Its bound parameters as the record keeps them.
    pub params: Option<Arc<[sluice_proto::v1::SampleValue]>>,
    /// Bytes of its results sent to the client.
    pub bytes: u64,
    /// The approval request it ran under, or was refused pending.
    pub approval_id: Option<Arc<str>>,
}

impl Exec {
    /// A statement about to be forwarded.
    pub fn new(text: Arc<str>, decision: Arc<Decision>, protocol: Protocol) -> Self {
        let sample = (decision.verdict != sluice_policy::Verdict::Deny && decision.sample.rows > 0)
            .then(|| Box::new(super::sample::Sample::new(decision.sample)));
        Self {
            sample,
            params: None,
            bytes: 0,
            text,
            decision,
            protocol,
            started: Instant::now(),
            rows: 0,
            command_tag: String::new(),
            sqlstate: String::new(),
            denial: None,
            skipped: false,
            recorded: false,
            mask: None,
            approval_id: None,
        }
    }
}

/// A response the server owes.
#[derive(Debug)]
pub enum Expect {
    /// ParseComplete; `denial` replaces the error the marker provokes.
    Parse {
        /// The refusal to show instead of the server's error.
        denial: Option<Frame>,
    },
    /// BindComplete.
    Bind,
    /// ParameterDescription then RowDescription or NoData; the description
    /// is kept in the slot for masking.
    DescribeStatement(Option<crate::pg::mask::DescSlot>),
    /// RowDescription or NoData, kept in the slot for masking.
    DescribePortal(Option<crate::pg::mask::DescSlot>),
    /// Results of an Execute.
    Execute(Exec),
    /// CloseComplete.
    Close,
    /// ReadyForQuery after Sync.
    Sync,
    /// Results of a Query or FunctionCall, ending with ReadyForQuery.
    Simple(Exec),
}

/// What to do with a server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send it on unchanged.
    Forward,
    /// Send this instead.
    Replace(Frame),
}

/// The server sent something the tracker cannot place: the gateway no
/// longer knows which statement a result belongs to, so it must stop.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("server message {tag:?} does not match the pending {expected}")]
pub struct Desync {
    /// The message type.
    pub tag: char,
    /// What the tracker expected.
    pub expected: &'static str,
}

/// An owed response, and how many copy ends (CopyDone or CopyFail) the
/// client had sent before the message that owes it.
#[derive(Debug)]
struct Owed {
    expect: Expect,
    copy_ends: u64,
}

/// The queue of owed responses and the executions that have finished.
#[derive(Debug, Default)]
pub struct Tracker {
    queue: VecDeque<Owed>,
    done: Vec<Exec>,
    /// CopyDone and CopyFail messages the client has sent so far.
    copy_ends: u64,
    /// While the Execute at the front runs COPY FROM STDIN: its `copy_ends`.
    copy_in: Option<u64>,
    /// An extended-protocol message failed before its Sync was forwarded:
    /// the server skips every message until that Sync, including those the
    /// client has not sent yet.
    skipping: bool,
    /// The SQLSTATE of a failed Parse or Bind, until the Execute it was for
    /// takes it.
    unclaimed: Option<String>,
}

impl Tracker {
    /// Records that the server owes a response to a message just forwarded.
    pub fn push(&mut self, e: Expect) {
        if self.skipping {
            if !matches!(e, Expect::Sync) {
                return self.skip(e);
            }
            self.skipping = false;
            self.unclaimed = None;
        }
        self.queue.push_back(Owed {
            expect: e,
            copy_ends: self.copy_ends,
        });
    }

    /// Records that the client ended a COPY FROM STDIN (CopyDone or
    /// CopyFail): the Syncs it sent since the COPY's Execute were read by the
    /// server in copy mode, and ignored.
    pub fn copy_ended(&mut self) {
        self.copy_ends = self.copy_ends.wrapping_add(1);
    }

    /// Number of responses still owed.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Executions that finished since the last call.
    pub fn take_done(&mut self) -> Vec<Exec> {
        std::mem::take(&mut self.done)
    }

    /// Everything unfinished, at the end of a session.
    pub fn abandon(&mut self) -> Vec<Exec> {
        let mut out = self.take_done();
        for o in self.queue.drain(..) {
            if let Expect::Execute(x) | Expect::Simple(x) = o.expect {
                out.push(x);
            }
        }
        out
    }

    fn front(&self) -> Option<&Expect> {
        self.queue.front().map(|o| &o.expect)
    }

    /// The response owed first, for masking to look at.
    pub fn front_expect_mut(&mut self) -> Option<&mut Expect> {
        self.front_mut()
    }

    fn front_mut(&mut self) -> Option<&mut Expect> {
        self.queue.front_mut().map(|o| &mut o.expect)
    }

    fn pop_front(&mut self) -> Option<Expect> {
        self.queue.pop_front().map(|o| o.expect)
    }

    /// Takes the Execute at the front, which has finished. If it ran COPY
    /// FROM STDIN, the server ignored every Sync the client sent between it
    /// and the copy's end (clients such as tokio-postgres send one before
    /// they learn the statement is a COPY): those are owed nothing.
    fn pop_execute(&mut self) -> Option<Exec> {
        let Some(Expect::Execute(x)) = self.pop_front() else {
            return None;
        };
        if let Some(k) = self.copy_in.take() {
            while self
                .queue
                .front()
                .is_some_and(|o| matches!(o.expect, Expect::Sync) && o.copy_ends == k)
            {
                self.queue.pop_front();
            }
        }
        Some(x)
    }

    /// The server skips `e` because an earlier message before the next Sync
    /// failed: an execution it carried is finished, failed if it is the one
    /// the error was for, skipped otherwise.
    fn skip(&mut self, e: Expect) {
        if let Expect::Execute(mut x) | Expect::Simple(mut x) = e {
            match self.unclaimed.take() {
                Some(code) => x.sqlstate = code,
                None => x.skipped = true,
            }
            self.done.push(x);
        }
    }

    fn front_name(&self) -> &'static str {
        match self.front() {
            None => "nothing",
            Some(Expect::Parse { .. }) => "ParseComplete",
            Some(Expect::Bind) => "BindComplete",
            Some(Expect::DescribeStatement(_) | Expect::DescribePortal(_)) => "Describe response",
            Some(Expect::Execute(_)) => "Execute results",
            Some(Expect::Close) => "CloseComplete",
            Some(Expect::Sync) => "ReadyForQuery",
            Some(Expect::Simple(_)) => "Query results",
        }
    }

    fn desync(&self, tag: u8) -> Desync {
        Desync {
            tag: tag as char,
            expected: self.front_name(),
        }
    }

    /// Places one server message and says what to do with it.
    pub fn on_server(&mut self, tag: u8, body: &[u8]) -> Result<Action, Desync> {
        match tag {
            // Asynchronous: notices, notifications, parameter changes.
            b'N' | b'A' | b'S' => Ok(Action::Forward),
            b'1' => self.pop_if(tag, |e| matches!(e, Expect::Parse { .. })),
            b'2' => self.pop_if(tag, |e| matches!(e, Expect::Bind)),
            b'3' => self.pop_if(tag, |e| matches!(e, Expect::Close)),
            b'n' => self.pop_if(tag, |e| {
                matches!(e, Expect::DescribeStatement(_) | Expect::DescribePortal(_))
            }),
            b't' => match self.front() {
                Some(Expect::DescribeStatement(_)) => Ok(Action::Forward),
                _ => Err(self.desync(tag)),
            },
            b'T' => match self.front() {
                Some(Expect::DescribeStatement(_) | Expect::DescribePortal(_)) => {
                    self.pop_front();
                    Ok(Action::Forward)
                }
                Some(Expect::Simple(_)) => Ok(Action::Forward),
                _ => Err(self.desync(tag)),
            },
            b'G' => match self.queue.front() {
                Some(Owed {
                    expect: Expect::Execute(_),
                    copy_ends,
                }) => {
                    self.copy_in = Some(*copy_ends);
                    Ok(Action::Forward)
                }
                Some(Owed {
                    expect: Expect::Simple(_),
                    ..
                }) => Ok(Action::Forward),
                _ => Err(self.desync(tag)),
            },
            b'D' | b'H' | b'W' | b'd' | b'c' | b'V' => match self.front() {
                Some(Expect::Simple(_) | Expect::Execute(_)) => Ok(Action::Forward),
                _ => Err(self.desync(tag)),
            },
            b'C' | b'I' | b's' => self.on_completion(tag, body),
            b'E' => Ok(self.on_error(body)),
            b'Z' => self.on_ready(tag),
            _ => Err(self.desync(tag)),
        }
    }

    fn pop_if(&mut self, tag: u8, ok: impl Fn(&Expect) -> bool) -> Result<Action, Desync> {
        match self.front() {
            Some(e) if ok(e) => {
                self.pop_front();
                Ok(Action::Forward)
            }
            _ => Err(self.desync(tag)),
        }
    }

    fn on_completion(&mut self, tag: u8, body: &[u8]) -> Result<Action, Desync> {
        match self.front_mut() {
            Some(Expect::Simple(x)) => {
                if tag == b'C' {
                    x.rows += backend::command_rows(body);
                    x.command_tag = tag_text(body);
                }
                Ok(Action::Forward)
            }
            Some(Expect::Execute(_)) => {
                if let Some(mut x) = self.pop_execute() {
                    if tag == b'C' {
                        x.rows += backend::command_rows(body);
                        x.command_tag = tag_text(body);
                    }
                    self.done.push(x);
                }
                Ok(Action::Forward)
            }
            _ => Err(self.desync(tag)),
        }
    }

    fn on_error(&mut self, body: &[u8]) -> Action {
        let code = String::from_utf8_lossy(backend::error_field(body, b'C').unwrap_or_default())
            .into_owned();
        let mut action = Action::Forward;
        match self.front_mut() {
            // An error outside any request (e.g. the server shutting down).
            None => return action,
            // A Query's error: the Query still ends with ReadyForQuery.
            Some(Expect::Simple(x)) => {
                if x.sqlstate.is_empty() {
                    x.sqlstate = code;
                }
                if let Some(d) = x.denial.take() {
                    action = Action::Replace(d);
                }
                return action;
            }
            // An error while committing at Sync: ReadyForQuery follows.
            Some(Expect::Sync) => return action,
            Some(_) => {}
        }
        // An extended-protocol message failed: the server skips everything
        // up to the next Sync, and so do we, whether the client has sent it
        // yet or not.
        if matches!(self.front(), Some(Expect::Execute(_))) {
            if let Some(mut x) = self.pop_execute() {
                x.sqlstate = code;
                self.done.push(x);
            }
        } else {
            match self.pop_front() {
                Some(Expect::Parse { denial: Some(d) }) => action = Action::Replace(d),
                // A statement that fails to parse, or to bind (the server
                // plans with the parameters there, so `1 / $1` with 0 fails
                // at Bind), fails as the Execute that was to run it.
                Some(Expect::Parse { denial: None } | Expect::Bind) => self.unclaimed = Some(code),
                _ => {}
            }
        }
        while let Some(front) = self.front() {
            if matches!(front, Expect::Sync) {
                self.unclaimed = None;
                return action;
            }
            if let Some(e) = self.pop_front() {
                self.skip(e);
            }
        }
        self.skipping = true;
        action
    }

    fn on_ready(&mut self, tag: u8) -> Result<Action, Desync> {
        match self.front() {
            Some(Expect::Sync) => {
                self.pop_front();
                Ok(Action::Forward)
            }
            Some(Expect::Simple(_)) => {
                if let Some(Expect::Simple(x)) = self.pop_front() {
                    self.done.push(x);
                }
                Ok(Action::Forward)
            }
            _ => Err(self.desync(tag)),
        }
    }
}

fn tag_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body)).into_owned()
}

#[cfg(test)]
mod tests {
    use sluice_policy::Verdict;

    use super::*;
    use crate::pg::codec::backend::ErrorFields;

    fn exec(text: &str, p: Protocol) -> Exec {
        let d = Decision {
            verdict: Verdict::Allow,
            ..Decision::default()
        };
        Exec::new(text.into(), Arc::new(d), p)
    }

    fn err(code: &str) -> Frame {
        ErrorFields {
            severity: "ERROR",
            code,
            message: "m",
            detail: None,
            hint: None,
        }
        .error()
    }

    fn feed(t: &mut Tracker, msgs: &[(u8, &[u8])]) -> Vec<Action> {
        msgs.iter()
            .map(|(tag, body)| t.on_server(*tag, body).unwrap())
            .collect()
    }

    #[test]
    fn a_pipelined_extended_batch_is_attributed_in_order() {
        let mut t = Tracker::default();
        for text in ["SELECT 1", "SELECT 2"] {
            t.push(Expect::Parse { denial: None });
            t.push(Expect::Bind);
            t.push(Expect::DescribePortal(None));
            t.push(Expect::Execute(exec(text, Protocol::Extended)));
        }
        t.push(Expect::Sync);
        let row: &[u8] = b"";
        feed(
            &mut t,
            &[
                (b'1', row),
                (b'2', row),
                (b'T', row),
                (b'D', row),
                (b'C', b"SELECT 1\0"),
                (b'1', row),
                (b'2', row),
                (b'n', row),
                (b'C', b"SELECT 0\0"),
                (b'Z', b"I"),
            ],
        );
        let done = t.take_done();
        assert_eq!(
            done.iter().map(|x| &*x.text).collect::<Vec<_>>(),
            ["SELECT 1", "SELECT 2"]
        );
        assert_eq!(done[0].rows, 1);
        assert_eq!(done[0].command_tag, "SELECT 1");
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn an_error_skips_to_sync_like_the_server() {
        let mut t = Tracker::default();
        t.push(Expect::Parse { denial: None });
        t.push(Expect::Bind);
        t.push(Expect::Execute(exec("SELECT 1/0", Protocol::Extended)));
        t.push(Expect::Parse { denial: None });
        t.push(Expect::Bind);
        t.push(Expect::Execute(exec("SELECT 2", Protocol::Extended)));
        t.push(Expect::Sync);
        let acts = feed(
            &mut t,
            &[
                (b'1', b""),
                (b'2', b""),
                (b'E', err("22012").body()),
                (b'Z', b"I"),
            ],
        );
        assert!(acts.iter().all(|a| *a == Action::Forward));
        let done = t.take_done();
        assert_eq!(done[0].sqlstate, "22012");
        assert!(!done[0].skipped);
        assert!(done[1].skipped, "the second statement never ran");
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_failed_parse_or_bind_is_the_failure_of_the_execute_it_was_for() {
        for failing in [b'1', b'2'] {
            let mut t = Tracker::default();
            t.push(Expect::Parse { denial: None });
            t.push(Expect::Bind);
            t.push(Expect::Execute(exec("SELECT 1 / $1", Protocol::Extended)));
            t.push(Expect::Parse { denial: None });
            t.push(Expect::Bind);
            t.push(Expect::Execute(exec("SELECT 2", Protocol::Extended)));
            t.push(Expect::Sync);
            if failing == b'2' {
                feed(&mut t, &[(b'1', b"")]);
            }
            feed(&mut t, &[(b'E', err("22012").body()), (b'Z', b"I")]);
            let done = t.take_done();
            assert_eq!(done[0].sqlstate, "22012");
            assert!(!done[0].skipped);
            assert!(done[1].skipped && done[1].sqlstate.is_empty());
            assert_eq!(t.pending(), 0);
        }
    }

    /// A client that writes each message separately can see the server's
    /// error for its Parse before the rest of the batch reaches the gateway.
    #[test]
    fn an_error_skips_what_the_client_sends_after_it_up_to_sync() {
        for denial in [None, Some(err("42501"))] {
            let mut t = Tracker::default();
            t.push(Expect::Parse {
                denial: denial.clone(),
            });
            let acts = feed(&mut t, &[(b'E', err("42P01").body())]);
            assert_eq!(acts[0] == Action::Forward, denial.is_none());
            t.push(Expect::Bind);
            t.push(Expect::DescribePortal(None));
            t.push(Expect::Execute(exec(
                "SELECT * FROM nope",
                Protocol::Extended,
            )));
            t.push(Expect::Execute(exec("SELECT 2", Protocol::Extended)));
            t.push(Expect::Sync);
            feed(&mut t, &[(b'Z', b"T")]);
            assert_eq!(t.pending(), 0);
            let done = t.take_done();
            // Without a refusal the parse error is the first Execute's own.
            assert_eq!(done[0].skipped, denial.is_some());
            assert_eq!(done[0].sqlstate.is_empty(), denial.is_some());
            assert!(done[1].skipped);
            // After the Sync, everything is owed as usual.
            t.push(Expect::Simple(exec("SELECT 3", Protocol::Simple)));
            feed(&mut t, &[(b'C', b"SELECT 1\0"), (b'Z', b"I")]);
            assert_eq!(t.take_done()[0].rows, 1);
        }
    }

    #[test]
    fn a_refused_parse_replaces_the_markers_error() {
        let mut t = Tracker::default();
        let refusal = err("42501");
        t.push(Expect::Parse {
            denial: Some(refusal.clone()),
        });
        t.push(Expect::Bind);
        t.push(Expect::Sync);
        let acts = feed(&mut t, &[(b'E', err("42601").body()), (b'Z', b"I")]);
        assert_eq!(acts[0], Action::Replace(refusal));
    }

    #[test]
    fn a_refused_query_replaces_only_its_own_error() {
        let mut t = Tracker::default();
        t.push(Expect::Simple(exec("SELECT 1", Protocol::Simple)));
        let mut denied = exec("DROP TABLE x", Protocol::Simple);
        let refusal = err("42501");
        denied.denial = Some(refusal.clone());
        t.push(Expect::Simple(denied));
        let acts = feed(
            &mut t,
            &[
                (b'T', b""),
                (b'D', b""),
                (b'C', b"SELECT 1\0"),
                (b'Z', b"I"),
                (b'E', err("42601").body()),
                (b'Z', b"I"),
            ],
        );
        assert_eq!(acts[4], Action::Replace(refusal));
        assert!(acts[..4].iter().all(|a| *a == Action::Forward));
        let done = t.take_done();
        assert_eq!(done[1].sqlstate, "42601");
    }

    #[test]
    fn multi_statement_queries_sum_their_rows() {
        let mut t = Tracker::default();
        t.push(Expect::Simple(exec(
            "INSERT ...; UPDATE ...",
            Protocol::Simple,
        )));
        feed(
            &mut t,
            &[(b'C', b"INSERT 0 2\0"), (b'C', b"UPDATE 3\0"), (b'Z', b"T")],
        );
        let done = t.take_done();
        assert_eq!(done[0].rows, 5);
        assert_eq!(done[0].command_tag, "UPDATE 3");
    }

    #[test]
    fn unexpected_messages_are_a_desync() {
        let mut t = Tracker::default();
        assert!(t.on_server(b'1', b"").is_err());
        assert!(t.on_server(b'D', b"").is_err());
        assert!(t.on_server(b'Z', b"I").is_err());
        assert!(t.on_server(b'K', b"").is_err());
        assert_eq!(t.on_server(b'N', b""), Ok(Action::Forward));
        assert_eq!(t.on_server(b'E', err("57P01").body()), Ok(Action::Forward));
        t.push(Expect::Bind);
        assert!(t.on_server(b'1', b"").is_err());
    }

    #[test]
    fn copy_traffic_belongs_to_its_statement() {
        let mut t = Tracker::default();
        t.push(Expect::Simple(exec("COPY t TO STDOUT", Protocol::Simple)));
        feed(
            &mut t,
            &[
                (b'H', b""),
                (b'd', b"1\n"),
                (b'c', b""),
                (b'C', b"COPY 1\0"),
                (b'Z', b"I"),
            ],
        );
        assert_eq!(t.take_done()[0].rows, 1);
    }

    /// tokio-postgres's copy_in: Bind, Execute, Sync, then the data,
    /// CopyDone, Sync. The server ignores the first Sync (read in copy mode)
    /// and answers the second; the next statement must still line up.
    #[test]
    fn a_sync_sent_during_copy_in_is_owed_nothing() {
        let mut t = Tracker::default();
        t.push(Expect::Bind);
        t.push(Expect::Execute(exec(
            "COPY t FROM STDIN",
            Protocol::Extended,
        )));
        t.push(Expect::Sync);
        feed(&mut t, &[(b'2', b""), (b'G', b"")]);
        t.copy_ended();
        t.push(Expect::Sync);
        t.push(Expect::Parse { denial: None });
        t.push(Expect::DescribeStatement(None));
        t.push(Expect::Sync);
        feed(
            &mut t,
            &[
                (b'C', b"COPY 3\0"),
                (b'Z', b"I"),
                (b'1', b""),
                (b't', b""),
                (b'n', b""),
                (b'Z', b"I"),
            ],
        );
        let done = t.take_done();
        assert_eq!((done[0].rows, done[0].command_tag.as_str()), (3, "COPY 3"));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_copy_in_that_fails_skips_to_the_sync_after_its_end() {
        let mut t = Tracker::default();
        // A stray CopyDone outside any COPY changes nothing.
        t.copy_ended();
        t.push(Expect::Bind);
        t.push(Expect::Execute(exec(
            "COPY t FROM STDIN",
            Protocol::Extended,
        )));
        t.push(Expect::Sync);
        feed(&mut t, &[(b'2', b""), (b'G', b"")]);
        feed(&mut t, &[(b'E', err("22P02").body())]);
        // The client, still copying, ends with CopyFail and Sync.
        t.copy_ended();
        t.push(Expect::Sync);
        feed(&mut t, &[(b'Z', b"I")]);
        assert_eq!(t.take_done()[0].sqlstate, "22P02");
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_sync_after_a_pipelined_copy_end_is_still_owed() {
        let mut t = Tracker::default();
        t.push(Expect::Bind);
        t.push(Expect::Execute(exec(
            "COPY t FROM STDIN",
            Protocol::Extended,
        )));
        t.copy_ended();
        t.push(Expect::Sync);
        feed(&mut t, &[(b'2', b""), (b'G', b""), (b'C', b"COPY 1\0")]);
        assert_eq!(t.pending(), 1, "ReadyForQuery is still owed");
        feed(&mut t, &[(b'Z', b"I")]);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn abandoning_returns_unfinished_executions() {
        let mut t = Tracker::default();
        t.push(Expect::Parse { denial: None });
        t.push(Expect::Execute(exec(
            "SELECT pg_sleep(10)",
            Protocol::Extended,
        )));
        t.push(Expect::Sync);
        assert_eq!(t.abandon().len(), 1);
        assert_eq!(t.pending(), 0);
    }
}

//! Which server response belongs to which client message.
//!
//! The client side pushes one expectation per message that the server will
//! answer; the server side consumes them as responses arrive. This is what
//! lets the gateway attribute results to statements (for audit and masking)
//! and put a refusal exactly where the server would have put an error, even
//! with pipelining. It mirrors the server's rules: after an error in the
//! extended protocol, everything up to the next Sync is skipped.
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
}

impl Exec {
    /// A statement about to be forwarded.
    pub fn new(text: Arc<str>, decision: Arc<Decision>, protocol: Protocol) -> Self {
        Self {
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
    /// ParameterDescription then RowDescription or NoData.
    DescribeStatement,
    /// RowDescription or NoData.
    DescribePortal,
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

/// The queue of owed responses and the executions that have finished.
#[derive(Debug, Default)]
pub struct Tracker {
    queue: VecDeque<Expect>,
    done: Vec<Exec>,
}

impl Tracker {
    /// Records that the server owes a response to a message just forwarded.
    pub fn push(&mut self, e: Expect) {
        self.queue.push_back(e);
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
        for e in self.queue.drain(..) {
            if let Expect::Execute(x) | Expect::Simple(x) = e {
                out.push(x);
            }
        }
        out
    }

    fn front_name(&self) -> &'static str {
        match self.queue.front() {
            None => "nothing",
            Some(Expect::Parse { .. }) => "ParseComplete",
            Some(Expect::Bind) => "BindComplete",
            Some(Expect::DescribeStatement | Expect::DescribePortal) => "Describe response",
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
                matches!(e, Expect::DescribeStatement | Expect::DescribePortal)
            }),
            b't' => match self.queue.front() {
                Some(Expect::DescribeStatement) => Ok(Action::Forward),
                _ => Err(self.desync(tag)),
            },
            b'T' => match self.queue.front() {
                Some(Expect::DescribeStatement | Expect::DescribePortal) => {
                    self.queue.pop_front();
                    Ok(Action::Forward)
                }
                Some(Expect::Simple(_)) => Ok(Action::Forward),
                _ => Err(self.desync(tag)),
            },
            b'D' | b'G' | b'H' | b'W' | b'd' | b'c' | b'V' => match self.queue.front() {
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
        match self.queue.front() {
            Some(e) if ok(e) => {
                self.queue.pop_front();
                Ok(Action::Forward)
            }
            _ => Err(self.desync(tag)),
        }
    }

    fn on_completion(&mut self, tag: u8, body: &[u8]) -> Result<Action, Desync> {
        match self.queue.front_mut() {
            Some(Expect::Simple(x)) => {
                if tag == b'C' {
                    x.rows += backend::command_rows(body);
                    x.command_tag = tag_text(body);
                }
                Ok(Action::Forward)
            }
            Some(Expect::Execute(_)) => {
                if let Some(Expect::Execute(mut x)) = self.queue.pop_front() {
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
        match self.queue.front_mut() {
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
        // up to the next Sync, and so do we.
        match self.queue.pop_front() {
            Some(Expect::Parse { denial: Some(d) }) => action = Action::Replace(d),
            Some(Expect::Execute(mut x)) => {
                x.sqlstate = code;
                self.done.push(x);
            }
            _ => {}
        }
        while let Some(front) = self.queue.front() {
            if matches!(front, Expect::Sync) {
                break;
            }
            if let Some(Expect::Execute(mut x) | Expect::Simple(mut x)) = self.queue.pop_front() {
                x.skipped = true;
                self.done.push(x);
            }
        }
        action
    }

    fn on_ready(&mut self, tag: u8) -> Result<Action, Desync> {
        match self.queue.pop_front() {
            Some(Expect::Sync) => Ok(Action::Forward),
            Some(Expect::Simple(x)) => {
                self.done.push(x);
                Ok(Action::Forward)
            }
            other => {
                if let Some(e) = other {
                    self.queue.push_front(e);
                }
                Err(self.desync(tag))
            }
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
            policy: None,
            rule: None,
            reason: String::new(),
            kinds: vec![],
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
            t.push(Expect::DescribePortal);
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

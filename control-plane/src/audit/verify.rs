//! Verification of one session's record: a pure function over its events
//! in the order given (store rows or export lines), plus what signed
//! statements say about its end (a checkpoint, an export seal). It names
//! the first bad line and says what is wrong with it; sequence numbers the
//! control plane never received are reported as gaps, not as tampering.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::chain::{GENESIS, SCHEMA_VERSION, hash_record};
use super::seal::Seal;

/// One line of input: an event record, an export seal, or something that
/// is neither.
#[derive(Debug, Clone)]
pub enum Item {
    /// A chained event record (with its `hash`).
    Event(Map<String, Value>),
    /// The signed end of an export.
    Seal(Seal),
    /// Not a record: why.
    Malformed(String),
}

/// Parses one export line.
pub fn parse_line(text: &str) -> Item {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => match m.remove("seal") {
            Some(seal) if m.is_empty() => match serde_json::from_value::<Seal>(seal) {
                Ok(s) => Item::Seal(s),
                Err(e) => Item::Malformed(format!("bad seal: {e}")),
            },
            Some(_) => Item::Malformed("a seal line has other fields".to_owned()),
            None => Item::Event(m),
        },
        Ok(_) => Item::Malformed("not a JSON object".to_owned()),
        Err(e) => Item::Malformed(format!("not JSON: {e}")),
    }
}

/// A signed statement of where a session's chain stood: every event up to
/// `seq` must be present, and event `seq` must have `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Sequence number of the anchored event.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Where the anchor came from, for the report (`checkpoint 12`).
    pub source: String,
}

/// What to check beyond the chain itself.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Every event must belong to this session.
    pub session_id: Option<String>,
    /// The input must end with a seal (an export).
    pub require_seal: bool,
    /// Seals must be signed by this public key (base64url).
    pub trusted_public_key: Option<String>,
    /// Signed heads the events must reach and match.
    pub anchors: Vec<Anchor>,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every event checks and nothing is missing.
    Intact,
    /// The chain checks, but the control plane never received some
    /// sequence numbers (a node lost them): the record has gaps.
    Gaps,
    /// Something was altered, removed, reordered or inserted.
    Tampered,
}

/// What is wrong with the first bad line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Not a record at all.
    Malformed,
    /// A schema version this verifier does not know.
    UnsupportedVersion,
    /// Recorded before the chain existed: cannot be verified.
    Unchained,
    /// Its content does not match its hash, or a signed head says otherwise.
    Modified,
    /// It belongs to another session.
    ForeignSession,
    /// Its sequence number is not after the previous line's.
    OutOfOrder,
    /// Events before it are missing.
    Removed,
    /// It does not link to the line before although it follows it: one of
    /// them was replaced or inserted.
    BrokenLink,
    /// Events a signed statement covers are missing at the end.
    Truncated,
    /// The seal is missing, misplaced or badly signed.
    Seal,
    /// Nothing to verify.
    Empty,
}

/// The first bad line and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// 1-based line (or position) of the first bad one.
    pub line: usize,
    /// Its sequence number, when it has one.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: ProblemKind,
    /// Said for a person.
    pub detail: String,
}

/// Sequence numbers that never reached the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing sequence number.
    pub from: u64,
    /// Last missing sequence number.
    pub to: u64,
    /// Line of the event after the gap.
    pub line: usize,
}

/// The outcome of verifying a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The verdict.
    pub status: Status,
    /// The session, if any line named one.
    pub session_id: Option<String>,
    /// Events that checked before the first problem (all of them if none).
    pub events: u64,
    /// Sequence number of the last event that checked.
    pub last_seq: u64,
    /// Its hash.
    pub last_hash: String,
    /// Gaps in sequence numbers, with the chain intact across them.
    pub gaps: Vec<Gap>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// Signed statements that were checked against the events.
    pub anchors: Vec<Anchor>,
    /// Whether the last event closes the session (its end, or a record of
    /// one event such as a refused sign-in or a configuration change).
    #[serde(default)]
    pub ended: bool,
    /// The session has no end and can receive none: its node stopped (or
    /// restarted) after the last stored event, so whatever it had not
    /// delivered is lost. Reported as a gap after `last_seq`, never as an
    /// intact record.
    #[serde(default)]
    pub lost_tail: bool,
}

/// Event kinds that close a session's record.
const CLOSING: [&str; 3] = ["session_end", "auth_failure", "config_change"];

/// Whether a session without an end can still receive events: no if its
/// node has not been heard from for `stale_us`, or registered a new process
/// after the session's last stored event (a process's undelivered events die
/// with it). `node` is (last seen, process started), µs; with no record of
/// the node nothing can be said.
pub fn tail_lost(last_event_at: i64, node: Option<(i64, i64)>, now: i64, stale_us: i64) -> bool {
    node.is_some_and(|(seen, started)| {
        now.saturating_sub(seen) > stale_us || started > last_event_at
    })
}

impl Report {
    /// Marks the record's tail as lost (see [`tail_lost`]).
    pub fn set_lost_tail(&mut self) {
        self.lost_tail = true;
        if self.status == Status::Intact {
            self.status = Status::Gaps;
        }
    }

    /// True only when the record is intact and complete.
    pub fn ok(&self) -> bool {
        self.status == Status::Intact
    }
}

struct Walk {
    ended: bool,
    session: Option<String>,
    prev_hash: String,
    last_seq: u64,
    last_line: usize,
    events: u64,
    gaps: Vec<Gap>,
    seen: Vec<(u64, String, usize)>,
}

fn problem(line: usize, seq: Option<u64>, kind: ProblemKind, detail: String) -> Problem {
    Problem {
        line,
        seq,
        kind,
        detail,
    }
}

/// Verifies `items` (1-based line numbers are their positions) against the
/// chain rules and `opts`.
pub fn verify(items: &[Item], opts: &Options) -> Report {
    let all_seqs: HashSet<u64> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(m) => m.get("seq").and_then(Value::as_u64),
            _ => None,
        })
        .collect();
    let mut w = Walk {
        ended: false,
        session: opts.session_id.clone(),
        prev_hash: GENESIS.to_owned(),
        last_seq: 0,
        last_line: 0,
        events: 0,
        gaps: Vec::new(),
        seen: Vec::new(),
    };
    let mut anchors = opts.anchors.clone();
    let mut found = None;
    let mut seal_seen = false;
    for (i, item) in items.iter().enumerate() {
        let line = i + 1;
        let result = match item {
            Item::Malformed(why) => Err(problem(line, None, ProblemKind::Malformed, why.clone())),
            Item::Seal(seal) => {
                seal_seen = true;
                check_seal(seal, line, items.len(), &w, opts).map(|a| anchors.push(a))
            }
            Item::Event(m) => step(&mut w, m, line, &all_seqs),
        };
        if let Err(p) = result {
            found = Some(p);
            break;
        }
    }
    if found.is_none() && opts.require_seal && !seal_seen {
        found = Some(problem(
            items.len() + 1,
            None,
            ProblemKind::Seal,
            "the export has no seal line: it was cut short".to_owned(),
        ));
    }
    if found.is_none() {
        found = check_anchors(&w, &anchors, items.len());
    }
    if found.is_none() && w.events == 0 {
        found = Some(problem(
            1,
            None,
            ProblemKind::Empty,
            "no events to verify".to_owned(),
        ));
    }
    let status = match (&found, w.gaps.is_empty()) {
        (Some(_), _) => Status::Tampered,
        (None, false) => Status::Gaps,
        (None, true) => Status::Intact,
    };
    Report {
        status,
        session_id: w.session,
        events: w.events,
        last_seq: w.last_seq,
        last_hash: w.prev_hash,
        gaps: w.gaps,
        problem: found,
        anchors,
        ended: w.ended,
        lost_tail: false,
    }
}

fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key)
}

fn step(
    w: &mut Walk,
    m: &Map<String, Value>,
    line: usize,
    all: &HashSet<u64>,
) -> Result<(), Problem> {
    let seq = field(m, "seq").and_then(Value::as_u64);
    let bad = |kind, detail: String| problem(line, seq, kind, detail);
    let Some(seq) = seq else {
        return Err(bad(ProblemKind::Malformed, "no sequence number".to_owned()));
    };
    let Some(session) = field(m, "session_id").and_then(Value::as_str) else {
        return Err(bad(ProblemKind::Malformed, "no session id".to_owned()));
    };
    match field(m, "v") {
        None | Some(Value::Null) => {
            return Err(bad(
                ProblemKind::Unchained,
                "recorded before the hash chain existed; it cannot be verified".to_owned(),
            ));
        }
        Some(v) if v.as_u64() != Some(SCHEMA_VERSION) => {
            return Err(bad(
                ProblemKind::UnsupportedVersion,
                format!("schema version {v} is not one this verifier knows ({SCHEMA_VERSION})"),
            ));
        }
        Some(_) => {}
    }
    let (Some(hash), Some(prev)) = (
        field(m, "hash").and_then(Value::as_str),
        field(m, "prev_hash").and_then(Value::as_str),
    ) else {
        return Err(bad(
            ProblemKind::Malformed,
            "no hash or prev_hash".to_owned(),
        ));
    };
    match &w.session {
        Some(s) if s != session => {
            return Err(bad(
                ProblemKind::ForeignSession,
                format!("belongs to session {session}, not {s}"),
            ));
        }
        Some(_) => {}
        None => w.session = Some(session.to_owned()),
    }
    if hash_record(m) != hash {
        return Err(bad(
            ProblemKind::Modified,
            format!("event {seq} was altered: its content does not match its hash"),
        ));
    }
    if seq <= w.last_seq {
        let detail = match w.seen.iter().find(|(s, _, _)| *s == seq) {
            Some(_) => format!(
                "event {seq} appears again after event {}: inserted or duplicated",
                w.last_seq
            ),
            None => format!("event {seq} comes after event {}: out of order", w.last_seq),
        };
        return Err(bad(ProblemKind::OutOfOrder, detail));
    }
    if prev != w.prev_hash {
        let expected = w.last_seq + 1;
        let detail = if seq > expected {
            let later = (expected..seq).any(|s| all.contains(&s));
            if later {
                return Err(bad(
                    ProblemKind::OutOfOrder,
                    format!("event {seq} comes before event {expected}: out of order"),
                ));
            }
            return Err(bad(
                ProblemKind::Removed,
                format!(
                    "events {expected} to {} before this line were removed",
                    seq - 1
                ),
            ));
        } else if w.last_line == 0 {
            format!("event {seq} should start the chain but links to another event")
        } else {
            format!(
                "event {seq} does not link to event {} on line {}: one of them was replaced or inserted",
                w.last_seq, w.last_line
            )
        };
        return Err(bad(ProblemKind::BrokenLink, detail));
    }
    if seq > w.last_seq + 1 {
        w.gaps.push(Gap {
            from: w.last_seq + 1,
            to: seq - 1,
            line,
        });
    }
    w.prev_hash = hash.to_owned();
    w.ended = field(m, "kind")
        .and_then(Value::as_str)
        .is_some_and(|k| CLOSING.contains(&k));
    w.last_seq = seq;
    w.last_line = line;
    w.events += 1;
    w.seen.push((seq, hash.to_owned(), line));
    Ok(())
}

fn check_seal(
    seal: &Seal,
    line: usize,
    lines: usize,
    w: &Walk,
    opts: &Options,
) -> Result<Anchor, Problem> {
    let bad = |detail: String| problem(line, None, ProblemKind::Seal, detail);
    if line != lines {
        return Err(bad("lines follow the seal: they were appended".to_owned()));
    }
    if seal.v != SCHEMA_VERSION {
        return Err(problem(
            line,
            None,
            ProblemKind::UnsupportedVersion,
            format!("seal version {} is not one this verifier knows", seal.v),
        ));
    }
    seal.check(opts.trusted_public_key.as_deref())
        .map_err(|e| bad(format!("seal signature: {e}")))?;
    if w.session.as_deref().is_some_and(|s| s != seal.session_id) {
        return Err(bad(format!("seal is for session {}", seal.session_id)));
    }
    if seal.events != w.events {
        let kind = if seal.events > w.events {
            ProblemKind::Truncated
        } else {
            ProblemKind::Seal
        };
        return Err(problem(
            line,
            None,
            kind,
            format!(
                "the seal counts {} events, the file has {}",
                seal.events, w.events
            ),
        ));
    }
    Ok(Anchor {
        seq: seal.last_seq,
        hash: seal.last_hash.clone(),
        source: format!("export seal by key {}", seal.key_id),
    })
}

fn check_anchors(w: &Walk, anchors: &[Anchor], lines: usize) -> Option<Problem> {
    for a in anchors {
        if a.seq == 0 {
            continue;
        }
        match w.seen.iter().find(|(s, _, _)| *s == a.seq) {
            Some((_, hash, _)) if *hash == a.hash => {}
            Some((_, _, line)) => {
                return Some(problem(
                    *line,
                    Some(a.seq),
                    ProblemKind::Modified,
                    format!(
                        "event {} differs from what the {} recorded: the chain was rewritten",
                        a.seq, a.source
                    ),
                ));
            }
            None if a.seq > w.last_seq => {
                return Some(problem(
                    lines + 1,
                    Some(w.last_seq + 1),
                    ProblemKind::Truncated,
                    format!(
                        "events {} to {} are missing at the end: the {} covers them",
                        w.last_seq + 1,
                        a.seq,
                        a.source
                    ),
                ));
            }
            None => {
                return Some(problem(
                    lines + 1,
                    Some(a.seq),
                    ProblemKind::Removed,
                    format!("event {} that the {} covers is missing", a.seq, a.source),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sluice_identity::SigningKey;

    use super::*;
    use crate::audit::chain::{self, link};
    use crate::store::{EventKind, StoredEvent};

    fn statement(seq: u64, text: &str) -> StoredEvent {
        StoredEvent {
            session_id: "s1".to_owned(),
            seq,
            at: 1_000 + i64::try_from(seq).unwrap(),
            kind: EventKind::Statement {
                text: text.to_owned(),
                decision: "allow".to_owned(),
                policy: String::new(),
                rule: String::new(),
                reason: String::new(),
                kinds: vec!["select".to_owned()],
                protocol: "simple".to_owned(),
                duration_us: 5,
                rows: 1,
                sqlstate: String::new(),
                command_tag: "SELECT 1".to_owned(),
                approval_id: String::new(),
                masked: Default::default(),
                sample: None,
                parameters: Vec::new(),
                bytes: 0,
                http: None,
            },
        }
    }

    /// Export lines of a session of `n` events (seqs listed), with a seal.
    fn export(seqs: &[u64], key: &SigningKey) -> Vec<String> {
        let events: Vec<_> = seqs
            .iter()
            .map(|s| statement(*s, &format!("SELECT {s}")))
            .collect();
        let linked = link(&HashMap::new(), &events).unwrap();
        let mut lines: Vec<String> = linked
            .chained
            .iter()
            .map(|c| {
                let payload = serde_json::from_str(&c.payload).unwrap();
                let mut r = chain::record("s1", c.event.seq, c.event.at, payload, 1, &c.prev_hash);
                r.insert("hash".to_owned(), Value::from(c.hash.clone()));
                chain::canonical_string(&Value::Object(r))
            })
            .collect();
        let last = linked.chained.last().map(|c| (c.event.seq, c.hash.clone()));
        let seal = Seal::sign(key, "s1", seqs.len() as u64, last, 9);
        lines.push(serde_json::json!({ "seal": seal }).to_string());
        lines
    }

    fn run(lines: &[String]) -> Report {
        let items: Vec<Item> = lines.iter().map(|l| parse_line(l)).collect();
        verify(
            &items,
            &Options {
                require_seal: true,
                ..Options::default()
            },
        )
    }

    fn first_bad(lines: &[String]) -> (usize, ProblemKind) {
        let r = run(lines);
        assert_eq!(r.status, Status::Tampered, "{r:?}");
        let p = r.problem.unwrap();
        (p.line, p.kind)
    }

    #[test]
    fn an_untouched_export_is_intact() {
        let key = SigningKey::generate();
        let r = run(&export(&[1, 2, 3, 4], &key));
        assert!(r.ok(), "{r:?}");
        assert_eq!((r.events, r.last_seq), (4, 4));
        assert_eq!(r.anchors.len(), 1);
    }

    #[test]
    fn an_altered_line_is_named() {
        let mut lines = export(&[1, 2, 3, 4], &SigningKey::generate());
        lines[2] = lines[2].replace("SELECT 3", "SELECT 33");
        assert_eq!(first_bad(&lines), (3, ProblemKind::Modified));
    }

    #[test]
    fn an_altered_line_with_a_recomputed_hash_breaks_the_next_link() {
        let mut lines = export(&[1, 2, 3, 4], &SigningKey::generate());
        let Item::Event(mut m) = parse_line(&lines[1]) else {
            panic!()
        };
        m.insert("text".to_owned(), Value::from("DROP TABLE x"));
        let h = hash_record(&m);
        m.insert("hash".to_owned(), Value::from(h));
        lines[1] = Value::Object(m).to_string();
        let r = run(&lines);
        let p = r.problem.unwrap();
        assert_eq!((p.line, p.kind), (3, ProblemKind::BrokenLink));
        assert!(p.detail.contains("line 2"), "{}", p.detail);
    }

    #[test]
    fn a_removed_line_is_named_at_the_line_after_it() {
        let mut lines = export(&[1, 2, 3, 4], &SigningKey::generate());
        lines.remove(1);
        assert_eq!(first_bad(&lines), (2, ProblemKind::Removed));
        let mut first = export(&[1, 2, 3], &SigningKey::generate());
        first.remove(0);
        assert_eq!(first_bad(&first), (1, ProblemKind::Removed));
    }

    #[test]
    fn removed_last_lines_are_caught_by_the_seal() {
        let mut lines = export(&[1, 2, 3, 4], &SigningKey::generate());
        lines.remove(3);
        assert_eq!(first_bad(&lines), (4, ProblemKind::Truncated));
        let mut no_seal = export(&[1, 2], &SigningKey::generate());
        no_seal.pop();
        assert_eq!(first_bad(&no_seal), (3, ProblemKind::Seal));
    }

    #[test]
    fn reordered_lines_are_named() {
        let mut lines = export(&[1, 2, 3, 4], &SigningKey::generate());
        lines.swap(1, 2);
        assert_eq!(first_bad(&lines), (2, ProblemKind::OutOfOrder));
    }

    #[test]
    fn an_inserted_line_is_named() {
        let mut lines = export(&[1, 2, 3], &SigningKey::generate());
        let copy = lines[1].clone();
        lines.insert(2, copy);
        let (line, kind) = first_bad(&lines);
        assert_eq!((line, kind), (3, ProblemKind::OutOfOrder));
        let r = run(&lines);
        assert!(r.problem.unwrap().detail.contains("again"));

        let mut forged = export(&[1, 2, 3], &SigningKey::generate());
        forged.insert(1, forged[0].replace("SELECT 1", "SELECT 9"));
        assert_eq!(first_bad(&forged), (2, ProblemKind::Modified));
    }

    #[test]
    fn a_line_from_another_session_is_refused() {
        let mut lines = export(&[1, 2], &SigningKey::generate());
        lines[1] = lines[1].replace("\"s1\"", "\"s2\"");
        assert_eq!(first_bad(&lines), (2, ProblemKind::ForeignSession));
    }

    #[test]
    fn a_forged_seal_is_refused_when_the_key_is_pinned() {
        let key = SigningKey::generate();
        let lines = export(&[1, 2], &SigningKey::generate());
        let items: Vec<Item> = lines.iter().map(|l| parse_line(l)).collect();
        let r = verify(
            &items,
            &Options {
                require_seal: true,
                trusted_public_key: Some(crate::audit::seal::public_key_b64(&key)),
                ..Options::default()
            },
        );
        assert_eq!(r.problem.unwrap().kind, ProblemKind::Seal);
    }

    #[test]
    fn a_lost_event_is_a_gap_not_tampering() {
        let r = run(&export(&[1, 2, 4, 5], &SigningKey::generate()));
        assert_eq!(r.status, Status::Gaps);
        assert_eq!(
            r.gaps,
            vec![Gap {
                from: 3,
                to: 3,
                line: 3
            }]
        );
        assert!(!r.ok());
    }

    #[test]
    fn anchors_catch_truncation_and_rewrites() {
        let lines = export(&[1, 2, 3], &SigningKey::generate());
        let items: Vec<Item> = lines[..3].iter().map(|l| parse_line(l)).collect();
        let with = |a: Anchor| {
            verify(
                &items,
                &Options {
                    session_id: Some("s1".to_owned()),
                    anchors: vec![a],
                    ..Options::default()
                },
            )
        };
        let Item::Event(third) = &items[2] else {
            panic!()
        };
        let h3 = third["hash"].as_str().unwrap().to_owned();
        let ok = with(Anchor {
            seq: 3,
            hash: h3,
            source: "checkpoint 1".to_owned(),
        });
        assert!(ok.ok(), "{ok:?}");
        let cut = with(Anchor {
            seq: 5,
            hash: "x".to_owned(),
            source: "checkpoint 1".to_owned(),
        });
        assert_eq!(cut.problem.unwrap().kind, ProblemKind::Truncated);
        let rewritten = with(Anchor {
            seq: 2,
            hash: "x".to_owned(),
            source: "checkpoint 1".to_owned(),
        });
        let p = rewritten.problem.unwrap();
        assert_eq!((p.line, p.kind), (2, ProblemKind::Modified));
        let none = verify(
            &[],
            &Options {
                anchors: vec![Anchor {
                    seq: 2,
                    hash: "x".to_owned(),
                    source: "checkpoint 1".to_owned(),
                }],
                ..Options::default()
            },
        );
        assert_eq!(none.problem.unwrap().kind, ProblemKind::Truncated);
    }

    #[test]
    fn garbage_and_unknown_versions_are_refused() {
        let mut lines = export(&[1, 2], &SigningKey::generate());
        lines[1] = "not json".to_owned();
        assert_eq!(first_bad(&lines), (2, ProblemKind::Malformed));
        let mut v2 = export(&[1, 2], &SigningKey::generate());
        v2[0] = v2[0].replace("\"v\":1", "\"v\":2");
        assert_eq!(first_bad(&v2), (1, ProblemKind::UnsupportedVersion));
    }

    #[test]
    fn a_missing_end_is_lost_only_once_the_node_cannot_send_it() {
        let stale = 15_000_000;
        // Node alive, same process: the end may still come.
        assert!(!tail_lost(100, Some((1_000_000, 50)), 2_000_000, stale));
        // Silent for too long, or restarted since: lost.
        assert!(tail_lost(100, Some((1_000_000, 50)), 20_000_000, stale));
        assert!(tail_lost(100, Some((1_000_000, 500)), 2_000_000, stale));
        // No record of the node: nothing to say.
        assert!(!tail_lost(100, None, 2_000_000, stale));
    }
}

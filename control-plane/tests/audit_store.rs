#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The tamper-evident record on both store backends: events are chained at
//! ingest, the store refuses to change or remove them, checkpoints are
//! signed and chained, and tampering done behind the store's back (triggers
//! disabled, as a superuser could) is found and named by verification.

use sluice_control_plane::audit::checkpointer::{checkpoint_once, retire_once};
use sluice_control_plane::audit::online::{verify_session, verify_store};
use sluice_control_plane::audit::seal::public_key_b64;
use sluice_control_plane::audit::verify::{ProblemKind, Status};
use sluice_control_plane::store::{EventKind, SessionFilter, Store, StoredEvent};
use sluice_e2e::pg::TestDb;
use sluice_identity::SigningKey;

/// Direct SQL, behind the store's back.
enum Raw {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

impl Raw {
    async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Pg(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
            Raw::Lite(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
        }
    }

    /// What a superuser (Postgres) or the file's owner (SQLite) can do.
    async fn disable_triggers(&self) {
        match self {
            Raw::Pg(_) => {
                self.exec("ALTER TABLE session_events DISABLE TRIGGER USER")
                    .await
                    .unwrap();
            }
            Raw::Lite(_) => {
                self.exec("DROP TRIGGER session_events_no_update")
                    .await
                    .unwrap();
                self.exec("DROP TRIGGER session_events_no_delete")
                    .await
                    .unwrap();
            }
        }
    }
}

/// Keeps the database alive for the test.
#[allow(dead_code, reason = "held only for its Drop")]
enum Guard {
    _Pg(TestDb),
    _Lite(tempfile::TempDir),
}

async fn postgres() -> (Store, Raw, Guard) {
    let db = TestDb::create().await.unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    let raw = Raw::Pg(sqlx::PgPool::connect(&db.url).await.unwrap());
    (store, raw, Guard::_Pg(db))
}

async fn sqlite() -> (Store, Raw, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let raw = Raw::Lite(
        sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap(),
    );
    (store, raw, Guard::_Lite(dir))
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(#[tokio::test] async fn $name() { let (s, raw, _g) = super::postgres().await; super::$name(&s, &raw).await; })*
        }
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { let (s, raw, _g) = super::sqlite().await; super::$name(&s, &raw).await; })*
        }
    };
}

both!(
    events_are_chained_and_verify,
    the_store_refuses_to_change_or_remove_events,
    tampering_in_the_store_is_found_and_named,
    checkpoints_catch_deleted_and_truncated_sessions,
    retention_removes_only_signed_ended_sessions_under_a_tombstone,
    a_lost_event_is_a_gap,
    the_feed_resumes_in_ingest_order,
    sessions_are_found_by_who_when_and_what,
);

fn event(session: &str, seq: u64, kind: EventKind) -> StoredEvent {
    StoredEvent {
        session_id: session.to_owned(),
        seq,
        at: 1_000 + i64::try_from(seq).unwrap(),
        kind,
    }
}

fn start(session: &str) -> StoredEvent {
    event(
        session,
        1,
        EventKind::SessionStart {
            identity: "agent-1".to_owned(),
            identity_kind: "agent".to_owned(),
            groups: vec![],
            target: "demo".to_owned(),
            client_addr: "127.0.0.1:5000".to_owned(),
            tls: false,
            protocol: "postgres".to_owned(),
            token_id: "jti".to_owned(),
            application_name: "psql".to_owned(),
            node_id: "node".to_owned(),
        },
    )
}

fn statement(session: &str, seq: u64) -> StoredEvent {
    event(
        session,
        seq,
        EventKind::Statement {
            text: format!("SELECT {seq}"),
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
    )
}

/// A session of a start and statements 2..=n, stored in two batches.
async fn session(s: &Store, n: u64) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let mut first = vec![start(&id)];
    first.extend((2..=n / 2).map(|q| statement(&id, q)));
    s.append_events(&first).await.unwrap();
    let second: Vec<_> = (n / 2..=n).map(|q| statement(&id, q)).collect();
    s.append_events(&second).await.unwrap();
    id
}

fn key() -> (SigningKey, String) {
    let k = SigningKey::generate();
    let public = public_key_b64(&k);
    (k, public)
}

async fn events_are_chained_and_verify(s: &Store, _raw: &Raw) {
    let id = session(s, 6).await;
    // A resend changes nothing.
    s.append_events(&[statement(&id, 3), statement(&id, 6)])
        .await
        .unwrap();
    let records = s.session_records(&id, 0, 100).await.unwrap();
    assert_eq!(records.len(), 6);
    for pair in records.windows(2) {
        assert_eq!(pair[1].record["prev_hash"], pair[0].record["hash"]);
    }
    let (_, public) = key();
    let report = verify_session(s, &id, &public).await.unwrap();
    assert_eq!(report.status, Status::Intact, "{report:?}");
    assert_eq!((report.events, report.last_seq), (6, 6));
}

async fn the_store_refuses_to_change_or_remove_events(s: &Store, raw: &Raw) {
    let id = session(s, 3).await;
    for sql in [
        format!("UPDATE session_events SET statement = 'x' WHERE session_id = '{id}'"),
        format!("DELETE FROM session_events WHERE session_id = '{id}' AND seq = 3"),
    ] {
        let err = raw.exec(&sql).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    if let Raw::Pg(_) = raw {
        let err = raw.exec("TRUNCATE session_events").await.unwrap_err();
        assert!(err.to_string().contains("append-only"));
    }
    let (k, public) = key();
    checkpoint_once(s, &k).await.unwrap();
    let err = raw
        .exec("DELETE FROM audit_checkpoint_heads")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"));
    assert_eq!(s.session_records(&id, 0, 10).await.unwrap().len(), 3);
    assert!(verify_session(s, &id, &public).await.unwrap().ok());
}

async fn tampering_in_the_store_is_found_and_named(s: &Store, raw: &Raw) {
    let (altered, removed, column) = (
        session(s, 5).await,
        session(s, 5).await,
        session(s, 5).await,
    );
    raw.disable_triggers().await;
    let n = raw
        .exec(&format!(
            "UPDATE session_events SET payload = replace(payload, 'SELECT 3', 'SELECT 4') \
             WHERE session_id = '{altered}' AND seq = 3"
        ))
        .await
        .unwrap();
    assert_eq!(n, 1);
    raw.exec(&format!(
        "DELETE FROM session_events WHERE session_id = '{removed}' AND seq = 2"
    ))
    .await
    .unwrap();
    // The searchable copy of the text, not the payload.
    raw.exec(&format!(
        "UPDATE session_events SET statement = 'SELECT 0' WHERE session_id = '{column}' AND seq = 4"
    ))
    .await
    .unwrap();
    let (_, public) = key();
    let r = verify_session(s, &altered, &public).await.unwrap();
    let p = r.problem.clone().unwrap();
    assert_eq!((p.seq, p.kind), (Some(3), ProblemKind::Modified), "{r:?}");
    let r = verify_session(s, &removed, &public).await.unwrap();
    let p = r.problem.unwrap();
    assert_eq!((p.seq, p.kind), (Some(3), ProblemKind::Removed));
    assert!(p.detail.contains("events 2 to 2"), "{}", p.detail);
    let r = verify_session(s, &column, &public).await.unwrap();
    assert_eq!(r.problem.unwrap().seq, Some(4));
}

async fn checkpoints_catch_deleted_and_truncated_sessions(s: &Store, raw: &Raw) {
    let (k, public) = key();
    let (cut, gone, kept) = (
        session(s, 4).await,
        session(s, 4).await,
        session(s, 4).await,
    );
    let round = checkpoint_once(s, &k).await.unwrap();
    assert_eq!(round.stored, Some((1, 3)));
    // Nothing moved: no new checkpoint.
    assert_eq!(checkpoint_once(s, &k).await.unwrap().stored, None);
    s.append_events(&[statement(&kept, 5)]).await.unwrap();
    assert_eq!(checkpoint_once(s, &k).await.unwrap().stored, Some((2, 1)));
    assert!(verify_store(s, &public).await.unwrap().ok);

    raw.disable_triggers().await;
    raw.exec(&format!(
        "DELETE FROM session_events WHERE session_id = '{cut}' AND seq = 4"
    ))
    .await
    .unwrap();
    raw.exec(&format!(
        "DELETE FROM session_events WHERE session_id = '{gone}'"
    ))
    .await
    .unwrap();

    let r = verify_session(s, &cut, &public).await.unwrap();
    let p = r.problem.unwrap();
    assert_eq!(
        (p.kind, p.seq),
        (ProblemKind::Truncated, Some(4)),
        "{}",
        p.detail
    );
    let r = verify_session(s, &gone, &public).await.unwrap();
    assert_eq!(r.problem.unwrap().kind, ProblemKind::Truncated);
    assert!(verify_session(s, &kept, &public).await.unwrap().ok());

    let store = verify_store(s, &public).await.unwrap();
    assert!(!store.ok);
    let mut lost: Vec<&str> = store
        .lost_sessions
        .iter()
        .map(|l| l.session_id.as_str())
        .collect();
    lost.sort_unstable();
    let mut want = vec![cut.as_str(), gone.as_str()];
    want.sort_unstable();
    assert_eq!(lost, want);
    assert_eq!(checkpoint_once(s, &k).await.unwrap().lost.len(), 2);
    // A checkpoint signed by another key is not trusted.
    let (_, other) = key();
    assert!(
        verify_store(s, &other)
            .await
            .unwrap()
            .checkpoint_error
            .is_some()
    );
}

/// A session of `n` events followed by its end.
async fn ended_session(s: &Store, n: u64) -> String {
    let id = session(s, n).await;
    let end = event(
        &id,
        n + 1,
        EventKind::SessionEnd {
            reason: "client_closed".to_owned(),
            statements: n - 1,
            bytes_to_client: 1,
            bytes_from_client: 1,
        },
    );
    s.append_events(&[end]).await.unwrap();
    id
}

async fn retention_removes_only_signed_ended_sessions_under_a_tombstone(s: &Store, raw: &Raw) {
    let (k, public) = key();
    let (old, open) = (ended_session(s, 4).await, session(s, 4).await);
    checkpoint_once(s, &k).await.unwrap();
    // Ended, but not yet signed by any checkpoint: it must wait.
    let unsigned = ended_session(s, 3).await;
    let cutoff = 1_000_000;
    assert_eq!(retire_once(s, &k, cutoff).await.unwrap(), 1);
    assert!(s.get_session(&old).await.unwrap().is_none());
    assert!(s.get_session(&open).await.unwrap().is_some());
    assert!(s.get_session(&unsigned).await.unwrap().is_some());
    // Nothing is expected of the retired session any more.
    let report = verify_store(s, &public).await.unwrap();
    assert!(report.ok, "{report:?}");
    // The retirement is itself on record.
    let changes = s
        .list_sessions(&SessionFilter {
            identity_kind: Some("admin".to_owned()),
            limit: 50,
            ..SessionFilter::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].identity, "retention");
    let events = s.list_events(&changes[0].id, 0, 10).await.unwrap().items;
    assert!(
        matches!(&events[0].kind, EventKind::ConfigChange { actor, resource, .. } if actor == "retention" && resource == "sessions"),
        "{events:?}"
    );
    // Other sessions still cannot be deleted.
    assert!(
        raw.exec(&format!(
            "DELETE FROM session_events WHERE session_id = '{open}'"
        ))
        .await
        .is_err()
    );
    // Once signed, the late one goes too, and the store still verifies.
    checkpoint_once(s, &k).await.unwrap();
    assert_eq!(retire_once(s, &k, cutoff).await.unwrap(), 1);
    assert!(s.get_session(&unsigned).await.unwrap().is_none());
    assert_eq!(retire_once(s, &k, cutoff).await.unwrap(), 0);
    assert!(verify_store(s, &public).await.unwrap().ok);
}

async fn a_lost_event_is_a_gap(s: &Store, _raw: &Raw) {
    let id = uuid::Uuid::now_v7().to_string();
    s.append_events(&[start(&id), statement(&id, 2), statement(&id, 4)])
        .await
        .unwrap();
    // Event 3 arrives too late to join the chain: still a gap.
    s.append_events(&[statement(&id, 3)]).await.unwrap();
    let (_, public) = key();
    let r = verify_session(s, &id, &public).await.unwrap();
    assert_eq!(r.status, Status::Gaps, "{r:?}");
    assert_eq!((r.gaps[0].from, r.gaps[0].to), (3, 3));
}

async fn the_feed_resumes_in_ingest_order(s: &Store, _raw: &Raw) {
    let a = session(s, 3).await;
    let b = session(s, 2).await;
    let first = s.feed_records(0, 4, 0).await.unwrap();
    assert_eq!(first.len(), 4);
    let rest = s
        .feed_records(first.last().unwrap().position, 100, 0)
        .await
        .unwrap();
    let order: Vec<(String, u64)> = first
        .iter()
        .chain(&rest)
        .map(|r| (r.session_id.clone(), r.seq))
        .collect();
    assert_eq!(
        order,
        vec![
            (a.clone(), 1),
            (a.clone(), 2),
            (a.clone(), 3),
            (b.clone(), 1),
            (b.clone(), 2)
        ]
    );
    // Rows still settling are held back.
    assert!(s.feed_records(0, 100, 3_600_000_000).await.unwrap().len() <= 5);
}

async fn search(s: &Store, f: SessionFilter) -> Vec<String> {
    let f = SessionFilter { limit: 50, ..f };
    let page = s.list_sessions(&f).await.unwrap();
    page.items.into_iter().map(|r| r.identity).collect()
}

async fn sessions_are_found_by_who_when_and_what(s: &Store, _raw: &Raw) {
    for (who, kind, group, at, text, decision) in [
        (
            "ann",
            "person",
            "dba",
            100,
            "SELECT secret_50% FROM t",
            "allow",
        ),
        ("bot", "agent", "eng", 200, "DELETE FROM t", "deny"),
    ] {
        let id = uuid::Uuid::now_v7().to_string();
        let mut st = start(&id);
        st.at = at;
        if let EventKind::SessionStart {
            identity,
            identity_kind,
            groups,
            ..
        } = &mut st.kind
        {
            *identity = who.to_owned();
            *identity_kind = kind.to_owned();
            *groups = vec![group.to_owned(), "all".to_owned()];
        }
        let mut stmt = statement(&id, 2);
        if let EventKind::Statement {
            text: t,
            decision: d,
            ..
        } = &mut stmt.kind
        {
            *t = text.to_owned();
            *d = decision.to_owned();
        }
        s.append_events(&[st, stmt]).await.unwrap();
    }
    let some = |v: &str| Some(v.to_owned());
    let d = SessionFilter::default;
    assert_eq!(search(s, d()).await, ["bot", "ann"]);
    assert_eq!(
        search(
            s,
            SessionFilter {
                identity_kind: some("agent"),
                ..d()
            }
        )
        .await,
        ["bot"]
    );
    assert_eq!(
        search(
            s,
            SessionFilter {
                group: some("dba"),
                ..d()
            }
        )
        .await,
        ["ann"]
    );
    assert_eq!(
        search(
            s,
            SessionFilter {
                group: some("al"),
                ..d()
            }
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        search(
            s,
            SessionFilter {
                decision: some("deny"),
                ..d()
            }
        )
        .await,
        ["bot"]
    );
    assert_eq!(
        search(
            s,
            SessionFilter {
                text: some("SECRET_50%"),
                ..d()
            }
        )
        .await,
        ["ann"]
    );
    assert_eq!(
        search(
            s,
            SessionFilter {
                text: some("secre_"),
                ..d()
            }
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        search(
            s,
            SessionFilter {
                text: some("from t"),
                decision: some("allow"),
                ..d()
            }
        )
        .await,
        ["ann"]
    );
    assert_eq!(
        search(
            s,
            SessionFilter {
                started_from: Some(150),
                ..d()
            }
        )
        .await,
        ["bot"]
    );
    assert_eq!(
        search(
            s,
            SessionFilter {
                started_before: Some(150),
                ..d()
            }
        )
        .await,
        ["ann"]
    );
}

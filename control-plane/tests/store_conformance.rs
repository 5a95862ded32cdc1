#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One conformance suite, run against both store backends: Postgres (a fresh
//! database on the real server) and SQLite (a fresh file).

use sluice_control_plane::approvals::State;
use sluice_control_plane::store::{
    ApprovalEntry, EventKind, HttpSettings, IssuedTokenRecord, NewApproval, NewServiceAccount,
    NewTarget, PutMode, SessionFilter, Store, StoreError, StoredEvent, TargetLogin, Transition,
};
use sluice_e2e::pg::TestDb;

async fn postgres() -> (Store, TestDb) {
    let db = TestDb::create().await.unwrap();
    (Store::connect(&db.url).await.unwrap(), db)
}

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    (Store::connect(&url).await.unwrap(), dir)
}

/// Runs `suite` against both backends.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(#[tokio::test] async fn $name() { let (s, _db) = super::postgres().await; super::$name(&s).await; })*
        }
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { let (s, _dir) = super::sqlite().await; super::$name(&s).await; })*
        }
    };
}

conformance!(
    targets_round_trip_and_bump_the_revision,
    http_targets_keep_their_settings,
    duplicate_target_names_conflict,
    join_tokens_are_hashed_and_revocable,
    nodes_keep_their_id_across_registrations,
    events_are_idempotent_and_maintain_sessions,
    sessions_page_newest_first,
    event_pages_follow_sequence,
    bad_cursors_are_refused,
    policies_keep_every_version,
    large_batches_span_chunks_and_resends_overlap,
    service_accounts_authenticate_and_disabling_revokes_their_tokens,
    api_keys_are_found_by_secret_until_revoked,
    secrets_are_rewritten_all_or_nothing,
    approvals_bind_one_statement_and_keep_their_history,
    lapsed_approvals_and_used_email_links,
);

fn target(name: &str) -> NewTarget {
    NewTarget {
        name: name.to_owned(),
        kind: "postgres".to_owned(),
        host: "127.0.0.1".to_owned(),
        port: 5432,
        database: "demo".to_owned(),
        username: "gw".to_owned(),
        secret: "v1:0011aabb:c2VhbGVk".to_owned(),
        tls_mode: "disable".to_owned(),
        logins: vec![TargetLogin {
            group: "agents".to_owned(),
            username: "agent_ro".to_owned(),
            secret: "ref:env:AGENT_PW".to_owned(),
        }],
        http: HttpSettings::default(),
    }
}

async fn http_targets_keep_their_settings(s: &Store) {
    let mut t = target("crm");
    t.kind = "http".to_owned();
    t.logins.clear();
    t.http = HttpSettings {
        base_url: "https://crm.internal/v1".to_owned(),
        auth: "header:X-Api-Key".to_owned(),
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned(),
    };
    let created = s.create_target(t.clone()).await.unwrap();
    let got = s.get_target("crm").await.unwrap().unwrap();
    assert_eq!(got, created);
    assert_eq!(got.http, t.http);
    assert_eq!(got.kind, "http");
    let pg = s.create_target(target("pg")).await.unwrap();
    assert_eq!(
        s.get_target("pg").await.unwrap().unwrap().http,
        HttpSettings::default(),
        "Postgres targets carry no HTTP settings"
    );
    assert_eq!(pg.http, HttpSettings::default());
}

async fn targets_round_trip_and_bump_the_revision(s: &Store) {
    let r0 = s.revision().await.unwrap();
    let t = s.create_target(target("demo")).await.unwrap();
    assert!(s.revision().await.unwrap() > r0);
    let got = s.get_target("demo").await.unwrap().unwrap();
    assert_eq!(got, t);
    assert_eq!(got.secret, "v1:0011aabb:c2VhbGVk");
    assert_eq!(got.logins[0].username, "agent_ro");
    assert_eq!(s.list_targets().await.unwrap()[0].logins, got.logins);
    assert!(
        !format!("{got:?}").contains("c2VhbGVk") && !format!("{got:?}").contains("AGENT_PW"),
        "Debug must not print credentials"
    );
    s.create_target(target("analytics")).await.unwrap();
    let names: Vec<_> = s
        .list_targets()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["analytics", "demo"]);
    let r1 = s.revision().await.unwrap();
    assert!(s.delete_target("demo").await.unwrap());
    assert!(!s.delete_target("demo").await.unwrap());
    assert!(s.revision().await.unwrap() > r1);
    assert!(s.get_target("demo").await.unwrap().is_none());
}

async fn duplicate_target_names_conflict(s: &Store) {
    s.create_target(target("demo")).await.unwrap();
    let err = s.create_target(target("demo")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

async fn join_tokens_are_hashed_and_revocable(s: &Store) {
    let created = s.create_join_token("edge-1").await.unwrap();
    assert!(created.token.starts_with("sjt_"));
    let found = s.check_join_token(&created.token).await.unwrap().unwrap();
    assert_eq!(found.id, created.record.id);
    assert!(s.check_join_token("sjt_wrong").await.unwrap().is_none());
    // The same operator-chosen secret stored twice is one token.
    let a = s.insert_join_token("boot", "sjt_fixed").await.unwrap();
    let b = s.insert_join_token("boot", "sjt_fixed").await.unwrap();
    assert_eq!(a.id, b.id);
    assert!(s.revoke_join_token(&created.record.id).await.unwrap());
    assert!(!s.revoke_join_token(&created.record.id).await.unwrap());
    assert!(s.check_join_token(&created.token).await.unwrap().is_none());
    let listed = s.list_join_tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|t| t.revoked_at.is_some()));
}

async fn nodes_keep_their_id_across_registrations(s: &Store) {
    let jt = s.insert_join_token("boot", "sjt_x").await.unwrap();
    let a = s
        .register_node("edge-1", "0.1.0", &["0.0.0.0:6432".into()], &jt.id)
        .await
        .unwrap();
    let b = s
        .register_node("edge-1", "0.2.0", &[], &jt.id)
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(b.version, "0.2.0");
    assert_eq!(a.listen_addrs, ["0.0.0.0:6432"]);
    s.register_node("edge-2", "0.1.0", &[], &jt.id)
        .await
        .unwrap();
    assert_eq!(s.list_nodes().await.unwrap().len(), 2);
    s.touch_node(&a.id).await.unwrap();
    assert!(s.get_node(&a.id).await.unwrap().unwrap().last_seen_at >= b.last_seen_at);
}

fn start(session: &str, at: i64, identity: &str) -> StoredEvent {
    StoredEvent {
        session_id: session.to_owned(),
        seq: 1,
        at,
        kind: EventKind::SessionStart {
            identity: identity.to_owned(),
            identity_kind: "agent".to_owned(),
            groups: vec!["agents".to_owned()],
            target: "demo".to_owned(),
            client_addr: "127.0.0.1:5000".to_owned(),
            tls: true,
            protocol: "postgres".to_owned(),
            token_id: "jti".to_owned(),
            application_name: "psql".to_owned(),
            node_id: "node".to_owned(),
        },
    }
}

fn statement(session: &str, seq: u64, text: &str) -> StoredEvent {
    StoredEvent {
        session_id: session.to_owned(),
        seq,
        at: 10 + i64::try_from(seq).unwrap(),
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

fn sid() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn events_are_idempotent_and_maintain_sessions(s: &Store) {
    let id = sid();
    let batch = vec![
        start(&id, 1, "agent-1"),
        statement(&id, 2, "SELECT 1"),
        statement(&id, 3, "SELECT 2"),
    ];
    s.append_events(&batch).await.unwrap();
    // A resend of the same events changes nothing.
    s.append_events(&batch).await.unwrap();
    let end = StoredEvent {
        session_id: id.clone(),
        seq: 4,
        at: 99,
        kind: EventKind::SessionEnd {
            reason: "client_closed".to_owned(),
            statements: 2,
            bytes_to_client: 10,
            bytes_from_client: 20,
        },
    };
    s.append_events(&[end]).await.unwrap();
    let row = s.get_session(&id).await.unwrap().unwrap();
    assert_eq!(row.identity, "agent-1");
    assert_eq!(row.groups, ["agents"]);
    assert!(row.tls);
    assert_eq!(row.statements, 2, "resent statements are not counted twice");
    assert_eq!(row.ended_at, Some(99));
    assert_eq!(row.end_reason.as_deref(), Some("client_closed"));
    let events = s.list_events(&id, 0, 100).await.unwrap().items;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(events[1], batch[1]);
    assert!(s.get_session(&sid()).await.unwrap().is_none());
}

async fn sessions_page_newest_first(s: &Store) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let id = sid();
        let who = if i % 2 == 0 { "even" } else { "odd" };
        // Two sessions share a start time: the id breaks the tie.
        s.append_events(&[start(&id, 100 + i64::from(i / 2 * 2), who)])
            .await
            .unwrap();
        ids.push(id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list_sessions(&SessionFilter {
                limit: 3,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| (r.started_at, r.id.clone())));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "every session exactly once");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
    let odd = s
        .list_sessions(&SessionFilter {
            identity: Some("odd".into()),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 3);
    assert!(odd.items.iter().all(|r| r.identity == "odd"));
}

async fn event_pages_follow_sequence(s: &Store) {
    let id = sid();
    let mut batch = vec![start(&id, 1, "a")];
    batch.extend((2..=11).map(|q| statement(&id, q, &format!("SELECT {q}"))));
    s.append_events(&batch).await.unwrap();
    let first = s.list_events(&id, 0, 4).await.unwrap();
    assert_eq!(first.items.len(), 4);
    let after: u64 = first.next_cursor.unwrap().parse().unwrap();
    assert_eq!(after, 4);
    let rest = s.list_events(&id, after, 100).await.unwrap();
    assert_eq!(rest.items.first().unwrap().seq, 5);
    assert_eq!(rest.items.len(), 7);
    assert!(rest.next_cursor.is_none());
}

async fn bad_cursors_are_refused(s: &Store) {
    let err = s
        .list_sessions(&SessionFilter {
            limit: 5,
            cursor: Some("%%%".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Cursor));
}

async fn policies_keep_every_version(s: &Store) {
    let r0 = s.revision().await.unwrap();
    let v1 = s
        .put_policy("p", "name: p # one", "alice", PutMode::Create)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v1.version, 1);
    assert!(s.revision().await.unwrap() > r0, "nodes must hear of it");
    assert!(
        s.put_policy("p", "x", "alice", PutMode::Create)
            .await
            .unwrap()
            .is_none(),
        "create refuses a taken name"
    );
    assert!(
        s.put_policy("q", "x", "alice", PutMode::Replace)
            .await
            .unwrap()
            .is_none(),
        "replace needs an existing one"
    );
    let v2 = s
        .put_policy("p", "name: p # two", "bob", PutMode::Replace)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.created_at, v1.created_at);
    assert_eq!(
        s.get_policy("p").await.unwrap().unwrap().source,
        "name: p # two"
    );
    assert!(s.delete_policy("p", "carol").await.unwrap());
    assert!(!s.delete_policy("p", "carol").await.unwrap());
    assert!(s.get_policy("p").await.unwrap().is_none());
    let v4 = s
        .put_policy("p", "name: p # back", "dan", PutMode::Upsert)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        v4.version, 4,
        "versions are never reused, not even after a delete"
    );
    let history = s.policy_versions("p").await.unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|v| (v.version, v.author.as_str(), v.source.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "alice", true),
            (2, "bob", true),
            (3, "carol", false),
            (4, "dan", true)
        ]
    );
    assert_eq!(s.list_policies().await.unwrap().len(), 1);
}

async fn large_batches_span_chunks_and_resends_overlap(s: &Store) {
    let id = sid();
    let mut batch = vec![start(&id, 1, "bulk")];
    batch.extend((2..=1201).map(|q| statement(&id, q, "SELECT 1")));
    s.append_events(&batch).await.unwrap();
    // A resend that overlaps what is stored and adds more.
    let more: Vec<_> = (1100..=1300)
        .map(|q| statement(&id, q, "SELECT 2"))
        .collect();
    s.append_events(&more).await.unwrap();
    let row = s.get_session(&id).await.unwrap().unwrap();
    assert_eq!(row.statements, 1299, "1200 statements, then 99 new ones");
    let all = s.list_events(&id, 0, 1000).await.unwrap();
    assert_eq!(all.items.len(), 1000);
    let rest = s.list_events(&id, 1000, 1000).await.unwrap();
    assert_eq!(rest.items.last().unwrap().seq, 1300);
    let stored_1100 = s.list_events(&id, 1099, 1).await.unwrap().items.remove(0);
    assert!(
        matches!(&stored_1100.kind, EventKind::Statement { text, .. } if text == "SELECT 1"),
        "the first write wins"
    );
}

fn issued(id: &str, account: &str, expires_at: i64) -> IssuedTokenRecord {
    IssuedTokenRecord {
        id: id.to_owned(),
        subject: "devin".to_owned(),
        kind: "agent".to_owned(),
        account_id: Some(account.to_owned()),
        issued_by: "alice".to_owned(),
        issued_at: 1,
        expires_at,
        revoked_at: None,
    }
}

async fn service_accounts_authenticate_and_disabling_revokes_their_tokens(s: &Store) {
    let created = s
        .create_service_account(NewServiceAccount {
            name: "devin".to_owned(),
            kind: "agent".to_owned(),
            description: String::new(),
            owner: "alice".to_owned(),
            groups: vec!["agents".to_owned()],
        })
        .await
        .unwrap();
    let a = &created.account;
    let ok = s
        .authenticate_client(&a.client_id, &created.client_secret)
        .await
        .unwrap();
    assert_eq!(
        ok.as_ref().map(|x| x.groups.clone()),
        Some(vec!["agents".to_owned()])
    );
    assert!(
        s.authenticate_client(&a.client_id, "scs_wrong")
            .await
            .unwrap()
            .is_none()
    );
    let far = i64::MAX / 2;
    s.record_issued_token(&issued("t1", &a.id, far))
        .await
        .unwrap();
    s.record_issued_token(&issued("t2", &a.id, far))
        .await
        .unwrap();
    s.record_issued_token(&issued("t0", &a.id, 2))
        .await
        .unwrap();
    assert!(s.revoke_issued_token(&a.id, "t0").await.unwrap());
    assert!(
        s.revoked_token_ids().await.unwrap().is_empty(),
        "expired ones drop out"
    );
    assert!(s.revoke_issued_token(&a.id, "t1").await.unwrap());
    assert!(
        !s.revoke_issued_token(&a.id, "t1").await.unwrap(),
        "only once"
    );
    assert!(
        !s.revoke_issued_token("other", "t2").await.unwrap(),
        "only its own"
    );
    assert_eq!(s.revoked_token_ids().await.unwrap(), ["t1"]);
    let r0 = s.revision().await.unwrap();
    assert!(s.disable_service_account("devin").await.unwrap());
    assert!(s.revision().await.unwrap() > r0);
    assert_eq!(s.revoked_token_ids().await.unwrap(), ["t1", "t2"]);
    assert!(
        s.authenticate_client(&a.client_id, &created.client_secret)
            .await
            .unwrap()
            .is_none(),
        "a disabled account does not authenticate"
    );
    assert_eq!(s.list_issued_tokens(&a.id).await.unwrap().len(), 3);
}

async fn api_keys_are_found_by_secret_until_revoked(s: &Store) {
    let k = s.create_api_key("siem", "auditor", "alice").await.unwrap();
    assert!(k.key.starts_with("slk_") && k.key.starts_with(&k.record.prefix));
    assert_eq!(
        s.check_api_key(&k.key).await.unwrap(),
        Some(k.record.clone())
    );
    assert!(s.check_api_key("slk_guess").await.unwrap().is_none());
    assert!(s.revoke_api_key(&k.record.id).await.unwrap());
    assert!(s.check_api_key(&k.key).await.unwrap().is_none());
    assert!(s.list_api_keys().await.unwrap()[0].revoked_at.is_some());
}

async fn secrets_are_rewritten_all_or_nothing(s: &Store) {
    s.create_target(target("a")).await.unwrap();
    s.create_target(target("b")).await.unwrap();
    // A failure on any value leaves every value as it was.
    let failed = s
        .rewrite_secrets(|t, _| {
            if t == "b" {
                Err("no")
            } else {
                Ok(Some("v1:new:x".to_owned()))
            }
        })
        .await
        .unwrap();
    assert_eq!(failed, Err("no"));
    assert_eq!(
        s.get_target("a").await.unwrap().unwrap().secret,
        "v1:0011aabb:c2VhbGVk"
    );
    let n = s
        .rewrite_secrets(|_, stored| {
            Ok::<_, ()>(stored.starts_with("v1:").then(|| "v1:new:x".to_owned()))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 2, "both targets' own secrets; the ref logins are kept");
    let a = s.get_target("a").await.unwrap().unwrap();
    assert_eq!(a.secret, "v1:new:x");
    assert_eq!(a.logins[0].secret, "ref:env:AGENT_PW");
    assert!(s.delete_target("a").await.unwrap());
    assert_eq!(s.list_targets().await.unwrap().len(), 1);
}

fn new_approval(hash: &str) -> NewApproval {
    NewApproval {
        mode: "answer".to_owned(),
        identity: "agent".to_owned(),
        target: "demo".to_owned(),
        session_id: "s1".to_owned(),
        node_id: "n1".to_owned(),
        node_request_id: "r1".to_owned(),
        statement: "UPDATE orders SET status = 'refunded' WHERE id = 2".to_owned(),
        statement_hash: hash.to_owned(),
        policy: "reference".to_owned(),
        rule: "writes-need-approval".to_owned(),
        reason: "writes need approval".to_owned(),
        approvers: vec!["dba".to_owned()],
        required: 2,
        ttl_us: 60_000_000,
    }
}

fn entry(actor: &str, action: &str) -> ApprovalEntry {
    ApprovalEntry {
        at: sluice_common::unix_us(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        channel: "api".to_owned(),
        reason: String::new(),
    }
}

async fn lapsed_approvals_and_used_email_links(s: &Store) {
    let a = s.create_approval(new_approval("aa")).await.unwrap();
    assert!(
        s.lapsed_approvals(a.expires_at - 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let lapsed = s.lapsed_approvals(a.expires_at, 10).await.unwrap();
    assert_eq!(
        lapsed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        [a.id.as_str()]
    );
    let t = sluice_control_plane::store::Transition {
        version: a.version,
        state: State::Denied,
        expires_at: None,
        entry: entry("bob", "deny"),
    };
    assert!(s.transition_approval(&a.id, &t).await.unwrap());
    assert!(
        s.lapsed_approvals(i64::MAX, 10).await.unwrap().is_empty(),
        "only pending ones"
    );

    assert!(!s.email_link_used("l1").await.unwrap());
    assert!(s.use_email_link("l1", &a.id, 1).await.unwrap());
    assert!(s.email_link_used("l1").await.unwrap());
    assert!(
        !s.use_email_link("l1", &a.id, 2).await.unwrap(),
        "used once"
    );
    assert!(!s.email_link_used("l2").await.unwrap());
}

async fn approvals_bind_one_statement_and_keep_their_history(s: &Store) {
    let now = sluice_common::unix_us();
    let a = s.create_approval(new_approval("aa")).await.unwrap();
    assert_eq!(a.state, State::Pending);
    assert_eq!(a.approvers, vec!["dba".to_owned()]);
    assert_eq!(a.required, 2);
    assert!(a.expires_at > now);
    // Found by exactly its binding, and by nothing else.
    let found = s
        .find_open_approval("agent", "demo", "aa", now)
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.id), Some(a.id.clone()));
    assert!(
        s.find_open_approval("agent", "demo", "bb", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_open_approval("other", "demo", "aa", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_open_approval("agent", "prod", "aa", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_open_approval("agent", "demo", "aa", a.expires_at)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.find_node_approval("n1", "r1")
            .await
            .unwrap()
            .map(|f| f.id),
        Some(a.id.clone())
    );
    // Not approved: nothing to consume.
    assert!(!s.consume_approval(&a.id, now).await.unwrap());
    // A stale version loses; the current one wins.
    let vote = Transition {
        version: a.version,
        state: State::Pending,
        expires_at: None,
        entry: entry("alice", "approve"),
    };
    assert!(s.transition_approval(&a.id, &vote).await.unwrap());
    assert!(
        !s.transition_approval(&a.id, &vote).await.unwrap(),
        "a stale version must lose"
    );
    let a1 = s.get_approval(&a.id).await.unwrap().unwrap();
    let approve = Transition {
        version: a1.version,
        state: State::Approved,
        expires_at: Some(now + 120_000_000),
        entry: entry("bob", "approve"),
    };
    assert!(s.transition_approval(&a.id, &approve).await.unwrap());
    let a2 = s.get_approval(&a.id).await.unwrap().unwrap();
    assert_eq!(a2.state, State::Approved);
    assert_eq!(a2.expires_at, now + 120_000_000);
    assert!(a2.decided_at.is_some());
    let history = s.approval_history(&a.id).await.unwrap();
    let who: Vec<_> = history
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(who, vec![("alice", "approve"), ("bob", "approve")]);
    // Approved and unused: found first, consumed once.
    let pending_twin = s.create_approval(new_approval("aa")).await.unwrap();
    let found = s
        .find_open_approval("agent", "demo", "aa", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.id, a.id,
        "an approved request is preferred over a pending one"
    );
    assert!(s.consume_approval(&a.id, now).await.unwrap());
    assert!(
        !s.consume_approval(&a.id, now).await.unwrap(),
        "an approval runs once"
    );
    let found = s
        .find_open_approval("agent", "demo", "aa", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, pending_twin.id);
    // Listing by state.
    let pending = s.list_approvals(Some(State::Pending), 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![pending_twin.id.clone()]
    );
    assert_eq!(s.list_approvals(None, 10).await.unwrap().len(), 2);
}

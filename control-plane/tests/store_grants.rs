#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The access grant store, run against both backends: Postgres (a fresh
//! database on the real server) and SQLite (a fresh file).

use sluice_control_plane::grants::GrantState;
use sluice_control_plane::store::{GrantEntry, GrantFilter, GrantTransition, NewGrant, Store};
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

/// Runs each suite against both backends.
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
    grants_keep_their_request_and_history,
    activation_and_revocation_reach_snapshots,
    lapsed_grants_are_found_for_the_sweeper,
);

fn new_grant(identity: &str, ttl_us: i64) -> NewGrant {
    NewGrant {
        identity: identity.to_owned(),
        target: "demo".to_owned(),
        scope: "writes-need-approval".to_owned(),
        reason: "refund batch".to_owned(),
        policy: "reference".to_owned(),
        duration_us: 3_600_000_000,
        approvers: vec!["dba".to_owned()],
        required: 2,
        ttl_us,
    }
}

fn entry(actor: &str, action: &str, at: i64) -> GrantEntry {
    GrantEntry {
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        channel: "api".to_owned(),
        reason: format!("{actor} {action}"),
    }
}

fn to(state: GrantState, version: i64, expires_at: Option<i64>, e: GrantEntry) -> GrantTransition {
    GrantTransition {
        version,
        state,
        expires_at,
        entry: e,
    }
}

async fn grants_keep_their_request_and_history(s: &Store) {
    let g = s
        .create_grant(new_grant("agent", 60_000_000))
        .await
        .unwrap();
    assert_eq!(g.state, GrantState::Pending);
    assert_eq!(g.version, 1);
    assert_eq!(g.approvers, vec!["dba".to_owned()]);
    assert_eq!(g.required, 2);
    assert_eq!(g.scope, "writes-need-approval");
    assert_eq!(g.request_expires_at, g.created_at + 60_000_000);
    assert!(g.expires_at.is_none());
    assert_eq!(s.get_grant(&g.id).await.unwrap().unwrap(), g);
    assert!(s.get_grant("nope").await.unwrap().is_none());

    // A first vote keeps it pending; a stale version is refused.
    let t = to(
        GrantState::Pending,
        1,
        None,
        entry("alice", "approve", g.created_at + 1),
    );
    assert!(s.transition_grant(&g.id, &t).await.unwrap());
    assert!(
        !s.transition_grant(&g.id, &t).await.unwrap(),
        "stale version"
    );
    let t = to(
        GrantState::Denied,
        2,
        None,
        entry("bob", "deny", g.created_at + 2),
    );
    assert!(s.transition_grant(&g.id, &t).await.unwrap());
    let got = s.get_grant(&g.id).await.unwrap().unwrap();
    assert_eq!(got.state, GrantState::Denied);
    assert_eq!(got.version, 3);
    assert_eq!(got.decided_at, Some(g.created_at + 2));
    let history = s.grant_history(&g.id).await.unwrap();
    let actions: Vec<(&str, &str)> = history
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(actions, [("alice", "approve"), ("bob", "deny")]);

    // Listing: newest first, by state and by identity.
    let other = s.create_grant(new_grant("bot", 60_000_000)).await.unwrap();
    let all = s
        .list_grants(&GrantFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, other.id);
    let pending = s
        .list_grants(&GrantFilter {
            state: Some(GrantState::Pending),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, other.id);
    let mine = s
        .list_grants(&GrantFilter {
            identity: Some("agent".to_owned()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, g.id);
}

async fn activation_and_revocation_reach_snapshots(s: &Store) {
    let g = s
        .create_grant(new_grant("agent", 60_000_000))
        .await
        .unwrap();
    let now = g.created_at + 10;
    let r0 = s.revision().await.unwrap();
    assert!(s.live_grants(now).await.unwrap().is_empty());
    let until = now + 1_000_000;
    let t = to(
        GrantState::Active,
        1,
        Some(until),
        entry("alice", "approve", now),
    );
    assert!(s.transition_grant(&g.id, &t).await.unwrap());
    let r1 = s.revision().await.unwrap();
    assert!(r1 > r0, "activation bumps the revision");
    let live = s.live_grants(now).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].expires_at, Some(until));
    assert!(
        s.live_grants(until).await.unwrap().is_empty(),
        "past its window it is not carried"
    );

    let t = to(
        GrantState::Revoked,
        2,
        None,
        entry("agent", "revoke", now + 5),
    );
    assert!(s.transition_grant(&g.id, &t).await.unwrap());
    assert!(s.revision().await.unwrap() > r1, "revocation bumps it too");
    assert!(s.live_grants(now).await.unwrap().is_empty());
    let got = s.get_grant(&g.id).await.unwrap().unwrap();
    assert_eq!(got.state, GrantState::Revoked);
    assert_eq!(got.ended_at, Some(now + 5));
    assert_eq!(
        got.expires_at,
        Some(until),
        "the window is kept for the record"
    );
}

async fn lapsed_grants_are_found_for_the_sweeper(s: &Store) {
    let undecided = s.create_grant(new_grant("agent", 1_000)).await.unwrap();
    let active = s.create_grant(new_grant("bot", 60_000_000)).await.unwrap();
    let now = active.created_at + 10;
    let t = to(
        GrantState::Active,
        1,
        Some(now + 10_000_000),
        entry("alice", "approve", now),
    );
    assert!(s.transition_grant(&active.id, &t).await.unwrap());

    let early = undecided.created_at + 999;
    assert!(s.lapsed_grants(early, 10).await.unwrap().is_empty());
    let later = now + 20_000_000;
    let lapsed: Vec<String> = s
        .lapsed_grants(later, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(lapsed, [undecided.id.clone(), active.id.clone()]);
    let t = to(
        GrantState::Expired,
        1,
        None,
        entry("sluice", "expire", later),
    );
    assert!(s.transition_grant(&undecided.id, &t).await.unwrap());
    let left = s.lapsed_grants(later, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, active.id);
}

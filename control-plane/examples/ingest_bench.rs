#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
//! Audit ingest benchmark: `NODES` simulated nodes append chained events
//! to one store at once, each in batches of `BATCH` events spread over its
//! own open sessions, as a node's audit stream delivers them. Then it times
//! reading one large session a page at a time (the session page) and
//! exporting it as JSONL (every record formatted, as the export endpoint
//! streams it), and verifies it.
//!
//!     cargo run --release -p sluice-control-plane --example ingest_bench -- \
//!         STORE_URL [EVENTS_TOTAL] [NODES] [BATCH] [SESSIONS_PER_NODE] [BIG_SESSION_EVENTS]
//!
//! bench/ingest.sh runs it against a fresh Postgres database and SQLite file.

use std::time::Instant;

use sluice_control_plane::audit::export::Format;
use sluice_control_plane::audit::verify::{Item, Options, verify};
use sluice_control_plane::store::{EventKind, Store, StoredEvent};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map_or(default, |s| s.parse().expect("a number"))
}

fn statement(session: &str, seq: u64) -> StoredEvent {
    StoredEvent {
        session_id: session.to_owned(),
        seq,
        at: 1_700_000_000_000_000 + i64::try_from(seq).unwrap() * 1_000,
        kind: EventKind::Statement {
            text: format!("SELECT abalance FROM pgbench_accounts WHERE aid = {seq}"),
            decision: "allow".to_owned(),
            policy: "observe".to_owned(),
            rule: "all".to_owned(),
            reason: String::new(),
            kinds: vec!["select".to_owned()],
            protocol: "simple".to_owned(),
            duration_us: 80,
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

/// One node: `total` events over `sessions` sessions, `batch` at a time,
/// sessions interleaved as concurrent clients would be.
async fn node(store: Store, total: u64, batch: u64, sessions: u64) {
    let ids: Vec<String> = (0..sessions)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut next = vec![1_u64; ids.len()];
    let mut sent = 0;
    while sent < total {
        let n = batch.min(total - sent);
        let events: Vec<StoredEvent> = (0..n)
            .map(|i| {
                let s = usize::try_from(i % sessions).unwrap();
                let e = statement(&ids[s], next[s]);
                next[s] += 1;
                e
            })
            .collect();
        store.append_events(&events).await.unwrap();
        sent += n;
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).expect("STORE_URL");
    let total = arg(2, 400_000);
    let nodes = arg(3, 8);
    let batch = arg(4, 500);
    let sessions = arg(5, 32);
    let big = arg(6, 100_000);
    let store = Store::connect(&url).await.unwrap();

    let started = Instant::now();
    let tasks: Vec<_> = (0..nodes)
        .map(|_| tokio::spawn(node(store.clone(), total / nodes, batch, sessions)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let stored = (total / nodes) * nodes;
    println!(
        "ingest: {stored} events from {nodes} nodes (batches of {batch}, {sessions} sessions each) in {secs:.2} s = {:.0} events/s",
        stored as f64 / secs
    );

    let id = uuid::Uuid::now_v7().to_string();
    let events: Vec<_> = (1..=big).map(|q| statement(&id, q)).collect();
    for chunk in events.chunks(5_000) {
        store.append_events(chunk).await.unwrap();
    }

    let t = Instant::now();
    let page = store.list_events(&id, 50_000, 100).await.unwrap();
    println!(
        "session page: 100 events from the middle of a {big}-event session in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(page.items.len(), 100);

    let t = Instant::now();
    let mut bytes = 0;
    let mut items = Vec::with_capacity(usize::try_from(big).unwrap());
    let mut after = 0;
    loop {
        let page = store.session_records(&id, after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            bytes += Format::Jsonl.line(&r.record).len();
        }
        items.extend(page.into_iter().map(|r| Item::Event(r.record)));
    }
    println!(
        "export: {big} events as JSONL ({:.1} MB) in {:.2} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let report = verify(&items, &Options::default());
    assert!(report.ok(), "{:?}", report.problem);
    println!("verify: {big} events in {:.2} s", t.elapsed().as_secs_f64());
}

//! Result masking live through the proxy, with the reference policy: every
//! case of the masking corpus over the simple and the extended protocol,
//! checking that no byte received carries any form of a seed secret; masks
//! as the policy states them; binary results; errors that would quote a
//! masked value; views over masked tables, made before the gateway started
//! or while it runs; and a million-row result streamed to a slow reader with
//! the node's memory bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use sluice_e2e::gateway::Gateway;
use sluice_e2e::wire::{Msg, Wire, message};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

async fn reference() -> Gateway {
    let policy = repo("examples/policies/reference.yaml");
    Gateway::seeded(&["--policy", policy.to_str().unwrap()])
        .await
        .unwrap()
}

/// Sensitive values of seed.sql, by kind (as in corpus-check).
const SECRETS: [(&str, &[&str]); 7] = [
    (
        "email",
        &[
            "alice.wonder@example.com",
            "bruno.keller@example.org",
            "chen.yu@example.net",
            "dana.ortiz@example.com",
        ],
    ),
    (
        "phone",
        &["+1-202-555-0143", "+41-44-555-0199", "+86-10-5550-1234"],
    ),
    (
        "ssn",
        &["123-45-6789", "987-65-4320", "555-12-3434", "222-33-4444"],
    ),
    (
        "card",
        &[
            "4111111111111111",
            "5500005555555559",
            "340000000000009",
            "6011000990139424",
        ],
    ),
    (
        "api_key",
        &[
            "sk_live_51HxQeZ2eZvKYlo2CqTmR8wPv",
            "sk_live_51JkWq7Lm3NbVc9XpRt2YuIo",
            "sk_live_51PzXc8Vb6Nm2Lk4Jh5Gf3Ds",
            "sk_live_51TyUi0Op9Iu8Yt7Re6Wq5Ea",
        ],
    ),
    (
        "secret",
        &[
            "whsec_Qm9vYmFyQmF6UXV4MTIzNDU2Nzg5",
            "Tr0ub4dor&3-horse-battery",
        ],
    ),
    (
        "detected",
        &[
            "bob.backup@corpmail.example",
            "AKIAZ7QX4EXAMPLE9PLM",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaGVuIn0.c2lnbmF0dXJlMTIz",
        ],
    ),
];

fn md5_hex(v: &str) -> String {
    // md5 through the database is not at hand here: compute it with the
    // small pure implementation below.
    md5::hex(v.as_bytes())
}

/// Every form that would reveal a secret (port of corpus-check's).
fn forbidden() -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for (kind, values) in SECRETS {
        for v in values {
            let rev = |s: &str| s.chars().rev().collect::<String>();
            let bare: String = v
                .chars()
                .filter(|c| !matches!(c, '-' | '+' | ' '))
                .collect();
            let mut forms = vec![
                (*v).to_owned(),
                v.to_uppercase(),
                v.to_lowercase(),
                rev(v),
                bare.clone(),
                rev(&bare),
                base64::engine::general_purpose::STANDARD
                    .encode(v)
                    .trim_end_matches('=')
                    .to_owned(),
                md5_hex(v),
                v.bytes().map(|b| format!("{b:02x}")).collect(),
            ];
            if matches!(kind, "email" | "detected") && v.contains('@') {
                forms.push(v.split('@').next().unwrap().to_owned());
            }
            if kind == "card" {
                forms.push(v[..12].to_owned());
            }
            if kind == "api_key" {
                forms.push(v["sk_live_".len()..].to_owned());
            }
            if kind == "phone" {
                forms.push(bare[..bare.len() - 4].to_owned());
            }
            out.extend(forms.into_iter().filter(|f| f.len() >= 6));
        }
    }
    out.into_iter().collect()
}

/// Every byte of every message, as text.
fn text(msgs: &[Msg]) -> String {
    let mut all = Vec::new();
    for m in msgs {
        all.push(m.tag);
        all.extend_from_slice(&m.body);
    }
    String::from_utf8_lossy(&all).into_owned()
}

fn error_of(msgs: &[Msg]) -> Option<(String, String)> {
    msgs.iter().find(|m| m.tag == b'E').map(|m| {
        let f = m.fields();
        (
            f.get(&b'C').cloned().unwrap_or_default(),
            f.get(&b'M').cloned().unwrap_or_default(),
        )
    })
}

/// Parse, Bind (text parameters, `format` for all results), Describe
/// portal, Execute, Sync.
async fn extended(w: &mut Wire, sql: &str, params: &[&str], format: i16) -> Vec<Msg> {
    let mut parse = vec![0u8];
    parse.extend_from_slice(sql.as_bytes());
    parse.push(0);
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut bind = vec![0u8, 0u8];
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        bind.extend_from_slice(&(p.len() as i32).to_be_bytes());
        bind.extend_from_slice(p.as_bytes());
    }
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&format.to_be_bytes());
    let mut bytes = message(b'P', &parse);
    bytes.extend(message(b'B', &bind));
    bytes.extend(message(b'D', b"P\0"));
    let mut exec = vec![0u8];
    exec.extend_from_slice(&0i32.to_be_bytes());
    bytes.extend(message(b'E', &exec));
    bytes.extend(message(b'S', b""));
    w.send(&bytes).await.unwrap();
    w.until_ready(Duration::from_secs(60)).await.unwrap()
}

#[tokio::test]
async fn the_masking_corpus_leaks_nothing_over_either_protocol() {
    let gw = reference().await;
    let token = gw.ready().agent_token.clone();
    let mut s = Wire::login(gw.addr(), &token, "demo", "e2e-masking")
        .await
        .unwrap();
    let forbidden = forbidden();
    let corpus = std::fs::read_to_string(repo("tests/corpus/masking.jsonl")).unwrap();
    let mut cases = 0;
    let mut failures = Vec::new();
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = case["id"].as_str().unwrap();
        let sql = case["sql"].as_str().unwrap();
        let params: Vec<&str> = case["params"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
            .unwrap_or_default();
        let runs = [
            (
                "simple",
                if params.is_empty() {
                    Some(s.wire.simple(sql).await.unwrap())
                } else {
                    None
                },
            ),
            (
                "extended",
                Some(extended(&mut s.wire, sql, &params, 0).await),
            ),
            (
                "extended-binary",
                Some(extended(&mut s.wire, sql, &params, 1).await),
            ),
        ];
        for (protocol, msgs) in runs {
            let Some(msgs) = msgs else { continue };
            let got = text(&msgs);
            match case["expect"].as_str().unwrap() {
                "visible" => {
                    if let Some(e) = error_of(&msgs) {
                        failures.push(format!("{id} {protocol}: refused {e:?}"));
                    }
                    if protocol != "extended-binary" {
                        for want in case["must_contain"].as_array().unwrap() {
                            let want = want.as_str().unwrap();
                            if !got.contains(want) {
                                failures.push(format!("{id} {protocol}: missing {want:?}"));
                            }
                        }
                    }
                }
                _ => {
                    let leaked: Vec<&String> = forbidden
                        .iter()
                        .filter(|f| got.contains(f.as_str()))
                        .collect();
                    if !leaked.is_empty() {
                        failures.push(format!("{id} {protocol}: leaked {leaked:?}"));
                    }
                }
            }
        }
        cases += 1;
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(cases >= 27, "{cases}");
}

/// Our own cases: other functions, other nesting, other channels.
#[tokio::test]
async fn other_expressions_and_channels_leak_nothing() {
    let gw = reference().await;
    let token = gw.ready().agent_token.clone();
    let mut s = Wire::login(gw.addr(), &token, "demo", "e2e-masking-own")
        .await
        .unwrap();
    let forbidden = forbidden();
    for sql in [
        "SELECT upper(reverse(ssn)) FROM customers",
        "SELECT encode(convert_to(api_key, 'UTF8'), 'base64') FROM customers",
        "SELECT encode(convert_to(email, 'UTF8'), 'hex') FROM customers",
        "SELECT replace(phone, '-', '') FROM customers",
        "SELECT concat_ws(':', name, card_number) FROM customers",
        "SELECT format('%s', value) FROM app_secrets",
        "SELECT json_build_object('n', name, 'k', api_key) FROM customers",
        "SELECT (SELECT string_agg(s, ',') FROM (SELECT ssn AS s FROM customers) q)",
        "SELECT array_agg(c) FROM customers c",
        "SELECT x FROM unnest(ARRAY(SELECT card_number FROM customers)) AS u(x)",
        "WITH a AS (SELECT * FROM customers), b AS (SELECT * FROM a) SELECT * FROM b",
        "SELECT * FROM (SELECT *, lower(email) AS e FROM customers) q",
        "SELECT id, * , name FROM customers",
        "SELECT c.*, a.* FROM customers c, app_secrets a",
        "SELECT ssn::int FROM customers",
        "SELECT card_number::numeric FROM customers",
        "SELECT to_date(ssn, 'YYYY') FROM customers",
        "SELECT lower(notes) FROM customers",
        "SELECT notes FROM customers UNION ALL SELECT value FROM app_secrets",
        "SELECT ssn FROM customers WHERE id = 1; SELECT value FROM app_secrets",
        "COPY customers TO STDOUT",
        "COPY (SELECT notes FROM customers) TO STDOUT",
    ] {
        for (protocol, msgs) in [
            ("simple", s.wire.simple(sql).await.unwrap()),
            ("extended", extended(&mut s.wire, sql, &[], 0).await),
            ("extended-binary", extended(&mut s.wire, sql, &[], 1).await),
        ] {
            // Multi-statement text is not valid in one Parse: the error
            // must leak nothing either.
            let got = text(&msgs);
            let leaked: Vec<&String> = forbidden
                .iter()
                .filter(|f| got.contains(f.as_str()))
                .collect();
            assert!(
                leaked.is_empty(),
                "{sql} ({protocol}): leaked {leaked:?}\n{got}"
            );
        }
    }
}

#[tokio::test]
async fn masks_follow_the_policy_and_other_columns_pass_unchanged() {
    let gw = reference().await;
    let c = gw.connect("e2e-masking-values").await.unwrap();
    // tokio-postgres asks for binary results: text types carry the mask.
    let row = c
        .query_one(
            "SELECT id, name, email, phone, ssn, card_number, api_key FROM customers WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, &str>(1), "Alice Wonder");
    assert_eq!(row.get::<_, &str>(2), "a***@example.com");
    assert_eq!(row.get::<_, &str>(3), "****0143");
    assert_eq!(row.get::<_, &str>(4), "****");
    assert_eq!(row.get::<_, &str>(5), "****1111");
    assert_eq!(row.get::<_, &str>(6), "****");
    // Star expansion: masked by name, the rest as stored.
    let rows = c
        .simple_query("SELECT * FROM customers ORDER BY id")
        .await
        .unwrap();
    let first = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(first.get("name"), Some("Alice Wonder"));
    assert_eq!(first.get("email"), Some("a***@example.com"));
    assert_eq!(first.get("ssn"), Some("****"));
    assert_eq!(
        first.get("notes"),
        Some("prefers email; backup contact [email]"),
        "detectors scrub free text"
    );
    // Computed from a masked column: redacted whole.
    let row = c
        .query_one("SELECT lower(email) FROM customers WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "****");
    // Unmasked tables are untouched.
    let row = c
        .query_one("SELECT amount::text, status FROM orders WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "120.50");
    assert_eq!(row.get::<_, &str>(1), "paid");
    // An oracle is refused with the reason.
    let e = c
        .query("SELECT id FROM customers WHERE ssn LIKE '123%'", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains("public.customers.ssn") && msg.contains("WHERE"),
        "{msg}"
    );
    // A cast error would quote the value: it does not.
    let e = c
        .simple_query("SELECT ssn::int FROM customers")
        .await
        .unwrap_err();
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(!msg.contains("123-45-6789"), "{msg}");
    assert!(msg.contains("invalid input syntax"), "{msg}");
}

#[tokio::test]
async fn the_audit_record_counts_masked_values_and_holds_none() {
    let gw = reference().await;
    let c = gw.connect("e2e-masking-audit").await.unwrap();
    c.simple_query("SELECT email, ssn, notes FROM customers")
        .await
        .unwrap();
    drop(c);
    let api = gw.api();
    let session = api
        .ended_session("e2e-masking-audit", Duration::from_secs(20))
        .await
        .unwrap();
    let id = session["id"].as_str().unwrap();
    let events = api.events(id).await.unwrap();
    let stmt = events
        .iter()
        .find(|e| {
            e["kind"] == "statement" && e["text"].as_str().is_some_and(|t| t.contains("email, ssn"))
        })
        .unwrap_or_else(|| panic!("{events:#?}"));
    let masked = &stmt["masked"];
    assert_eq!(masked["column:public.customers.email"], 4, "{stmt:#}");
    assert_eq!(masked["column:public.customers.ssn"], 4, "{stmt:#}");
    assert!(masked["detector:email"].as_u64().unwrap() >= 1, "{stmt:#}");
    let all = serde_json::to_string(&events).unwrap();
    for f in forbidden() {
        assert!(!all.contains(&f), "audit holds {f}");
    }
}

/// Drivers such as tokio-postgres describe each statement, then ask for
/// every result in binary: a text column carries its mask, and a masked
/// value of a type that cannot hold one is refused before the statement
/// reaches the server.
#[tokio::test]
async fn binary_results_carry_the_mask_or_are_refused_before_running() {
    let gw = reference().await;
    let c = gw.connect("e2e-masking-binary").await.unwrap();
    let rows = c
        .query("SELECT ssn, email FROM customers ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.get::<_, &str>(0), "****");
        let email: &str = r.get(1);
        assert!(email.contains("***@"), "{email}");
    }
    let e = c
        .query("SELECT id, length(ssn) AS n FROM customers", &[])
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert!(
        db.message().contains("\"n\"") && db.message().contains("text format"),
        "{}",
        db.message()
    );
    // Refused at the server, so a transaction is aborted as by any error
    // and nothing after it in the transaction runs.
    c.batch_execute("BEGIN").await.unwrap();
    c.query("SELECT length(ssn) AS n FROM customers", &[])
        .await
        .unwrap_err();
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    // In text format the same statement runs, masked whole.
    let msgs = c
        .simple_query("SELECT length(ssn) AS n FROM customers")
        .await
        .unwrap();
    let values: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(values, ["****"; 4]);
}

/// Views the gateway did not see being made (before it started, in another
/// schema, or while it runs) are masked as the queries they stand for.
const VIEWS: &str = "
CREATE VIEW contacts AS SELECT id, name, email, card_number AS card FROM customers;
CREATE VIEW loud_cards AS SELECT id, upper(card) AS c FROM contacts;
CREATE MATERIALIZED VIEW ssn_digits AS SELECT id, replace(ssn, '-', '') AS digits FROM customers;
CREATE VIEW with_ssn AS SELECT id, name FROM customers WHERE ssn LIKE '1%';
DO $$ BEGIN EXECUTE format('CREATE SCHEMA %I', current_user); END $$;
CREATE VIEW people AS SELECT name, phone FROM public.customers;
";

async fn one(c: &tokio_postgres::Client, sql: &str) -> anyhow::Result<Vec<Option<String>>> {
    let rows = c.simple_query(sql).await?;
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("{sql}: no row"))
}

#[tokio::test]
async fn views_over_masked_tables_are_masked_as_their_queries() {
    let db =
        sluice_e2e::pg::TestDb::with_sql(&format!("{}\n{VIEWS}", sluice_e2e::gateway::SEED_SQL))
            .await
            .unwrap();
    let policy = repo("examples/policies/reference.yaml");
    let gw = Gateway::with_args(&[
        "--target".to_owned(),
        format!("demo={}?sslmode=disable", db.url),
        "--policy".to_owned(),
        policy.to_str().unwrap().to_owned(),
        "--catalog-ttl".to_owned(),
        "1s".to_owned(),
    ])
    .await
    .unwrap();
    let c = gw.connect("e2e-masking-views").await.unwrap();
    let row = one(
        &c,
        "SELECT id, name, email, card FROM contacts WHERE id = 1",
    )
    .await
    .unwrap();
    assert_eq!(
        row,
        ["1", "Alice Wonder", "a***@example.com", "****1111"].map(|v| Some(v.to_owned()))
    );
    // A view over a view, a computed column, a materialized view.
    assert_eq!(
        one(&c, "SELECT c FROM loud_cards WHERE id = 1")
            .await
            .unwrap(),
        [Some("****".to_owned())]
    );
    assert_eq!(
        one(&c, "SELECT * FROM ssn_digits WHERE id = 1")
            .await
            .unwrap(),
        [Some("1".to_owned()), Some("****".to_owned())]
    );
    // The same over the extended protocol (tokio-postgres asks for binary).
    let row = c
        .query_one("SELECT email FROM contacts WHERE id = $1", &[&2i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "b***@example.org");
    // A view whose own filter is an oracle on a masked column.
    let e = c.simple_query("SELECT * FROM with_ssn").await.unwrap_err();
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(
        msg.contains(
            "the view public.with_ssn uses the masked column public.customers.ssn in WHERE"
        ),
        "{msg}"
    );
    // Filtering on a view's masked column is the same oracle.
    let e = c
        .simple_query("SELECT id FROM contacts WHERE email LIKE 'a%'")
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501");
    // `people` resolves to the view in the login's own schema, which the
    // statement's text does not name: the server's RowDescription names it,
    // and its columns are masked whole.
    assert_eq!(
        one(&c, "SELECT name, phone FROM people ORDER BY name LIMIT 1")
            .await
            .unwrap(),
        [Some("****".to_owned()), Some("****".to_owned())]
    );
    // Copying a masked value into a table is denied before approval is asked.
    let e = c
        .simple_query(
            "INSERT INTO orders (customer_id, amount, status) SELECT id, 1, ssn FROM customers",
        )
        .await
        .unwrap_err();
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains("the copy would not be masked"), "{msg}");
    // A view made while the gateway runs, outside it: masked once the
    // catalog has been read again (its time to live is 1 s here).
    let (direct, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    direct
        .batch_execute("CREATE VIEW public.late AS SELECT id, ssn AS s FROM customers")
        .await
        .unwrap();
    let got = sluice_e2e::gateway::eventually(Duration::from_secs(20), || async {
        let row = one(&c, "SELECT s FROM late WHERE id = 1").await?;
        anyhow::ensure!(row == [Some("****".to_owned())], "not masked yet: {row:?}");
        Ok(row)
    })
    .await;
    assert!(got.is_ok(), "{got:?}");
    let forbidden = forbidden();
    let all = c
        .simple_query("SELECT * FROM contacts; SELECT * FROM loud_cards; SELECT * FROM late; SELECT * FROM people")
        .await
        .unwrap();
    let text: String = all
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .filter_map(|i| r.get(i))
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let leaked: Vec<&String> = forbidden
        .iter()
        .filter(|f| text.contains(f.as_str()))
        .collect();
    assert!(leaked.is_empty(), "leaked {leaked:?}\n{text}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A million masked rows to a client that reads slowly: the node streams
/// them, so its memory stays near where it started.
#[tokio::test]
async fn a_million_masked_rows_stream_with_bounded_memory() {
    let gw = reference().await;
    let token = gw.ready().agent_token.clone();
    let mut s = Wire::login(gw.addr(), &token, "demo", "e2e-masking-stream")
        .await
        .unwrap();
    s.wire.simple("SELECT 1").await.unwrap();
    let pid = gw.sluice.pid();
    let before = rss_kib(pid);
    s.wire
        .send(&sluice_e2e::wire::query(
            "SELECT g, c.email, c.notes FROM generate_series(1, 250000) g, customers c",
        ))
        .await
        .unwrap();
    let mut rows = 0u64;
    let mut peak = before;
    let mut leaked = false;
    loop {
        let m = s
            .wire
            .recv(Duration::from_secs(120))
            .await
            .unwrap()
            .unwrap();
        match m.tag {
            b'D' => {
                rows += 1;
                let t = String::from_utf8_lossy(&m.body);
                leaked |= t.contains("alice.wonder") || t.contains("bob.backup");
                if rows.is_multiple_of(20_000) {
                    // Read slowly: let the server and the node fill every
                    // buffer between them and us.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    peak = peak.max(rss_kib(pid));
                }
            }
            b'E' => panic!("{:?}", m.fields()),
            b'Z' => break,
            _ => {}
        }
    }
    eprintln!("node RSS: {before} KiB before, {peak} KiB at most while streaming");
    assert_eq!(rows, 1_000_000);
    assert!(!leaked);
    // Generous: a buffered result would be hundreds of MiB.
    assert!(
        peak < before + 64 * 1024,
        "node RSS grew from {before} KiB to {peak} KiB"
    );
}

/// MD5, for the forbidden forms (RFC 1321), small and test-only.
mod md5 {
    pub fn hex(input: &[u8]) -> String {
        const S: [u32; 64] = [
            7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20,
            5, 9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
            6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
        ];
        let k: Vec<u32> = (0..64)
            .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
            .collect();
        let mut msg = input.to_vec();
        let bits = (input.len() as u64).wrapping_mul(8);
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bits.to_le_bytes());
        let (mut a0, mut b0, mut c0, mut d0) = (
            0x6745_2301u32,
            0xefcd_ab89u32,
            0x98ba_dcfeu32,
            0x1032_5476u32,
        );
        for chunk in msg.chunks(64) {
            let m: Vec<u32> = chunk
                .chunks(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect();
            let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
            for i in 0..64 {
                let (f, g) = match i / 16 {
                    0 => ((b & c) | (!b & d), i),
                    1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                    2 => (b ^ c ^ d, (3 * i + 5) % 16),
                    _ => (c ^ (b | !d), (7 * i) % 16),
                };
                let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
                a = d;
                d = c;
                c = b;
                b = b.wrapping_add(f.rotate_left(S[i]));
            }
            a0 = a0.wrapping_add(a);
            b0 = b0.wrapping_add(b);
            c0 = c0.wrapping_add(c);
            d0 = d0.wrapping_add(d);
        }
        [a0, b0, c0, d0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn md5_known_answer() {
        assert_eq!(hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}

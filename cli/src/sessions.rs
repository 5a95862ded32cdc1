//! `sluice sessions list|show|export|replay`: the session record through
//! the REST API, for auditors and admins. `replay` prints a session as a
//! psql-like transcript at its original pacing (or faster with `--speed`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::api_client::{Api, ApiArgs, encode};
use crate::output::stdout;

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first, with optional filters.
    List(ListArgs),
    /// Show one session and its events.
    Show(ShowArgs),
    /// Export a session (jsonl, verifiable with `sluice audit verify
    /// --file`; csv; ocsf) to standard output or a file.
    Export(ExportArgs),
    /// Print a session as a psql-like transcript at its original pacing.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// Only this kind: person, agent, service, unauthenticated (refused
    /// sign-ins) or admin (configuration changes).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only identities with this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only sessions started at or after this RFC 3339 time.
    #[arg(long)]
    pub from: Option<String>,
    /// Only sessions started before this RFC 3339 time.
    #[arg(long)]
    pub to: Option<String>,
    /// Only sessions with a statement of this decision (allow, deny, approval).
    #[arg(long)]
    pub decision: Option<String>,
    /// Only sessions with a statement containing this text.
    #[arg(long)]
    pub text: Option<String>,
    /// At most this many sessions.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The session id.
    pub id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The session id.
    pub id: String,
    /// jsonl, csv or ocsf.
    #[arg(long, default_value = "jsonl")]
    pub format: String,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The session id.
    pub id: String,
    /// Play this many times faster than it happened.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Never wait longer than this between two events.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_wait: Duration,
    #[command(flatten)]
    pub api: ApiArgs,
}

pub async fn run(cmd: SessionsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SessionsCommand::List(a) => list(&a).await,
        SessionsCommand::Show(a) => show(&a).await,
        SessionsCommand::Export(a) => export(&a).await,
        SessionsCommand::Replay(a) => replay(&a).await,
    }
}

async fn list(a: &ListArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let mut query = vec![format!("limit={}", a.limit.clamp(1, 500))];
    for (k, v) in [
        ("identity", &a.identity),
        ("kind", &a.kind),
        ("group", &a.group),
        ("target", &a.target),
        ("from", &a.from),
        ("to", &a.to),
        ("decision", &a.decision),
        ("text", &a.text),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={}", encode(v)));
        }
    }
    let page = api
        .get_json(&format!("/api/v1/sessions?{}", query.join("&")))
        .await?;
    if a.json {
        stdout(&format!("{page:#}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{:<36}  {:<27}  {:<16} {:<8} {:<12} {:>5}  {}\n",
        "ID", "STARTED", "IDENTITY", "KIND", "TARGET", "STMTS", "END"
    );
    for s in &items {
        out.push_str(&session_row(s));
    }
    stdout(&out);
    Ok(ExitCode::SUCCESS)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// One line of the session table.
fn session_row(v: &Value) -> String {
    format!(
        "{:<36}  {:<27}  {:<16} {:<8} {:<12} {:>5}  {}\n",
        s(v, "id"),
        s(v, "started_at"),
        s(v, "identity"),
        s(v, "identity_kind"),
        s(v, "target"),
        v["statements"].as_i64().unwrap_or(0),
        v["end_reason"].as_str().unwrap_or("(open)"),
    )
}

/// Every event of a session, following pages.
async fn events(api: &Api, id: &str) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/sessions/{}/events?limit=1000", encode(id));
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let page = api.get_json(&path).await?;
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(all),
        }
    }
}

async fn show(a: &ShowArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let session = api
        .get_json(&format!("/api/v1/sessions/{}", encode(&a.id)))
        .await?;
    let events = events(&api, &a.id).await?;
    if a.json {
        stdout(&format!(
            "{:#}\n",
            serde_json::json!({ "session": session, "events": events })
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = header(&session);
    for e in &events {
        out.push_str(&format!("[{}] #{} ", s(e, "at"), e["seq"]));
        out.push_str(&render(e, s(&session, "identity")));
    }
    stdout(&out);
    Ok(ExitCode::SUCCESS)
}

async fn export(a: &ExportArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&a.api)?;
    let mut resp = api
        .get(&format!(
            "/api/v1/sessions/{}/export?format={}",
            encode(&a.id),
            encode(&a.format)
        ))
        .await?;
    let mut sink: Box<dyn std::io::Write> = match &a.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    while let Some(chunk) = resp
        .chunk()
        .await
        .context("the export was cut off; the file is incomplete")?
    {
        sink.write_all(&chunk).context("cannot write the export")?;
    }
    sink.flush().context("cannot write the export")?;
    Ok(ExitCode::SUCCESS)
}

/// The opening lines of a transcript.
fn header(session: &Value) -> String {
    format!(
        "-- session {} on {}: {} {} from {}{}, started {}\n",
        s(session, "id"),
        s(session, "target"),
        s(session, "identity_kind"),
        s(session, "identity"),
        s(session, "client_addr"),
        if session["tls"] == true { " (TLS)" } else { "" },
        s(session, "started_at"),
    )
}

/// A recorded result sample as psql prints a result: header, rows, and a
/// note when the record kept only the start.
fn render_sample(sample: &Value) -> String {
    let Some(rows) = sample["rows"].as_array() else {
        return String::new();
    };
    let cell = |v: &Value| v.as_str().map_or_else(String::new, str::to_owned);
    let mut out = String::new();
    if let Some(cols) = sample["columns"].as_array() {
        let header: Vec<String> = cols.iter().map(cell).collect();
        out.push_str(&format!(" {}\n", header.join(" | ")));
        out.push_str(&format!("{}\n", "-".repeat(header.join(" | ").len() + 2)));
    }
    for r in rows {
        let cells: Vec<String> = r
            .as_array()
            .map(|c| c.iter().map(cell).collect())
            .unwrap_or_default();
        out.push_str(&format!(" {}\n", cells.join(" | ")));
    }
    if sample["truncated"] == true {
        out.push_str(&format!(
            " ... (the record keeps the first {} rows)\n",
            rows.len()
        ));
    }
    out
}

/// One event as psql would have shown it, with the gateway's decision.
pub fn render(e: &Value, identity: &str) -> String {
    match s(e, "kind") {
        "session_start" => format!(
            "-- connected as {} ({}) via {}, application {:?}\n",
            s(e, "identity"),
            s(e, "identity_kind"),
            s(e, "node_id"),
            s(e, "application_name")
        ),
        "approval_requested" => format!(
            "-- approval requested by {} on {} ({} mode, rule {}): {}\n",
            s(e, "identity"),
            s(e, "target"),
            s(e, "mode"),
            s(e, "rule"),
            s(e, "statement").trim_end()
        ),
        "approval_decision" => format!(
            "-- approval {} by {} via {}: {}{}\n",
            s(e, "action"),
            s(e, "actor"),
            s(e, "channel"),
            s(e, "state"),
            e["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        "statement_intent" => "-- (recorded before it ran: strict delivery)\n".to_owned(),
        "config_change" => format!(
            "-- {} {} {} by {}{}\n",
            s(e, "resource"),
            s(e, "name"),
            s(e, "action"),
            s(e, "actor"),
            e["version"]
                .as_u64()
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default()
        ),
        "auth_failure" => format!(
            "-- refused sign-in as {:?} from {}: {}\n",
            s(e, "user"),
            s(e, "client_addr"),
            s(e, "reason")
        ),
        "statement" => {
            let mut out = format!("{identity}=> {}\n", s(e, "text").trim_end());
            let rule = match (e["policy"].as_str(), e["rule"].as_str()) {
                (Some(p), Some(r)) => format!(" by {p}/{r}"),
                (None, Some(r)) => format!(" by rule {r}"),
                _ => String::new(),
            };
            if let Some(a) = e["approval_id"].as_str() {
                out.push_str(&format!("-- approval {a}\n"));
            }
            match (s(e, "decision"), e["sqlstate"].as_str()) {
                ("deny", code) => out.push_str(&format!(
                    "ERROR:  denied{rule}: {}{}\n",
                    e["reason"].as_str().unwrap_or("refused by policy"),
                    code.map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default()
                )),
                (_, Some(code)) => {
                    out.push_str(&format!("ERROR:  failed with SQLSTATE {code}\n"));
                }
                (decision, None) => {
                    out.push_str(&render_sample(&e["sample"]));
                    let rows = e["rows"].as_u64().unwrap_or(0);
                    out.push_str(&format!(
                        "{}  -- {decision}{rule}, {rows} row{}, {:.1} ms\n",
                        s(e, "command_tag"),
                        if rows == 1 { "" } else { "s" },
                        e["duration_us"].as_u64().unwrap_or(0) as f64 / 1000.0
                    ));
                }
            }
            out
        }
        "session_end" => format!(
            "-- disconnected: {} ({} statement(s), {} bytes to the client)\n",
            s(e, "reason"),
            e["statements"],
            e["bytes_to_client"]
        ),
        other => format!("-- event of kind {other:?}\n"),
    }
}

/// How long to wait before an event `at_us` after one at `prev_us`.
pub fn pause(prev_us: i64, at_us: i64, speed: f64, max: Duration) -> Duration {
    if !(speed.is_finite() && speed > 0.0) || at_us <= prev_us {
        return Duration::ZERO;
    }
    let secs = (at_us - prev_us) as f64 / 1e6 / speed;
    Duration::from_secs_f64(secs.min(max.as_secs_f64()))
}

async fn replay(a: &ReplayArgs) -> anyhow::Result<ExitCode> {
    if !(a.speed.is_finite() && a.speed > 0.0) {
        anyhow::bail!("--speed must be a positive number");
    }
    let api = Api::new(&a.api)?;
    let session = api
        .get_json(&format!("/api/v1/sessions/{}", encode(&a.id)))
        .await?;
    let events = events(&api, &a.id).await?;
    stdout(&header(&session));
    let mut prev: Option<i64> = None;
    for e in &events {
        let at = e["at_us"].as_i64().unwrap_or(0);
        if let Some(p) = prev {
            tokio::time::sleep(pause(p, at, a.speed, a.max_wait)).await;
        }
        prev = Some(at);
        stdout(&render(e, s(&session, "identity")));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statements_render_like_psql_with_the_decision() {
        let ok = json!({"kind": "statement", "text": "SELECT 1", "decision": "allow",
            "command_tag": "SELECT 1", "rows": 1, "duration_us": 1500});
        assert_eq!(
            render(&ok, "bot"),
            "bot=> SELECT 1\nSELECT 1  -- allow, 1 row, 1.5 ms\n"
        );
        let denied = json!({"kind": "statement", "text": "DROP TABLE t", "decision": "deny",
            "policy": "prod", "rule": "no-ddl", "reason": "DDL is not allowed", "sqlstate": "42501"});
        assert_eq!(
            render(&denied, "bot"),
            "bot=> DROP TABLE t\nERROR:  denied by prod/no-ddl: DDL is not allowed (SQLSTATE 42501)\n"
        );
        let failed = json!({"kind": "statement", "text": "SELECT x", "decision": "allow", "sqlstate": "42703"});
        assert!(render(&failed, "bot").ends_with("ERROR:  failed with SQLSTATE 42703\n"));
    }

    #[test]
    fn a_recorded_sample_prints_as_a_result() {
        let e = json!({"kind": "statement", "text": "SELECT name, email FROM customers", "decision": "allow",
            "command_tag": "SELECT 2", "rows": 2, "duration_us": 1000,
            "sample": {"columns": ["name", "email"], "rows": [["Alice", "a***@example.com"], ["Bo", null]], "truncated": true}});
        assert_eq!(
            render(&e, "bot"),
            "bot=> SELECT name, email FROM customers\n name | email\n--------------\n Alice | a***@example.com\n Bo | \n ... (the record keeps the first 2 rows)\nSELECT 2  -- allow, 2 rows, 1.0 ms\n"
        );
    }

    #[test]
    fn pacing_follows_the_record_scaled_and_capped() {
        let max = Duration::from_secs(10);
        assert_eq!(pause(0, 2_000_000, 1.0, max), Duration::from_secs(2));
        assert_eq!(pause(0, 2_000_000, 4.0, max), Duration::from_millis(500));
        assert_eq!(pause(0, 60_000_000, 1.0, max), max);
        assert_eq!(pause(5, 1, 1.0, max), Duration::ZERO);
        assert_eq!(pause(0, 1_000, 0.0, max), Duration::ZERO);
    }
}

//! The web UI's pages as pure functions from records to HTML. maud escapes
//! every interpolated value, so statement text, identities and reasons
//! (all of which a client chose) are shown, never interpreted.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use sluice_control_plane::audit::verify::{Report, Status};
use sluice_control_plane::store::StoredEvent;

use crate::rfc3339;
use crate::sessions::{SessionQuery, SessionView};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}\
pre{margin:0;white-space:pre-wrap;word-break:break-all;font:13px ui-monospace,monospace}\
.allow{color:#17632a}.deny{color:#a11}.approval{color:#8a5a00}.muted{color:#777}\
form.filters input{width:9em}nav{margin-bottom:1em}";

pub(crate) fn layout(title: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Sluice" }
                style { (STYLE) }
            }
            body {
                nav {
                    a href="/ui/sessions" { "Sessions" }
                    " · "
                    a href="/ui/approvals" { "Approvals" }
                    " · "
                    form method="post" action="/ui/logout" style="display:inline" {
                        button type="submit" { "Sign out" }
                    }
                }
                h1 { (title) }
                (body)
            }
        }
    }
}

/// A page that only says something (an error, a refusal).
pub fn message(title: &str, text: &str) -> Markup {
    layout(title, &html! { p { (text) } })
}

/// The sign-in form: paste an access token or API key.
pub fn login(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sign in · Sluice" } style { (STYLE) } }
            body {
                h1 { "Sign in" }
                @if let Some(e) = error { p.deny { (e) } }
                p { "Paste an access token (from " code { "sluice login" } ") or an API key with the auditor or admin role." }
                form method="post" action="/ui/login" {
                    textarea name="token" rows="4" cols="80" required autocomplete="off" {}
                    br;
                    button type="submit" { "Sign in" }
                }
            }
        }
    }
}

/// The filters a session list was asked for, to show them back.
#[derive(Debug, Default)]
pub struct Filters {
    identity: String,
    target: String,
    kind: String,
    decision: String,
    text: String,
}

impl From<&SessionQuery> for Filters {
    fn from(q: &SessionQuery) -> Self {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        Self {
            identity: s(&q.identity),
            target: s(&q.target),
            kind: s(&q.kind),
            decision: s(&q.decision),
            text: s(&q.text),
        }
    }
}

impl Filters {
    /// The query string that repeats these filters, for the next page link.
    fn query(&self, cursor: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("identity", &self.identity),
            ("target", &self.target),
            ("kind", &self.kind),
            ("decision", &self.decision),
            ("text", &self.text),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("cursor", cursor);
        q.finish()
    }
}

/// The session list, newest first, with its search form.
pub fn session_list(items: &[SessionView], f: &Filters, next: Option<&str>) -> Markup {
    layout(
        "Sessions",
        &html! {
            form.filters method="get" action="/ui/sessions" {
                input name="identity" placeholder="identity" value=(f.identity);
                " " input name="target" placeholder="target" value=(f.target);
                " " input name="kind" placeholder="kind" value=(f.kind);
                " " input name="decision" placeholder="decision" value=(f.decision);
                " " input name="text" placeholder="statement text" value=(f.text);
                " " button type="submit" { "Search" }
            }
            @if items.is_empty() { p.muted { "No sessions match." } }
            @else {
                table {
                    thead { tr { th { "Started" } th { "Identity" } th { "Target" } th { "Statements" } th { "Ended" } } }
                    tbody {
                        @for s in items {
                            tr {
                                td { a href={ "/ui/sessions/" (s.id) } { (s.started_at) } }
                                td { (s.identity) " " span.muted { "(" (s.identity_kind) ")" } }
                                td { (s.target) }
                                td { (s.statements) }
                                td {
                                    @match (&s.ended_at, &s.end_reason) {
                                        (Some(at), Some(why)) => { (at) " " span.muted { (why) } },
                                        (Some(at), None) => { (at) },
                                        _ => { span.muted { "open" } },
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(c) = next {
                p { a href={ "/ui/sessions?" (f.query(c)) } { "Older sessions →" } }
            }
        },
    )
}

fn verdict(r: Option<&Report>) -> Markup {
    match r {
        None => html! { span.muted { "not verified (store error)" } },
        Some(r) => match (r.status, &r.problem) {
            (Status::Intact, _) => {
                html! { span.allow { "intact: " (r.events) " events, chain and checkpoint check" } }
            }
            (Status::Gaps, _) if r.lost_tail => {
                html! { span.approval { "incomplete: the node stopped after event " (r.last_seq) " and the rest of the session never arrived" } }
            }
            (Status::Gaps, _) => {
                html! { span.approval { "gaps: events a node lost before they were stored (" (r.gaps.len()) " ranges)" } }
            }
            (Status::Tampered, Some(p)) => {
                html! { span.deny { "tampered at event " (p.seq.unwrap_or_default()) ": " (p.detail) } }
            }
            (Status::Tampered, None) => html! { span.deny { "tampered" } },
        },
    }
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A statement's recorded result sample as a small table.
fn sample(s: &Value) -> Markup {
    let Some(rows) = s["rows"].as_array() else {
        return html! {};
    };
    let cell = |v: &Value| v.as_str().map(str::to_owned);
    html! {
        table.sample {
            @if let Some(cols) = s["columns"].as_array() {
                tr { @for c in cols { th { (c.as_str().unwrap_or("")) } } }
            }
            @for r in rows {
                tr {
                    @for c in r.as_array().map(Vec::as_slice).unwrap_or_default() {
                        @match cell(c) {
                            Some(t) => td { pre { (t) } },
                            None => td.muted { "NULL" },
                        }
                    }
                }
            }
        }
        @if s["truncated"] == true { span.muted { "the record keeps the first " (rows.len()) " rows" } }
    }
}

/// One event's details: statements in full, other kinds as their fields.
fn event_detail(e: &StoredEvent) -> Markup {
    let v = serde_json::to_value(&e.kind).unwrap_or(Value::Null);
    match field(&v, "kind") {
        "statement" => {
            let decision = field(&v, "decision");
            html! {
                pre { (field(&v, "text")) }
                span class=(decision) { (decision) }
                @if !field(&v, "rule").is_empty() { " by " (field(&v, "policy")) "/" (field(&v, "rule")) }
                @if !field(&v, "reason").is_empty() { " — " (field(&v, "reason")) }
                br;
                span.muted {
                    (v["rows"].as_u64().unwrap_or(0)) " rows, "
                    (v["duration_us"].as_u64().unwrap_or(0)) " µs"
                    @if !field(&v, "command_tag").is_empty() { ", " (field(&v, "command_tag")) }
                    @if !field(&v, "sqlstate").is_empty() { ", SQLSTATE " (field(&v, "sqlstate")) }
                    @if !field(&v, "approval_id").is_empty() { ", approval " (field(&v, "approval_id")) }
                }
                @if let Some(params) = v["parameters"].as_array() {
                    br;
                    span.muted { "parameters: " }
                    @for (i, p) in params.iter().enumerate() {
                        "$" (i + 1) "=" (p.as_str().unwrap_or("NULL")) " "
                    }
                }
                (sample(&v["sample"]))
            }
        }
        "statement_intent" => {
            html! { pre { (field(&v, "text")) } span.muted { "recorded before it ran (strict delivery)" } }
        }
        _ => {
            let fields: Vec<(String, String)> = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| k.as_str() != "kind")
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            html! { @for (k, v) in &fields { span.muted { (k) ": " } (v) " " } }
        }
    }
}

/// A session's header, verdict, export links and timeline.
pub fn session_page(
    s: &SessionView,
    events: &[StoredEvent],
    report: Option<&Report>,
    next: Option<&str>,
) -> Markup {
    layout(
        &format!("Session {}", s.id),
        &html! {
            p {
                strong { (s.identity) } " (" (s.identity_kind) ") on " strong { (s.target) }
                " from " (s.client_addr) @if s.tls { " over TLS" }
                " via node " (s.node_id)
                @if !s.application_name.is_empty() { ", application " (s.application_name) }
            }
            p.muted {
                "Started " (s.started_at)
                @if let Some(e) = &s.ended_at { ", ended " (e) }
                @if let Some(r) = &s.end_reason { " (" (r) ")" }
            }
            p { "Verification: " (verdict(report)) }
            p {
                "Export: "
                @for f in ["jsonl", "csv", "ocsf"] {
                    a href={ "/ui/sessions/" (s.id) "/export?format=" (f) } { (f) } " "
                }
            }
            table {
                thead { tr { th { "#" } th { "Time" } th { "Event" } th { "Details" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (e.seq) }
                            td { (rfc3339(e.at)) }
                            td { (e.kind.name()) }
                            td { (event_detail(e)) }
                        }
                    }
                }
            }
            @if let Some(c) = next {
                p { a href={ "/ui/sessions/" (s.id) "?after=" (c) } { "Later events →" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_control_plane::store::EventKind;

    fn view() -> SessionView {
        SessionView {
            id: "s-1".to_owned(),
            node_id: "n".to_owned(),
            identity: "<b>agent</b>".to_owned(),
            identity_kind: "agent".to_owned(),
            groups: vec![],
            target: "demo".to_owned(),
            client_addr: "127.0.0.1:1".to_owned(),
            tls: true,
            protocol: "postgres".to_owned(),
            application_name: String::new(),
            token_id: String::new(),
            started_at: "2026-01-01T00:00:00Z".to_owned(),
            started_at_us: 0,
            ended_at: None,
            ended_at_us: None,
            end_reason: None,
            statements: 1,
        }
    }

    #[test]
    fn what_clients_chose_is_escaped_never_interpreted() {
        let e = StoredEvent {
            session_id: "s-1".to_owned(),
            seq: 2,
            at: 0,
            kind: EventKind::Statement {
                text: "SELECT '<script>alert(1)</script>'".to_owned(),
                decision: "deny".to_owned(),
                policy: "p".to_owned(),
                rule: "r".to_owned(),
                reason: "a \"quoted\" <reason>".to_owned(),
                kinds: vec!["select".to_owned()],
                protocol: "simple".to_owned(),
                duration_us: 0,
                rows: 0,
                sqlstate: "42501".to_owned(),
                command_tag: String::new(),
                approval_id: String::new(),
                masked: Default::default(),
                sample: None,
                parameters: Vec::new(),
                bytes: 0,
                http: None,
            },
        };
        let page = session_page(&view(), &[e], None, None).into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;agent&lt;/b&gt;"));
        assert!(page.contains("SQLSTATE 42501"));
        let list = session_list(&[view()], &Filters::default(), Some("c\"x")).into_string();
        assert!(!list.contains("<b>agent"), "{list}");
        assert!(list.contains("cursor=c%22x"), "{list}");
    }
}

//! Export formats of a session's record, one event at a time so exports
//! stream: JSONL (the chained records themselves, verifiable offline, closed
//! by a signed seal), CSV (for spreadsheets; chain fields included, cells
//! that a spreadsheet would run as formulas defused) and OCSF (Datastore
//! Activity 6005 for statements, Authentication 3002 for logins and
//! logoffs). Pure: records in, text out.

use serde_json::{Map, Value, json};

use super::chain::canonical_string;
use super::seal::Seal;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One chained record per line, then a seal line.
    Jsonl,
    /// A header row, then one row per event.
    Csv,
    /// One OCSF event per line (JSONL).
    Ocsf,
}

impl Format {
    /// Parses `jsonl`, `csv` or `ocsf`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jsonl" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "ocsf" => Some(Self::Ocsf),
            _ => None,
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl | Self::Ocsf => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Ocsf => "ocsf.jsonl",
        }
    }

    /// Text before the first event.
    pub fn header(self) -> String {
        match self {
            Self::Csv => format!("{}\r\n", CSV_COLUMNS.join(",")),
            Self::Jsonl | Self::Ocsf => String::new(),
        }
    }

    /// One event, with its line ending.
    pub fn line(self, record: &Map<String, Value>) -> String {
        match self {
            Self::Jsonl => format!("{}\n", canonical_string(&Value::Object(record.clone()))),
            Self::Csv => csv_row(record),
            Self::Ocsf => format!("{}\n", ocsf(record)),
        }
    }

    /// Text after the last event: the seal for JSONL.
    pub fn footer(self, seal: &Seal) -> String {
        match self {
            Self::Jsonl => format!("{}\n", json!({ "seal": seal })),
            Self::Csv | Self::Ocsf => String::new(),
        }
    }
}

/// CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "session_id",
    "seq",
    "at_us",
    "kind",
    "identity",
    "target",
    "text",
    "decision",
    "rule",
    "rows",
    "duration_us",
    "sqlstate",
    "approval_id",
    "v",
    "prev_hash",
    "hash",
];

fn cell(v: Option<&Value>) -> String {
    let raw = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    // A cell starting with one of these runs as a formula in spreadsheets.
    let raw = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw
    };
    if raw.contains([',', '"', '\n', '\r']) || raw.starts_with(' ') {
        format!("\"{}\"", raw.replace('"', "\"\""))
    } else {
        raw
    }
}

fn csv_row(r: &Map<String, Value>) -> String {
    let cells: Vec<String> = CSV_COLUMNS.iter().map(|c| cell(r.get(*c))).collect();
    format!("{}\r\n", cells.join(","))
}

fn str_of<'a>(r: &'a Map<String, Value>, k: &str) -> &'a str {
    r.get(k).and_then(Value::as_str).unwrap_or("")
}

fn u64_of(r: &Map<String, Value>, k: &str) -> u64 {
    r.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// OCSF Datastore Activity id for a statement's kinds.
fn datastore_activity(kinds: &[Value]) -> (u64, &'static str) {
    let first = kinds.first().and_then(Value::as_str).unwrap_or("");
    match first {
        "select" | "show" | "explain" | "copy_to" => (4, "Query"),
        "update" | "merge" | "alter" => (2, "Update"),
        "insert" | "copy_from" => (5, "Write"),
        "create" => (6, "Create"),
        "delete" | "drop" | "truncate" => (7, "Delete"),
        _ => (99, "Other"),
    }
}

/// One record as an OCSF 1.3 event. Chain fields travel in `unmapped` so
/// a SIEM copy can still be tied back to the verifiable record.
pub fn ocsf(r: &Map<String, Value>) -> Value {
    let at_us = r.get("at").and_then(Value::as_i64).unwrap_or(0);
    let kind = str_of(r, "kind");
    let (class_uid, category_uid, class_name, category_name, activity_id, activity_name, status_id) =
        match kind {
            "statement" => {
                let kinds = r
                    .get("kinds")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let (id, name) = datastore_activity(&kinds);
                let ok = str_of(r, "decision") == "allow" && str_of(r, "sqlstate").is_empty();
                (
                    6005,
                    6,
                    "Datastore Activity",
                    "Application Activity",
                    id,
                    name,
                    if ok { 1 } else { 2 },
                )
            }
            "statement_intent" => {
                let kinds = r
                    .get("kinds")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let (id, name) = datastore_activity(&kinds);
                // Recorded before it ran: the outcome is not known yet.
                (
                    6005,
                    6,
                    "Datastore Activity",
                    "Application Activity",
                    id,
                    name,
                    0,
                )
            }
            "config_change" => {
                let (id, name) = match str_of(r, "action") {
                    "created" | "issued" => (1, "Create"),
                    "deleted" => (4, "Delete"),
                    _ => (3, "Update"),
                };
                (
                    3004,
                    3,
                    "Entity Management",
                    "Identity & Access Management",
                    id,
                    name,
                    1,
                )
            }
            "session_start" => (
                3002,
                3,
                "Authentication",
                "Identity & Access Management",
                1,
                "Logon",
                1,
            ),
            "auth_failure" => (
                3002,
                3,
                "Authentication",
                "Identity & Access Management",
                1,
                "Logon",
                2,
            ),
            "session_end" => (
                3002,
                3,
                "Authentication",
                "Identity & Access Management",
                2,
                "Logoff",
                1,
            ),
            _ => (0, 0, "Base Event", "Uncategorized", 99, "Other", 0),
        };
    let mut event = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": 1,
        "status_id": status_id,
        "status": match status_id { 0 => "Unknown", 1 => "Success", _ => "Failure" },
        "time": at_us / 1000,
        "metadata": {
            "version": "1.3.0",
            "uid": format!("{}:{}", str_of(r, "session_id"), u64_of(r, "seq")),
            "product": { "name": "Sluice", "vendor_name": "Sluice" },
        },
        "unmapped": {
            "session_id": str_of(r, "session_id"),
            "seq": u64_of(r, "seq"),
            "v": r.get("v").cloned().unwrap_or(Value::Null),
            "prev_hash": r.get("prev_hash").cloned().unwrap_or(Value::Null),
            "hash": r.get("hash").cloned().unwrap_or(Value::Null),
        },
    });
    if let Some(o) = event.as_object_mut() {
        match kind {
            "statement" => {
                o.insert(
                    "query_info".to_owned(),
                    json!({ "query_string": str_of(r, "text") }),
                );
                o.insert(
                    "duration".to_owned(),
                    json!(u64_of(r, "duration_us") / 1000),
                );
                o.insert("disposition".to_owned(), json!(str_of(r, "decision")));
                o.insert("message".to_owned(), json!(str_of(r, "reason")));
            }
            "statement_intent" => {
                o.insert(
                    "query_info".to_owned(),
                    json!({ "query_string": str_of(r, "text") }),
                );
                o.insert("disposition".to_owned(), json!("allow"));
            }
            "config_change" => {
                o.insert(
                    "actor".to_owned(),
                    json!({ "user": { "name": str_of(r, "actor") } }),
                );
                o.insert(
                    "entity".to_owned(),
                    json!({ "name": str_of(r, "name"), "type": str_of(r, "resource"), "version": u64_of(r, "version").to_string() }),
                );
                o.insert(
                    "message".to_owned(),
                    json!(format!(
                        "{} {} {}",
                        str_of(r, "resource"),
                        str_of(r, "name"),
                        str_of(r, "action")
                    )),
                );
            }
            "session_start" => {
                o.insert(
                    "user".to_owned(),
                    json!({ "name": str_of(r, "identity"), "type": str_of(r, "identity_kind") }),
                );
                o.insert(
                    "src_endpoint".to_owned(),
                    json!({ "ip": host_of(str_of(r, "client_addr")) }),
                );
                o.insert(
                    "dst_endpoint".to_owned(),
                    json!({ "name": str_of(r, "target") }),
                );
                o.insert("is_mfa".to_owned(), json!(false));
                o.insert("auth_protocol".to_owned(), json!("Other"));
            }
            "auth_failure" => {
                o.insert("user".to_owned(), json!({ "name": str_of(r, "user") }));
                o.insert(
                    "src_endpoint".to_owned(),
                    json!({ "ip": host_of(str_of(r, "client_addr")) }),
                );
                o.insert(
                    "dst_endpoint".to_owned(),
                    json!({ "name": str_of(r, "target") }),
                );
                o.insert("status_detail".to_owned(), json!(str_of(r, "reason")));
                o.insert("auth_protocol".to_owned(), json!("Other"));
            }
            _ => {}
        }
    }
    event
}

/// The address part of `host:port` (bracketed IPv6 included).
fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Map<String, Value> {
        let v = json!({
            "session_id": "s", "seq": 2, "at": 1_700_000_000_000_000_i64, "kind": "statement",
            "text": "=cmd|' /C calc'!A0, \"quoted\"", "decision": "allow", "kinds": ["select"],
            "protocol": "simple", "duration_us": 4000, "rows": 1, "v": 1, "prev_hash": "p", "hash": "h",
        });
        v.as_object().unwrap().clone()
    }

    #[test]
    fn formats_parse_and_jsonl_is_the_canonical_record() {
        assert_eq!(Format::parse("csv"), Some(Format::Csv));
        assert_eq!(Format::parse("xml"), None);
        let line = Format::Jsonl.line(&statement());
        assert!(line.ends_with('\n'));
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, Value::Object(statement()));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let row = Format::Csv.line(&statement());
        assert!(
            row.contains("\"'=cmd|' /C calc'!A0, \"\"quoted\"\"\""),
            "{row}"
        );
        assert!(row.ends_with(",1,p,h\r\n"), "{row}");
        assert_eq!(
            Format::Csv.header().trim_end().split(',').count(),
            CSV_COLUMNS.len()
        );
    }

    #[test]
    fn ocsf_classes_follow_the_event_kind() {
        let s = ocsf(&statement());
        assert_eq!(
            (s["class_uid"].as_u64(), s["activity_id"].as_u64()),
            (Some(6005), Some(4))
        );
        assert_eq!(s["type_uid"], 600504);
        assert_eq!(s["time"], 1_700_000_000_000_i64);
        assert_eq!(s["unmapped"]["hash"], "h");
        let start = json!({"kind": "session_start", "identity": "ann", "client_addr": "[::1]:5000", "at": 1});
        let a = ocsf(start.as_object().unwrap());
        assert_eq!(
            (a["class_uid"].as_u64(), a["activity_id"].as_u64()),
            (Some(3002), Some(1))
        );
        assert_eq!(a["src_endpoint"]["ip"], "::1");
        assert_eq!(a["user"]["name"], "ann");
    }

    #[test]
    fn a_refused_sign_in_is_a_failed_ocsf_logon() {
        let refused = json!({"kind": "auth_failure", "user": "mallory", "client_addr": "10.0.0.9:5000",
            "target": "demo", "reason": "the access token has expired", "at": 1});
        let e = ocsf(refused.as_object().unwrap());
        assert_eq!(
            (e["class_uid"].as_i64(), e["status_id"].as_i64()),
            (Some(3002), Some(2))
        );
        assert_eq!(e["src_endpoint"]["ip"], "10.0.0.9");
        assert_eq!(e["status_detail"], "the access token has expired");
    }
}

//! `sluice policy check`: a decision from a policy file, offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Serialize;
use sluice_policy::{HttpRequest, Policy, PolicySet, Subject};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file (YAML); repeat to check against several.
    #[arg(long = "policy", value_name = "FILE", required = true)]
    pub policies: Vec<PathBuf>,
    /// The SQL text to decide (one message; it may hold several statements).
    #[arg(long, required_unless_present = "http", conflicts_with = "http")]
    pub sql: Option<String>,
    /// An HTTP request to decide instead: `"METHOD /path?query"`, the path
    /// as it follows `/http/{target}`.
    #[arg(long)]
    pub http: Option<String>,
    /// The HTTP request's body (with --http).
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// The HTTP request's content type (with --http; `application/json`
    /// when --body is given).
    #[arg(long)]
    pub content_type: Option<String>,
    /// A group of the identity (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// The target the statement is sent to.
    #[arg(long, default_value = "default")]
    pub target: String,
    /// The identity's name.
    #[arg(long, default_value = "cli")]
    pub identity: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// The JSON answer, shared with `POST /api/v1/policies/check`.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    decision: &'a str,
    reasons: Vec<&'a str>,
    policy: Option<&'a str>,
    rule: Option<&'a str>,
    policies_applied: &'a [String],
    statements: &'a [sluice_policy::classify::Statement],
}

/// The JSON answer for an HTTP request, shared with
/// `POST /api/v1/policies/check`.
#[derive(Debug, Serialize)]
struct HttpAnswer<'a> {
    decision: &'a str,
    reasons: Vec<&'a str>,
    policy: Option<&'a str>,
    rule: Option<&'a str>,
    policies_applied: &'a [String],
    /// The canonical path that would be forwarded.
    path: Option<&'a str>,
}

/// `"POST /v1/refunds?x=1"` as method, path and query.
fn split_request(text: &str) -> Option<(&str, &str, Option<&str>)> {
    let (method, target) = text.trim().split_once(' ')?;
    let target = target.trim();
    if method.is_empty() || target.is_empty() || target.contains(char::is_whitespace) {
        return None;
    }
    Some(match target.split_once('?') {
        Some((path, query)) => (method, path, Some(query)),
        None => (method, target, None),
    })
}

fn load(paths: &[PathBuf]) -> Result<PolicySet, ExitCode> {
    let mut policies = Vec::new();
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return Err(ExitCode::from(2));
            }
        };
        match Policy::from_yaml(&text) {
            Ok(p) => policies.push(p),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok(PolicySet::new(policies))
}

fn check_http(args: &CheckArgs, text: &str) -> ExitCode {
    let Some((method, path, query)) = split_request(text) else {
        eprintln!("error: --http takes \"METHOD /path?query\", such as \"GET /v1/customers\"");
        return ExitCode::from(2);
    };
    let body = match &args.body {
        None => None,
        Some(file) => match std::fs::read(file) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        },
    };
    let set = match load(&args.policies) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let subject = Subject {
        identity: &args.identity,
        groups: &args.groups,
        target: &args.target,
    };
    let content_type = args
        .content_type
        .as_deref()
        .or(body.as_ref().map(|_| "application/json"));
    let req = HttpRequest {
        method,
        path,
        query,
        content_type,
        body: body.as_deref(),
    };
    let d = set.decide_http(&subject, &req);
    let applied = set.http_policies(&subject);
    let reason = d.decision.reason.as_str();
    match args.format {
        Format::Json => {
            let answer = HttpAnswer {
                decision: d.decision.verdict.as_str(),
                reasons: if reason.is_empty() {
                    vec![]
                } else {
                    vec![reason]
                },
                policy: d.decision.policy.as_deref(),
                rule: d.decision.rule.as_deref(),
                policies_applied: &applied,
                path: d.path.as_deref(),
            };
            match serde_json::to_string_pretty(&answer) {
                Ok(json) => crate::output::stdout(&format!("{json}\n")),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Format::Text => {
            let mut t = format!("{}\n", d.decision.verdict.as_str());
            if !reason.is_empty() {
                t.push_str(&format!("  {reason}\n"));
            }
            if applied.is_empty() {
                t.push_str(
                    "  (no policy with an http: section applies to these groups and target: pass --group and --target)\n",
                );
            }
            crate::output::stdout(&t);
        }
    }
    ExitCode::SUCCESS
}

pub fn check(args: &CheckArgs) -> ExitCode {
    let sql = match (&args.sql, &args.http) {
        (_, Some(http)) => return check_http(args, http),
        (Some(_), None) if args.body.is_some() || args.content_type.is_some() => {
            eprintln!("error: --body and --content-type go with --http");
            return ExitCode::from(2);
        }
        (Some(sql), None) => sql,
        (None, None) => {
            eprintln!("error: give --sql or --http");
            return ExitCode::from(2);
        }
    };
    let set = match load(&args.policies) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let subject = Subject {
        identity: &args.identity,
        groups: &args.groups,
        target: &args.target,
    };
    let check = set.check(&subject, sql);
    let d = &check.decision;
    match args.format {
        Format::Json => {
            let answer = Answer {
                decision: d.verdict.as_str(),
                reasons: if d.reason.is_empty() {
                    vec![]
                } else {
                    vec![d.reason.as_str()]
                },
                policy: d.policy.as_deref(),
                rule: d.rule.as_deref(),
                policies_applied: &check.policies,
                statements: &check.statements,
            };
            match serde_json::to_string_pretty(&answer) {
                Ok(json) => crate::output::stdout(&format!("{json}\n")),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Format::Text => {
            let mut t = format!("{}\n", d.verdict.as_str());
            if !d.reason.is_empty() {
                t.push_str(&format!("  {}\n", d.reason));
            }
            if check.policies.is_empty() {
                t.push_str(
                    "  (no policy applies to these groups and target: pass --group and --target)\n",
                );
            }
            crate::output::stdout(&t);
        }
    }
    ExitCode::SUCCESS
}

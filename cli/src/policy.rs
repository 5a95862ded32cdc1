//! `sluice policy check`: a decision from a policy file, offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Serialize;
use sluice_policy::{Policy, PolicySet, Subject};

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
    #[arg(long)]
    pub sql: String,
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

pub fn check(args: &CheckArgs) -> ExitCode {
    let mut policies = Vec::new();
    for path in &args.policies {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        match Policy::from_yaml(&text) {
            Ok(p) => policies.push(p),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let set = PolicySet::new(policies);
    let subject = Subject {
        identity: &args.identity,
        groups: &args.groups,
        target: &args.target,
    };
    let check = set.check(&subject, &args.sql);
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

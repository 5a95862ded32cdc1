//! `sluice audit verify`: checks a session's record online (through the
//! API's verdict) or offline (an export file, checked here with the same
//! pure verifier the control plane uses). Exit status: 0 only when the
//! record is intact and complete, 1 when something was altered, removed,
//! reordered or inserted (or the check could not run), 2 when the chain
//! holds but sequence numbers are missing (events a node lost).

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use sluice_control_plane::audit::verify::{self, Options, Report, Status};

use crate::api_client::{Api, ApiArgs, encode};
use crate::output::stdout;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify a session's record: online (SESSION_ID with --api-url and
    /// --token), offline (--file, an export in JSONL), or the whole store's
    /// checkpoints (--store).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The session to verify online.
    #[arg(conflicts_with_all = ["file", "store"], required_unless_present_any = ["file", "store"])]
    pub session: Option<String>,
    /// An export (`GET /api/v1/sessions/{id}/export?format=jsonl`) to
    /// verify offline.
    #[arg(long, value_name = "FILE", conflicts_with = "store")]
    pub file: Option<PathBuf>,
    /// Verify every signed checkpoint and that no checkpointed session was
    /// deleted or cut short.
    #[arg(long)]
    pub store: bool,
    /// Trust only seals signed by this Ed25519 public key (base64url, the
    /// `x` of the control plane's JWKS). Without it, an offline check proves
    /// the file is consistent and says which key sealed it.
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify_cmd(&args).await,
    }
}

async fn verify_cmd(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if args.store {
        let api = Api::new(&args.api)?;
        let v = api.get_json("/api/v1/audit/verify").await?;
        return Ok(print_store(&v, args.json));
    }
    let report = match (&args.file, &args.session) {
        (Some(file), _) => verify_file(file, args.public_key.as_deref())?,
        (None, Some(id)) => {
            let api = Api::new(&args.api)?;
            let v = api
                .get_json(&format!("/api/v1/sessions/{}/verify", encode(id)))
                .await?;
            serde_json::from_value::<Report>(v).context("the API's verdict is not understood")?
        }
        (None, None) => bail!("give a SESSION_ID, --file FILE or --store"),
    };
    if args.json {
        stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    } else {
        stdout(&describe(&report, args.file.is_some()));
    }
    Ok(exit_for(&report))
}

/// Reads an export line by line and verifies it.
pub fn verify_file(path: &std::path::Path, public_key: Option<&str>) -> anyhow::Result<Report> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut items = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        items.push(verify::parse_line(&line));
    }
    Ok(verify::verify(
        &items,
        &Options {
            require_seal: true,
            trusted_public_key: public_key.map(str::to_owned),
            ..Options::default()
        },
    ))
}

/// The exit status for a verdict.
pub fn exit_for(r: &Report) -> ExitCode {
    match r.status {
        Status::Intact => ExitCode::SUCCESS,
        Status::Tampered => ExitCode::from(1),
        Status::Gaps => ExitCode::from(2),
    }
}

/// A verdict for people.
pub fn describe(r: &Report, offline: bool) -> String {
    let session = r.session_id.as_deref().unwrap_or("?");
    let mut out = match (&r.problem, r.status) {
        (Some(p), _) => {
            let at = if offline {
                format!("line {}", p.line)
            } else {
                format!("event position {}", p.line)
            };
            let seq = p.seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
            format!(
                "TAMPERED: session {session}: first bad {at}{seq}: {}\n  {} event(s) checked before it\n",
                p.detail, r.events
            )
        }
        (None, Status::Gaps) => format!(
            "INCOMPLETE: session {session}: {} event(s) chain correctly, but some never reached the control plane\n",
            r.events
        ),
        (None, _) => format!(
            "OK: session {session}: {} event(s), last seq {}, chain intact\n",
            r.events, r.last_seq
        ),
    };
    if r.lost_tail {
        out.push_str(&format!(
            "  lost tail: the session has no end and its node stopped or restarted after seq {}; whatever it had not delivered is lost\n",
            r.last_seq
        ));
    }
    for g in &r.gaps {
        out.push_str(&format!(
            "  gap: events {} to {} missing (before line {})\n",
            g.from, g.to, g.line
        ));
    }
    for a in &r.anchors {
        out.push_str(&format!("  checked against {} (seq {})\n", a.source, a.seq));
    }
    out
}

fn print_store(v: &Value, json: bool) -> ExitCode {
    if json {
        stdout(&format!("{v:#}\n"));
    } else if v["ok"] == true {
        stdout(&format!(
            "OK: {} checkpoint(s) check; {} session(s) covered, none deleted or cut short\n",
            v["checkpoints"], v["sessions"]
        ));
    } else {
        let mut out = String::from("TAMPERED: the store does not match its signed checkpoints\n");
        if let Some(e) = v["checkpoint_error"].as_str() {
            out.push_str(&format!("  {e}\n"));
        }
        for l in v["lost_sessions"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  session {}: checkpointed up to seq {}, store has {}\n",
                l["session_id"].as_str().unwrap_or("?"),
                l["checkpointed_seq"],
                l["stored_seq"]
                    .as_u64()
                    .map_or("nothing".to_owned(), |s| format!("seq {s}"))
            ));
        }
        stdout(&out);
    }
    if v["ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_for_people_and_exit_accordingly() {
        let mut r = verify::verify(&[], &Options::default());
        assert_eq!(exit_for(&r), ExitCode::from(1));
        assert!(describe(&r, true).starts_with("TAMPERED"));
        r.problem = None;
        r.status = Status::Gaps;
        r.gaps = vec![verify::Gap {
            from: 3,
            to: 4,
            line: 3,
        }];
        assert_eq!(exit_for(&r), ExitCode::from(2));
        assert!(describe(&r, true).contains("events 3 to 4 missing"));
        r.status = Status::Intact;
        r.gaps.clear();
        assert_eq!(exit_for(&r), ExitCode::SUCCESS);
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(verify_file(std::path::Path::new("/nonexistent/export.jsonl"), None).is_err());
    }
}

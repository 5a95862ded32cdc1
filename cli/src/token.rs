//! `sluice token issue`: sign a token offline with the control plane's key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sluice_identity::{Issuer, PrincipalKind, Role, SigningKey};

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The control plane's configuration (for its key, issuer and audience).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The principal's name.
    #[arg(long)]
    pub subject: String,
    /// person, agent or service.
    #[arg(long, default_value = "person", value_parser = parse_kind)]
    pub kind: PrincipalKind,
    /// A group (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// A REST role: admin, approver or auditor (repeatable).
    #[arg(long = "role", value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// Validity.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

fn parse_kind(s: &str) -> Result<PrincipalKind, String> {
    match s {
        "person" => Ok(PrincipalKind::Person),
        "agent" => Ok(PrincipalKind::Agent),
        "service" => Ok(PrincipalKind::Service),
        _ => Err(format!("unknown kind {s:?} (person, agent or service)")),
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "admin" => Ok(Role::Admin),
        "approver" => Ok(Role::Approver),
        "auditor" => Ok(Role::Auditor),
        _ => Err(format!("unknown role {s:?} (admin, approver or auditor)")),
    }
}

pub fn issue(args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let cfg: sluice_control_plane::ControlPlaneConfig =
        crate::config::load(args.config.as_deref(), "SLUICE_CP_")?;
    let pem = std::fs::read_to_string(&cfg.signing_key_file).with_context(|| {
        format!(
            "cannot read the signing key {}",
            cfg.signing_key_file.display()
        )
    })?;
    let key = SigningKey::from_pem(&pem)?;
    let issuer = Issuer::new(cfg.issuer_url, cfg.audience, key)?;
    let t = issuer.issue(
        &args.subject,
        args.kind,
        &args.groups,
        &args.roles,
        args.ttl,
    )?;
    // The token is the command's output: it goes to stdout, nowhere else.
    crate::output::stdout(&format!("{}\n", t.token));
    Ok(ExitCode::SUCCESS)
}

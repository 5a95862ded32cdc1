//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogArgs;

/// Sluice: an access gateway that puts policy, approvals, masking and a
/// tamper-evident record between AI agents and production systems.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole product in one process: control plane (SQLite), one
    /// data-plane node, and the web API, with a demo database if none is given.
    Dev(DevArgs),
    /// Run a control-plane replica.
    ControlPlane(RoleArgs),
    /// Run a data-plane node.
    DataPlane(RoleArgs),
    /// Manage access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Work with policies offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide a statement with a policy file, without any server: exit 0
    /// whatever the decision, 2 on a bad policy or bad arguments.
    Check(crate::policy::CheckArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Register a target: NAME=postgres://USER:PASSWORD@HOST:PORT/DB (repeatable).
    #[arg(long = "target", value_name = "NAME=URL")]
    pub targets: Vec<String>,
    /// Load a policy file (repeatable). Without it, the `observe` policy
    /// (allow and record everything parseable) applies.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// Where the embedded store, keys and certificates live.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where Postgres clients connect.
    #[arg(long, default_value = "127.0.0.1:6432")]
    pub pg_listen: SocketAddr,
    /// Where the REST API and web UI are served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// Write connection details as JSON to FILE once everything is ready.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Do not start a demo Postgres even if no target is given.
    #[arg(long)]
    pub no_demo: bool,
    /// How long the printed tokens stay valid.
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub token_ttl: std::time::Duration,
    /// How long a peer may stall in the middle of a message (for tests).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, hide = true)]
    pub message_timeout: std::time::Duration,
    /// How long a client may take from connecting to being authenticated
    /// (for tests).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, hide = true)]
    pub startup_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Configuration file (TOML). Environment variables override it.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token offline with the control plane's signing key (for
    /// bootstrapping the first admin).
    Issue(crate::token::IssueArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dev(args) => crate::dev::run(args).await,
        Command::ControlPlane(args) => crate::roles::control_plane(args).await,
        Command::DataPlane(args) => crate::roles::data_plane(args).await,
        Command::Token(TokenCommand::Issue(args)) => crate::token::issue(&args),
        Command::Policy(PolicyCommand::Check(args)) => Ok(crate::policy::check(&args)),
    }
}

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
    Dev(Box<DevArgs>),
    /// Run a control-plane replica.
    ControlPlane(RoleArgs),
    /// Run a data-plane node.
    DataPlane(RoleArgs),
    /// Manage access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Sign in to the organisation's identity provider (device flow) and
    /// keep the token for `sluice connect`.
    Login(crate::login::LoginArgs),
    /// Open a local listener for TARGET that signs clients in with the
    /// stored token, so tools connect to localhost with no secret.
    Connect(crate::connect::ConnectArgs),
    /// Work with policies offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage the keys that seal target credentials.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Find, show, export and replay recorded sessions (through the API).
    #[command(subcommand)]
    Sessions(crate::sessions::SessionsCommand),
    /// Verify the tamper-evident record, online or from an export file.
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every stored target credential under a new key, in one
    /// transaction.
    RotateKey(crate::secrets::RotateArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide a statement with a policy file, without any server: exit 0
    /// whatever the decision, 2 on a bad policy or bad arguments.
    Check(crate::policy::CheckArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Register a target (repeatable): NAME=postgres://USER:PASSWORD@HOST:PORT/DB,
    /// or an HTTP API: NAME=https://api.internal/v1 (see --target-auth).
    #[arg(long = "target", value_name = "NAME=URL")]
    pub targets: Vec<String>,
    /// How the HTTP target NAME receives its credential: bearer (default),
    /// basic (the secret is user:password), header:HEADER or query:PARAM.
    #[arg(long = "target-auth", value_name = "NAME=AUTH")]
    pub target_auth: Vec<String>,
    /// The HTTP target NAME's credential: a value (sealed in the store), or
    /// env:VAR / file:PATH resolved by the node for each request.
    #[arg(long = "target-secret", value_name = "NAME=SECRET")]
    pub target_secret: Vec<String>,
    /// Extra CA certificates (PEM file) to trust for the HTTP target NAME;
    /// upstream TLS is always verified.
    #[arg(long = "target-ca", value_name = "NAME=PATH")]
    pub target_ca: Vec<String>,
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
    /// Where agents reach HTTP targets: /http/{target}/{path}.
    #[arg(long, default_value = "127.0.0.1:6480")]
    pub http_gateway_listen: SocketAddr,
    /// Also route requests whose host is {target}.SUFFIX to that target,
    /// with the path as-is (e.g. http.sluice.internal, resolved to the
    /// gateway's address).
    #[arg(long, value_name = "SUFFIX", value_parser = host_suffix)]
    pub http_host_suffix: Option<sluice_data_plane::http::host::HostSuffix>,
    /// Write connection details as JSON to FILE once everything is ready.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Trust the external OpenID Connect issuers of FILE: TOML with
    /// `[[oidc]]` tables, as in the control-plane configuration.
    #[arg(long, value_name = "FILE")]
    pub oidc_config: Option<PathBuf>,
    /// Approval channels from FILE: TOML with a `[slack]` table and
    /// `[[webhooks]]` tables, as in the control-plane configuration.
    #[arg(long, value_name = "FILE")]
    pub approvals_config: Option<PathBuf>,
    /// Do not start a demo Postgres even if no target is given.
    #[arg(long)]
    pub no_demo: bool,
    /// How long the printed tokens stay valid.
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub token_ttl: std::time::Duration,
    /// When a client's token expires mid-session: end the session at once,
    /// or after the statement in flight.
    #[arg(long, value_enum, default_value = "end")]
    pub on_token_expiry: ExpiryArg,
    /// How long a target's catalog (views over masked tables) is used before
    /// it is read again.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub catalog_ttl: std::time::Duration,
    /// How long a peer may stall in the middle of a message (for tests).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, hide = true)]
    pub message_timeout: std::time::Duration,
    /// How long a client may take from connecting to being authenticated
    /// (for tests).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, hide = true)]
    pub startup_timeout: std::time::Duration,
    /// How long an HTTP target may take to start its response (for tests).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, hide = true)]
    pub http_upstream_timeout: std::time::Duration,
    /// How long an HTTP client may take to send its body (for tests).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, hide = true)]
    pub http_body_timeout: std::time::Duration,
    /// The largest request body the HTTP gateway accepts (for tests).
    #[arg(long, default_value_t = 8 << 20, hide = true)]
    pub http_max_body: usize,
    /// The largest request body the HTTP gateway streams to an upstream
    /// when the decision does not rest on the body (for tests).
    #[arg(long, default_value_t = 1 << 30, hide = true)]
    pub http_max_streamed_body: u64,
    /// An HTTP session with no request for this long ends (for tests).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, hide = true)]
    pub http_session_idle: std::time::Duration,
    /// Under a `hold` policy, how long an HTTP request waits for its
    /// approval (for tests).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, hide = true)]
    pub http_approval_hold: std::time::Duration,
    /// How often the audit record is checkpointed (signed).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, hide = true)]
    pub audit_checkpoint_interval: std::time::Duration,
}

/// Parses `--http-host-suffix`.
fn host_suffix(
    s: &str,
) -> Result<sluice_data_plane::http::host::HostSuffix, sluice_data_plane::http::host::HostError> {
    s.to_owned().try_into()
}

/// `--on-token-expiry` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExpiryArg {
    /// End the session at the moment the token expires.
    End,
    /// Let the statement in flight finish first.
    AfterStatement,
}

impl From<ExpiryArg> for sluice_data_plane::OnExpiry {
    fn from(a: ExpiryArg) -> Self {
        match a {
            ExpiryArg::End => Self::End,
            ExpiryArg::AfterStatement => Self::AfterStatement,
        }
    }
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
        Command::Dev(args) => crate::dev::run(*args).await,
        Command::ControlPlane(args) => crate::roles::control_plane(args).await,
        Command::DataPlane(args) => crate::roles::data_plane(args).await,
        Command::Token(TokenCommand::Issue(args)) => crate::token::issue(&args),
        Command::Login(args) => crate::login::run(&args).await,
        Command::Connect(args) => crate::connect::run(args).await,
        Command::Policy(PolicyCommand::Check(args)) => Ok(crate::policy::check(&args)),
        Command::Secrets(SecretsCommand::RotateKey(args)) => {
            crate::secrets::rotate_key(&args).await
        }
        Command::Sessions(cmd) => crate::sessions::run(cmd).await,
        Command::Audit(cmd) => crate::audit::run(cmd).await,
    }
}

//! `sluice dev`: the whole product in one process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use sluice_common::Shutdown;
use sluice_control_plane::store::PutMode;
use sluice_control_plane::targets::{Credential, TargetSpec};
use sluice_control_plane::{ControlPlane, ControlPlaneConfig};
use sluice_data_plane::control::snapshot::SnapshotCell;
use sluice_data_plane::{BoundNode, DataPlaneConfig};
use sluice_identity::{PrincipalKind, Role};
use tokio::net::TcpListener;

use crate::cli::DevArgs;
use crate::roles::{cancel_on_signal, serve_control_plane};

/// What `--ready-file` receives: everything a script needs to use the gateway.
#[derive(Debug, Serialize)]
struct Ready {
    pg_url: String,
    api_url: String,
    http_gateway_url: String,
    admin_token: String,
    agent_token: String,
    psql: String,
    data_dir: PathBuf,
    targets: Vec<String>,
    policies: Vec<String>,
}

fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("sluice")
        .join("dev")
}

/// Parses `NAME=postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=MODE` or
/// `NAME=https://HOST/BASE` (an HTTP target, its credential given apart).
pub fn parse_target(spec: &str) -> anyhow::Result<TargetSpec> {
    let (name, raw) = spec.split_once('=').context("--target must be NAME=URL")?;
    let url = url::Url::parse(raw).with_context(|| format!("--target {name}: not a URL"))?;
    if matches!(url.scheme(), "http" | "https") {
        return Ok(crate::dev_http::http_target(name, &url));
    }
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!("--target {name}: use a postgres://, https:// or http:// URL");
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let tls_mode = url
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map_or_else(|| "prefer".to_owned(), |(_, v)| v.into_owned());
    if !matches!(
        tls_mode.as_str(),
        "disable" | "prefer" | "require" | "verify-full"
    ) {
        bail!("--target {name}: sslmode must be disable, prefer, require or verify-full");
    }
    let database = url.path().trim_start_matches('/');
    Ok(TargetSpec {
        name: name.to_owned(),
        kind: "postgres".to_owned(),
        host: url
            .host_str()
            .context("--target: the URL needs a host")?
            .to_owned(),
        port: url.port().unwrap_or(5432),
        database: if database.is_empty() {
            name.to_owned()
        } else {
            decode(database)
        },
        username: decode(url.username()),
        credential: match url.password().map(decode) {
            Some(p) if !p.is_empty() => Credential::Password(p),
            _ => Credential::None,
        },
        tls_mode,
        logins: Vec::new(),
        http: Default::default(),
    })
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let shutdown = Shutdown::new();
    cancel_on_signal(&shutdown);

    let mut targets = args
        .targets
        .iter()
        .map(|t| parse_target(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::dev_http::apply_flags(&mut targets, &args)?;
    let demo = if !targets.iter().any(|t| t.kind == "postgres") && !args.no_demo {
        crate::demo::start().await?
    } else {
        None
    };
    if let Some((_, t)) = &demo {
        targets.push(t.clone());
    }
    let result = run_with(&args, &data_dir, targets, &shutdown).await;
    if let Some((pg, _)) = demo {
        pg.stop().await;
    }
    result
}

async fn run_with(
    args: &DevArgs,
    data_dir: &std::path::Path,
    targets: Vec<TargetSpec>,
    shutdown: &Shutdown,
) -> anyhow::Result<ExitCode> {
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let grpc_addr = grpc.local_addr()?;
    let http = TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (use --http-listen)", args.http_listen))?;
    let http_addr = http.local_addr()?;
    let api_url = format!("http://{http_addr}");
    let join_token = format!("sjt_dev_{}", uuid::Uuid::new_v4().simple());
    let channels = crate::config::load_approval_channels(args.approvals_config.as_deref())?;
    let cp_config = ControlPlaneConfig {
        store_url: format!("sqlite://{}", data_dir.join("sluice.db").display()),
        grpc_listen: grpc_addr,
        http_listen: http_addr,
        grpc_tls: None,
        insecure_grpc: true,
        issuer_url: api_url.clone(),
        audience: sluice_identity::DEFAULT_AUDIENCE.to_owned(),
        signing_key_file: data_dir.join("signing-key.pem"),
        generate_signing_key: true,
        bootstrap_join_token: Some(join_token.clone()),
        heartbeat_interval: Duration::from_secs(2),
        config_poll_interval: Duration::from_secs(2),
        audit_checkpoint_interval: args.audit_checkpoint_interval,
        audit_retention: None,
        redis_url: None,
        secrets_key_file: Some(data_dir.join("secrets.key")),
        generate_secrets_key: true,
        previous_secrets_key_files: Vec::new(),
        service_token_ttl: Duration::from_secs(15 * 60),
        max_token_ttl: Duration::from_secs(24 * 3600),
        oidc: crate::config::load_oidc(args.oidc_config.as_deref())?,
        slack: channels.slack,
        email: channels.email,
        approval_sweep_interval: Duration::from_secs(1),
        webhooks: channels.webhooks,
    };
    let cp = ControlPlane::start(cp_config, shutdown.clone()).await?;
    let names = register_targets(&cp, targets).await?;
    let policies = load_policies(&cp, &args.policies).await?;

    let node_config = DataPlaneConfig {
        node_name: "dev".to_owned(),
        control_plane_url: format!("http://{grpc_addr}"),
        control_plane_ca: None,
        join_token,
        pg_listen: args.pg_listen,
        http_listen: "127.0.0.1:0".parse()?,
        tls_cert: None,
        tls_key: None,
        tls_self_signed_dir: Some(data_dir.to_path_buf()),
        insecure_plaintext: args.pg_listen.ip().is_loopback(),
        max_snapshot_age: Duration::from_secs(60),
        message_timeout: args.message_timeout,
        startup_timeout: args.startup_timeout,
        upstream_connect_timeout: Duration::from_secs(10),
        max_client_message_bytes: 64 << 20,
        max_server_message_bytes: 1 << 30,
        audit_buffer_events: 100_000,
        on_token_expiry: args.on_token_expiry.into(),
        token_expiry_grace: Duration::from_secs(60),
        strict_audit_wait: Duration::from_secs(5),
        catalog_ttl: args.catalog_ttl,
        http_gateway_listen: Some(args.http_gateway_listen),
        http_gateway: sluice_data_plane::http::HttpLimits {
            upstream_timeout: args.http_upstream_timeout,
            max_request_body_bytes: args.http_max_body,
            max_streamed_body_bytes: args.http_max_streamed_body,
            request_body_timeout: args.http_body_timeout,
            session_idle: args.http_session_idle,
            approval_hold: args.http_approval_hold,
            ..Default::default()
        },
        http_gateway_host_suffix: args.http_host_suffix.clone(),
    };
    // The gateway serves plaintext beside TLS only where the node may.
    let gateway_scheme = if node_config.insecure_plaintext {
        "http"
    } else {
        "https"
    };
    let node = BoundNode::bind(node_config).await.with_context(|| {
        format!(
            "data plane (use --pg-listen to pick another address than {})",
            args.pg_listen
        )
    })?;
    let pg_addr = node.pg_addr()?;
    let gateway_addr = node.http_gateway_addr();
    let snapshot = node.snapshot();
    let node_task = tokio::spawn(node.run(shutdown.clone()));
    let cp_task = {
        let cp = cp.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { serve_control_plane(&cp, grpc, http, &shutdown).await })
    };

    wait_ready(&snapshot, cp.store.revision().await?).await?;
    let mut ready = credentials(&cp, &api_url, pg_addr, data_dir, &names, args.token_ttl)?;
    ready.policies = policies;
    ready.http_gateway_url = gateway_addr
        .map(|a| format!("{gateway_scheme}://{a}"))
        .unwrap_or_default();
    if let Some(path) = &args.ready_file {
        let json = serde_json::to_vec_pretty(&ready)?;
        sluice_common::tls::write_private(path, &json)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    print_banner(&ready);

    shutdown.cancelled().await;
    let _ = node_task.await;
    cp_task.await.context("control plane task")??;
    cp.store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The policy applied when `sluice dev` is given none.
const OBSERVE_POLICY: &str = include_str!("../../examples/policies/observe.yaml");

/// Makes the store's policies exactly those on the command line (or
/// `observe`); returns their names.
async fn load_policies(cp: &ControlPlane, files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut sources = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read policy {}", f.display()))?;
        sources.push((f.display().to_string(), text));
    }
    if sources.is_empty() {
        sources.push(("observe".to_owned(), OBSERVE_POLICY.to_owned()));
    }
    let mut names = Vec::new();
    for (origin, text) in &sources {
        let stored = cp
            .put_policy(text, "sluice dev", PutMode::Upsert, None)
            .await
            .with_context(|| format!("policy {origin}"))?;
        names.push(stored.name);
    }
    for old in cp.store.list_policies().await? {
        if !names.contains(&old.name) {
            cp.delete_policy(&old.name, "sluice dev").await?;
        }
    }
    Ok(names)
}

async fn register_targets(
    cp: &ControlPlane,
    targets: Vec<TargetSpec>,
) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for t in targets {
        // `sluice dev` keeps its store between runs; the command line wins.
        cp.delete_target(&t.name).await?;
        let name = t.name.clone();
        cp.create_target(t)
            .await
            .with_context(|| format!("registering target {name}"))?;
        names.push(name);
    }
    Ok(names)
}

/// Waits until the node holds the configuration as of `revision`.
async fn wait_ready(snapshot: &Arc<SnapshotCell>, revision: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if snapshot.usable().is_ok_and(|s| s.version >= revision) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the data plane did not receive its configuration within 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn credentials(
    cp: &ControlPlane,
    api_url: &str,
    pg_addr: std::net::SocketAddr,
    data_dir: &std::path::Path,
    names: &[String],
    ttl: Duration,
) -> anyhow::Result<Ready> {
    let admin = cp.issuer.issue(
        "admin",
        PrincipalKind::Person,
        &["admins".to_owned()],
        &[Role::Admin, Role::Approver, Role::Auditor],
        ttl,
    )?;
    let agent = cp.issuer.issue(
        "agent",
        PrincipalKind::Agent,
        &["agents".to_owned()],
        &[],
        ttl,
    )?;
    let db = names.first().map_or("demo", String::as_str);
    let pg_url = format!(
        "postgres://agent:{}@{pg_addr}/{db}?sslmode=require",
        agent.token
    );
    Ok(Ready {
        psql: format!("psql \"{pg_url}\""),
        pg_url,
        api_url: api_url.to_owned(),
        http_gateway_url: String::new(),
        admin_token: admin.token,
        agent_token: agent.token,
        data_dir: data_dir.to_path_buf(),
        targets: names.to_vec(),
        policies: Vec::new(),
    })
}

fn print_banner(r: &Ready) {
    let mut t = String::from("\nSluice is running.\n\n");
    if r.targets.is_empty() {
        t.push_str(
            "  No target yet. Restart with --target NAME=postgres://USER:PASSWORD@HOST:PORT/DB\n",
        );
    } else {
        t.push_str(&format!(
            "  Connect as the demo agent (targets: {}):\n\n",
            r.targets.join(", ")
        ));
        t.push_str(&format!("    {}\n", r.psql));
    }
    if !r.http_gateway_url.is_empty() {
        t.push_str(&format!(
            "\n  HTTP targets: curl -H \"Authorization: Bearer $AGENT_TOKEN\" {}/http/TARGET/PATH\n",
            r.http_gateway_url
        ));
    }
    t.push_str(&format!("\n  Policies: {}\n", r.policies.join(", ")));
    if r.policies == ["observe"] {
        t.push_str("    (allows and records every statement; try --policy examples/policies/reference.yaml)\n");
    }
    t.push_str(&format!(
        "\n  API:   {}   (Authorization: Bearer $ADMIN_TOKEN)\n",
        r.api_url
    ));
    t.push_str(&format!(
        "  Sessions: curl -H \"Authorization: Bearer $ADMIN_TOKEN\" {}/api/v1/sessions\n",
        r.api_url
    ));
    t.push_str(&format!("  ADMIN_TOKEN={}\n\n", r.admin_token));
    t.push_str(&format!(
        "  Data: {}    Press Ctrl-C to stop.\n\n",
        r.data_dir.display()
    ));
    crate::output::stdout(&t);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_parse_with_defaults_and_escapes() {
        let t =
            parse_target("prod=postgres://gw:p%40ss@db.internal:6543/app?sslmode=require").unwrap();
        assert_eq!(
            (t.name.as_str(), t.host.as_str(), t.port),
            ("prod", "db.internal", 6543)
        );
        assert_eq!(t.username, "gw");
        assert!(matches!(&t.credential, Credential::Password(p) if p == "p@ss"));
        assert_eq!(
            (t.database.as_str(), t.tls_mode.as_str()),
            ("app", "require")
        );
        let d = parse_target("demo=postgres://u@localhost").unwrap();
        assert_eq!(
            (d.port, d.database.as_str(), d.tls_mode.as_str()),
            (5432, "demo", "prefer")
        );
    }

    #[test]
    fn bad_target_specs_are_refused() {
        assert!(parse_target("no-equals").is_err());
        assert!(parse_target("x=mysql://a@b/c").is_err());
        assert!(parse_target("x=postgres://a@b/c?sslmode=bogus").is_err());
    }
}

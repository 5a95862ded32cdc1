//! The demo database of `sluice dev`: a private PostgreSQL loaded with the
//! demo schema, reached by the gateway as a non-superuser with SCRAM.

use anyhow::Context as _;
use sluice_common::local_pg::{LocalPostgres, find_bin_dir, random_password};
use sluice_control_plane::targets::{Credential, TargetSpec};

/// The demo schema and data (`examples/demo/seed.sql`).
pub const SEED_SQL: &str = include_str!("../../examples/demo/seed.sql");

/// The role the gateway uses: it owns the demo database but is not a superuser.
pub const GATEWAY_ROLE: &str = "sluice_gateway";

/// Starts the demo server, if PostgreSQL is installed; returns it and its target.
pub async fn start() -> anyhow::Result<Option<(LocalPostgres, TargetSpec)>> {
    let Some(bin) = find_bin_dir() else {
        tracing::warn!(
            "no PostgreSQL server binaries found (initdb, postgres); add a target with \
             --target NAME=postgres://USER:PASSWORD@HOST:PORT/DB"
        );
        return Ok(None);
    };
    tracing::info!(bin = %bin.display(), "starting a demo PostgreSQL");
    let mut pg = LocalPostgres::start(&bin, "scram-sha-256")
        .await
        .context("demo database")?;
    let password = random_password();
    pg.create_owned_database(GATEWAY_ROLE, &password, "scram-sha-256", "demo")
        .await?;
    pg.execute("demo", &format!("SET ROLE {GATEWAY_ROLE}; {SEED_SQL}"))
        .await
        .context("loading the demo data")?;
    let target = TargetSpec {
        name: "demo".to_owned(),
        kind: "postgres".to_owned(),
        host: "127.0.0.1".to_owned(),
        port: pg.port,
        database: "demo".to_owned(),
        username: GATEWAY_ROLE.to_owned(),
        credential: Credential::Password(password),
        tls_mode: "disable".to_owned(),
        logins: Vec::new(),
        http: Default::default(),
    };
    Ok(Some((pg, target)))
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Key rotation on a real store: everything sealed under the old key opens
//! under the new one, and only there, once `rotate_key` has run.

use serde_json::json;
use sluice_common::Shutdown;
use sluice_control_plane::secrets::Kek;
use sluice_control_plane::targets::{Credential, TargetSpec, rotate_key};
use sluice_control_plane::{ControlPlane, ControlPlaneConfig};
use sluice_identity::{Identity, PrincipalKind};

fn config(dir: &std::path::Path, key: &str, previous: &[&str]) -> ControlPlaneConfig {
    serde_json::from_value(json!({
        "store_url": format!("sqlite://{}", dir.join("store.db").display()),
        "grpc_listen": "127.0.0.1:0",
        "insecure_grpc": true,
        "issuer_url": "http://127.0.0.1",
        "signing_key_file": dir.join("signing.pem"),
        "generate_signing_key": true,
        "secrets_key_file": dir.join(key),
        "previous_secrets_key_files": previous.iter().map(|p| dir.join(p)).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn anyone() -> Identity {
    Identity {
        name: "a".into(),
        kind: PrincipalKind::Agent,
        groups: vec![],
        roles: vec![],
        token_id: "t".into(),
        expires_at: u64::MAX,
    }
}

async fn password(cfg: ControlPlaneConfig) -> Result<String, String> {
    let shutdown = Shutdown::new();
    let cp = ControlPlane::start(cfg, shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    let r = cp
        .open_credential("orders", &anyone())
        .await
        .map(|(_, p)| p)
        .map_err(|e| e.to_string());
    shutdown.cancel();
    cp.store.close().await;
    r
}

#[tokio::test]
async fn rotation_reseals_everything_under_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.key"), Kek::generate_text()).unwrap();
    std::fs::write(dir.path().join("new.key"), Kek::generate_text()).unwrap();
    let shutdown = Shutdown::new();
    let cp = ControlPlane::start(config(dir.path(), "old.key", &[]), shutdown.clone())
        .await
        .unwrap();
    cp.create_target(TargetSpec {
        name: "orders".into(),
        kind: "postgres".into(),
        host: "db".into(),
        port: 5432,
        database: "orders".into(),
        username: "gw".into(),
        credential: Credential::Password("0ld-k3y-pw".into()),
        tls_mode: "disable".into(),
        logins: vec![],
        http: Default::default(),
    })
    .await
    .unwrap();
    shutdown.cancel();
    cp.store.close().await;

    let new =
        Kek::from_text(&std::fs::read_to_string(dir.path().join("new.key")).unwrap()).unwrap();
    let n = rotate_key(&config(dir.path(), "old.key", &[]), new)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        password(config(dir.path(), "new.key", &[])).await.unwrap(),
        "0ld-k3y-pw"
    );
    let err = password(config(dir.path(), "old.key", &[]))
        .await
        .unwrap_err();
    assert!(err.contains("not configured"), "{err}");
    // Rotating again to the same key changes nothing.
    let again =
        Kek::from_text(&std::fs::read_to_string(dir.path().join("new.key")).unwrap()).unwrap();
    assert_eq!(
        rotate_key(&config(dir.path(), "new.key", &[]), again)
            .await
            .unwrap(),
        0
    );
}

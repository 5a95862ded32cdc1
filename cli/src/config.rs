//! Role configuration: a TOML file, then environment overrides
//! (`SLUICE_CP_*` for the control plane, `SLUICE_DP_*` for nodes; nested keys
//! with `__`, e.g. `SLUICE_CP_GRPC_TLS__CERT`).

use std::path::Path;

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::de::DeserializeOwned;

pub fn load<T: DeserializeOwned>(file: Option<&Path>, env_prefix: &str) -> anyhow::Result<T> {
    let mut fig = Figment::new();
    if let Some(path) = file {
        anyhow::ensure!(
            path.exists(),
            "configuration file {} does not exist",
            path.display()
        );
        fig = fig.merge(Toml::file(path));
    }
    fig.merge(Env::prefixed(env_prefix).split("__"))
        .extract()
        .with_context(|| match file {
            Some(p) => format!(
                "invalid configuration in {} or {env_prefix}* variables",
                p.display()
            ),
            None => format!("invalid configuration in {env_prefix}* variables"),
        })
}

/// The approval channels of an optional TOML file (for `sluice dev`): a
/// `[slack]` table and `[[webhooks]]` tables, as in the control-plane
/// configuration.
pub fn load_approval_channels(file: Option<&Path>) -> anyhow::Result<ApprovalChannels> {
    let Some(path) = file else {
        return Ok(ApprovalChannels::default());
    };
    anyhow::ensure!(
        path.exists(),
        "approvals configuration file {} does not exist",
        path.display()
    );
    Figment::from(Toml::file(path))
        .extract()
        .with_context(|| format!("invalid approvals configuration in {}", path.display()))
}

/// Slack and webhooks as approval channels.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalChannels {
    /// Slack, if configured.
    #[serde(default)]
    pub slack: Option<sluice_control_plane::approvals::slack::SlackConfig>,
    /// Email, if configured.
    #[serde(default)]
    pub email: Option<sluice_control_plane::approvals::email::EmailConfig>,
    /// Webhook endpoints.
    #[serde(default)]
    pub webhooks: Vec<sluice_control_plane::approvals::webhook::WebhookConfig>,
}

/// The `[[oidc]]` tables of an optional TOML file (for `sluice dev`).
pub fn load_oidc(file: Option<&Path>) -> anyhow::Result<Vec<sluice_identity::OidcIssuerConfig>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OidcFile {
        #[serde(default)]
        oidc: Vec<sluice_identity::OidcIssuerConfig>,
    }
    let Some(path) = file else {
        return Ok(Vec::new());
    };
    anyhow::ensure!(
        path.exists(),
        "OIDC configuration file {} does not exist",
        path.display()
    );
    let parsed: OidcFile = Figment::from(Toml::file(path))
        .extract()
        .with_context(|| format!("invalid OIDC configuration in {}", path.display()))?;
    if let Some(problem) = parsed.oidc.iter().find_map(|c| c.problem()) {
        anyhow::bail!("{}: {problem}", path.display());
    }
    Ok(parsed.oidc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.toml");
        std::fs::write(
            &path,
            "store_url = 'sqlite:///tmp/x.db'\nissuer_url = 'http://x'\nsigning_key_file = 'k'\nstore_urll = 'typo'\n",
        )
        .unwrap();
        let err =
            load::<sluice_control_plane::ControlPlaneConfig>(Some(&path), "SLUICE_TEST_NONE_")
                .unwrap_err();
        assert!(format!("{err:#}").contains("store_urll"), "{err:#}");
    }

    #[test]
    fn the_shipped_examples_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let cp: sluice_control_plane::ControlPlaneConfig =
            load(Some(&root.join("control-plane.toml")), "SLUICE_TEST_NONE_").unwrap();
        assert!(cp.grpc_tls.is_some());
        let dp: sluice_data_plane::DataPlaneConfig =
            load(Some(&root.join("data-plane.toml")), "SLUICE_TEST_NONE_").unwrap();
        assert!(dp.control_plane_url.starts_with("https://"));
    }

    #[test]
    fn oidc_tables_load_in_the_control_plane_configuration_and_for_dev() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.toml");
        let oidc = "[[oidc]]\nissuer = 'https://idp'\naudience = 'sluice'\nalgorithms = ['ES256']\nprincipal_kind = 'agent'\n[oidc.group_roles]\ndba = ['admin']\n";
        std::fs::write(
            &path,
            format!("store_url = 'sqlite:///tmp/x.db'\nissuer_url = 'http://x'\nsigning_key_file = 'k'\n{oidc}"),
        )
        .unwrap();
        let cp: sluice_control_plane::ControlPlaneConfig =
            load(Some(&path), "SLUICE_TEST_NONE_").unwrap();
        assert_eq!(cp.oidc.len(), 1);
        assert_eq!(
            cp.oidc[0].roles_for(&["dba".into()]),
            vec![sluice_identity::Role::Admin]
        );
        let dev = dir.path().join("oidc.toml");
        std::fs::write(&dev, oidc).unwrap();
        assert_eq!(load_oidc(Some(&dev)).unwrap(), cp.oidc);
        std::fs::write(&dev, "[[oidc]]\nissuer = 'https://idp'\naudience = ''\n").unwrap();
        assert!(
            load_oidc(Some(&dev)).is_err(),
            "an empty audience is refused"
        );
        std::fs::write(
            &dev,
            "[[oidc]]\nissuer = 'https://idp'\naudience = 'a'\nalgorithms = ['none']\n",
        )
        .unwrap();
        assert!(
            load_oidc(Some(&dev)).is_err(),
            "alg none cannot be configured"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let err =
            load::<sluice_control_plane::ControlPlaneConfig>(Some(Path::new("/nope.toml")), "X_")
                .unwrap_err();
        assert!(err.to_string().contains("/nope.toml"));
    }
}

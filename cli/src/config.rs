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
    fn a_missing_file_is_named() {
        let err =
            load::<sluice_control_plane::ControlPlaneConfig>(Some(Path::new("/nope.toml")), "X_")
                .unwrap_err();
        assert!(err.to_string().contains("/nope.toml"));
    }
}

//! `sluice secrets rotate-key`: re-seal every stored target credential
//! under a new key-encryption key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use sluice_control_plane::ControlPlaneConfig;
use sluice_control_plane::secrets::Kek;

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The control plane's configuration file (its store and current keys).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The new key (32 bytes, base64 or hex).
    #[arg(long, value_name = "FILE")]
    pub new_key_file: PathBuf,
    /// Create the new key file first (it must not exist).
    #[arg(long)]
    pub generate: bool,
}

pub async fn rotate_key(args: &RotateArgs) -> anyhow::Result<ExitCode> {
    let config: ControlPlaneConfig = crate::config::load(args.config.as_deref(), "SLUICE_CP_")?;
    let path = &args.new_key_file;
    if args.generate {
        anyhow::ensure!(!path.exists(), "{} already exists", path.display());
        sluice_common::tls::write_private(path, Kek::generate_text().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let new = Kek::from_text(&text).with_context(|| path.display().to_string())?;
    let id = new.id().to_owned();
    let n = sluice_control_plane::targets::rotate_key(&config, new).await?;
    crate::output::stdout(&format!(
        "re-sealed {n} credential(s) under key {id}.\n\
         Now set secrets_key_file = {:?} on every replica; keep the old key in \
         previous_secrets_key_files until all of them have restarted.\n",
        path.display().to_string()
    ));
    Ok(ExitCode::SUCCESS)
}

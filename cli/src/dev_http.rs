//! `sluice dev --target NAME=https://…` and the flags that complete an HTTP
//! target: `--target-auth`, `--target-secret`, `--target-ca`, each keyed by
//! the target's name so their order on the command line does not matter.

use anyhow::{Context as _, bail};
use sluice_control_plane::store::HttpSettings;
use sluice_control_plane::targets::{Credential, TargetSpec, validate_http};

use crate::cli::DevArgs;

/// An HTTP target from its URL; auth defaults to `bearer`, no credential.
pub fn http_target(name: &str, url: &url::Url) -> TargetSpec {
    TargetSpec {
        name: name.to_owned(),
        kind: "http".to_owned(),
        host: url.host_str().unwrap_or_default().to_owned(),
        port: url.port_or_known_default().unwrap_or(443),
        database: String::new(),
        username: String::new(),
        credential: Credential::None,
        tls_mode: if url.scheme() == "https" {
            "verify-full"
        } else {
            "disable"
        }
        .to_owned(),
        logins: Vec::new(),
        http: HttpSettings {
            base_url: url.as_str().to_owned(),
            auth: "bearer".to_owned(),
            ca_pem: String::new(),
        },
    }
}

/// Applies the `--target-*` flags to the HTTP targets they name, then
/// checks every HTTP target as the REST API would.
pub fn apply_flags(targets: &mut [TargetSpec], args: &DevArgs) -> anyhow::Result<()> {
    for (flag, values) in [
        ("--target-auth", &args.target_auth),
        ("--target-secret", &args.target_secret),
        ("--target-ca", &args.target_ca),
    ] {
        for v in values {
            let (name, value) = v
                .split_once('=')
                .with_context(|| format!("{flag} must be NAME=VALUE"))?;
            let Some(t) = targets
                .iter_mut()
                .find(|t| t.name == name && t.kind == "http")
            else {
                bail!(
                    "{flag} {name}: no HTTP target of that name (give --target {name}=https://…)"
                );
            };
            match flag {
                "--target-auth" => value.clone_into(&mut t.http.auth),
                "--target-secret" => t.credential = credential(value),
                _ => {
                    t.http.ca_pem = std::fs::read_to_string(value)
                        .with_context(|| format!("{flag} {name}: cannot read {value}"))?;
                }
            }
        }
    }
    for t in targets.iter().filter(|t| t.kind == "http") {
        validate_http(&t.http, &t.credential).with_context(|| format!("--target {}", t.name))?;
    }
    Ok(())
}

fn credential(value: &str) -> Credential {
    if value.is_empty() {
        Credential::None
    } else if value.starts_with("env:") || value.starts_with("file:") {
        Credential::Reference(value.to_owned())
    } else {
        Credential::Password(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn dev(args: &[&str]) -> DevArgs {
        let mut full = vec!["sluice", "dev"];
        full.extend_from_slice(args);
        match crate::cli::Cli::parse_from(full).command {
            crate::cli::Command::Dev(a) => *a,
            _ => unreachable!("dev parses as dev"),
        }
    }

    #[test]
    fn http_targets_take_their_flags_by_name() {
        let args = dev(&[
            "--target",
            "crm=https://crm.internal/v1",
            "--target-auth",
            "crm=header:X-Api-Key",
            "--target-secret",
            "crm=env:CRM_KEY",
        ]);
        let mut targets = vec![crate::dev::parse_target(&args.targets[0]).unwrap()];
        apply_flags(&mut targets, &args).unwrap();
        let t = &targets[0];
        assert_eq!(t.kind, "http");
        assert_eq!(t.http.base_url, "https://crm.internal/v1");
        assert_eq!(t.http.auth, "header:X-Api-Key");
        assert!(matches!(&t.credential, Credential::Reference(r) if r == "env:CRM_KEY"));
        let sealed = credential("s3cret");
        assert!(matches!(sealed, Credential::Password(p) if p == "s3cret"));
    }

    #[test]
    fn flags_for_unknown_targets_and_bad_auth_are_refused() {
        let args = dev(&["--target-auth", "nope=bearer"]);
        assert!(apply_flags(&mut [], &args).is_err());
        let args = dev(&[
            "--target",
            "crm=https://crm.internal/v1",
            "--target-auth",
            "crm=cookie:x",
        ]);
        let mut targets = vec![crate::dev::parse_target(&args.targets[0]).unwrap()];
        assert!(apply_flags(&mut targets, &args).is_err());
    }
}

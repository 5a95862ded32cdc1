//! Targets as admins describe them, with credentials in clear only on the
//! way in: they are sealed (or kept as node-local references) before they
//! reach the store, and opened again only to hand to a node for a session.

use sluice_identity::Identity;

use crate::ControlPlane;
use crate::bus::BusEvent;
use crate::secrets::{self, SecretError, Stored};
use crate::store::{HttpSettings, NewTarget, StoreError, Target, TargetLogin};

/// Where a credential comes from.
#[derive(Clone, Default)]
pub enum Credential {
    /// No password (trust or certificate authentication upstream).
    #[default]
    None,
    /// A password, to be sealed in the control plane.
    Password(String),
    /// A reference the node resolves: `env:NAME` or `file:/path`.
    Reference(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Password(_) => f.write_str("Password(<redacted>)"),
            Self::Reference(r) => f.debug_tuple("Reference").field(r).finish(),
        }
    }
}

/// An upstream role for one identity group.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// The identity group.
    pub group: String,
    /// The upstream user.
    pub username: String,
    /// Its credential.
    pub credential: Credential,
}

/// A target as an admin describes it.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// See [`Target::name`].
    pub name: String,
    /// See [`Target::kind`].
    pub kind: String,
    /// See [`Target::host`].
    pub host: String,
    /// See [`Target::port`].
    pub port: u16,
    /// See [`Target::database`].
    pub database: String,
    /// See [`Target::username`].
    pub username: String,
    /// That user's credential.
    pub credential: Credential,
    /// See [`Target::tls_mode`].
    pub tls_mode: String,
    /// Upstream roles for identity groups, first match wins.
    pub logins: Vec<LoginSpec>,
    /// Kind `http`: base URL, how the credential is sent, extra CA.
    pub http: HttpSettings,
}

/// Why a target could not be stored or its credential handed out.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A credential could not be sealed or opened.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such target.
    #[error("no target named {0:?}")]
    NotFound(String),
    /// The identity's login uses a node-local reference: the control plane
    /// has nothing to hand out.
    #[error("target {0:?} uses a node-local credential for this identity")]
    NotHeld(String),
}

impl ControlPlane {
    fn store_form(&self, target: &str, c: &Credential) -> Result<String, SecretError> {
        match c {
            Credential::None => Ok(String::new()),
            Credential::Password(p) => self.keyring.seal(target, p),
            Credential::Reference(r) => secrets::reference(r),
        }
    }

    /// Registers a target, sealing its credentials, and tells every node.
    pub async fn create_target(&self, spec: TargetSpec) -> Result<Target, TargetError> {
        let secret = self.store_form(&spec.name, &spec.credential)?;
        let logins = spec
            .logins
            .iter()
            .map(|l| {
                Ok(TargetLogin {
                    group: l.group.clone(),
                    username: l.username.clone(),
                    secret: self.store_form(&spec.name, &l.credential)?,
                })
            })
            .collect::<Result<Vec<_>, SecretError>>()?;
        let target = self
            .store
            .create_target(NewTarget {
                name: spec.name,
                kind: spec.kind,
                host: spec.host,
                port: spec.port,
                database: spec.database,
                username: spec.username,
                secret,
                tls_mode: spec.tls_mode,
                logins,
                http: spec.http,
            })
            .await?;
        self.bus.publish(BusEvent::ConfigChanged);
        Ok(target)
    }

    /// Removes a target and tells every node.
    pub async fn delete_target(&self, name: &str) -> Result<bool, StoreError> {
        let existed = self.store.delete_target(name).await?;
        if existed {
            self.bus.publish(BusEvent::ConfigChanged);
        }
        Ok(existed)
    }

    /// The upstream user and password for one session of `identity` on the
    /// target named `target`, chosen by the identity's groups exactly as the
    /// node chooses.
    pub async fn open_credential(
        &self,
        target: &str,
        identity: &Identity,
    ) -> Result<(String, String), TargetError> {
        let t = self
            .store
            .get_target(target)
            .await?
            .ok_or_else(|| TargetError::NotFound(target.to_owned()))?;
        let (username, stored) = t
            .logins
            .iter()
            .find(|l| identity.groups.contains(&l.group))
            .map_or((&t.username, &t.secret), |l| (&l.username, &l.secret));
        match secrets::parse(stored)? {
            Stored::Sealed { kek, blob } => {
                let password = self.keyring.open(&t.name, kek, blob)?;
                Ok((username.clone(), password))
            }
            Stored::Empty => Ok((username.clone(), String::new())),
            Stored::Reference(_) => Err(TargetError::NotHeld(t.name)),
        }
    }

    /// Seals credentials stored in clear by earlier versions. Refuses to
    /// start (rather than serve them in clear) when no key is configured.
    pub(crate) async fn seal_legacy_secrets(&self) -> Result<usize, TargetError> {
        let keyring = self.keyring.clone();
        let sealed = self
            .store
            .rewrite_secrets(|target, stored| match secrets::parse(stored) {
                Ok(_) => Ok(None),
                Err(_) => keyring.seal(target, stored).map(Some),
            })
            .await??;
        if sealed > 0 {
            tracing::info!(sealed, "sealed target credentials stored in clear");
        }
        Ok(sealed)
    }
}

/// How a stored credential appears in a snapshot: never the secret.
pub(crate) fn snapshot_form(stored: &str) -> String {
    match secrets::parse(stored) {
        Ok(Stored::Sealed { .. }) => "sealed".to_owned(),
        Ok(Stored::Reference(r)) => r.to_owned(),
        Ok(Stored::Empty) => String::new(),
        // Unknown forms are handed out as nothing at all; the node's
        // upstream login then fails and says so.
        Err(_) => "invalid".to_owned(),
    }
}

/// Re-seals every credential in the store of `config` under `new`, in one
/// transaction, opening them with the configured keys. Afterwards the
/// configuration must name `new` as `secrets_key_file` (the old key may stay
/// in `previous_secrets_key_files` until every replica has restarted).
/// Returns how many credentials were re-sealed.
pub async fn rotate_key(
    config: &crate::ControlPlaneConfig,
    new: crate::secrets::Kek,
) -> Result<usize, crate::StartError> {
    let ring = crate::control_plane::load_keyring(config)?.rotated(new);
    let store = crate::store::Store::connect(&config.store_url).await?;
    let n = store
        .rewrite_secrets(|target, stored| ring.reseal(target, stored))
        .await?
        .map_err(|e| crate::StartError::Config(format!("cannot re-seal: {e}")))?;
    store.close().await;
    Ok(n)
}

/// Why an HTTP target's settings were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpTargetError {
    /// The base URL is not an absolute `https://` or `http://` URL.
    #[error("base_url must be an absolute https:// or http:// URL without user, query or fragment")]
    BaseUrl,
    /// The credential's placement is in no known form.
    #[error(
        "auth must be bearer, basic, header:NAME or query:NAME (NAME a header or parameter name)"
    )]
    Auth,
    /// Basic authentication needs `user:password`.
    #[error("basic auth needs a credential of the form user:password")]
    Basic,
    /// The CA bundle holds no PEM certificate.
    #[error("ca_pem must hold at least one PEM certificate")]
    Ca,
}

/// Checks an HTTP target's settings (shared by the REST API and `sluice
/// dev`, so both refuse the same things). `credential` is checked only when
/// given in clear: a reference is resolved on the node.
pub fn validate_http(http: &HttpSettings, credential: &Credential) -> Result<(), HttpTargetError> {
    let url = url::Url::parse(&http.base_url).map_err(|_| HttpTargetError::BaseUrl)?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(HttpTargetError::BaseUrl);
    }
    let token = |n: &str| {
        !n.is_empty()
            && n.len() <= 128
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match http.auth.split_once(':') {
        None if matches!(http.auth.as_str(), "bearer" | "basic" | "") => {}
        Some(("header" | "query", name)) if token(name) => {}
        _ => return Err(HttpTargetError::Auth),
    }
    if http.auth == "basic"
        && let Credential::Password(p) = credential
        && !p.contains(':')
    {
        return Err(HttpTargetError::Basic);
    }
    if !http.ca_pem.is_empty() && !http.ca_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(HttpTargetError::Ca);
    }
    Ok(())
}

#[cfg(test)]
mod http_tests {
    use super::*;

    fn settings(base_url: &str, auth: &str) -> HttpSettings {
        HttpSettings {
            base_url: base_url.to_owned(),
            auth: auth.to_owned(),
            ca_pem: String::new(),
        }
    }

    #[test]
    fn http_settings_are_checked_before_they_are_stored() {
        let none = Credential::None;
        assert_eq!(
            validate_http(&settings("https://api.internal/v1", "bearer"), &none),
            Ok(())
        );
        assert_eq!(
            validate_http(&settings("http://127.0.0.1:8080", "query:api_key"), &none),
            Ok(())
        );
        assert_eq!(
            validate_http(&settings("https://a/", "header:X-Api-Key"), &none),
            Ok(())
        );
        for bad in [
            "ftp://a/",
            "https://u:p@a/",
            "https://a/?x=1",
            "https://a/#f",
            "a/b",
            "",
        ] {
            assert_eq!(
                validate_http(&settings(bad, "bearer"), &none),
                Err(HttpTargetError::BaseUrl),
                "{bad}"
            );
        }
        for bad in ["token", "header:", "header:a b", "query:x\n", "cookie:x"] {
            assert_eq!(
                validate_http(&settings("https://a/", bad), &none),
                Err(HttpTargetError::Auth),
                "{bad}"
            );
        }
        let pw = Credential::Password("no-colon".to_owned());
        assert_eq!(
            validate_http(&settings("https://a/", "basic"), &pw),
            Err(HttpTargetError::Basic)
        );
        let mut s = settings("https://a/", "bearer");
        s.ca_pem = "not a certificate".to_owned();
        assert_eq!(validate_http(&s, &none), Err(HttpTargetError::Ca));
    }
}

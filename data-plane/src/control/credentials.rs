//! The upstream credential for one session: resolved on the node from a
//! local reference, or fetched from the control plane when it holds it
//! sealed. Nothing is cached: a credential lives in memory for the session
//! that asked for it and no longer.

use std::time::Duration;

use sluice_identity::Identity;
use sluice_proto::v1;
use sluice_proto::v1::node_service_client::NodeServiceClient;
use tonic::transport::Channel;

use super::link::{LinkError, endpoint};
use crate::config::DataPlaneConfig;

/// Why a session has no upstream credential. The text is logged; clients
/// are told only that the target is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// An `env:` reference names an unset variable.
    #[error("environment variable {0} is not set on this node")]
    Env(String),
    /// A `file:` reference could not be read.
    #[error("credential file {0}: {1}")]
    File(String, std::io::Error),
    /// The control plane refused or could not be reached.
    #[error("control plane: {0}")]
    Fetch(#[from] tonic::Status),
    /// The reference is in no known form.
    #[error("unknown credential source {0:?}")]
    Unknown(String),
}

/// Fetches sealed credentials from the control plane.
#[derive(Clone)]
pub struct CredentialSource {
    client: NodeServiceClient<Channel>,
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource").finish_non_exhaustive()
    }
}

impl CredentialSource {
    /// A source over a lazily connected channel to the control plane.
    pub fn new(config: &DataPlaneConfig) -> Result<Self, LinkError> {
        let channel = endpoint(config)?
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let bearer = format!("Bearer {}", config.join_token)
            .parse()
            .map_err(|_| LinkError::Token)?;
        Ok(Self {
            client: NodeServiceClient::new(channel),
            bearer,
        })
    }

    /// A copy of `target` holding the upstream user and password for
    /// `identity`, whose access token is `token`.
    pub async fn for_session(
        &self,
        target: &v1::Target,
        identity: &Identity,
        token: &str,
        session_id: &str,
    ) -> Result<v1::Target, CredentialError> {
        let (username, source) = target.login_for(&identity.groups);
        let (username, password) = match source {
            "" => (username.to_owned(), String::new()),
            "sealed" => {
                let mut req = tonic::Request::new(v1::CredentialRequest {
                    target: target.name.clone(),
                    access_token: token.to_owned(),
                    session_id: session_id.to_owned(),
                });
                req.metadata_mut()
                    .insert("authorization", self.bearer.clone());
                let c = self
                    .client
                    .clone()
                    .fetch_credential(req)
                    .await?
                    .into_inner();
                (c.username, c.password)
            }
            reference => (username.to_owned(), resolve_local(reference)?),
        };
        let mut t = target.clone();
        t.username = username;
        t.password = password;
        Ok(t)
    }
}

/// Resolves `env:NAME` or `file:PATH` on this node. A file's trailing line
/// break is not part of the secret (files written by `echo` have one).
pub fn resolve_local(reference: &str) -> Result<String, CredentialError> {
    match reference.split_once(':') {
        Some(("env", name)) => {
            std::env::var(name).map_err(|_| CredentialError::Env(name.to_owned()))
        }
        Some(("file", path)) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| CredentialError::File(path.to_owned(), e)),
        _ => Err(CredentialError::Unknown(reference.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_references_resolve_on_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let r = format!("file:{}", path.display());
        assert_eq!(resolve_local(&r).unwrap(), "s3cret");
        assert!(matches!(
            resolve_local("file:/nonexistent/sluice"),
            Err(CredentialError::File(..))
        ));
        assert!(matches!(
            resolve_local("env:SLUICE_SURELY_UNSET_VARIABLE"),
            Err(CredentialError::Env(_))
        ));
        assert!(matches!(
            resolve_local("invalid"),
            Err(CredentialError::Unknown(_))
        ));
    }
}

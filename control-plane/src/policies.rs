//! Policy changes: checked before they are stored, announced once they are.

use sluice_policy::{Policy, PolicyError};

use crate::audit::changes::Change;
use crate::bus::BusEvent;
use crate::control_plane::ControlPlane;
use crate::store::{PutMode, StoreError, StoredPolicy};

/// Why a policy change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyChangeError {
    /// The document does not check.
    #[error("invalid policy: {0}")]
    Invalid(#[from] PolicyError),
    /// The document names another policy than the one addressed.
    #[error("the document is named {got:?}, not {expected:?}")]
    NameMismatch {
        /// The name in the request path.
        expected: String,
        /// The name in the document.
        got: String,
    },
    /// Creating a policy whose name is taken.
    #[error("policy {0:?} already exists")]
    Exists(String),
    /// Replacing a policy that does not exist.
    #[error("policy {0:?} does not exist")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ControlPlane {
    /// Checks and stores a policy, then tells every node. With `name`, the
    /// document must carry that name.
    pub async fn put_policy(
        &self,
        source: &str,
        author: &str,
        mode: PutMode,
        name: Option<&str>,
    ) -> Result<StoredPolicy, PolicyChangeError> {
        let policy = Policy::from_yaml(source)?;
        let doc_name = policy.name().to_owned();
        if let Some(expected) = name
            && expected != doc_name
        {
            return Err(PolicyChangeError::NameMismatch {
                expected: expected.to_owned(),
                got: doc_name,
            });
        }
        match self
            .store
            .put_policy(&doc_name, source, author, mode)
            .await?
        {
            Some(stored) => {
                tracing::info!(policy = %stored.name, version = stored.version, author, "policy stored");
                self.bus.publish(BusEvent::ConfigChanged);
                self.record_change(Change {
                    actor: author,
                    action: if mode == PutMode::Create {
                        "created"
                    } else {
                        "replaced"
                    },
                    resource: "policy",
                    name: &stored.name,
                    version: stored.version,
                    document: Some(source),
                })
                .await;
                Ok(stored)
            }
            None if mode == PutMode::Create => Err(PolicyChangeError::Exists(doc_name)),
            None => Err(PolicyChangeError::NotFound(doc_name)),
        }
    }

    /// Deletes a policy and tells every node.
    pub async fn delete_policy(&self, name: &str, author: &str) -> Result<bool, StoreError> {
        let existed = self.store.delete_policy(name, author).await?;
        if existed {
            tracing::info!(policy = name, author, "policy deleted");
            self.bus.publish(BusEvent::ConfigChanged);
            self.record_change(Change {
                actor: author,
                action: "deleted",
                resource: "policy",
                name,
                version: 0,
                document: None,
            })
            .await;
        }
        Ok(existed)
    }
}

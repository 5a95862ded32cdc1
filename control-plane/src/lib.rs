//! The control plane: the source of truth for targets, nodes and session
//! records, and the gRPC service that nodes attach to.
//!
//! Any replica can serve any node or request. Replicas share everything
//! through the store; what must reach other replicas at once travels on the
//! [`bus::Bus`].

pub mod approvals;
pub mod audit;
pub mod bus;
pub mod config;
mod control_plane;
pub mod grants;
pub mod identities;
pub mod node_service;
pub mod oidc;
pub mod policies;
pub mod secrets;
pub mod snapshot;
pub mod store;
pub mod targets;

pub use config::ControlPlaneConfig;
pub use control_plane::{ControlPlane, StartError};

//! The control plane: the source of truth for targets, nodes and session
//! records, and the gRPC service that nodes attach to.
//!
//! Any replica can serve any node or request. Replicas share everything
//! through the store; what must reach other replicas at once travels on the
//! [`bus::Bus`].

pub mod audit;
pub mod bus;
pub mod config;
mod control_plane;
pub mod node_service;
pub mod policies;
pub mod snapshot;
pub mod store;

pub use config::ControlPlaneConfig;
pub use control_plane::{ControlPlane, StartError};

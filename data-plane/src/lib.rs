//! The data plane: a stateless node that terminates client protocols,
//! decides every statement locally from a snapshot the control plane pushes,
//! forwards what is allowed with credentials only the gateway holds, and
//! streams the audit trail back.
//!
//! Layout: [`pg`] holds the Postgres protocol (client side, upstream side,
//! codec, relay); [`http`] the HTTP gateway for `http` targets; [`auth`] the
//! token checks both share; [`control`] the link to the control plane;
//! [`sessions`] the node's live sessions.

pub mod auth;
pub mod config;
pub mod control;
pub mod http;
mod node;
pub mod pg;
pub mod sessions;

pub use config::DataPlaneConfig;
pub use node::{BoundNode, NodeError};
pub use pg::relay::session::OnExpiry;

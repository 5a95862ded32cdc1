//! The node's side of the control-plane link: the snapshot it decides from,
//! the audit events it owes, and the stream that carries both.

pub mod approvals;
pub mod audit;
pub mod credentials;
pub mod link;
pub mod oidc;
pub mod snapshot;

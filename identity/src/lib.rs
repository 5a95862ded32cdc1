//! Access tokens: who is calling, and how a node knows without asking anyone.
//!
//! The control plane signs short-lived JWTs with an Ed25519 key ([`Issuer`]);
//! nodes and the REST API check them locally against the published key set
//! ([`Verifier`]). Validation is deliberately strict: the algorithm is pinned
//! by the key type, never taken from the token header; `iss`, `aud` and `exp`
//! are required; keys embedded in or referenced by the token are ignored.

mod claims;
mod error;
mod issuer;
mod keys;
pub mod oidc;
mod verifier;

pub use claims::{Claims, Identity, PrincipalKind, Role};
pub use error::TokenError;
pub use issuer::{IssuedToken, Issuer};
pub use keys::{KeyError, SigningKey};
pub use oidc::{IssuerRegistry, OidcIssuerConfig, TrustStore, Verified};
pub use verifier::Verifier;

/// The audience of tokens the control plane issues for its own gateway.
pub const DEFAULT_AUDIENCE: &str = "sluice";

/// The most clock skew any validation tolerates, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 60;

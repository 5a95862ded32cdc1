//! External OpenID Connect issuers: people signed in through the
//! organisation's IdP, and machines with client-credentials tokens from it.
//!
//! The decisions are pure ([`validate`], [`cache`], [`keys`]); [`fetch`] and
//! [`remote`] are the thin I/O around them; [`trust`] puts the control
//! plane's own issuer and the external ones behind one call.

pub mod cache;
pub mod config;
pub mod fetch;
pub mod keys;
pub mod remote;
pub mod trust;
pub mod validate;

pub use config::{OidcIssuerConfig, SigningAlg};
pub use fetch::{FetchError, ProviderMetadata};
pub use keys::KeySet;
pub use remote::RemoteIssuer;
pub use trust::{IssuerRegistry, TrustStore, Verified};

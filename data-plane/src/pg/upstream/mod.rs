//! The upstream side: connecting to a target with the gateway's own
//! credential, and forwarding cancel requests to it.

pub mod cancel;
pub mod connect;

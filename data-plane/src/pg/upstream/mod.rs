//! The upstream side: connecting to a target with the gateway's own
//! credential, reading what masking needs of its catalog, and forwarding
//! cancel requests to it.

pub mod cancel;
pub mod catalog;
pub mod connect;

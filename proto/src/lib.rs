//! Generated gRPC types and services of the `sluice.v1` package.
//!
//! Nodes and control-plane replicas talk only through these messages, so the
//! contract lives in one crate that both sides depend on.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Version 1 of the node ⇄ control-plane protocol.
pub mod v1 {
    tonic::include_proto!("sluice.v1");
}

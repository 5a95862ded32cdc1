//! The REST API end to end: a real control plane on a real store (SQLite
//! and Postgres), its router on a loopback port, called over HTTP.

// Helpers outside #[test] functions panic on failure too; that is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals_ui;
mod audit;
mod auth;
mod changes;
mod common;
mod errors;
mod identities;
mod join_tokens;
mod nodes;
mod openapi;
mod policies;
mod roles;
mod sessions;
mod targets;
mod ui;

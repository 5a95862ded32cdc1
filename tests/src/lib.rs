//! Helpers shared by every test suite: private Postgres databases on the
//! machine's real server, the `sluice` binary started as a user would, a
//! gateway fixture with its clients (tokio-postgres, psql, the REST API), and
//! a raw wire-protocol client for what no driver would send.

pub mod deployment;
pub mod gateway;
pub mod http;
pub mod oidc;
pub mod pg;
pub mod process;
pub mod slack;
pub mod wire;

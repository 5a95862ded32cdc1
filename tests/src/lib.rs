//! Helpers shared by every test suite: private Postgres databases on the
//! machine's real server, and the `sluice` binary started as a user would.

pub mod pg;
pub mod process;

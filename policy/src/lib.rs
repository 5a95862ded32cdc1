//! Pure statement decisions: split, parse, classify, decide. No I/O, no
//! clocks, no globals, so every decision can be unit-tested, fuzzed and
//! benchmarked alone, and reused unchanged by the proxy, `sluice policy
//! check` and the REST dry run.
//!
//! - [`lexer`] finds statement boundaries by the server's lexical rules;
//! - [`classify`] says what each statement does, from its parse tree;
//! - [`model`] is the policy document admins write, [`compile`] checks it;
//! - [`engine`] decides: every applicable policy must allow, and within a
//!   policy the most restrictive matching rule wins.
//! - [`mask`] says which result values are masked, and how.
//! - [`http`] decides requests to HTTP targets and masks their responses.

pub mod cache;
pub mod classify;
pub mod compile;
mod decision;
pub mod engine;
pub mod http;
pub mod lexer;
pub mod mask;
pub mod model;

pub use cache::DecisionCache;
pub use compile::{Policy, PolicyError};
pub use decision::{Decision, Delivery, Subject, Verdict};
pub use engine::{Check, PolicySet};
pub use http::{HttpDecision, HttpRequest};

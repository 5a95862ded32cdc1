//! What a Postgres client is told when something goes wrong. Messages here
//! are written for the client: they never carry credentials, internal
//! addresses or upstream error details (those go to the log).

use super::codec::backend::ErrorFields;
use super::codec::frame::Frame;

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// SQLSTATE.
    pub code: &'static str,
    /// Primary message.
    pub message: String,
    /// What the client can do about it.
    pub hint: Option<String>,
    /// Whether the connection ends with it.
    pub fatal: bool,
}

impl ClientError {
    /// A FATAL error: the connection closes after it.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
            fatal: true,
        }
    }

    /// An ERROR: the session goes on.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
            fatal: false,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The ErrorResponse message.
    pub fn frame(&self) -> Frame {
        ErrorFields {
            severity: if self.fatal { "FATAL" } else { "ERROR" },
            code: self.code,
            message: &self.message,
            detail: None,
            hint: self.hint.as_deref(),
        }
        .error()
    }
}

/// SQLSTATEs the gateway uses.
pub mod sqlstate {
    /// A statement refused by policy.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// Approval is required before the statement can run.
    pub const APPROVAL_REQUIRED: &str = "SL001";
    /// The client cancelled the statement.
    pub const QUERY_CANCELED: &str = "57014";
    /// A held statement's approval was denied (or withdrawn).
    pub const APPROVAL_DENIED: &str = "SL002";
    /// A held statement's approval request expired undecided.
    pub const APPROVAL_EXPIRED: &str = "SL003";
    /// A bad token.
    pub const INVALID_PASSWORD: &str = "28P01";
    /// TLS or other authorization problems at startup.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// Unknown target.
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    /// A protocol violation.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// The target cannot be reached.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// The node refuses new connections (no usable configuration).
    pub const CONNECTION_REJECTED: &str = "08004";
    /// The session was ended by an administrator or shutdown.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// A message too large.
    pub const PROGRAM_LIMIT: &str = "54000";
    /// An unsupported feature (startup parameter, protocol).
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
}

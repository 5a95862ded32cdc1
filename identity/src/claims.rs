use serde::{Deserialize, Serialize};

/// The kind of principal behind a token. Audit records name it, and policy can
/// treat a person differently from an AI agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A human, signed in through the organisation's IdP.
    #[default]
    Person,
    /// An AI agent acting on someone's behalf.
    Agent,
    /// A non-human service account (automation, CI).
    Service,
}

impl PrincipalKind {
    /// The name used in audit records and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Agent => "agent",
            Self::Service => "service",
        }
    }
}

/// A right in the REST API. Connecting through a node needs no role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages targets, policies, nodes and identities.
    Admin,
    /// Decides approval requests.
    Approver,
    /// Reads, exports and verifies session records.
    Auditor,
}

/// The registered and private claims of a Sluice token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer URL.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The principal's name.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id, recorded in audit so a session can be tied to its credential.
    pub jti: String,
    /// What kind of principal this is.
    #[serde(default)]
    pub kind: PrincipalKind,
    /// Identity groups, which select policies.
    #[serde(default)]
    pub groups: Vec<String>,
    /// REST API roles.
    #[serde(default)]
    pub roles: Vec<Role>,
}

/// A validated principal: what the rest of the system learns from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The principal's name (`sub`).
    pub name: String,
    /// Person, agent or service.
    pub kind: PrincipalKind,
    /// Identity groups.
    pub groups: Vec<String>,
    /// REST API roles.
    pub roles: Vec<Role>,
    /// The token id (`jti`).
    pub token_id: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
}

impl Identity {
    /// Whether this identity holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl From<Claims> for Identity {
    fn from(c: Claims) -> Self {
        Self {
            name: c.sub,
            kind: c.kind,
            groups: c.groups,
            roles: c.roles,
            token_id: c.jti,
            expires_at: c.exp,
        }
    }
}

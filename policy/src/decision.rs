/// What happens to a statement. Ordered from least to most restrictive, so
/// combining decisions is taking the maximum.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Hold it until a human approves.
    Approval,
    /// Refuse it; nothing reaches the target. The default: fail closed.
    #[default]
    Deny,
}

impl Verdict {
    /// The name used in audit records and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Approval => "approval",
        }
    }
}

/// Who is asking, and where: everything a decision may depend on besides the
/// statement itself.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The identity's name.
    pub identity: &'a str,
    /// The identity's groups.
    pub groups: &'a [String],
    /// The target's name.
    pub target: &'a str,
}

/// A decision and why it was taken. The default is a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// The deciding policy, if one matched.
    pub policy: Option<String>,
    /// The deciding rule, if one matched.
    pub rule: Option<String>,
    /// Why, in words fit for the client (it names no secret).
    pub reason: String,
    /// Statement kinds, in order, for the audit record.
    pub kinds: Vec<String>,
    /// The same text with other literals would get the same decision (no
    /// setting's value was involved), so it may be cached by the text's
    /// literal-free fingerprint.
    pub same_for_any_literals: bool,
    /// When the statement's audit record must be durable.
    pub delivery: Delivery,
    /// How much of the result its record keeps.
    pub sample: crate::model::SampleLimit,
    /// Whether its record keeps bound parameter values.
    pub parameters: crate::model::ParameterAudit,
    /// How the results are masked, when masking applies to the session.
    pub masking: Option<crate::mask::MaskHandle>,
}

/// When a statement's audit record must be durable, relative to the
/// statement reaching the target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Sent asynchronously, at least once, after the statement ran; the
    /// node's bounded buffer refuses new statements when it is full.
    #[default]
    Streamed,
    /// Forwarded only once the control plane has durably stored a record
    /// of it; refused when that cannot happen.
    Strict,
}

impl Delivery {
    /// The name used in policies and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Streamed => "streamed",
            Self::Strict => "strict",
        }
    }
}

impl Decision {
    /// A refusal for `reason`, outside any policy.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            ..Self::default()
        }
    }
}

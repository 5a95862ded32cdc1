//! The policy document as admins write it (YAML). Every struct refuses
//! unknown fields, so a typo is an error, not a silently ignored rule.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::Kind;
use crate::decision::{Delivery, Verdict};

/// A whole policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Unique name, used in every decision message.
    pub name: String,
    /// What the policy is for.
    #[serde(default)]
    pub description: String,
    /// Which sessions it governs.
    #[serde(default)]
    pub applies_to: AppliesTo,
    /// How approvals requested by this policy behave.
    #[serde(default)]
    pub approval: ApprovalDoc,
    /// How statements governed by this policy reach the audit trail.
    #[serde(default)]
    pub audit: AuditDoc,
    /// Rules for SQL statements. A policy without them decides nothing for
    /// database targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<StatementsDoc>,
    /// Rules for HTTP requests. A policy without them decides nothing for
    /// HTTP targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::http::HttpDoc>,
    /// Result masking: masked columns and detectors.
    #[serde(default)]
    pub masking: crate::mask::model::MaskingDoc,
}

/// Audit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditDoc {
    /// Delivery guarantee per statement class.
    #[serde(default)]
    pub delivery: DeliveryDoc,
    /// How much of each result the record keeps (after masking).
    #[serde(default)]
    pub sample: SampleLimit,
    /// Whether bound parameter values are recorded.
    #[serde(default)]
    pub parameters: ParameterAudit,
}

/// What a statement's record keeps of its bound parameters. Redacted by
/// default: parameters are where applications put the values (passwords,
/// personal data) that a record should not copy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum ParameterAudit {
    /// Each value's size only (`<redacted: 5 bytes>`), and NULLs.
    #[default]
    Redact,
    /// The values as sent (binary ones described, not copied).
    Keep,
}

/// The bounded sample of each statement's result kept in its record: the
/// first rows exactly as the client received them (masked values masked),
/// up to whichever limit comes first. Zero rows keeps none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SampleLimit {
    /// Rows kept at most.
    #[serde(default = "sample_rows")]
    pub rows: u32,
    /// Bytes of values kept at most.
    #[serde(default = "sample_bytes")]
    pub bytes: u32,
}

fn sample_rows() -> u32 {
    100
}

fn sample_bytes() -> u32 {
    64 * 1024
}

impl Default for SampleLimit {
    fn default() -> Self {
        Self {
            rows: sample_rows(),
            bytes: sample_bytes(),
        }
    }
}

impl SampleLimit {
    /// The tighter of two limits, field by field.
    pub fn min(self, other: Self) -> Self {
        Self {
            rows: self.rows.min(other.rows),
            bytes: self.bytes.min(other.bytes),
        }
    }
}

/// Which delivery guarantee each statement class gets. Writes default to
/// `strict`: a change must never happen without its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryDoc {
    /// Reads, transaction control and session settings.
    #[serde(default = "streamed")]
    pub reads: Delivery,
    /// Everything else: writes, DDL, locking reads, anything unclassified.
    #[serde(default = "strict")]
    pub writes: Delivery,
}

fn streamed() -> Delivery {
    Delivery::Streamed
}

fn strict() -> Delivery {
    Delivery::Strict
}

impl Default for DeliveryDoc {
    fn default() -> Self {
        Self {
            reads: streamed(),
            writes: strict(),
        }
    }
}

/// The sessions a policy governs: all listed conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppliesTo {
    /// Target name globs (`*` for all).
    #[serde(default = "everything")]
    pub targets: Vec<String>,
    /// Identity groups; the policy applies if the identity is in any of them.
    /// `*` matches every identity.
    #[serde(default = "everything")]
    pub groups: Vec<String>,
}

fn everything() -> Vec<String> {
    vec!["*".to_owned()]
}

impl Default for AppliesTo {
    fn default() -> Self {
        Self {
            targets: everything(),
            groups: everything(),
        }
    }
}

/// How a statement that needs approval is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Refuse at once with SQLSTATE SL001; the client resends once approved.
    #[default]
    Answer,
    /// Hold the statement until a human decides.
    Hold,
}

/// Approval settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDoc {
    /// Answer at once or hold.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// How long a request stays open.
    #[serde(default = "fifteen_minutes", with = "humantime_serde")]
    pub expires_after: Duration,
    /// Identity groups whose members may decide (any of them). Empty means
    /// anyone holding the approver or admin role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Distinct approvals needed before the statement may run (N of M).
    #[serde(default = "one")]
    pub required: u32,
}

fn one() -> u32 {
    1
}

fn fifteen_minutes() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for ApprovalDoc {
    fn default() -> Self {
        Self {
            mode: ApprovalMode::default(),
            expires_after: fifteen_minutes(),
            approvers: Vec::new(),
            required: one(),
        }
    }
}

/// How a message holding several statements is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MultiStatement {
    /// Allowed only if every statement is allowed; anything else refuses the
    /// whole message (approval is for single statements).
    #[default]
    AllAllowed,
    /// Refuse any message with more than one statement.
    Deny,
}

/// Rules for SQL.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatementsDoc {
    /// The decision when no rule matches an effect of a statement.
    #[serde(default = "deny")]
    pub default: Verdict,
    /// Messages with several statements.
    #[serde(default)]
    pub multi_statement: MultiStatement,
    /// Which functions statements may call.
    #[serde(default)]
    pub functions: FunctionsDoc,
    /// Which configuration parameters SET and RESET may touch.
    #[serde(default)]
    pub settings: SettingsDoc,
    /// Named sets of table globs (`schema.table`), for rules to refer to.
    #[serde(default)]
    pub tables: BTreeMap<String, Vec<String>>,
    /// The rules. Every effect of a statement is matched against all of them;
    /// the most restrictive matching decision wins (deny over approval over allow).
    #[serde(default)]
    pub rules: Vec<RuleDoc>,
}

fn deny() -> Verdict {
    Verdict::Deny
}

/// The function list: exactly one of `allow` or `deny`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FunctionsDoc {
    /// Only these may be called (unqualified or in `pg_catalog`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// These may not be called; everything else may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
}

/// Configuration parameters statements may change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SettingsDoc {
    /// Parameters SET / RESET may touch (`timezone` also covers SET TIME ZONE).
    #[serde(default)]
    pub allow: Vec<String>,
    /// For some parameters, the only values allowed (compared case-insensitively).
    #[serde(default)]
    pub values: BTreeMap<String, Vec<String>>,
}

/// How an UPDATE or DELETE's WHERE must look for a rule to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhereCondition {
    /// There is no WHERE.
    Missing,
    /// The WHERE refers to no column.
    Constant,
    /// Either of the above.
    MissingOrConstant,
}

/// Whether a rule is about SET/RESET of allowed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingsCondition {
    /// Every parameter touched is on the allow list (with an allowed value).
    Allowed,
    /// Some parameter is not.
    NotAllowed,
}

/// Tables a rule is about: the name of a set in `tables`, or a list of globs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TablesRef {
    /// A named set.
    Named(String),
    /// Globs such as `public.*` or `sales.orders`.
    Globs(Vec<String>),
}

/// One rule. It matches an effect of a statement when every condition given
/// holds; conditions left out match anything.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// Unique within the policy; named in decisions.
    pub name: String,
    /// Statement kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<Kind>>,
    /// Tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<TablesRef>,
    /// The WHERE of an UPDATE or DELETE.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<WhereCondition>,
    /// Row-locking reads (FOR UPDATE / FOR SHARE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locking: Option<bool>,
    /// SET / RESET parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsCondition>,
    /// What happens when the rule matches.
    pub decision: Verdict,
    /// Why, added to the decision message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Default for StatementsDoc {
    /// Denies everything.
    fn default() -> Self {
        Self {
            default: deny(),
            multi_statement: MultiStatement::default(),
            functions: FunctionsDoc::default(),
            settings: SettingsDoc::default(),
            tables: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

//! The `http:` section of a policy document, as admins write it. Every
//! struct refuses unknown fields, so a typo is an error, not a rule that
//! silently does nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decision::Verdict;
use crate::mask::model::MaskDoc;

/// Rules for requests to HTTP targets, the response treatment and what the
/// audit record keeps.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpDoc {
    /// The decision when no rule matches.
    #[serde(default)]
    pub default: HttpDefault,
    /// The rules. Every rule matching a request counts; the most restrictive
    /// decision wins (deny over approval over allow).
    #[serde(default)]
    pub rules: Vec<HttpRuleDoc>,
    /// How responses are treated.
    #[serde(default)]
    pub response: ResponseDoc,
    /// What the audit record keeps of each request.
    #[serde(default)]
    pub audit: HttpAuditDoc,
}

/// What happens to a request no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HttpDefault {
    /// Refused. The default: fail closed.
    #[default]
    Deny,
    /// Forwarded (known methods only).
    Allow,
    /// Held for approval (known methods only).
    Approval,
    /// The usual stance for agents: reads (`GET`, `HEAD`, `OPTIONS`) are
    /// allowed, writes (`POST`, `PUT`, `PATCH`) need approval, `DELETE` and
    /// everything else is refused.
    Agent,
}

/// One rule. It matches a request when every condition given holds;
/// conditions left out match anything.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRuleDoc {
    /// Unique within the policy; named in decisions.
    pub name: String,
    /// Methods, upper case as sent (`GET`, `POST` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Path glob by segments: `*` is one segment (or part of one), `**`
    /// any number of segments. Matched case-sensitively on the decoded path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query parameters that must be present, each with an exact value or
    /// a glob (`*` for any value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<BTreeMap<String, String>>,
    /// JSON body fields (`$.amount`) and conditions: `*` (present), a
    /// comparison (`>100`, `>=1`, `<5`, `<=5`), or an exact value / glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BTreeMap<String, String>>,
    /// What happens when the rule matches.
    pub decision: Verdict,
    /// Why, added to the decision message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How responses are treated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResponseDoc {
    /// Masks for JSON values found by path.
    #[serde(default)]
    pub mask: Vec<JsonMaskDoc>,
    /// Whether the policy's `masking.detectors` scan every JSON string and
    /// number and every text body.
    #[serde(default)]
    pub detectors: bool,
    /// Response header treatment by (case-insensitive) name. `Set-Cookie`,
    /// `Set-Cookie2`, `Authorization`, `Proxy-Authorization` and `Cookie`
    /// are removed unless named here.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderDoc>,
    /// Bodies that are neither JSON nor text (binary, unknown, or without a
    /// content type). Unset: `deny` when the policy masks or detects
    /// anything (such a body cannot be checked), `pass` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_content: Option<OtherContent>,
}

/// One JSON mask.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonMaskDoc {
    /// JSONPath-like: `$`, `.key`, `['key']`, `[*]`, `.*`, `[n]`, `..key`.
    pub path: String,
    /// What a value there becomes (the masks of `masking.columns`).
    pub mask: MaskDoc,
}

/// What happens to a response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderDoc {
    /// Sent on unchanged.
    Pass,
    /// Dropped.
    Remove,
    /// Kept, its value replaced by `****`.
    Mask,
}

/// What happens to a body that is neither JSON nor text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherContent {
    /// Sent on unchanged.
    Pass,
    /// The response is refused.
    Deny,
}

/// What the audit record keeps of each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpAuditDoc {
    /// Query parameter values: redacted by default.
    #[serde(default)]
    pub query: QueryAudit,
}

/// What a record keeps of the query string. Redacted by default: agents put
/// search terms and identifiers there.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum QueryAudit {
    /// Parameter names kept, values replaced by `****`.
    #[default]
    Redact,
    /// The query as sent.
    Keep,
}

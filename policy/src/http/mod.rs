//! Pure decisions for HTTP targets: which requests are forwarded, held for
//! approval or refused, and how their responses are masked. The node does
//! the I/O; everything here is a function of the policy and the request.
//!
//! - [`model`]: the `http:` section of a policy document;
//! - [`path`]: the one canonical path that is decided and forwarded;
//! - [`decide`](PolicySet::decide_http): rules by method, path, query and
//!   JSON body; every matching rule counts and the most restrictive wins;
//! - [`response`]: headers, content types and the streaming maskers
//!   ([`JsonMasker`], [`TextMasker`]).

mod body;
mod compile;
mod decide;
pub mod json;
pub mod jsonpath;
pub mod model;
pub mod path;
pub mod query;
pub mod response;
pub mod text;

use sha2::{Digest, Sha256};

pub(crate) use self::compile::{HttpRules, compile};
pub use self::compile::{KNOWN_METHODS, NEVER_FORWARDED};
pub use self::json::{HttpMaskError, JsonMasker};
pub use self::model::{HttpDoc, QueryAudit};
pub use self::path::{PathError, normalize_path};
pub use self::query::redact_query;
pub use self::response::{ContentAction, HeaderAction, ResponsePlan};
pub use self::text::TextMasker;
use crate::decision::Decision;
#[cfg(doc)]
use crate::engine::PolicySet;
use crate::model::ApprovalDoc;

/// What the node saw of one request.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// As received: case matters (`get` is not `GET`, and is refused).
    pub method: &'a str,
    /// Raw, still percent-encoded, after `/http/{target}`.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The buffered request body (bounded by the node), if any.
    pub body: Option<&'a [u8]>,
}

/// The decision on one request and everything the node needs to carry it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpDecision {
    /// Verdict, policy, rule, reason, delivery and sample limits.
    pub decision: Decision,
    /// The canonical path that was decided: forward exactly this. `None`
    /// when the path itself was refused.
    pub path: Option<String>,
    /// The deciding policy's approval settings, when the verdict is approval.
    pub approval: Option<ApprovalDoc>,
    /// How to treat the response.
    pub response: ResponsePlan,
    /// What the audit record keeps of the query string.
    pub query_audit: QueryAudit,
    /// No policy with an `http:` section applies to this subject and
    /// target: the target is not governed, so the gateway serves nothing
    /// there (a refusal by a policy is a different answer).
    pub uncovered: bool,
    /// A rule looked at the request's JSON body: the decision holds only
    /// for the body it was given (a body too large to hold cannot be
    /// decided, so it is refused rather than streamed).
    pub reads_body: bool,
}

impl HttpDecision {
    /// The query string as the audit record keeps it.
    pub fn audit_query(&self, raw: &str) -> String {
        redact_query(raw, self.query_audit)
    }
}

/// The hash an approval is bound to: method, canonical path, raw query and
/// body, each length-prefixed so no two requests share an input. Versioned
/// (`h1:`) so the scheme can change without old approvals matching.
pub fn approval_hash(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    match query {
        Some(q) => {
            h.update([1]);
            h.update((q.len() as u64).to_be_bytes());
            h.update(q.as_bytes());
        }
        None => h.update([0]),
    }
    h.update((body.len() as u64).to_be_bytes());
    h.update(body);
    let mut out = String::with_capacity(67);
    out.push_str("h1:");
    for b in h.finalize() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether a request header asks the target to treat the request as
/// another method. The node refuses such requests: the method decided must
/// be the method run.
pub fn is_method_override_header(name: &str) -> bool {
    [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

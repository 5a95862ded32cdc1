//! From the `http:` document to checked rules and response settings. Every
//! mistake is reported with the path of the field at fault.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::jsonpath::JsonPath;
use super::model::{HttpDefault, HttpDoc, OtherContent, QueryAudit};
use super::path::PathGlob;
use super::response::{HeaderAction, JsonMaskRule};
use crate::compile::PolicyError;
use crate::decision::Verdict;
use crate::mask::{Mask, Masking};

fn err(path: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.into(),
        message: message.into(),
    }
}

/// Methods never forwarded, whatever a policy says: `TRACE` echoes the
/// request, injected credential included; `CONNECT` opens a tunnel past
/// every rule.
pub const NEVER_FORWARDED: [&str; 2] = ["TRACE", "CONNECT"];

/// Methods every default knows; others are decided only by a rule naming
/// them.
pub const KNOWN_METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];

/// A condition on one JSON body field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BodyCond {
    /// The field exists (any value, `null` included).
    Present,
    /// A number compared with a bound.
    Cmp(CmpOp, f64),
    /// A string (or scalar's text) matching a glob or exact value.
    Glob(String),
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub(crate) struct HttpRule {
    pub name: String,
    pub methods: Option<HashSet<String>>,
    pub path: Option<PathGlob>,
    pub query: Vec<(String, String)>,
    pub body: Vec<(JsonPath, BodyCond)>,
    pub decision: Verdict,
    pub reason: Option<String>,
}

/// A policy's checked `http:` section.
#[derive(Debug, Clone)]
pub(crate) struct HttpRules {
    pub default: HttpDefault,
    pub rules: Vec<HttpRule>,
    pub masks: Vec<JsonMaskRule>,
    pub detectors: Option<Arc<Masking>>,
    pub headers: BTreeMap<String, HeaderAction>,
    pub other: OtherContent,
    pub query_audit: QueryAudit,
}

/// Checks `doc` of policy `policy`; `masking` is the policy's compiled
/// `masking:` section (for detectors) and `hash_key` its key.
pub(crate) fn compile(
    policy: &str,
    doc: &HttpDoc,
    masking: Option<&Arc<Masking>>,
    hash_key: Option<&[u8]>,
) -> Result<HttpRules, PolicyError> {
    let mut rules = Vec::with_capacity(doc.rules.len());
    let mut seen = HashSet::new();
    for (i, r) in doc.rules.iter().enumerate() {
        let path = format!("http.rules[{i}]");
        if !seen.insert(r.name.clone()) {
            return Err(err(
                format!("{path}.name"),
                format!("rule name {:?} is used twice", r.name),
            ));
        }
        rules.push(rule(&path, r)?);
    }
    let mut masks = Vec::with_capacity(doc.response.mask.len());
    for (i, m) in doc.response.mask.iter().enumerate() {
        let path = format!("http.response.mask[{i}]");
        let jp = JsonPath::new(&m.path).map_err(|e| err(format!("{path}.path"), e))?;
        let mask = Mask::from_doc(m.mask, hash_key).ok_or_else(|| {
            err(
                format!("{path}.mask"),
                "the hash mask needs masking.hash_key (a secret of at least 16 characters)",
            )
        })?;
        if matches!(mask, Mask::KeepFirst(0) | Mask::KeepLast(0)) {
            return Err(err(
                format!("{path}.mask"),
                "keep 0 characters is redact; write redact",
            ));
        }
        masks.push(JsonMaskRule {
            counter: format!("json:{policy}:{}", m.path),
            path: jp,
            mask,
        });
    }
    let detectors = if doc.response.detectors {
        match masking {
            Some(m) if !m.detectors.is_empty() => Some(Arc::clone(m)),
            _ => {
                return Err(err(
                    "http.response.detectors",
                    "is true but masking.detectors enables no detector",
                ));
            }
        }
    } else {
        None
    };
    let mut headers = BTreeMap::new();
    for (name, action) in &doc.response.headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(err(
                format!("http.response.headers.{name}"),
                "is not a header name",
            ));
        }
        headers.insert(name.to_ascii_lowercase(), HeaderAction::from(*action));
    }
    let other = doc
        .response
        .other_content
        .unwrap_or(if masks.is_empty() && detectors.is_none() {
            OtherContent::Pass
        } else {
            OtherContent::Deny
        });
    Ok(HttpRules {
        default: doc.default,
        rules,
        masks,
        detectors,
        headers,
        other,
        query_audit: doc.audit.query,
    })
}

fn rule(path: &str, r: &super::model::HttpRuleDoc) -> Result<HttpRule, PolicyError> {
    let methods = match &r.methods {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(err(
                format!("{path}.methods"),
                "an empty list matches nothing; leave it out to match every method",
            ));
        }
        Some(list) => {
            let mut set = HashSet::new();
            for (i, m) in list.iter().enumerate() {
                check_method(m).map_err(|e| err(format!("{path}.methods[{i}]"), e))?;
                set.insert(m.clone());
            }
            Some(set)
        }
    };
    let glob = match &r.path {
        None => None,
        Some(p) => Some(PathGlob::new(p).map_err(|e| err(format!("{path}.path"), e))?),
    };
    let query = r
        .query
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut body = Vec::new();
    for (field, cond) in r.body.iter().flatten() {
        let at = format!("{path}.body.{field}");
        let jp = JsonPath::new(field).map_err(|e| err(&at, e))?;
        if !jp.is_definite() {
            return Err(err(
                &at,
                "a body condition names one field: no '*' and no '..'",
            ));
        }
        body.push((jp, body_cond(cond).map_err(|e| err(&at, e))?));
    }
    Ok(HttpRule {
        name: r.name.clone(),
        methods,
        path: glob,
        query,
        body,
        decision: r.decision,
        reason: r.reason.clone(),
    })
}

/// A method as a rule may name it: an upper-case token, never one of
/// [`NEVER_FORWARDED`].
fn check_method(m: &str) -> Result<(), String> {
    if !is_method(m) {
        return Err(format!(
            "{m:?} is not an upper-case method name (GET, POST ...)"
        ));
    }
    if NEVER_FORWARDED.contains(&m) {
        return Err(format!("{m} is never forwarded"));
    }
    Ok(())
}

/// An upper-case method token: `A`-`Z`, `-` and `_`, at most 32 bytes.
pub(crate) fn is_method(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 32
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn body_cond(text: &str) -> Result<BodyCond, String> {
    if text == "*" {
        return Ok(BodyCond::Present);
    }
    for (prefix, op) in [
        (">=", CmpOp::Ge),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        ("<", CmpOp::Lt),
    ] {
        if let Some(n) = text.strip_prefix(prefix) {
            let v: f64 = n
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: {n:?} is not a number"))?;
            if !v.is_finite() {
                return Err(format!("{text:?}: the bound must be finite"));
            }
            return Ok(BodyCond::Cmp(op, v));
        }
    }
    Ok(BodyCond::Glob(text.to_owned()))
}

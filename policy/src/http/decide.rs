//! Deciding one HTTP request under one policy, and under every policy that
//! applies. Within a policy every matching rule counts and the most
//! restrictive decision wins; across policies likewise.

use std::cell::OnceCell;
use std::sync::Arc;

use serde_json::Value;

use super::compile::{HttpRule, HttpRules, KNOWN_METHODS, NEVER_FORWARDED, is_method};
use super::jsonpath::Selectors;
use super::model::{HttpDefault, OtherContent, QueryAudit};
use super::path::{NormalPath, parse_path};
use super::query::parse_query;
use super::response::{Plan, ResponsePlan};
use super::{HttpDecision, HttpRequest};
use crate::compile::Policy;
use crate::decision::{Decision, Delivery, Subject, Verdict};
use crate::engine::PolicySet;
use crate::model::{ParameterAudit, SampleLimit};

/// Methods that only read.
const READS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

/// A request once checked: what rules look at.
struct Checked<'a> {
    method: &'a str,
    path: NormalPath,
    query: Vec<(String, String)>,
    content_type: Option<&'a str>,
    raw_body: Option<&'a [u8]>,
    body: OnceCell<Option<Value>>,
}

impl Checked<'_> {
    /// The body as JSON, if it is JSON (by content type and content).
    fn body(&self) -> Option<&Value> {
        self.body
            .get_or_init(|| {
                let json = self.content_type.is_some_and(|ct| {
                    let e = ct
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase();
                    e == "application/json" || e.ends_with("+json")
                });
                if json {
                    self.raw_body.and_then(super::body::parse)
                } else {
                    None
                }
            })
            .as_ref()
    }
}

/// One policy's answer.
struct Outcome {
    verdict: Verdict,
    rule: Option<String>,
    reason: String,
}

/// Whether a rule matches, or why the request cannot be decided by it.
enum Match {
    No,
    Yes,
    Refuse(String),
}

fn verb(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "is allowed",
        Verdict::Approval => "requires approval",
        Verdict::Deny => "is denied",
    }
}

fn matches(r: &HttpRule, req: &Checked<'_>) -> Match {
    if r.methods.as_ref().is_some_and(|m| !m.contains(req.method)) {
        return Match::No;
    }
    if r.path
        .as_ref()
        .is_some_and(|p| !p.matches(&req.path.segments))
    {
        return Match::No;
    }
    for (name, pattern) in &r.query {
        let mut values = req.query.iter().filter(|(k, _)| k == name);
        let Some((_, v)) = values.next() else {
            return Match::No;
        };
        if values.next().is_some() {
            return Match::Refuse(format!(
                "the query parameter {name:?} is given more than once, so rule \"{}\" cannot be decided",
                r.name
            ));
        }
        if !super::path::wildcard(pattern.as_bytes(), v.as_bytes()) {
            return Match::No;
        }
    }
    if !r.body.is_empty() {
        let Some(body) = req.body() else {
            return Match::Refuse(format!(
                "rule \"{}\" looks at the JSON body, and the body is not JSON (with a JSON content type and no repeated key)",
                r.name
            ));
        };
        if !r.body.iter().all(|(p, c)| super::body::holds(body, p, c)) {
            return Match::No;
        }
    }
    Match::Yes
}

fn default_verdict(d: HttpDefault, method: &str) -> Verdict {
    let known = KNOWN_METHODS.contains(&method);
    match d {
        HttpDefault::Deny => Verdict::Deny,
        HttpDefault::Allow if known => Verdict::Allow,
        HttpDefault::Approval if known => Verdict::Approval,
        HttpDefault::Allow | HttpDefault::Approval => Verdict::Deny,
        HttpDefault::Agent => match method {
            m if READS.contains(&m) => Verdict::Allow,
            "POST" | "PUT" | "PATCH" => Verdict::Approval,
            _ => Verdict::Deny,
        },
    }
}

fn decide_one(p: &Policy, h: &HttpRules, req: &Checked<'_>) -> Outcome {
    let what = format!("{} {}", req.method, req.path.encoded);
    let mut best: Option<&HttpRule> = None;
    for r in &h.rules {
        match matches(r, req) {
            Match::No => {}
            Match::Yes => {
                if best.is_none_or(|b| r.decision > b.decision) {
                    best = Some(r);
                }
            }
            Match::Refuse(why) => {
                return Outcome {
                    verdict: Verdict::Deny,
                    rule: Some(r.name.clone()),
                    reason: format!("{what} is denied by policy \"{}\": {why}", p.name()),
                };
            }
        }
    }
    match best {
        Some(r) => {
            let mut reason = format!(
                "{what} {} by policy \"{}\", rule \"{}\"",
                verb(r.decision),
                p.name(),
                r.name
            );
            if let Some(why) = &r.reason {
                reason.push_str(": ");
                reason.push_str(why);
            }
            Outcome {
                verdict: r.decision,
                rule: Some(r.name.clone()),
                reason,
            }
        }
        None => {
            let v = default_verdict(h.default, req.method);
            Outcome {
                verdict: v,
                rule: None,
                reason: format!(
                    "{what} {} by policy \"{}\" (no rule matches it)",
                    verb(v),
                    p.name()
                ),
            }
        }
    }
}

/// A refusal before any policy is consulted.
fn refuse(reason: String, method: &str) -> HttpDecision {
    HttpDecision {
        decision: Decision {
            kinds: vec![kind(method)],
            ..Decision::deny(reason)
        },
        path: None,
        approval: None,
        response: ResponsePlan::closed(),
        query_audit: QueryAudit::Redact,
        uncovered: false,
        reads_body: false,
    }
}

/// The audit kind of a request: its method when it is a valid one.
fn kind(method: &str) -> String {
    if is_method(method) {
        method.to_owned()
    } else {
        "http".to_owned()
    }
}

/// The response plan of the applicable policies: every mask, every
/// detector, the most restrictive header and content treatment.
fn plan(applicable: &[(&Policy, &HttpRules)]) -> ResponsePlan {
    let mut plan = Plan::default();
    let mut other = OtherContent::Pass;
    for (_, h) in applicable {
        plan.masks.extend(h.masks.iter().cloned());
        if let Some(d) = &h.detectors {
            plan.detectors.push(Arc::clone(d));
        }
        for (name, a) in &h.headers {
            let e = plan.headers.entry(name.clone()).or_insert(*a);
            *e = (*e).max(*a);
        }
        if h.other == OtherContent::Deny {
            other = OtherContent::Deny;
        }
    }
    plan.other = Some(other);
    plan.selectors = Selectors::new(plan.masks.iter().map(|m| &m.path));
    ResponsePlan(Arc::new(plan))
}

impl PolicySet {
    /// Names of the policies that decide HTTP requests for `subject`, in
    /// order: those that apply and have an `http:` section.
    pub fn http_policies(&self, subject: &Subject<'_>) -> Vec<String> {
        self.policies()
            .filter(|p| p.decides_http() && p.applies(subject))
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// Decides one HTTP request for `subject` (its target is the HTTP
    /// target's name). Anything malformed is refused before any rule.
    pub fn decide_http(&self, subject: &Subject<'_>, req: &HttpRequest<'_>) -> HttpDecision {
        let method = req.method;
        if !is_method(method) {
            return refuse(
                format!(
                    "the method {:?} is not accepted: methods are upper-case names such as GET",
                    truncate(method)
                ),
                method,
            );
        }
        if NEVER_FORWARDED.contains(&method) {
            return refuse(format!("{method} is never forwarded"), method);
        }
        let path = match parse_path(req.path) {
            Ok(p) => p,
            Err(e) => return refuse(format!("{e}, so the request is denied"), method),
        };
        let query = match req.query.map(parse_query).transpose() {
            Ok(q) => q.unwrap_or_default(),
            Err(e) => return refuse(format!("{e}, so the request is denied"), method),
        };
        let checked = Checked {
            method,
            path,
            query,
            content_type: req.content_type,
            raw_body: req.body,
            body: OnceCell::new(),
        };
        let applicable: Vec<(&Policy, &HttpRules)> = self
            .policies()
            .filter(|p| p.applies(subject))
            .filter_map(|p| p.http.as_deref().map(|h| (p, h)))
            .collect();
        let mut worst: Option<(&Policy, Outcome)> = None;
        for (p, h) in &applicable {
            let o = decide_one(p, h, &checked);
            if worst.as_ref().is_none_or(|(_, w)| o.verdict > w.verdict) {
                worst = Some((p, o));
            }
        }
        let Some((p, o)) = worst else {
            return HttpDecision {
                path: Some(checked.path.encoded),
                uncovered: true,
                ..refuse(
                    format!(
                        "no policy gives {} HTTP access to target \"{}\"",
                        subject.identity, subject.target
                    ),
                    method,
                )
            };
        };
        let reads_body = checked.body.get().is_some();
        let read = READS.contains(&method);
        let delivery = match o.verdict {
            Verdict::Deny => Delivery::Streamed,
            Verdict::Approval => Delivery::Strict,
            Verdict::Allow => applicable
                .iter()
                .map(|(p, _)| {
                    let d = p.doc.audit.delivery;
                    if read { d.reads } else { d.writes }
                })
                .max()
                .unwrap_or_default(),
        };
        let decision = Decision {
            verdict: o.verdict,
            policy: Some(p.name().to_owned()),
            rule: o.rule,
            reason: o.reason,
            kinds: vec![kind(method)],
            same_for_any_literals: false,
            delivery,
            sample: applicable
                .iter()
                .map(|(p, _)| p.doc.audit.sample)
                .reduce(SampleLimit::min)
                .unwrap_or_default(),
            parameters: applicable
                .iter()
                .map(|(p, _)| p.doc.audit.parameters)
                .min()
                .unwrap_or(ParameterAudit::Redact),
            masking: None,
        };
        let approval = (o.verdict == Verdict::Approval).then(|| p.approval().clone());
        let response = if o.verdict == Verdict::Deny {
            ResponsePlan::closed()
        } else {
            plan(&applicable)
        };
        let query_audit = applicable
            .iter()
            .map(|(_, h)| h.query_audit)
            .min()
            .unwrap_or_default();
        HttpDecision {
            decision,
            path: Some(checked.path.encoded),
            approval,
            response,
            query_audit,
            uncovered: false,
            reads_body,
        }
    }
}

/// At most 32 characters of a client's text, for messages.
fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

//! Deciding statements under one policy, and under the set of policies that
//! apply to a session.

use std::sync::Arc;

use crate::classify::{self, Action, Filter, Kind, Statement};
use crate::compile::{Functions, Policy, Rule, normalize_value};
use crate::decision::{Decision, Delivery, Subject, Verdict};
use crate::mask::{Catalog, MaskHandle, MaskPlan, MaskSet, lineage};
use crate::model::{MultiStatement, SampleLimit, SettingsCondition, WhereCondition};

/// One statement's decision under one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    verdict: Verdict,
    rule: Option<String>,
    reason: String,
}

impl Outcome {
    fn deny(rule: &str, reason: String) -> Self {
        Self {
            verdict: Verdict::Deny,
            rule: Some(rule.to_owned()),
            reason,
        }
    }
}

fn verb(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "is allowed",
        Verdict::Approval => "requires approval",
        Verdict::Deny => "is denied",
    }
}

fn what(kind: Kind, table: Option<&classify::TableName>) -> String {
    match table {
        Some(t) => format!("{} on {t}", kind.sql()),
        None => kind.sql().to_owned(),
    }
}

impl Policy {
    /// Whether the policy governs `subject`'s sessions.
    pub fn applies(&self, subject: &Subject<'_>) -> bool {
        let group = self
            .groups
            .iter()
            .any(|g| g == "*" || subject.groups.iter().any(|sg| sg == g));
        group && self.targets.is_match(subject.target)
    }

    fn function_violation(&self, s: &Statement) -> Option<Outcome> {
        let name = self.name();
        for f in &s.functions {
            let bad = match &self.functions {
                Functions::Any => false,
                Functions::Allow(list) => {
                    !list.contains(&f.name)
                        || f.schema.as_deref().is_some_and(|sc| sc != "pg_catalog")
                }
                Functions::Deny(list) => list.contains(&f.name),
            };
            if bad {
                return Some(Outcome::deny(
                    "functions",
                    format!(
                        "calling {f}() is denied by policy \"{name}\": it is not on the function allowlist"
                    ),
                ));
            }
        }
        if let Some(op) = s.operators.first() {
            return Some(Outcome::deny(
                "functions",
                format!(
                    "the operator {op} is denied by policy \"{name}\": only pg_catalog operators may be named"
                ),
            ));
        }
        None
    }

    fn settings_allowed(&self, s: &Statement) -> bool {
        s.settings.iter().all(|set| {
            self.settings.contains(&set.name)
                && match (self.setting_values.get(&set.name), &set.value) {
                    (Some(allowed), Some(v)) => allowed.contains(&normalize_value(v)),
                    _ => true,
                }
        })
    }

    fn matches(&self, r: &Rule, a: &Action, s: &Statement) -> bool {
        if r.kinds.as_ref().is_some_and(|k| !k.contains(&a.kind)) {
            return false;
        }
        if let Some(t) = &r.tables {
            match &a.table {
                Some(table) if t.globs.is_match(table.to_string()) => {}
                _ => return false,
            }
        }
        if let Some(w) = r.where_ {
            let hit = matches!(
                (w, a.filter),
                (
                    WhereCondition::Missing | WhereCondition::MissingOrConstant,
                    Filter::Missing
                ) | (
                    WhereCondition::Constant | WhereCondition::MissingOrConstant,
                    Filter::Constant
                )
            );
            if !hit {
                return false;
            }
        }
        if r.locking.is_some_and(|l| l != s.locking) {
            return false;
        }
        if let Some(cond) = r.settings {
            if !matches!(a.kind, Kind::Set | Kind::Reset) {
                return false;
            }
            let allowed = self.settings_allowed(s);
            if allowed != (cond == SettingsCondition::Allowed) {
                return false;
            }
        }
        true
    }

    /// Describes why rule `r` matched action `a`.
    fn describe(&self, r: &Rule, a: &Action, s: &Statement) -> String {
        let mut d = a.kind.sql().to_owned();
        if let Some(t) = &a.table {
            match r.tables.as_ref().and_then(|t| t.set_name.as_deref()) {
                Some(set) => d.push_str(&format!(" on {set} table {t}")),
                None => d.push_str(&format!(" on {t}")),
            }
        }
        if r.where_.is_some() {
            d.push_str(match a.filter {
                Filter::Missing => " without a WHERE clause",
                Filter::Constant => " with a WHERE clause that refers to no column",
                _ => "",
            });
        }
        if r.locking == Some(true) {
            d.push_str(" with row locks (FOR UPDATE / FOR SHARE)");
        }
        if r.settings.is_some() && !s.settings.is_empty() {
            let names: Vec<_> = s.settings.iter().map(|x| x.name.as_str()).collect();
            d.push_str(&format!(" of {}", names.join(", ")));
        }
        let mut out = format!(
            "{d} {} by policy \"{}\", rule \"{}\"",
            verb(r.decision),
            self.name(),
            r.name
        );
        if let Some(why) = &r.reason {
            out.push_str(": ");
            out.push_str(why);
        }
        out
    }

    /// The most restrictive rule matching `a`, or `None` for the default.
    fn pick<'a>(&'a self, a: &Action, s: &Statement) -> (Verdict, Option<&'a Rule>) {
        let mut best: Option<&Rule> = None;
        for r in &self.rules {
            if self.matches(r, a, s) && best.is_none_or(|b| r.decision > b.decision) {
                best = Some(r);
            }
        }
        match best {
            Some(r) => (r.decision, Some(r)),
            None => (
                self.doc
                    .statements
                    .as_ref()
                    .map_or(Verdict::Deny, |s| s.default),
                None,
            ),
        }
    }

    /// Why `a` got `verdict` through `rule` (or the default): built only for
    /// the effect that decides, since formatting is much of the cost.
    fn explain(&self, verdict: Verdict, rule: Option<&Rule>, a: &Action, s: &Statement) -> Outcome {
        match rule {
            Some(r) => Outcome {
                verdict,
                rule: Some(r.name.clone()),
                reason: self.describe(r, a, s),
            },
            None => {
                let extra = if s.settings.is_empty() {
                    String::new()
                } else {
                    let names: Vec<_> = s.settings.iter().map(|x| x.name.as_str()).collect();
                    format!(" of {}", names.join(", "))
                };
                Outcome {
                    verdict,
                    rule: None,
                    reason: format!(
                        "{}{extra} {} by policy \"{}\" (no rule matches it)",
                        what(a.kind, a.table.as_ref()),
                        verb(verdict),
                        self.name()
                    ),
                }
            }
        }
    }

    /// The delivery guarantee this policy asks for a message: the writes'
    /// unless every statement in it only reads.
    fn delivery(&self, stmts: &[Statement]) -> Delivery {
        let d = self.doc.audit.delivery;
        if stmts.iter().all(Statement::is_read) {
            d.reads
        } else {
            d.writes
        }
    }

    fn decide_statement(&self, s: &Statement) -> Outcome {
        if let Some(u) = s.unsupported.first() {
            return Outcome::deny(
                "classifier",
                format!(
                    "the statement uses {u}, which the gateway cannot classify, so it is denied"
                ),
            );
        }
        if let Some(v) = self.function_violation(s) {
            return v;
        }
        let mut worst: Option<(Verdict, Option<&Rule>, &Action)> = None;
        for a in &s.actions {
            let (v, r) = self.pick(a, s);
            if worst.is_none_or(|(w, _, _)| v > w) {
                worst = Some((v, r, a));
            }
        }
        match worst {
            Some((v, r, a)) => self.explain(v, r, a, s),
            None => Outcome::deny(
                "classifier",
                "the statement does nothing the gateway can classify".into(),
            ),
        }
    }

    fn decide_message(&self, stmts: &[Statement]) -> Outcome {
        match stmts {
            [] => Outcome {
                verdict: Verdict::Allow,
                rule: None,
                reason: "empty query".to_owned(),
            },
            [one] => self.decide_statement(one),
            many => {
                if self.multi() == MultiStatement::Deny {
                    return Outcome::deny(
                        "multi-statement",
                        format!(
                            "messages with several statements are denied by policy \"{}\"; send one statement at a time",
                            self.name()
                        ),
                    );
                }
                for (i, s) in many.iter().enumerate() {
                    let o = self.decide_statement(s);
                    match o.verdict {
                        Verdict::Allow => {}
                        Verdict::Approval => {
                            return Outcome::deny(
                                "multi-statement",
                                format!(
                                    "a message with several statements runs only if every one is allowed; statement {} needs approval ({}). Approval is given to single statements: send it on its own",
                                    i + 1,
                                    o.reason
                                ),
                            );
                        }
                        Verdict::Deny => {
                            return Outcome {
                                verdict: Verdict::Deny,
                                rule: o.rule,
                                reason: format!(
                                    "a message with several statements runs only if every one is allowed; statement {}: {}",
                                    i + 1,
                                    o.reason
                                ),
                            };
                        }
                    }
                }
                Outcome {
                    verdict: Verdict::Allow,
                    rule: None,
                    reason: String::new(),
                }
            }
        }
    }
}

/// Every policy a node knows; decides for any session.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Arc<Policy>>,
}

/// A decision together with the classification it was made from, for dry runs.
#[derive(Debug, Clone)]
pub struct Check {
    /// The decision.
    pub decision: Decision,
    /// Each statement's classification (empty if the text did not classify).
    pub statements: Vec<Statement>,
    /// Names of the policies that applied.
    pub policies: Vec<String>,
}

impl PolicySet {
    /// A set of checked policies.
    pub fn new(policies: Vec<Policy>) -> Self {
        Self {
            policies: policies.into_iter().map(Arc::new).collect(),
        }
    }

    /// The policies.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter().map(AsRef::as_ref)
    }

    /// Decides `text` for `subject`.
    pub fn decide(&self, subject: &Subject<'_>, text: &str) -> Decision {
        self.check(subject, text).decision
    }

    /// Decides `text` for `subject` on a target whose catalog (views over
    /// masked tables, column identities) has been read.
    pub fn decide_in(
        &self,
        subject: &Subject<'_>,
        text: &str,
        catalog: Option<&Arc<Catalog>>,
    ) -> Decision {
        self.check_in(subject, text, catalog).decision
    }

    /// The tables that any policy governing `target` masks columns of: what
    /// the node reads the target's catalog for.
    pub fn masked_tables(&self, target: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .policies()
            .filter(|p| p.targets.is_match(target))
            .filter_map(|p| p.masking.as_deref())
            .flat_map(|m| m.tables().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Decides `text` for `subject` and returns the classification too. Every
    /// policy that applies must allow; the most restrictive answer wins.
    pub fn check(&self, subject: &Subject<'_>, text: &str) -> Check {
        self.check_in(subject, text, None)
    }

    /// [`Self::check`] on a target whose catalog has been read.
    pub fn check_in(
        &self,
        subject: &Subject<'_>,
        text: &str,
        catalog: Option<&Arc<Catalog>>,
    ) -> Check {
        let applicable: Vec<&Policy> = self
            .policies()
            .filter(|p| p.decides_sql() && p.applies(subject))
            .collect();
        let names = applicable.iter().map(|p| p.name().to_owned()).collect();
        let parsed = match classify::parse(text) {
            Ok(s) => s,
            Err(e) => {
                return Check {
                    decision: Decision {
                        reason: format!("{e}; statements the gateway cannot parse are denied"),
                        kinds: vec!["unparsed".to_owned()],
                        ..Decision::default()
                    },
                    statements: Vec::new(),
                    policies: names,
                };
            }
        };
        let statements = classify::classify_parsed(&parsed);
        let kinds = statements
            .iter()
            .map(|s| s.kind.name().to_owned())
            .collect();
        let mut decision = Decision {
            verdict: Verdict::Deny,
            policy: None,
            rule: None,
            reason: format!(
                "no policy gives {} access to target \"{}\"",
                subject.identity, subject.target
            ),
            kinds,
            same_for_any_literals: statements.iter().all(|s| s.settings.is_empty()),
            delivery: Delivery::Streamed,
            sample: SampleLimit::default(),
            parameters: crate::model::ParameterAudit::default(),
            masking: None,
        };
        let mut worst: Option<(&Policy, Outcome)> = None;
        for p in &applicable {
            let o = p.decide_message(&statements);
            if worst.as_ref().is_none_or(|(_, w)| o.verdict > w.verdict) {
                worst = Some((p, o));
            }
        }
        if let Some((p, o)) = worst {
            decision.delivery = match o.verdict {
                // Nothing runs, so nothing needs to wait for its record.
                Verdict::Deny => Delivery::Streamed,
                // What a human approved must never run unrecorded.
                Verdict::Approval => Delivery::Strict,
                Verdict::Allow => applicable
                    .iter()
                    .map(|p| p.delivery(&statements))
                    .max()
                    .unwrap_or_default(),
            };
            // Redaction wins: `Redact` orders before `Keep`.
            decision.parameters = applicable
                .iter()
                .map(|p| p.doc.audit.parameters)
                .min()
                .unwrap_or_default();
            decision.sample = applicable
                .iter()
                .map(|p| p.doc.audit.sample)
                .reduce(SampleLimit::min)
                .unwrap_or_default();
            decision.verdict = o.verdict;
            decision.policy = Some(p.name().to_owned());
            decision.rule = o.rule;
            decision.reason = o.reason;
        }
        if decision.verdict != Verdict::Deny {
            mask_decision(&mut decision, &applicable, &parsed, catalog);
        }
        Check {
            decision,
            statements,
            policies: names,
        }
    }
}

/// Adds the masking plan to a decision that lets the statement run, or turns
/// it into a refusal when a statement would use a masked value as an oracle.
/// A decision that touches a masked column is never reused for other
/// literals: `ORDER BY 1` and `ORDER BY 2` differ only by a literal. One that
/// touches none stays literal-free (no reference resolves to a masked column
/// whatever the literals).
fn mask_decision(
    decision: &mut Decision,
    applicable: &[&Policy],
    parsed: &[sqlparser::ast::Statement],
    catalog: Option<&Arc<Catalog>>,
) {
    let set = MaskSet {
        policies: applicable
            .iter()
            .filter_map(|p| p.masking.clone().map(|m| (p.name().to_owned(), m)))
            .collect(),
        catalog: catalog.cloned(),
    };
    if set.is_empty() {
        return;
    }
    let mut statements = Vec::with_capacity(parsed.len());
    for (i, stmt) in parsed.iter().enumerate() {
        match lineage::lineage(stmt, &set) {
            Ok(l) => statements.push(l),
            Err(why) => {
                let policy = set.policies[0].0.clone();
                decision.verdict = Verdict::Deny;
                decision.reason = if parsed.len() > 1 {
                    format!("statement {}: {why} (policy \"{policy}\", masking)", i + 1)
                } else {
                    format!("{why} (policy \"{policy}\", masking)")
                };
                decision.policy = Some(policy);
                decision.rule = Some("masking".to_owned());
                return;
            }
        }
    }
    let plan = MaskPlan {
        set: Arc::new(set),
        statements,
    };
    if plan.touches_masked() {
        decision.same_for_any_literals = false;
    }
    decision.masking = Some(MaskHandle(Arc::new(plan)));
}

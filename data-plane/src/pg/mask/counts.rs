//! How many values each rule and detector masked in one execution. Counted
//! by index while rows pass (no string is built per value) and named only
//! when the execution's audit record is written.

use std::collections::BTreeMap;

use sluice_policy::mask::{MaskSet, RuleRef};

/// Counts that are neither a rule nor a detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Other {
    /// A value of a computed column derived from a masked one.
    Computed,
    /// A DataRow the gateway could not read (sent empty).
    MalformedRow,
    /// A quoted literal removed from an error or notice.
    ErrorLiteral,
}

impl Other {
    fn name(self) -> &'static str {
        match self {
            Self::Computed => "computed",
            Self::MalformedRow => "malformed_row",
            Self::ErrorLiteral => "error_literal",
        }
    }
}

/// Per-execution mask counts.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Where each policy's rules and detectors start in the flat vectors.
    rule_at: Vec<usize>,
    detector_at: Vec<usize>,
    rules: Vec<u64>,
    detectors: Vec<u64>,
    other: BTreeMap<Other, u64>,
}

impl Counts {
    /// Zero counts shaped for `set`.
    pub fn new(set: &MaskSet) -> Self {
        let mut c = Self::default();
        for (_, m) in &set.policies {
            c.rule_at.push(c.rules.len());
            c.detector_at.push(c.detectors.len());
            c.rules.resize(c.rules.len() + m.rules.len(), 0);
            c.detectors.resize(c.detectors.len() + m.detectors.len(), 0);
        }
        c
    }

    /// One value masked by a column rule.
    pub fn rule(&mut self, r: RuleRef) {
        if let Some(n) = self
            .rule_at
            .get(r.policy)
            .and_then(|at| self.rules.get_mut(at + r.rule))
        {
            *n += 1;
        }
    }

    /// One span replaced by detector `detector` of policy `policy`.
    pub fn detector(&mut self, policy: usize, detector: usize) {
        if let Some(n) = self
            .detector_at
            .get(policy)
            .and_then(|at| self.detectors.get_mut(at + detector))
        {
            *n += 1;
        }
    }

    /// One of the other counts.
    pub fn other(&mut self, what: Other) {
        *self.other.entry(what).or_default() += 1;
    }

    /// The non-zero counts by audit name (`column:schema.table.column`,
    /// `detector:NAME`, `computed`, ...); detectors of the same name in
    /// several policies add up.
    pub fn named(&self, set: &MaskSet) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (policy, (_, m)) in set.policies.iter().enumerate() {
            let r0 = self.rule_at.get(policy).copied().unwrap_or(usize::MAX);
            let d0 = self.detector_at.get(policy).copied().unwrap_or(usize::MAX);
            let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
            for rule in 0..m.rules.len() {
                let n = at(&self.rules, r0.saturating_add(rule));
                if n > 0 {
                    *out.entry(set.counter_name(RuleRef { policy, rule }))
                        .or_default() += n;
                }
            }
            for d in 0..m.detectors.len() {
                let n = at(&self.detectors, d0.saturating_add(d));
                if n > 0 {
                    *out.entry(format!("detector:{}", m.detectors.name(d)))
                        .or_default() += n;
                }
            }
        }
        for (what, n) in &self.other {
            *out.entry(what.name().to_owned()).or_default() += n;
        }
        out
    }
}

//! Result masking: which output values are masked and how, decided from the
//! statement (lineage) and the policies' rules; what detectors look for in
//! every text value. Pure: the data plane applies a [`MaskPlan`] to the rows
//! as they stream past.
//!
//! - [`model`]: the `masking:` section of a policy document;
//! - [`compile`]: checked rules and compiled detectors;
//! - [`rules`]: what a masked value becomes;
//! - [`detect`]: the multi-pattern detectors;
//! - [`lineage`]: which output columns derive from masked columns, and which
//!   statements would use a masked value as an oracle;
//! - [`catalog`]: the views and column identities of a target that lineage
//!   and RowDescription resolution need.

pub mod catalog;
pub mod compile;
pub mod detect;
pub mod lineage;
pub mod model;
pub mod rules;

use std::sync::Arc;

pub use self::catalog::{Catalog, Origin, ViewDef};
pub use self::compile::{MaskError, Masking};
pub use self::lineage::{Lineage, MaskView, OutCol, RuleRef, Span, Taint};
pub use self::rules::Mask;

/// The masking of every policy that applies to a session, in one view.
#[derive(Debug, Clone, Default)]
pub struct MaskSet {
    /// `(policy name, masking)`, in policy order.
    pub policies: Vec<(String, Arc<Masking>)>,
    /// The target's views and column identities, when read.
    pub catalog: Option<Arc<Catalog>>,
}

impl MaskSet {
    /// Whether nothing is masked or detected.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The mask of a rule.
    pub fn mask(&self, r: RuleRef) -> Option<&Mask> {
        self.policies
            .get(r.policy)
            .and_then(|(_, m)| m.rules.get(r.rule))
            .map(|c| &c.mask)
    }

    /// The audit name of a rule: `column:schema.table.column`.
    pub fn counter_name(&self, r: RuleRef) -> String {
        format!("column:{}", self.rule_name(r))
    }

    /// The taint of a described column by its identity (RowDescription's
    /// table OID and attribute number), whatever the statement called it:
    /// a masked table's column carries its rule, a view's column what the
    /// view's query makes of it. A view the statement's lineage did not
    /// read is taken as fully masked.
    pub fn origin_taint(&self, lineage: &Lineage, table_oid: u32, attnum: i16) -> Taint {
        let Some(origin) = self
            .catalog
            .as_deref()
            .and_then(|c| c.origin(table_oid, attnum))
        else {
            return Taint::Clear;
        };
        match origin {
            Origin::Column {
                schema,
                table,
                column,
            } => match self.rules_of(schema, table, column).as_slice() {
                [] => Taint::Clear,
                [r] => Taint::Column(*r),
                _ => Taint::Derived,
            },
            Origin::View { oid, attnum } => lineage.views.get(oid).map_or(Taint::Derived, |t| {
                usize::try_from(*attnum)
                    .ok()
                    .and_then(|a| a.checked_sub(1))
                    .and_then(|a| t.get(a).copied())
                    .unwrap_or(Taint::Derived)
            }),
        }
    }
}

impl MaskView for MaskSet {
    fn rules_of(&self, schema: &str, table: &str, column: &str) -> Vec<RuleRef> {
        self.policies
            .iter()
            .enumerate()
            .filter_map(|(policy, (_, m))| {
                m.rule_of(schema, table, column)
                    .map(|rule| RuleRef { policy, rule })
            })
            .collect()
    }

    fn masked_columns(&self, schema: &str, table: &str) -> Vec<(String, RuleRef)> {
        let mut out = Vec::new();
        for (policy, (_, m)) in self.policies.iter().enumerate() {
            for (c, rule) in m.masked_columns(schema, table) {
                if !out.iter().any(|(x, _): &(String, RuleRef)| *x == c) {
                    out.push((c, RuleRef { policy, rule }));
                }
            }
        }
        out
    }

    fn rule_name(&self, r: RuleRef) -> String {
        self.policies
            .get(r.policy)
            .and_then(|(_, m)| m.rules.get(r.rule))
            .map_or_else(|| "?".to_owned(), |c| c.name.clone())
    }

    fn view(&self, schema: &str, name: &str) -> Option<&ViewDef> {
        self.catalog.as_deref()?.view(schema, name)
    }
}

/// How one message's results are masked: one lineage per statement (in
/// order), and the rules and detectors they refer to.
#[derive(Debug, Clone)]
pub struct MaskPlan {
    /// The rules and detectors.
    pub set: Arc<MaskSet>,
    /// Per statement of the message.
    pub statements: Vec<Lineage>,
}

impl MaskPlan {
    /// Whether any statement refers to a masked column.
    pub fn touches_masked(&self) -> bool {
        self.statements.iter().any(|l| l.touches_masked)
    }
}

/// A shared plan, compared by identity so decisions stay `Eq`.
#[derive(Debug, Clone)]
pub struct MaskHandle(pub Arc<MaskPlan>);

impl PartialEq for MaskHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MaskHandle {}

//! Column lineage: for each output column of a statement, whether it is
//! derived from a masked column, and whether a masked column is used where
//! its value would steer the result (an oracle). Pure: the parse tree and
//! the masking rules in, a [`Lineage`] or a refusal out.
//!
//! The rules, all failing closed:
//! - an output column that is a masked column (through aliases, subqueries,
//!   CTEs, set operations, VALUES) is masked with that column's mask;
//! - an output column computed from a masked column in any way (function,
//!   operator, cast, aggregate, whole-row reference such as `row_to_json(t)`
//!   or `SELECT t FROM t`) is redacted whole;
//! - a masked column used in WHERE, JOIN, ORDER BY, GROUP BY, HAVING,
//!   DISTINCT, a window, a FILTER, LIMIT, or a de-duplicating set operation
//!   denies the statement;
//! - `*` keeps column names, so a star over a table is resolved by name when
//!   the server describes the result ([`OutCol::Span`]);
//! - a view that reads a masked table is analysed as the query it stands for
//!   (its definition comes from the target's catalog), so its columns are
//!   masked, and its own filters on masked columns are oracles, as if the
//!   statement had spelt the query out;
//! - a statement that writes a masked value anywhere (INSERT ... SELECT,
//!   UPDATE ... SET, CREATE TABLE/VIEW ... AS, SELECT INTO, MERGE) is denied:
//!   the copy would not be masked; so is renaming a masked table or column,
//!   or altering a view over one, which would move values out from under
//!   the rules that name them.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{
    Distinct, Expr, FromTable, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, GroupByExpr, Join, JoinConstraint, JoinOperator, ObjectName, OrderBy,
    OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    SetQuantifier, Statement, TableAlias, TableFactor, TableObject, TableWithJoins, Value, Visit,
    Visitor, WindowType, visit_relations,
};

use super::catalog::ViewDef;
use crate::classify::names;

/// How deep views over views are followed; deeper nesting is denied.
const MAX_VIEW_DEPTH: usize = 16;

/// A masked column's rule: which policy, which rule in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    /// Index of the policy in the [`MaskView`].
    pub policy: usize,
    /// Index of the rule in that policy's masking.
    pub rule: usize,
}

/// Where an output value comes from, as far as masking cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Taint {
    /// From no masked column.
    #[default]
    Clear,
    /// Exactly a masked column's value: shown with its mask.
    Column(RuleRef),
    /// Computed from a masked column: redacted whole.
    Derived,
}

impl Taint {
    /// Values of either kind in one column (UNION, VALUES rows, CASE arms).
    pub fn union(self, other: Self) -> Self {
        match (self, other) {
            (Self::Clear, x) | (x, Self::Clear) => x,
            (Self::Column(a), Self::Column(b)) if a == b => self,
            _ => Self::Derived,
        }
    }

    /// The value computed from this one.
    pub fn transformed(self) -> Self {
        match self {
            Self::Clear => Self::Clear,
            _ => Self::Derived,
        }
    }

    /// Whether any masked value flows in.
    pub fn is_tainted(self) -> bool {
        self != Self::Clear
    }
}

/// A star's columns, resolved by name once the server describes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Span {
    /// Column names whose values need masking.
    pub by_name: BTreeMap<String, Taint>,
    /// For every other column of the span.
    pub fallback: Taint,
}

impl Span {
    /// The taint of a column of the span named `name`.
    pub fn taint_of(&self, name: &str) -> Taint {
        self.by_name.get(name).copied().unwrap_or(self.fallback)
    }

    /// Every taint the span may carry.
    fn all(&self) -> Taint {
        self.by_name
            .values()
            .fold(self.fallback, |a, &t| a.union(t))
    }
}

/// One output item of a statement: a single column, or a star's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutCol {
    /// One column.
    One(Taint),
    /// Zero or more columns from a star (or an unknown result shape).
    Span(Span),
}

impl OutCol {
    fn all(&self) -> Taint {
        match self {
            Self::One(t) => *t,
            Self::Span(s) => s.all(),
        }
    }
}

/// A statement's lineage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    /// Output items in order.
    pub columns: Vec<OutCol>,
    /// The statement refers to a masked column somewhere (its errors may
    /// quote masked values, so they are scrubbed harder).
    pub touches_masked: bool,
    /// The views read, by OID: the taint of each column in `attnum` order,
    /// for RowDescription fields that name a view column.
    pub views: BTreeMap<u32, Arc<[Taint]>>,
}

/// The masking rules lineage resolves against.
pub trait MaskView {
    /// The rules masking `schema.table.column` (one per policy that masks it).
    fn rules_of(&self, schema: &str, table: &str, column: &str) -> Vec<RuleRef>;
    /// The masked columns of a table.
    fn masked_columns(&self, schema: &str, table: &str) -> Vec<(String, RuleRef)>;
    /// The name of a rule, for messages.
    fn rule_name(&self, r: RuleRef) -> String;
    /// The definition of `schema.name` when it is a view that reads a
    /// masked table.
    fn view(&self, _schema: &str, _name: &str) -> Option<&ViewDef> {
        None
    }
}

/// The lineage of `stmt`, or why it is denied.
pub fn lineage(stmt: &Statement, view: &dyn MaskView) -> Result<Lineage, String> {
    let mut a = Analyzer {
        view,
        deny: None,
        touches: false,
        ctes: Vec::new(),
        in_views: Vec::new(),
        views: BTreeMap::new(),
    };
    let columns = a.statement(stmt);
    match a.deny {
        Some(d) => Err(d),
        None => Ok(Lineage {
            columns,
            touches_masked: a.touches,
            views: a.views,
        }),
    }
}

/// A named output column of a query.
#[derive(Debug, Clone)]
struct Item {
    name: Option<String>,
    col: OutCol,
}

/// A relation in a FROM clause, as lineage sees it.
#[derive(Debug, Clone)]
struct Source {
    /// Alias, or table name.
    name: String,
    /// Its columns in order, when known (derived tables without stars).
    ordered: Option<Vec<(Option<String>, Taint)>>,
    /// Columns known by name.
    by_name: BTreeMap<String, Taint>,
    /// Any other column.
    fallback: Taint,
}

impl Source {
    fn whole_row(&self) -> Taint {
        let mut t = self.fallback;
        for v in self.by_name.values() {
            t = t.union(*v);
        }
        if let Some(o) = &self.ordered {
            for (_, v) in o {
                t = t.union(*v);
            }
        }
        t
    }

    fn column(&self, name: &str) -> Option<Taint> {
        if let Some(o) = &self.ordered {
            let mut found = None;
            for (n, t) in o {
                if n.as_deref() == Some(name) {
                    found = Some(found.map_or(*t, |f: Taint| f.union(*t)));
                }
            }
            return found;
        }
        self.by_name.get(name).copied()
    }

    fn star(&self) -> Vec<OutCol> {
        match &self.ordered {
            Some(o) => o.iter().map(|(_, t)| OutCol::One(*t)).collect(),
            None => vec![OutCol::Span(Span {
                by_name: self.by_name.clone(),
                fallback: self.fallback,
            })],
        }
    }

    /// A source made from a query's output, renamed by an alias column list.
    fn from_items(name: String, items: &[Item], alias: Option<&TableAlias>) -> Self {
        let renames: Vec<String> = alias
            .map(|a| a.columns.iter().map(|c| names::ident(&c.name)).collect())
            .unwrap_or_default();
        let has_span = items.iter().any(|i| matches!(i.col, OutCol::Span(_)));
        if has_span {
            let mut s = Self {
                name,
                ordered: None,
                by_name: BTreeMap::new(),
                fallback: Taint::Clear,
            };
            if renames.is_empty() {
                for i in items {
                    match &i.col {
                        OutCol::One(t) => {
                            if let Some(n) = &i.name {
                                let e = s.by_name.entry(n.clone()).or_default();
                                *e = e.union(*t);
                            } else {
                                s.fallback = s.fallback.union(*t);
                            }
                        }
                        OutCol::Span(sp) => {
                            for (n, t) in &sp.by_name {
                                let e = s.by_name.entry(n.clone()).or_default();
                                *e = e.union(*t);
                            }
                            s.fallback = s.fallback.union(sp.fallback);
                        }
                    }
                }
            } else {
                // Positions behind a star are unknown: renamed columns
                // could be any of them.
                s.fallback = items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all()));
            }
            return s;
        }
        let ordered = items
            .iter()
            .enumerate()
            .map(|(k, i)| {
                let t = match i.col {
                    OutCol::One(t) => t,
                    OutCol::Span(_) => Taint::Derived,
                };
                (renames.get(k).cloned().or_else(|| i.name.clone()), t)
            })
            .collect();
        Self {
            name,
            ordered: Some(ordered),
            by_name: BTreeMap::new(),
            fallback: Taint::Clear,
        }
    }
}

struct Scope<'p> {
    sources: Vec<Source>,
    outer: Option<&'p Scope<'p>>,
}

struct Analyzer<'v> {
    view: &'v dyn MaskView,
    deny: Option<String>,
    touches: bool,
    /// CTEs in scope, innermost last.
    ctes: Vec<Source>,
    /// The views being expanded, innermost last (`schema.name`).
    in_views: Vec<String>,
    /// The views read, by OID.
    views: BTreeMap<u32, Arc<[Taint]>>,
}

/// `(schema, table)` of a relation name; unqualified names are `public`.
fn qualified(name: &ObjectName) -> (String, String) {
    split(&names::parts(name).unwrap_or_default())
}

fn split(parts: &[String]) -> (String, String) {
    match parts {
        [t] => ("public".to_owned(), t.clone()),
        [.., s, t] => (s.clone(), t.clone()),
        [] => (String::new(), String::new()),
    }
}

/// A relation of unknown columns, every one of them `t`.
fn opaque_named(name: String, t: Taint) -> Source {
    Source {
        name,
        ordered: None,
        by_name: BTreeMap::new(),
        fallback: t,
    }
}

fn is_number(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

impl Analyzer<'_> {
    fn refuse(&mut self, clause: &str, t: Taint) {
        if self.deny.is_some() {
            return;
        }
        let what = self.what(t);
        let who = match self.in_views.last() {
            Some(v) => format!("the view {v}"),
            None => "the statement".to_owned(),
        };
        self.deny = Some(format!(
            "{who} uses {what} in {clause}; filtering, joining, grouping or ordering on a masked value would reveal it, so the statement is denied"
        ));
    }

    fn what(&self, t: Taint) -> String {
        match t {
            Taint::Column(r) => format!("the masked column {}", self.view.rule_name(r)),
            _ => "a value computed from a masked column".to_owned(),
        }
    }

    /// Denies a statement that stores a masked value: the stored copy would
    /// not be masked when read back.
    fn refuse_write(&mut self, how: &str, t: Taint) {
        if t.is_tainted() {
            let what = self.what(t);
            self.refuse_other(format!(
                "the statement writes {what} with {how}; the copy would not be masked, so the statement is denied while masking applies"
            ));
        }
    }

    /// Whether `name` is a table with masked columns or a view over one.
    fn is_masked_relation(&self, name: &ObjectName) -> bool {
        let (schema, table) = qualified(name);
        !self.view.masked_columns(&schema, &table).is_empty()
            || self.view.view(&schema, &table).is_some()
    }

    /// Denies `how` when it names a masked table or a view over one.
    fn refuse_on_masked(&mut self, stmt: &Statement, how: &str) {
        let hit = visit_relations(stmt, |n| {
            if self.is_masked_relation(n) {
                ControlFlow::Break(qualified(n))
            } else {
                ControlFlow::Continue(())
            }
        });
        if let ControlFlow::Break((schema, table)) = hit {
            self.refuse_other(format!(
                "{how} on {schema}.{table}, which holds masked columns, is denied while masking applies: it would move values out from under the masking rules"
            ));
        }
    }

    fn refuse_other(&mut self, why: String) {
        if self.deny.is_none() {
            self.deny = Some(why);
        }
    }

    fn statement(&mut self, stmt: &Statement) -> Vec<OutCol> {
        match stmt {
            Statement::Query(q) => self.query(q, None).into_iter().map(|i| i.col).collect(),
            Statement::Insert(i) => {
                if let Some(src) = &i.source {
                    let items = self.query(src, None);
                    let t = items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all()));
                    self.refuse_write("INSERT", t);
                }
                let mut scope = Scope {
                    sources: Vec::new(),
                    outer: None,
                };
                if let TableObject::TableName(n) = &i.table {
                    let alias = i.table_alias.as_ref().map(|a| names::ident(&a.alias));
                    scope.sources.push(self.table(n, alias, None));
                }
                match &i.returning {
                    Some(items) => self.projection(items, &scope),
                    None => Vec::new(),
                }
            }
            Statement::Update(u) => {
                let mut scope = Scope {
                    sources: Vec::new(),
                    outer: None,
                };
                self.from(std::slice::from_ref(&u.table), &mut scope);
                if let Some(f) = &u.from {
                    let tables = match f {
                        sqlparser::ast::UpdateTableFromKind::BeforeSet(t)
                        | sqlparser::ast::UpdateTableFromKind::AfterSet(t) => t,
                    };
                    self.from(tables, &mut scope);
                }
                if let Some(w) = &u.selection {
                    self.predicate(w, &scope, "WHERE");
                }
                for a in &u.assignments {
                    let t = self.expr(&a.value, &scope);
                    self.refuse_write("UPDATE ... SET", t);
                }
                match &u.returning {
                    Some(items) => self.projection(items, &scope),
                    None => Vec::new(),
                }
            }
            Statement::Delete(d) => {
                let mut scope = Scope {
                    sources: Vec::new(),
                    outer: None,
                };
                let tables = match &d.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                self.from(tables, &mut scope);
                if let Some(u) = &d.using {
                    self.from(u, &mut scope);
                }
                if let Some(w) = &d.selection {
                    self.predicate(w, &scope, "WHERE");
                }
                match &d.returning {
                    Some(items) => self.projection(items, &scope),
                    None => Vec::new(),
                }
            }
            Statement::CreateView(v) => {
                let items = self.query(&v.query, None);
                let t = items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all()));
                self.refuse_write("CREATE VIEW ... AS", t);
                if v.or_replace {
                    self.refuse_on_masked(stmt, "CREATE OR REPLACE VIEW");
                }
                Vec::new()
            }
            Statement::CreateTable(c) => {
                if let Some(q) = &c.query {
                    let items = self.query(q, None);
                    let t = items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all()));
                    self.refuse_write("CREATE TABLE ... AS", t);
                }
                Vec::new()
            }
            Statement::Merge(_) => {
                self.refuse_on_masked(stmt, "MERGE");
                Vec::new()
            }
            Statement::AlterTable(a)
                if a.operations.iter().any(|op| {
                    matches!(
                        op,
                        sqlparser::ast::AlterTableOperation::RenameColumn { .. }
                            | sqlparser::ast::AlterTableOperation::RenameTable { .. }
                    )
                }) =>
            {
                self.refuse_on_masked(stmt, "renaming");
                Vec::new()
            }
            Statement::AlterView { .. } => {
                self.refuse_on_masked(stmt, "ALTER VIEW");
                Vec::new()
            }
            Statement::Explain { statement, .. } => {
                self.statement(statement);
                vec![OutCol::Span(Span::default())]
            }
            Statement::Copy { to: true, .. } => {
                self.refuse_other(
                    "COPY ... TO is denied while result masking applies: its rows are not masked; use SELECT"
                        .to_owned(),
                );
                Vec::new()
            }
            Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Prepare { .. }
            | Statement::Execute { .. } => {
                self.refuse_other(
                    "cursors and SQL-level prepared statements are denied while result masking applies: their results could not be masked"
                        .to_owned(),
                );
                Vec::new()
            }
            // Anything else returns no table rows, or rows the gateway does
            // not attribute to columns: detectors still scan them.
            _ => vec![OutCol::Span(Span::default())],
        }
    }

    fn query(&mut self, q: &Query, outer: Option<&Scope<'_>>) -> Vec<Item> {
        let mark = self.ctes.len();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = names::ident(&cte.alias.name);
                if with.recursive {
                    // Reach a fixed point: taints only grow.
                    self.ctes.push(Source {
                        name: name.clone(),
                        ordered: None,
                        by_name: BTreeMap::new(),
                        fallback: Taint::Clear,
                    });
                    for _ in 0..3 {
                        let items = self.query(&cte.query, outer);
                        let src = Source::from_items(name.clone(), &items, Some(&cte.alias));
                        if let Some(last) = self.ctes.last_mut() {
                            *last = src;
                        }
                    }
                } else {
                    let items = self.query(&cte.query, outer);
                    self.ctes
                        .push(Source::from_items(name, &items, Some(&cte.alias)));
                }
            }
        }
        let items = self.set_expr(&q.body, outer, q.order_by.as_ref());
        if let Some(l) = &q.limit_clause {
            let scope = Scope {
                sources: Vec::new(),
                outer,
            };
            let mut leaves = Taint::Clear;
            let _ = l.visit(&mut Leaves {
                an: self,
                scope: &scope,
                depth: 0,
                taint: &mut leaves,
            });
            if leaves.is_tainted() {
                self.refuse("LIMIT or OFFSET", leaves);
            }
        }
        self.ctes.truncate(mark);
        items
    }

    fn set_expr(
        &mut self,
        body: &SetExpr,
        outer: Option<&Scope<'_>>,
        order_by: Option<&OrderBy>,
    ) -> Vec<Item> {
        let items = match body {
            SetExpr::Select(s) => return self.select(s, outer, order_by),
            SetExpr::Query(q) => self.query(q, outer),
            SetExpr::SetOperation {
                left,
                set_quantifier,
                right,
                op,
            } => {
                let l = self.set_expr(left, outer, None);
                let r = self.set_expr(right, outer, None);
                let all = l
                    .iter()
                    .chain(r.iter())
                    .fold(Taint::Clear, |a, i| a.union(i.col.all()));
                let keeps_all = matches!(set_quantifier, SetQuantifier::All)
                    && matches!(op, sqlparser::ast::SetOperator::Union);
                if !keeps_all && all.is_tainted() {
                    self.refuse(&format!("{op} (which compares values)"), all);
                }
                let aligned = l.len() == r.len()
                    && l.iter()
                        .chain(r.iter())
                        .all(|i| matches!(i.col, OutCol::One(_)));
                if aligned {
                    l.into_iter()
                        .zip(r)
                        .map(|(a, b)| Item {
                            name: a.name,
                            col: OutCol::One(a.col.all().union(b.col.all())),
                        })
                        .collect()
                } else {
                    vec![Item {
                        name: None,
                        col: OutCol::Span(Span {
                            by_name: BTreeMap::new(),
                            fallback: all,
                        }),
                    }]
                }
            }
            SetExpr::Values(v) => {
                let scope = Scope {
                    sources: Vec::new(),
                    outer,
                };
                let mut cols: Vec<Taint> = Vec::new();
                for row in &v.rows {
                    for (k, e) in row.content.iter().enumerate() {
                        let t = self.expr(e, &scope);
                        match cols.get_mut(k) {
                            Some(c) => *c = c.union(t),
                            None => cols.push(t),
                        }
                    }
                }
                cols.into_iter()
                    .enumerate()
                    .map(|(k, t)| Item {
                        name: Some(format!("column{}", k + 1)),
                        col: OutCol::One(t),
                    })
                    .collect()
            }
            SetExpr::Table(t) => {
                let name = t.table_name.clone().unwrap_or_default();
                let schema = t.schema_name.clone();
                let mut on = Vec::new();
                if let Some(s) = schema {
                    on.push(sqlparser::ast::Ident::new(s));
                }
                on.push(sqlparser::ast::Ident::new(name));
                let src = self.table(&ObjectName::from(on), None, None);
                src.star()
                    .into_iter()
                    .map(|col| Item { name: None, col })
                    .collect()
            }
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                self.statement(s)
                    .into_iter()
                    .map(|col| Item { name: None, col })
                    .collect()
            }
        };
        if let Some(ob) = order_by {
            let scope = Scope {
                sources: vec![Source::from_items(String::new(), &items, None)],
                outer,
            };
            self.order_by(ob, &scope, &items);
        }
        items
    }

    fn order_by(&mut self, ob: &OrderBy, scope: &Scope<'_>, items: &[Item]) {
        if let OrderByKind::Expressions(list) = &ob.kind {
            for o in list {
                let t = self.output_ref(&o.expr, scope, items);
                if t.is_tainted() {
                    self.refuse("ORDER BY", t);
                }
            }
        }
    }

    /// ORDER BY and GROUP BY may name an output column or its position.
    fn output_ref(&mut self, e: &Expr, scope: &Scope<'_>, items: &[Item]) -> Taint {
        if let Some(n) = is_number(e) {
            return match n.checked_sub(1).and_then(|k| items.get(k)) {
                Some(i) => i.col.all(),
                // A position behind a star: any column.
                None => items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all())),
            };
        }
        let mut t = self.leaves(e, scope);
        if let Expr::Identifier(id) = e {
            let name = names::ident(id);
            for i in items {
                if i.name.as_deref() == Some(name.as_str()) {
                    t = t.union(i.col.all());
                }
            }
        }
        t
    }

    fn select(
        &mut self,
        s: &Select,
        outer: Option<&Scope<'_>>,
        order_by: Option<&OrderBy>,
    ) -> Vec<Item> {
        let mut scope = Scope {
            sources: Vec::new(),
            outer,
        };
        self.from(&s.from, &mut scope);
        let items = self.projection_items(&s.projection, &scope);
        if s.into.is_some() {
            let t = items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all()));
            self.refuse_write("SELECT INTO", t);
        }
        for (clause, e) in [
            ("WHERE", s.selection.as_ref()),
            ("PREWHERE", s.prewhere.as_ref()),
            ("HAVING", s.having.as_ref()),
            ("QUALIFY", s.qualify.as_ref()),
        ] {
            if let Some(e) = e {
                self.predicate(e, &scope, clause);
            }
        }
        match &s.group_by {
            GroupByExpr::Expressions(list, _) => {
                for e in list {
                    let t = self.output_ref(e, &scope, &items);
                    if t.is_tainted() {
                        self.refuse("GROUP BY", t);
                    }
                }
            }
            GroupByExpr::All(_) => {
                let t = items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all()));
                if t.is_tainted() {
                    self.refuse("GROUP BY ALL", t);
                }
            }
        }
        match &s.distinct {
            Some(Distinct::Distinct) => {
                let t = items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all()));
                if t.is_tainted() {
                    self.refuse("DISTINCT", t);
                }
            }
            Some(Distinct::On(list)) => {
                for e in list {
                    let t = self.output_ref(e, &scope, &items);
                    if t.is_tainted() {
                        self.refuse("DISTINCT ON", t);
                    }
                }
            }
            _ => {}
        }
        for w in &s.named_window {
            let mut t = Taint::Clear;
            let _ = w.visit(&mut Leaves {
                an: self,
                scope: &scope,
                depth: 0,
                taint: &mut t,
            });
            if t.is_tainted() {
                self.refuse("a window definition", t);
            }
        }
        for e in s.cluster_by.iter().chain(&s.distribute_by) {
            self.predicate(e, &scope, "a distribution clause");
        }
        if let Some(ob) = order_by {
            self.order_by(ob, &scope, &items);
        }
        items
    }

    fn from(&mut self, from: &[TableWithJoins], scope: &mut Scope<'_>) {
        for twj in from {
            self.factor(&twj.relation, scope);
            for j in &twj.joins {
                self.join(j, scope);
            }
        }
    }

    fn join(&mut self, j: &Join, scope: &mut Scope<'_>) {
        let before = scope.sources.len();
        self.factor(&j.relation, scope);
        let constraint = match &j.join_operator {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::CrossJoin(c)
            | JoinOperator::Semi(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::Anti(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c)
            | JoinOperator::StraightJoin(c) => Some(c),
            JoinOperator::AsOf {
                match_condition, ..
            } => {
                self.predicate(match_condition, scope, "JOIN");
                None
            }
            _ => None,
        };
        match constraint {
            Some(JoinConstraint::On(e)) => self.predicate(e, scope, "JOIN ... ON"),
            Some(JoinConstraint::Using(cols)) => {
                for c in cols {
                    let name = names::parts(c)
                        .and_then(|p| p.last().cloned())
                        .unwrap_or_default();
                    let t = self.resolve(None, &name, scope);
                    if t.is_tainted() {
                        self.refuse("JOIN ... USING", t);
                    }
                }
            }
            Some(JoinConstraint::Natural) => {
                // The shared columns are not known here: any masked column
                // on either side could be compared.
                let t = scope
                    .sources
                    .iter()
                    .fold(Taint::Clear, |a, s| a.union(s.whole_row()));
                if t.is_tainted() {
                    self.refuse("NATURAL JOIN", t);
                }
            }
            _ => {}
        }
        let _ = before;
    }

    /// A base table (or CTE) by name.
    fn table(
        &mut self,
        name: &ObjectName,
        alias: Option<String>,
        cols: Option<&TableAlias>,
    ) -> Source {
        let parts = names::parts(name).unwrap_or_default();
        // An unqualified name may be a CTE.
        if parts.len() == 1
            && let Some(cte) = self.ctes.iter().rev().find(|c| c.name == parts[0])
        {
            let mut s = cte.clone();
            if let Some(a) = cols.filter(|a| !a.columns.is_empty()) {
                let items: Vec<Item> = s
                    .star()
                    .into_iter()
                    .map(|col| Item { name: None, col })
                    .collect();
                s = Source::from_items(String::new(), &items, Some(a));
            }
            s.name = alias.unwrap_or_else(|| parts[0].clone());
            return s;
        }
        let (schema, table) = split(&parts);
        let view = self.view;
        if let Some(def) = view.view(&schema, &table) {
            return self.expand_view(def, &schema, &table, alias, cols);
        }
        let masked = self.view.masked_columns(&schema, &table);
        let mut by_name = BTreeMap::new();
        for (c, r) in masked {
            let rules = self.view.rules_of(&schema, &table, &c);
            let t = if rules.len() == 1 {
                Taint::Column(r)
            } else {
                Taint::Derived
            };
            by_name.insert(c, t);
        }
        let renamed = cols.is_some_and(|a| !a.columns.is_empty());
        let mut s = Source {
            name: alias.unwrap_or(table),
            ordered: None,
            by_name,
            fallback: Taint::Clear,
        };
        if renamed && !s.by_name.is_empty() {
            // Renamed columns hide which is which: all of them are masked.
            s.by_name.clear();
            s.fallback = Taint::Derived;
        }
        s
    }

    /// A view over a masked table, read as the query it stands for. Its
    /// definition is analysed on its own (outer CTEs do not reach into it).
    fn expand_view(
        &mut self,
        def: &ViewDef,
        schema: &str,
        table: &str,
        alias: Option<String>,
        cols: Option<&TableAlias>,
    ) -> Source {
        let full = format!("{schema}.{table}");
        let name = alias.unwrap_or_else(|| table.to_owned());
        let ViewDef::Query { oid, query } = def else {
            self.refuse_other(format!(
                "the view {full} reads a masked table and its definition could not be analysed, so statements reading it are denied while masking applies"
            ));
            return opaque_named(name, Taint::Derived);
        };
        if self.in_views.len() >= MAX_VIEW_DEPTH || self.in_views.contains(&full) {
            self.refuse_other(format!(
                "the view {full} nests views deeper than {MAX_VIEW_DEPTH} levels, so statements reading it are denied while masking applies"
            ));
            return opaque_named(name, Taint::Derived);
        }
        let ctes = std::mem::take(&mut self.ctes);
        self.in_views.push(full);
        let items = self.query(query, None);
        self.in_views.pop();
        self.ctes = ctes;
        let taints: Arc<[Taint]> = items
            .iter()
            .map(|i| match i.col {
                OutCol::One(t) => t,
                OutCol::Span(_) => Taint::Derived,
            })
            .collect();
        self.views.insert(*oid, taints);
        Source::from_items(name, &items, cols)
    }

    fn factor(&mut self, f: &TableFactor, scope: &mut Scope<'_>) {
        match f {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let a = alias.as_ref().map(|a| names::ident(&a.name));
                let mut s = self.table(name, a, alias.as_ref());
                if let Some(args) = args {
                    // A function in FROM: its rows come from its arguments.
                    let mut t = Taint::Clear;
                    for arg in &args.args {
                        t = t.union(self.function_arg(arg, scope));
                    }
                    s.by_name.clear();
                    s.ordered = None;
                    s.fallback = t.transformed();
                }
                scope.sources.push(s);
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let items = self.query(subquery, Some(scope));
                let name = alias
                    .as_ref()
                    .map(|a| names::ident(&a.name))
                    .unwrap_or_default();
                scope
                    .sources
                    .push(Source::from_items(name, &items, alias.as_ref()));
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.from(std::slice::from_ref(table_with_joins), scope);
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                let mut t = Taint::Clear;
                for arg in args {
                    t = t.union(self.function_arg(arg, scope));
                }
                scope.sources.push(opaque(alias.as_ref(), Some(name), t));
            }
            TableFactor::TableFunction { expr, alias } => {
                let t = self.leaves(expr, scope);
                scope.sources.push(opaque(alias.as_ref(), None, t));
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                let mut t = Taint::Clear;
                for e in array_exprs {
                    t = t.union(self.leaves(e, scope));
                }
                scope.sources.push(opaque(alias.as_ref(), None, t));
            }
            other => {
                // Anything else: whatever it reads could be anything.
                let mut t = Taint::Clear;
                let _ = other.visit(&mut Leaves {
                    an: self,
                    scope,
                    depth: 0,
                    taint: &mut t,
                });
                scope
                    .sources
                    .push(opaque(None, None, Taint::Derived.union(t)));
            }
        }
    }

    fn function_arg(&mut self, arg: &FunctionArg, scope: &Scope<'_>) -> Taint {
        let e = match arg {
            FunctionArg::Named { arg, .. }
            | FunctionArg::ExprNamed { arg, .. }
            | FunctionArg::Unnamed(arg) => arg,
        };
        match e {
            FunctionArgExpr::Expr(e) => self.leaves(e, scope),
            FunctionArgExpr::QualifiedWildcard(n) => self.whole_row_of(n, scope),
            FunctionArgExpr::Wildcard => Taint::Clear,
            FunctionArgExpr::WildcardWithOptions(_) => Taint::Clear,
        }
    }

    fn whole_row_of(&mut self, n: &ObjectName, scope: &Scope<'_>) -> Taint {
        let name = names::parts(n)
            .and_then(|p| p.last().cloned())
            .unwrap_or_default();
        let mut s = Some(scope);
        while let Some(sc) = s {
            if let Some(src) = sc.sources.iter().find(|x| x.name == name) {
                let t = src.whole_row();
                if t.is_tainted() {
                    self.touches = true;
                }
                return t;
            }
            s = sc.outer;
        }
        Taint::Derived
    }

    fn projection(&mut self, items: &[SelectItem], scope: &Scope<'_>) -> Vec<OutCol> {
        self.projection_items(items, scope)
            .into_iter()
            .map(|i| i.col)
            .collect()
    }

    fn projection_items(&mut self, items: &[SelectItem], scope: &Scope<'_>) -> Vec<Item> {
        let mut out = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let t = self.expr(e, scope);
                    out.push(Item {
                        name: output_name(e),
                        col: OutCol::One(t),
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let t = self.expr(expr, scope);
                    out.push(Item {
                        name: Some(names::ident(alias)),
                        col: OutCol::One(t),
                    });
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    let t = self.expr(expr, scope);
                    out.push(Item {
                        name: None,
                        col: OutCol::Span(Span {
                            by_name: BTreeMap::new(),
                            fallback: t,
                        }),
                    });
                }
                SelectItem::Wildcard(_) => {
                    for s in &scope.sources {
                        if s.whole_row().is_tainted() {
                            self.touches = true;
                        }
                        out.extend(s.star().into_iter().map(|col| Item { name: None, col }));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(n) => {
                        let name = names::parts(n)
                            .and_then(|p| p.last().cloned())
                            .unwrap_or_default();
                        match scope.sources.iter().find(|s| s.name == name) {
                            Some(s) => {
                                if s.whole_row().is_tainted() {
                                    self.touches = true;
                                }
                                out.extend(
                                    s.star().into_iter().map(|col| Item { name: None, col }),
                                );
                            }
                            None => out.push(Item {
                                name: None,
                                col: OutCol::Span(Span {
                                    by_name: BTreeMap::new(),
                                    fallback: Taint::Derived,
                                }),
                            }),
                        }
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        let t = self.leaves(e, scope);
                        out.push(Item {
                            name: None,
                            col: OutCol::Span(Span {
                                by_name: BTreeMap::new(),
                                fallback: t.transformed(),
                            }),
                        });
                    }
                },
            }
        }
        out
    }

    fn predicate(&mut self, e: &Expr, scope: &Scope<'_>, clause: &str) {
        let t = self.leaves(e, scope);
        if t.is_tainted() {
            self.refuse(clause, t);
        }
    }

    /// The taint of an output expression: a plain reference keeps the
    /// column's mask; anything computed is redacted if tainted.
    fn expr(&mut self, e: &Expr, scope: &Scope<'_>) -> Taint {
        match e {
            Expr::Nested(inner) => self.expr(inner, scope),
            Expr::Identifier(id) => self.resolve(None, &names::ident(id), scope),
            Expr::CompoundIdentifier(parts) => self.compound(parts, scope),
            Expr::Subquery(q) => {
                let items = self.query(q, Some(scope));
                items.iter().fold(Taint::Clear, |a, i| a.union(i.col.all()))
            }
            _ => self.leaves(e, scope).transformed(),
        }
    }

    /// Every masked value flowing into `e`, with oracle checks on windows,
    /// FILTER and ordered aggregates inside it.
    fn leaves(&mut self, e: &Expr, scope: &Scope<'_>) -> Taint {
        let mut t = Taint::Clear;
        let _ = e.visit(&mut Leaves {
            an: self,
            scope,
            depth: 0,
            taint: &mut t,
        });
        t
    }

    fn compound(&mut self, parts: &[sqlparser::ast::Ident], scope: &Scope<'_>) -> Taint {
        let p: Vec<String> = parts.iter().map(names::ident).collect();
        match p.as_slice() {
            [one] => self.resolve(None, one, scope),
            [.., rel, col] => self.resolve(Some(rel), col, scope),
            [] => Taint::Derived,
        }
    }

    /// Resolves a column reference: the innermost scope that knows the name
    /// wins; a name that is a relation is a whole-row reference.
    fn resolve(&mut self, rel: Option<&str>, col: &str, scope: &Scope<'_>) -> Taint {
        let t = self.resolve_inner(rel, col, scope);
        if t.is_tainted() {
            self.touches = true;
        }
        t
    }

    fn resolve_inner(&self, rel: Option<&str>, col: &str, scope: &Scope<'_>) -> Taint {
        let mut s = Some(scope);
        if let Some(rel) = rel {
            while let Some(sc) = s {
                if let Some(src) = sc.sources.iter().find(|x| x.name == rel) {
                    return src.column(col).unwrap_or(src.fallback);
                }
                s = sc.outer;
            }
            // `x.y` where x is no relation in scope: a field of a composite
            // column `x`, of a whole row, or a name the server will reject.
            // Fail closed: whatever `x` or `y` alone could be.
            let t = self
                .resolve_inner(None, rel, scope)
                .union(self.resolve_inner(None, col, scope));
            return if t.is_tainted() { Taint::Derived } else { t };
        }
        while let Some(sc) = s {
            let mut found: Option<Taint> = None;
            for src in &sc.sources {
                if let Some(t) = src.column(col) {
                    found = Some(found.map_or(t, |f| f.union(t)));
                }
            }
            if let Some(src) = sc.sources.iter().find(|x| x.name == col) {
                let w = src.whole_row().transformed();
                found = Some(found.map_or(w, |f| f.union(w)));
            }
            if let Some(t) = found {
                return t;
            }
            // Unknown names: a column of a relation whose columns are not
            // listed (not masked), unless the relation says otherwise.
            let fallback = sc
                .sources
                .iter()
                .fold(Taint::Clear, |a, x| a.union(x.fallback));
            if fallback.is_tainted() {
                return Taint::Derived;
            }
            if !sc.sources.is_empty() && sc.outer.is_none() {
                return Taint::Clear;
            }
            s = sc.outer;
        }
        Taint::Clear
    }
}

fn opaque(alias: Option<&TableAlias>, name: Option<&ObjectName>, t: Taint) -> Source {
    let n = alias
        .map(|a| names::ident(&a.name))
        .or_else(|| name.and_then(|n| names::parts(n).and_then(|p| p.last().cloned())))
        .unwrap_or_default();
    opaque_named(n, t.transformed())
}

/// The name the server gives an output column without an alias.
fn output_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(names::ident(i)),
        Expr::CompoundIdentifier(p) => p.last().map(names::ident),
        Expr::Nested(inner) => output_name(inner),
        Expr::Cast { expr, .. } => output_name(expr),
        Expr::Function(f) => names::parts(&f.name).and_then(|p| p.last().cloned()),
        _ => None,
    }
}

/// Collects the taint of every reference in an expression. Subqueries are
/// analysed in their own scope (with this one as the outer), and their
/// insides are not visited again here.
struct Leaves<'s, 'v, 'p> {
    an: &'s mut Analyzer<'v>,
    scope: &'s Scope<'p>,
    depth: usize,
    taint: &'s mut Taint,
}

impl Visitor for Leaves<'_, '_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.depth == 0 {
            let items = self.an.query(q, Some(self.scope));
            for i in items {
                *self.taint = self.taint.union(i.col.all());
            }
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        match e {
            Expr::Identifier(id) => {
                let t = self.an.resolve(None, &names::ident(id), self.scope);
                *self.taint = self.taint.union(t);
            }
            Expr::CompoundIdentifier(parts) => {
                let t = self.an.compound(parts, self.scope);
                *self.taint = self.taint.union(t);
            }
            Expr::Function(f) => {
                self.function(f);
            }
            Expr::QualifiedWildcard(n, _) => {
                let t = self.an.whole_row_of(n, self.scope);
                *self.taint = self.taint.union(t);
            }
            Expr::Wildcard(_) => {
                let t = self
                    .scope
                    .sources
                    .iter()
                    .fold(Taint::Clear, |a, s| a.union(s.whole_row()));
                *self.taint = self.taint.union(t);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Leaves<'_, '_, '_> {
    fn function(&mut self, f: &sqlparser::ast::Function) {
        // Whole-row arguments (`count(c.*)`, `row_to_json(c.*)`) are not
        // expressions: take them here.
        if let FunctionArguments::List(list) = &f.args {
            for a in &list.args {
                let e = match a {
                    FunctionArg::Named { arg, .. }
                    | FunctionArg::ExprNamed { arg, .. }
                    | FunctionArg::Unnamed(arg) => arg,
                };
                if let FunctionArgExpr::QualifiedWildcard(n) = e {
                    let t = self.an.whole_row_of(n, self.scope);
                    *self.taint = self.taint.union(t);
                }
            }
            let mut inner = Taint::Clear;
            for c in &list.clauses {
                match c {
                    FunctionArgumentClause::OrderBy(obs) => {
                        for o in obs {
                            inner = inner.union(self.an.leaves(&o.expr, self.scope));
                        }
                    }
                    FunctionArgumentClause::Where(e) | FunctionArgumentClause::Limit(e) => {
                        inner = inner.union(self.an.leaves(e, self.scope));
                    }
                    _ => {}
                }
            }
            if inner.is_tainted() {
                self.an
                    .refuse("an aggregate's ORDER BY, WHERE or LIMIT", inner);
            }
        }
        let mut t = Taint::Clear;
        for o in &f.within_group {
            t = t.union(self.an.leaves(&o.expr, self.scope));
        }
        if let Some(filter) = &f.filter {
            t = t.union(self.an.leaves(filter, self.scope));
        }
        if t.is_tainted() {
            self.an.refuse("an aggregate's FILTER or WITHIN GROUP", t);
        }
        if let Some(WindowType::WindowSpec(w)) = &f.over {
            let mut t = Taint::Clear;
            for e in &w.partition_by {
                t = t.union(self.an.leaves(e, self.scope));
            }
            for o in &w.order_by {
                t = t.union(self.an.leaves(&o.expr, self.scope));
            }
            if t.is_tainted() {
                self.an.refuse("a window's PARTITION BY or ORDER BY", t);
            }
        }
    }
}

#[cfg(test)]
mod tests;

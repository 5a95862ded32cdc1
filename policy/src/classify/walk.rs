//! One pass over a statement's whole tree: functions called, tables read,
//! writes nested in WITH, row locks, and constructs the server would run but
//! the classifier does not model.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FromTable, MergeAction, ObjectName, Query, Select, Statement,
    TableFactor, TableObject, Visit, Visitor,
};

use super::names::{self, FunctionName, TableName};
use super::{Action, Filter, Kind};

/// What the walk found.
#[derive(Debug, Default)]
pub struct Found {
    pub functions: Vec<FunctionName>,
    pub reads: Vec<TableName>,
    pub writes: Vec<Action>,
    pub operators: Vec<String>,
    pub locking: bool,
    pub select_into: bool,
    pub unsupported: Vec<String>,
}

#[derive(Default)]
struct Walker {
    found: Found,
    ctes: HashSet<String>,
    /// Depth of EXPLAIN without ANALYZE: writes under it do not run.
    plain_explain: usize,
}

/// Walks `stmt`. Writes are collected for every INSERT, UPDATE, DELETE and
/// MERGE found, the top-level one included, unless under a plain EXPLAIN.
pub fn walk(stmt: &Statement) -> Found {
    let mut w = Walker::default();
    let _ = stmt.visit(&mut w);
    w.found.functions.sort();
    w.found.functions.dedup();
    w.found.reads.sort();
    w.found.reads.dedup();
    w.found
}

/// Whether an EXPLAIN runs the statement it explains.
pub fn explain_runs(analyze: bool, options: Option<&[sqlparser::ast::UtilityOption]>) -> bool {
    // Any ANALYZE option counts, whatever its value: refusing a harmless
    // `ANALYZE false` is better than missing a real one.
    analyze
        || options.is_some_and(|opts| {
            opts.iter().any(|o| {
                matches!(
                    o.name.value.to_ascii_lowercase().as_str(),
                    "analyze" | "analyse"
                )
            })
        })
}

impl Walker {
    fn function(&mut self, name: &ObjectName) {
        match names::function(name) {
            Some(f) => self.found.functions.push(f),
            None => self.found.unsupported.push(format!("function name {name}")),
        }
    }

    fn builtin(&mut self, name: &str) {
        self.found.functions.push(FunctionName {
            schema: None,
            name: name.to_owned(),
        });
    }

    fn write(&mut self, kind: Kind, table: Option<TableName>, filter: Filter) {
        if self.plain_explain == 0 {
            self.found.writes.push(Action {
                kind,
                table,
                filter,
            });
        }
    }

    fn relation(&mut self, name: &ObjectName) -> Option<TableName> {
        let t = names::table(name);
        if t.is_none() {
            self.found.unsupported.push(format!("relation name {name}"));
        }
        t
    }

    fn dml(&mut self, stmt: &Statement) {
        match stmt {
            Statement::Insert(i) => {
                let table = match &i.table {
                    TableObject::TableName(n) => self.relation(n),
                    TableObject::TableFunction(_) | TableObject::TableQuery(_) => {
                        self.found
                            .unsupported
                            .push("INSERT INTO something other than a table".to_owned());
                        None
                    }
                };
                self.write(Kind::Insert, table, Filter::NotApplicable);
            }
            Statement::Update(u) => {
                let (table, alias) = factor_table(&u.table.relation);
                let table = table.and_then(|n| self.relation(n));
                let filter = filter(u.selection.as_ref(), table.as_ref(), alias);
                self.write(Kind::Update, table, filter);
            }
            Statement::Delete(d) => {
                let targets = match &d.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                if targets.len() != 1 || !d.tables.is_empty() {
                    self.found
                        .unsupported
                        .push("DELETE from several tables".to_owned());
                }
                for t in targets {
                    let (name, alias) = factor_table(&t.relation);
                    let table = name.and_then(|n| self.relation(n));
                    let filter = filter(d.selection.as_ref(), table.as_ref(), alias);
                    self.write(Kind::Delete, table, filter);
                }
            }
            Statement::Merge(m) => {
                let (name, _) = factor_table(&m.table);
                let table = name.and_then(|n| self.relation(n));
                self.write(Kind::Merge, table.clone(), Filter::NotApplicable);
                for clause in &m.clauses {
                    let kind = match &clause.action {
                        MergeAction::Delete { .. } => Kind::Delete,
                        MergeAction::Update(_) => Kind::Update,
                        MergeAction::Insert(_) => Kind::Insert,
                        MergeAction::DoNothing { .. } => continue,
                    };
                    self.write(kind, table.clone(), Filter::NotApplicable);
                }
            }
            _ => {}
        }
    }
}

fn factor_table(f: &TableFactor) -> (Option<&ObjectName>, Option<String>) {
    match f {
        TableFactor::Table { name, alias, .. } => {
            (Some(name), alias.as_ref().map(|a| names::ident(&a.name)))
        }
        _ => (None, None),
    }
}

/// Classifies a WHERE: does it refer to a column of the target table? Column
/// references outside subqueries count; inside a subquery only references
/// qualified with the target's name or alias do (a correlated condition).
pub fn filter(
    selection: Option<&Expr>,
    table: Option<&TableName>,
    alias: Option<String>,
) -> Filter {
    let Some(expr) = selection else {
        return Filter::Missing;
    };
    let mut v = ColumnFinder {
        depth: 0,
        qualifiers: [alias, table.map(|t| t.name.clone())]
            .into_iter()
            .flatten()
            .collect(),
        found: false,
    };
    let _ = expr.visit(&mut v);
    if v.found {
        Filter::Column
    } else {
        Filter::Constant
    }
}

struct ColumnFinder {
    depth: usize,
    qualifiers: Vec<String>,
    found: bool,
}

impl Visitor for ColumnFinder {
    type Break = ();

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let hit = match e {
            Expr::Identifier(_) => self.depth == 0,
            Expr::CompoundIdentifier(parts) => {
                self.depth == 0
                    || parts.len() >= 2
                        && self
                            .qualifiers
                            .contains(&names::ident(&parts[parts.len() - 2]))
            }
            _ => false,
        };
        if hit {
            self.found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for Walker {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if let Statement::Explain {
            analyze, options, ..
        } = s
            && !explain_runs(*analyze, options.as_deref())
        {
            self.plain_explain += 1;
        }
        self.dml(s);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if let Statement::Explain {
            analyze, options, ..
        } = s
            && !explain_runs(*analyze, options.as_deref())
        {
            self.plain_explain -= 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            self.found.locking = true;
        }
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.ctes.insert(names::ident(&cte.alias.name));
            }
        }
        if q.for_clause.is_some()
            || q.format_clause.is_some()
            || q.settings.is_some()
            || !q.pipe_operators.is_empty()
        {
            self.found
                .unsupported
                .push("a query clause PostgreSQL does not have".to_owned());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if s.into.is_some() {
            self.found.select_into = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
        match f {
            TableFactor::Table { name, args, .. } => {
                if args.is_some() {
                    // `FROM generate_series(1, 3)`: a function, not a table.
                    self.function(name);
                } else {
                    let unqualified_cte = name.0.len() == 1
                        && names::parts(name)
                            .is_some_and(|p| p.first().is_some_and(|n| self.ctes.contains(n)));
                    if !unqualified_cte && let Some(t) = self.relation(name) {
                        self.found.reads.push(t);
                    }
                }
            }
            TableFactor::Function { name, .. } => self.function(name),
            TableFactor::UNNEST { .. } => self.builtin("unnest"),
            TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::TableFunction { .. } => {}
            other => self
                .found
                .unsupported
                .push(format!("table expression {other}")),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => self.function(&f.name),
            Expr::Extract { .. } => self.builtin("extract"),
            Expr::Substring { .. } => self.builtin("substring"),
            Expr::Position { .. } => self.builtin("position"),
            Expr::Trim { .. } => self.builtin("trim"),
            Expr::Ceil { .. } => self.builtin("ceil"),
            Expr::Floor { .. } => self.builtin("floor"),
            Expr::Overlay { .. } => self.builtin("overlay"),
            Expr::Convert { .. } => self.builtin("convert"),
            Expr::AtTimeZone { .. } => self.builtin("timezone"),
            Expr::BinaryOp {
                op: BinaryOperator::PGCustomBinaryOperator(parts),
                ..
            } => {
                let schema = if parts.len() > 1 {
                    parts[0].to_ascii_lowercase()
                } else {
                    String::new()
                };
                if !schema.is_empty() && schema != "pg_catalog" {
                    self.found.operators.push(parts.join("."));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

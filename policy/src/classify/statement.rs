//! From one parsed statement to its classification.

use sqlparser::ast::{self, Expr, ObjectName, Reset, Set, Statement as S};

use super::walk::{self, explain_runs};
use super::{Action, Filter, Kind, Setting, Statement};

/// Classifies one parsed statement.
pub fn classify(stmt: &S) -> Statement {
    let found = walk::walk(stmt);
    let (kind, settings) = kind_of(stmt);
    let mut actions = Vec::new();
    // Reads: every table read anywhere (a write's target is read too).
    for t in &found.reads {
        actions.push(Action {
            kind: Kind::Select,
            table: Some(t.clone()),
            filter: Filter::NotApplicable,
        });
    }
    actions.extend(found.writes.iter().cloned());
    if found.select_into {
        actions.push(Action {
            kind: Kind::Create,
            table: None,
            filter: Filter::NotApplicable,
        });
    }
    // Statements that are neither reads nor writes act as a whole.
    if !matches!(
        kind,
        Kind::Select | Kind::Insert | Kind::Update | Kind::Delete | Kind::Merge
    ) {
        actions.push(Action {
            kind,
            table: target_of(stmt),
            filter: Filter::NotApplicable,
        });
    } else if actions.is_empty() {
        // `SELECT 1`, `VALUES (1)`: a read of no table.
        actions.push(Action {
            kind,
            table: None,
            filter: Filter::NotApplicable,
        });
    }
    Statement {
        kind: if found.select_into {
            Kind::Create
        } else {
            kind
        },
        actions,
        functions: found.functions,
        operators: found.operators,
        locking: found.locking,
        settings,
        unsupported: found.unsupported,
    }
}

fn target_of(stmt: &S) -> Option<super::TableName> {
    match stmt {
        S::Copy {
            source: ast::CopySource::Table { table_name, .. },
            ..
        } => super::names::table(table_name),
        _ => None,
    }
}

fn setting(name: &ObjectName, value: Option<&[Expr]>) -> Setting {
    let name = super::names::parts(name)
        .map(|p| p.join("."))
        .unwrap_or_else(|| name.to_string());
    Setting {
        name,
        value: value.map(|v| v.iter().map(value_text).collect::<Vec<_>>().join(", ")),
    }
}

/// A SET value as text: string literals without their quotes.
fn value_text(e: &Expr) -> String {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => super::names::ident(i),
        other => other.to_string(),
    }
}

fn kind_of(stmt: &S) -> (Kind, Vec<Setting>) {
    let kind = match stmt {
        S::Query(_) => Kind::Select,
        S::Insert(_) => Kind::Insert,
        S::Update(_) => Kind::Update,
        S::Delete(_) => Kind::Delete,
        S::Merge(_) => Kind::Merge,
        S::Explain {
            analyze,
            options,
            statement,
            ..
        } => {
            if explain_runs(*analyze, options.as_deref()) {
                return kind_of(statement);
            }
            Kind::Explain
        }
        S::ShowVariable { .. } => Kind::Show,
        S::StartTransaction { .. } => Kind::Begin,
        S::Commit { .. } => Kind::Commit,
        S::Rollback { .. } => Kind::Rollback,
        S::Savepoint { .. } => Kind::Savepoint,
        S::ReleaseSavepoint { .. } => Kind::Release,
        S::Set(set) => return set_kind(set),
        S::Reset(r) => {
            return match &r.reset {
                Reset::ALL => (
                    Kind::Reset,
                    vec![Setting {
                        name: "all".to_owned(),
                        value: None,
                    }],
                ),
                Reset::SessionAuthorization => (Kind::SetSessionAuthorization, Vec::new()),
                Reset::ConfigurationParameter(name)
                    if name.to_string().eq_ignore_ascii_case("role") =>
                {
                    (Kind::SetRole, Vec::new())
                }
                Reset::ConfigurationParameter(name) => (Kind::Reset, vec![setting(name, None)]),
            };
        }
        S::Copy { to: true, .. } => Kind::CopyTo,
        S::Copy { to: false, .. } => Kind::CopyFrom,
        S::Truncate(_) => Kind::Truncate,
        S::Grant(_) => Kind::Grant,
        S::Revoke(_) => Kind::Revoke,
        S::Comment { .. } => Kind::Comment,
        S::Call(_) => Kind::Call,
        S::Prepare { .. } => Kind::Prepare,
        S::Execute { .. } => Kind::Execute,
        S::Deallocate { .. } => Kind::Deallocate,
        S::LISTEN { .. } => Kind::Listen,
        S::NOTIFY { .. } => Kind::Notify,
        S::UNLISTEN { .. } => Kind::Unlisten,
        S::Lock(_) | S::LockTables { .. } => Kind::Lock,
        S::Vacuum(_) => Kind::Vacuum,
        S::Analyze(_) => Kind::Analyze,
        S::Discard { .. } => Kind::Discard,
        other => ddl_kind(other),
    };
    (kind, Vec::new())
}

fn set_kind(set: &Set) -> (Kind, Vec<Setting>) {
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let s = setting(variable, Some(values));
            match s.name.as_str() {
                "role" => (Kind::SetRole, Vec::new()),
                "session_authorization" => (Kind::SetSessionAuthorization, Vec::new()),
                _ => (Kind::Set, vec![s]),
            }
        }
        Set::SetTimeZone { value, .. } => (
            Kind::Set,
            vec![Setting {
                name: "timezone".to_owned(),
                value: Some(value_text(value)),
            }],
        ),
        Set::SetNames { charset_name, .. } => (
            Kind::Set,
            vec![Setting {
                name: "client_encoding".to_owned(),
                value: Some(super::names::ident(charset_name)),
            }],
        ),
        Set::SetRole { .. } => (Kind::SetRole, Vec::new()),
        Set::SetSessionAuthorization(_) => (Kind::SetSessionAuthorization, Vec::new()),
        Set::SetTransaction { .. } => (Kind::SetTransaction, Vec::new()),
        _ => (Kind::Other, Vec::new()),
    }
}

/// DDL and everything else, by the statement's leading keyword.
fn ddl_kind(stmt: &S) -> Kind {
    let text = stmt.to_string();
    let first = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "CREATE" => Kind::Create,
        "ALTER" => Kind::Alter,
        "DROP" => Kind::Drop,
        "DO" => Kind::Do,
        _ => Kind::Other,
    }
}

//! SQL parsing with the server's dialect.

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

/// A message of SQL text, parsed.
#[derive(Debug)]
pub struct Parsed {
    /// The statements, in order.
    pub statements: Vec<Statement>,
}

/// Parses `text` as PostgreSQL.
pub fn parse(text: &str) -> Result<Parsed, ParserError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, text)?;
    Ok(Parsed { statements })
}

impl Parsed {
    /// A lower-case kind per statement, e.g. `select`, `insert`.
    pub fn kinds(&self) -> Vec<String> {
        self.statements.iter().map(statement_kind).collect()
    }
}

/// A short lower-case name for a statement's kind.
pub fn statement_kind(statement: &Statement) -> String {
    let kind = match statement {
        Statement::Query(_) => "select",
        Statement::Insert(_) => "insert",
        Statement::Update(_) => "update",
        Statement::Delete(_) => "delete",
        Statement::Merge(_) => "merge",
        Statement::CreateTable(_) => "create_table",
        Statement::Drop { .. } => "drop",
        Statement::Truncate(_) => "truncate",
        Statement::StartTransaction { .. } => "begin",
        Statement::Commit { .. } => "commit",
        Statement::Rollback { .. } => "rollback",
        Statement::Set(_) => "set",
        Statement::ShowVariable { .. } => "show",
        Statement::Explain { .. } => "explain",
        Statement::Copy { .. } => "copy",
        _ => "other",
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_each_statement() {
        let p = parse("SELECT 1; INSERT INTO t VALUES (1); create table x (a int)").unwrap();
        assert_eq!(p.kinds(), vec!["select", "insert", "create_table"]);
    }

    #[test]
    fn garbage_does_not_parse() {
        assert!(parse("SELEC * FRM").is_err());
    }
}

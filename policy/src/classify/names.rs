//! Names resolved by the server's rules: unquoted identifiers fold to lower
//! case, quoted ones do not, and an unqualified table lives in `public`.

use std::fmt;

use serde::Serialize;
use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

/// A table, schema-qualified. Serialised as `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Schema (`public` when the statement did not say).
    pub schema: String,
    /// Table name.
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A function, with its schema if the statement gave one. Serialised as
/// `name` or `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionName {
    /// Schema, if qualified.
    pub schema: Option<String>,
    /// Function name.
    pub name: String,
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl Serialize for TableName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for FunctionName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An identifier as the server stores it.
pub fn ident(i: &Ident) -> String {
    match i.quote_style {
        // Only ASCII letters fold, as in the server's downcase_identifier
        // for multibyte encodings.
        None => i.value.to_ascii_lowercase(),
        Some(_) => i.value.clone(),
    }
}

/// The parts of a dotted name, resolved. `None` if a part is not a plain
/// identifier (a dialect feature the server does not have).
pub fn parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(ident(i)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// A table name; `database.schema.table` keeps the last two parts (the
/// server refuses other databases anyway).
pub fn table(name: &ObjectName) -> Option<TableName> {
    let p = parts(name)?;
    match p.as_slice() {
        [t] => Some(TableName {
            schema: "public".to_owned(),
            name: t.clone(),
        }),
        [.., s, t] => Some(TableName {
            schema: s.clone(),
            name: t.clone(),
        }),
        [] => None,
    }
}

/// A function name.
pub fn function(name: &ObjectName) -> Option<FunctionName> {
    let p = parts(name)?;
    match p.as_slice() {
        [f] => Some(FunctionName {
            schema: None,
            name: f.clone(),
        }),
        [.., s, f] => Some(FunctionName {
            schema: Some(s.clone()),
            name: f.clone(),
        }),
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::ast::Statement;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn delete_target(sql: &str) -> TableName {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let Statement::Delete(d) = stmt else {
            panic!("not a delete")
        };
        let sqlparser::ast::FromTable::WithFromKeyword(t) = d.from else {
            panic!()
        };
        let sqlparser::ast::TableFactor::Table { name, .. } = &t[0].relation else {
            panic!()
        };
        table(name).unwrap()
    }

    #[test]
    fn folding_follows_the_server() {
        assert_eq!(
            delete_target("DELETE FROM CUSTOMERS").to_string(),
            "public.customers"
        );
        assert_eq!(
            delete_target("DELETE FROM \"Customers\"").to_string(),
            "public.Customers"
        );
        assert_eq!(
            delete_target("DELETE FROM Public.\"customers\"").to_string(),
            "public.customers"
        );
        assert_eq!(
            delete_target("DELETE FROM db.sales.orders").to_string(),
            "sales.orders"
        );
    }
}

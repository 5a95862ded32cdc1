//! What masking needs to know of a target's schema that a statement's text
//! does not say: the definitions of the views that read masked tables (so a
//! view is masked as the query it stands for), and which table column each
//! `(table OID, attribute number)` of a RowDescription is (so a masked
//! column is recognised however the statement named it). Pure: the data
//! plane reads the rows from the target's catalog and [`Catalog::build`]
//! turns them into this.

use std::collections::HashMap;
use std::sync::Arc;

use sqlparser::ast::{Query, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The most relations a catalog holds. Only masked tables and the views
/// that read them (directly or through other views) are loaded, so a target
/// with more is one the gateway should not guess about.
pub const MAX_RELATIONS: usize = 10_000;

/// One relation row read from the target (`pg_class`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationRow {
    /// `pg_class.oid`.
    pub oid: u32,
    /// Schema name.
    pub schema: String,
    /// Relation name.
    pub name: String,
    /// The view's query (`pg_get_viewdef`), for views and materialized views.
    pub definition: Option<String>,
}

/// One column row read from the target (`pg_attribute`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRow {
    /// The relation's OID.
    pub relation: u32,
    /// `attnum` (1-based).
    pub attnum: i16,
    /// Column name.
    pub name: String,
}

/// A view as lineage sees it.
#[derive(Debug, Clone)]
pub enum ViewDef {
    /// Its query, analysed in place of the view's name.
    Query {
        /// The view's OID, for RowDescription fields that name it.
        oid: u32,
        /// The parsed definition.
        query: Arc<Query>,
    },
    /// A definition the gateway could not parse: statements reading the
    /// view are denied.
    Unreadable,
}

/// Where a described column comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A table's column.
    Column {
        /// Schema.
        schema: String,
        /// Table.
        table: String,
        /// Column.
        column: String,
    },
    /// A view's column (`attnum`, 1-based), masked as the view's query says.
    View {
        /// The view's OID.
        oid: u32,
        /// `attnum`.
        attnum: i16,
    },
}

/// Why catalog rows cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// More relations than [`MAX_RELATIONS`].
    #[error("the target has more than {MAX_RELATIONS} masked tables and views over them")]
    TooLarge,
}

/// A target's schema as masking needs it.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Changes whenever the catalog is read again, so decisions made under
    /// an older one are not reused.
    pub generation: u64,
    views: HashMap<(String, String), ViewDef>,
    origins: HashMap<(u32, i16), Origin>,
}

impl Catalog {
    /// Builds a catalog from the rows read off the target.
    pub fn build(
        generation: u64,
        relations: Vec<RelationRow>,
        columns: Vec<ColumnRow>,
    ) -> Result<Self, CatalogError> {
        if relations.len() > MAX_RELATIONS {
            return Err(CatalogError::TooLarge);
        }
        let mut views = HashMap::new();
        let mut names = HashMap::new();
        for r in relations {
            if let Some(def) = &r.definition {
                views.insert((r.schema.clone(), r.name.clone()), parse_view(r.oid, def));
            }
            names.insert(r.oid, (r.schema, r.name, r.definition.is_some()));
        }
        let mut origins = HashMap::new();
        for c in columns {
            let Some((schema, table, is_view)) = names.get(&c.relation) else {
                continue;
            };
            let origin = if *is_view {
                Origin::View {
                    oid: c.relation,
                    attnum: c.attnum,
                }
            } else {
                Origin::Column {
                    schema: schema.clone(),
                    table: table.clone(),
                    column: c.name,
                }
            };
            origins.insert((c.relation, c.attnum), origin);
        }
        Ok(Self {
            generation,
            views,
            origins,
        })
    }

    /// The view named `schema.name`, when it reads a masked table.
    pub fn view(&self, schema: &str, name: &str) -> Option<&ViewDef> {
        self.views.get(&(schema.to_owned(), name.to_owned()))
    }

    /// What a RowDescription field with this table OID and attribute number
    /// is, when it belongs to a masked table or a view over one.
    pub fn origin(&self, table_oid: u32, attnum: i16) -> Option<&Origin> {
        if table_oid == 0 {
            return None;
        }
        self.origins.get(&(table_oid, attnum))
    }

    /// Number of views known.
    pub fn views(&self) -> usize {
        self.views.len()
    }
}

fn parse_view(oid: u32, definition: &str) -> ViewDef {
    match Parser::parse_sql(&PostgreSqlDialect {}, definition) {
        Ok(mut stmts) if stmts.len() == 1 => match stmts.pop() {
            Some(Statement::Query(q)) => ViewDef::Query {
                oid,
                query: Arc::from(q),
            },
            _ => ViewDef::Unreadable,
        },
        _ => ViewDef::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(oid: u32, name: &str, def: Option<&str>) -> RelationRow {
        RelationRow {
            oid,
            schema: "public".into(),
            name: name.into(),
            definition: def.map(str::to_owned),
        }
    }

    fn col(relation: u32, attnum: i16, name: &str) -> ColumnRow {
        ColumnRow {
            relation,
            attnum,
            name: name.into(),
        }
    }

    #[test]
    fn tables_and_views_resolve_by_oid_and_name() {
        let c = Catalog::build(
            7,
            vec![
                rel(10, "customers", None),
                rel(
                    20,
                    "contacts",
                    Some(" SELECT customers.email\n   FROM customers;"),
                ),
                rel(30, "broken", Some("SELECT (((")),
            ],
            vec![col(10, 3, "email"), col(20, 1, "email"), col(99, 1, "x")],
        )
        .unwrap();
        assert_eq!(
            c.origin(10, 3),
            Some(&Origin::Column {
                schema: "public".into(),
                table: "customers".into(),
                column: "email".into()
            })
        );
        assert_eq!(c.origin(20, 1), Some(&Origin::View { oid: 20, attnum: 1 }));
        assert_eq!(c.origin(0, 3), None);
        assert_eq!(c.origin(99, 1), None);
        assert!(matches!(
            c.view("public", "contacts"),
            Some(ViewDef::Query { oid: 20, .. })
        ));
        assert!(matches!(
            c.view("public", "broken"),
            Some(ViewDef::Unreadable)
        ));
        assert!(c.view("public", "customers").is_none());
        assert_eq!(c.views(), 2);
        assert_eq!(c.generation, 7);
    }

    #[test]
    fn too_many_relations_are_refused() {
        let rows = (0..=MAX_RELATIONS as u32)
            .map(|i| rel(i, &format!("t{i}"), None))
            .collect();
        assert_eq!(
            Catalog::build(1, rows, Vec::new()).unwrap_err(),
            CatalogError::TooLarge
        );
    }
}

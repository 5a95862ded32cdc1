//! Reads what masking needs of a target's catalog, on a connection of its
//! own: the masked tables and every view that reads them (directly or
//! through other views, as the server's dependency records say), with the
//! views' definitions and the columns of all of them. Turning the rows into
//! a [`Catalog`] is pure and lives in the policy crate.

use sluice_policy::mask::catalog::{Catalog, CatalogError, ColumnRow, MAX_RELATIONS, RelationRow};
use sluice_proto::v1;
use tokio::io::AsyncWriteExt as _;

use super::connect::{self, UpstreamError, UpstreamLimits};
use crate::pg::codec::frame::Frame;
use crate::pg::codec::frontend;
use crate::pg::mask::wire;

/// Why a target's catalog could not be read. Logged in full; a client only
/// learns that masking could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CatalogLoadError {
    /// Connecting or querying failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The rows were not what the query returns.
    #[error("unexpected catalog row: {0}")]
    Malformed(&'static str),
    /// Too much to hold.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Reads the catalog of `target` (a login with the gateway's credential)
/// for the masked `tables`, as `(schema, table)`.
pub async fn load(
    target: &v1::Target,
    tables: &[(String, String)],
    limits: UpstreamLimits,
    generation: u64,
) -> Result<Catalog, CatalogLoadError> {
    let mut up = connect::connect(target, &[], limits).await?;
    let sql = catalog_query(tables);
    let w = up.reader.get_mut();
    w.write_all(&frontend::encode_query(sql.as_bytes()).raw)
        .await
        .map_err(UpstreamError::Io)?;
    let mut relations = Vec::new();
    let mut columns = Vec::new();
    let mut results = 0;
    let mut error = None;
    loop {
        let f = connect::next(&mut up.reader).await?;
        match f.tag() {
            b'T' => results += 1,
            b'D' if results == 1 => {
                if relations.len() > MAX_RELATIONS {
                    error.get_or_insert(CatalogLoadError::Catalog(CatalogError::TooLarge));
                    continue;
                }
                relations.push(relation(&f)?);
            }
            b'D' if results == 2 => columns.push(column(&f)?),
            b'D' => return Err(CatalogLoadError::Malformed("a row before its description")),
            b'E' => {
                error.get_or_insert(CatalogLoadError::Upstream(connect::server_error(&f)));
            }
            b'Z' => break,
            _ => {}
        }
    }
    let _ = up
        .reader
        .get_mut()
        .write_all(&Frame::new(b'X', &[]).raw)
        .await;
    if let Some(e) = error {
        return Err(e);
    }
    Ok(Catalog::build(generation, relations, columns)?)
}

/// The query: the masked tables, then every view depending on them through
/// its rewrite rule, transitively; then their columns. The search path is
/// emptied first so the server writes every name in a definition with its
/// schema.
fn catalog_query(tables: &[(String, String)]) -> String {
    let wanted = tables
        .iter()
        .map(|(s, t)| format!("({}, {})", literal(s), literal(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let rels = format!(
        "WITH RECURSIVE masked(oid) AS (\
           SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE (n.nspname, c.relname) IN ({wanted})), \
         rels(oid) AS (\
           SELECT oid FROM masked \
           UNION \
           SELECT r.ev_class FROM rels \
             JOIN pg_depend d ON d.refobjid = rels.oid \
               AND d.refclassid = 'pg_class'::regclass AND d.classid = 'pg_rewrite'::regclass \
             JOIN pg_rewrite r ON r.oid = d.objid \
           WHERE r.ev_class <> rels.oid)"
    );
    format!(
        "SET search_path = pg_catalog; \
         {rels} SELECT c.oid, n.nspname, c.relname, \
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END \
         FROM rels JOIN pg_class c ON c.oid = rels.oid \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
         LIMIT {limit}; \
         {rels} SELECT a.attrelid, a.attnum, a.attname FROM pg_attribute a \
         WHERE a.attrelid IN (SELECT oid FROM rels LIMIT {limit}) \
           AND a.attnum > 0 AND NOT a.attisdropped",
        limit = MAX_RELATIONS + 1
    )
}

/// A string literal (the gateway requires `standard_conforming_strings`).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn texts<const N: usize>(f: &Frame) -> Result<[String; N], CatalogLoadError> {
    const BAD: CatalogLoadError = CatalogLoadError::Malformed("catalog row");
    let values = wire::data_row(f.body()).map_err(|_| BAD)?;
    if values.len() != N {
        return Err(BAD);
    }
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (o, v) in out.iter_mut().zip(values) {
        if let Some(v) = v {
            *o = String::from_utf8(v.to_vec()).map_err(|_| BAD)?;
        }
    }
    Ok(out)
}

fn relation(f: &Frame) -> Result<RelationRow, CatalogLoadError> {
    let has_def = wire::data_row(f.body())
        .ok()
        .and_then(|v| v.get(3).map(Option::is_some))
        .unwrap_or(false);
    let [oid, schema, name, def] = texts::<4>(f)?;
    Ok(RelationRow {
        oid: oid
            .parse()
            .map_err(|_| CatalogLoadError::Malformed("relation oid"))?,
        schema,
        name,
        definition: has_def.then_some(def),
    })
}

fn column(f: &Frame) -> Result<ColumnRow, CatalogLoadError> {
    let [relation, attnum, name] = texts::<3>(f)?;
    Ok(ColumnRow {
        relation: relation
            .parse()
            .map_err(|_| CatalogLoadError::Malformed("column relation"))?,
        attnum: attnum
            .parse()
            .map_err(|_| CatalogLoadError::Malformed("column number"))?,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_literals() {
        let q = catalog_query(&[("public".into(), "o'brien".into())]);
        assert!(q.contains("('public', 'o''brien')"), "{q}");
        assert!(q.starts_with("SET search_path = pg_catalog;"));
    }
}

//! From the `masking:` document to checked rules and compiled detectors.

use std::collections::{HashMap, HashSet};

use super::detect::{DetectError, Detectors};
use super::model::{MaskDoc, MaskingDoc};
use super::rules::Mask;

/// Why a `masking:` section cannot be used. `path` names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct MaskError {
    /// Dotted path under the policy (`masking.columns.customers.ssn`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> MaskError {
    MaskError {
        path: path.into(),
        message: message.into(),
    }
}

/// The shortest accepted hash key.
pub const MIN_HASH_KEY: usize = 16;

/// One masked column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRule {
    /// `schema.table.column`, the name used in audit counts.
    pub name: String,
    /// What the value becomes.
    pub mask: Mask,
}

/// A column, resolved by the server's naming rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnKey {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Column.
    pub column: String,
}

/// A policy's checked masking.
#[derive(Debug, Clone)]
pub struct Masking {
    /// Rules, indexed by [`Masking::rule_of`].
    pub rules: Vec<ColumnRule>,
    columns: HashMap<ColumnKey, usize>,
    tables: HashSet<(String, String)>,
    /// Detectors scanning every text value.
    pub detectors: Detectors,
}

impl Masking {
    /// Checks a document; `None` when it masks nothing and detects nothing.
    pub fn compile(doc: &MaskingDoc) -> Result<Option<Self>, MaskError> {
        let key = match &doc.hash_key {
            Some(k) if k.chars().count() < MIN_HASH_KEY => {
                return Err(err(
                    "masking.hash_key",
                    format!("must be at least {MIN_HASH_KEY} characters"),
                ));
            }
            Some(k) => Some(k.as_bytes()),
            None => None,
        };
        let mut rules = Vec::new();
        let mut columns = HashMap::new();
        let mut tables = HashSet::new();
        for (name, m) in &doc.columns {
            let path = format!("masking.columns.{name}");
            let k = column_key(name).map_err(|m| err(&path, m))?;
            if let MaskDoc::KeepFirst(0) | MaskDoc::KeepLast(0) = m {
                return Err(err(&path, "keep 0 characters is redact; write redact"));
            }
            let mask = Mask::from_doc(*m, key).ok_or_else(|| {
                err(
                    &path,
                    "the hash mask needs masking.hash_key (a secret of at least 16 characters)",
                )
            })?;
            let full = format!("{}.{}.{}", k.schema, k.table, k.column);
            if columns.contains_key(&k) {
                return Err(err(&path, format!("column {full} is masked twice")));
            }
            tables.insert((k.schema.clone(), k.table.clone()));
            columns.insert(k, rules.len());
            rules.push(ColumnRule { name: full, mask });
        }
        for (i, c) in doc.detectors.custom.iter().enumerate() {
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(err(
                    format!("masking.detectors.custom[{i}].name"),
                    format!("{:?} must be letters, digits, '_' or '-'", c.name),
                ));
            }
        }
        let detectors =
            Detectors::new(&doc.detectors.builtin, &doc.detectors.custom).map_err(|e| match e {
                DetectError::Pattern { index, .. } | DetectError::Empty { index, .. } => err(
                    format!("masking.detectors.custom[{index}].pattern"),
                    e.to_string(),
                ),
            })?;
        if rules.is_empty() && detectors.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            rules,
            columns,
            tables,
            detectors,
        }))
    }

    /// The rule masking `schema.table.column`, if any.
    pub fn rule_of(&self, schema: &str, table: &str, column: &str) -> Option<usize> {
        self.columns
            .get(&ColumnKey {
                schema: schema.to_owned(),
                table: table.to_owned(),
                column: column.to_owned(),
            })
            .copied()
    }

    /// The tables with masked columns, as `(schema, table)`.
    pub fn tables(&self) -> impl Iterator<Item = &(String, String)> {
        self.tables.iter()
    }

    /// The masked columns of a table, with their rules.
    pub fn masked_columns(&self, schema: &str, table: &str) -> Vec<(String, usize)> {
        if !self.tables.contains(&(schema.to_owned(), table.to_owned())) {
            return Vec::new();
        }
        let mut out: Vec<(String, usize)> = self
            .columns
            .iter()
            .filter(|(k, _)| k.schema == schema && k.table == table)
            .map(|(k, &i)| (k.column.clone(), i))
            .collect();
        out.sort();
        out
    }
}

/// `schema.table.column`, or `table.column` in `public`. Names are taken as
/// the server stores them: write them in lower case unless they were created
/// quoted.
fn column_key(name: &str) -> Result<ColumnKey, String> {
    let parts: Vec<&str> = name.split('.').collect();
    let (schema, table, column) = match parts.as_slice() {
        [t, c] => ("public", *t, *c),
        [s, t, c] => (*s, *t, *c),
        _ => {
            return Err(format!(
                "{name:?} must be schema.table.column or table.column"
            ));
        }
    };
    if [schema, table, column]
        .iter()
        .any(|p| p.is_empty() || p.contains(['*', '?', '[', ' ']))
    {
        return Err(format!(
            "{name:?}: every part must be a plain name (no globs or spaces)"
        ));
    }
    Ok(ColumnKey {
        schema: schema.to_owned(),
        table: table.to_owned(),
        column: column.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(yaml: &str) -> MaskingDoc {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn columns_resolve_with_public_default() {
        let m = Masking::compile(&doc(
            "columns:\n  customers.ssn: redact\n  billing.cards.number: {keep_last: 4}\n",
        ))
        .unwrap()
        .unwrap();
        let r = m.rule_of("public", "customers", "ssn").unwrap();
        assert_eq!(m.rules[r].name, "public.customers.ssn");
        assert_eq!(
            m.rules[m.rule_of("billing", "cards", "number").unwrap()].mask,
            Mask::KeepLast(4)
        );
        assert!(m.rule_of("public", "customers", "name").is_none());
        assert_eq!(m.masked_columns("public", "customers").len(), 1);
    }

    #[test]
    fn bad_rules_name_the_field() {
        let e = Masking::compile(&doc("columns:\n  ssn: redact\n")).unwrap_err();
        assert_eq!(e.path, "masking.columns.ssn");
        let e = Masking::compile(&doc("columns:\n  t.c: hash\n")).unwrap_err();
        assert!(e.message.contains("hash_key"), "{e}");
        let e = Masking::compile(&doc("hash_key: short\ncolumns:\n  t.c: hash\n")).unwrap_err();
        assert_eq!(e.path, "masking.hash_key");
        let e = Masking::compile(&doc("columns:\n  t.*: redact\n")).unwrap_err();
        assert_eq!(e.path, "masking.columns.t.*");
        let e = Masking::compile(&doc("columns:\n  t.c: {keep_last: 0}\n")).unwrap_err();
        assert!(e.message.contains("redact"), "{e}");
        let e = Masking::compile(&doc(
            "detectors:\n  custom:\n    - name: x\n      pattern: '('\n",
        ))
        .unwrap_err();
        assert_eq!(e.path, "masking.detectors.custom[0].pattern");
        let e = Masking::compile(&doc(
            "detectors:\n  custom:\n    - name: 'a b'\n      pattern: 'x'\n",
        ))
        .unwrap_err();
        assert_eq!(e.path, "masking.detectors.custom[0].name");
        assert!(serde_saphyr::from_str::<MaskingDoc>("columns:\n  t.c: scramble\n").is_err());
        assert!(serde_saphyr::from_str::<MaskingDoc>("detectors:\n  builtin: [dna]\n").is_err());
    }

    #[test]
    fn every_mask_form_parses() {
        let m = Masking::compile(&doc(
            "hash_key: 0123456789abcdef\ncolumns:\n  t.a: redact\n  t.b: {keep_first: 2}\n  t.c: email\n  t.d: hash\n  t.e: 'null'\n",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(m.rules.len(), 5);
        assert_eq!(
            m.rules[m.rule_of("public", "t", "e").unwrap()].mask,
            Mask::Null
        );
        assert!(matches!(
            m.rules[m.rule_of("public", "t", "d").unwrap()].mask,
            Mask::Hash(_)
        ));
    }

    #[test]
    fn empty_masking_is_none() {
        assert!(Masking::compile(&MaskingDoc::default()).unwrap().is_none());
    }
}

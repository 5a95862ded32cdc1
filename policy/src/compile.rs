//! From a policy document to a checked, ready-to-evaluate policy. Every
//! mistake is reported with the path of the field at fault.

use std::collections::{HashMap, HashSet};
use std::fmt;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::classify::Kind;
use crate::decision::Verdict;
use crate::model::{
    ApprovalDoc, MultiStatement, PolicyDoc, RuleDoc, SettingsCondition, TablesRef, WhereCondition,
};

/// The largest policy document accepted.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// A policy that cannot be used, and where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// Dotted path of the offending field (`statements.rules[2].tables`), or
    /// empty for a YAML syntax error.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.into(),
        message: message.into(),
    }
}

/// Which functions may be called.
#[derive(Debug, Clone)]
pub(crate) enum Functions {
    /// Any.
    Any,
    /// Only these, unqualified or in pg_catalog.
    Allow(HashSet<String>),
    /// Any but these.
    Deny(HashSet<String>),
}

/// A table condition, with the name used in messages when it is a named set.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub set_name: Option<String>,
    pub globs: GlobSet,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub name: String,
    pub kinds: Option<HashSet<Kind>>,
    pub tables: Option<Tables>,
    pub where_: Option<WhereCondition>,
    pub locking: Option<bool>,
    pub settings: Option<SettingsCondition>,
    pub decision: Verdict,
    pub reason: Option<String>,
}

/// A checked policy, ready to decide.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The document it came from.
    pub doc: PolicyDoc,
    pub(crate) targets: GlobSet,
    pub(crate) groups: Vec<String>,
    pub(crate) functions: Functions,
    pub(crate) settings: HashSet<String>,
    pub(crate) setting_values: HashMap<String, Vec<String>>,
    pub(crate) rules: Vec<Rule>,
    /// Result masking, if the policy masks or detects anything.
    pub(crate) masking: Option<std::sync::Arc<crate::mask::Masking>>,
    /// HTTP rules, if the policy has an `http:` section.
    pub(crate) http: Option<std::sync::Arc<crate::http::HttpRules>>,
}

impl Policy {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.doc.name
    }

    /// Approval settings.
    pub fn approval(&self) -> &ApprovalDoc {
        &self.doc.approval
    }

    /// Parses and checks a YAML policy.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(err(
                "",
                format!("a policy may be at most {MAX_POLICY_BYTES} bytes"),
            ));
        }
        // The parser's default budget bounds depth, aliases and node counts.
        let doc: PolicyDoc = serde_saphyr::from_str(text).map_err(|e| err("", e.to_string()))?;
        Self::compile(doc)
    }

    /// Checks a parsed document.
    pub fn compile(doc: PolicyDoc) -> Result<Self, PolicyError> {
        check_name("name", &doc.name)?;
        check_approval(&doc.approval)?;
        let targets = globs("applies_to.targets", &doc.applies_to.targets, |_| Ok(()))?;
        if doc.statements.is_none() && doc.http.is_none() {
            return Err(err(
                "statements",
                "a policy needs statements:, http: or both",
            ));
        }
        let empty = crate::model::StatementsDoc::default();
        let s = doc.statements.as_ref().unwrap_or(&empty);
        let functions = match (&s.functions.allow, &s.functions.deny) {
            (Some(_), Some(_)) => {
                return Err(err("statements.functions", "give allow or deny, not both"));
            }
            (Some(a), None) => Functions::Allow(lower_set("statements.functions.allow", a)?),
            (None, Some(d)) => Functions::Deny(lower_set("statements.functions.deny", d)?),
            (None, None) => Functions::Any,
        };
        let settings = lower_set("statements.settings.allow", &s.settings.allow)?;
        let mut setting_values = HashMap::new();
        for (name, values) in &s.settings.values {
            let key = name.to_ascii_lowercase();
            if !settings.contains(&key) {
                return Err(err(
                    format!("statements.settings.values.{name}"),
                    "values are given for a parameter that is not in settings.allow",
                ));
            }
            setting_values.insert(key, values.iter().map(|v| normalize_value(v)).collect());
        }
        let mut named = HashMap::new();
        for (name, list) in &s.tables {
            check_name(&format!("statements.tables.{name}"), name)?;
            named.insert(
                name.clone(),
                globs(&format!("statements.tables.{name}"), list, table_glob)?,
            );
        }
        let mut rules = Vec::with_capacity(s.rules.len());
        let mut seen = HashSet::new();
        for (i, r) in s.rules.iter().enumerate() {
            let path = format!("statements.rules[{i}]");
            check_name(&format!("{path}.name"), &r.name)?;
            if !seen.insert(r.name.clone()) {
                return Err(err(
                    format!("{path}.name"),
                    format!("rule name {:?} is used twice", r.name),
                ));
            }
            rules.push(rule(&path, r, &named)?);
        }
        let masking = crate::mask::Masking::compile(&doc.masking)
            .map_err(|e| err(e.path, e.message))?
            .map(std::sync::Arc::new);
        let http = match &doc.http {
            None => None,
            Some(h) => {
                for (i, r) in h.rules.iter().enumerate() {
                    check_name(&format!("http.rules[{i}].name"), &r.name)?;
                }
                let key = doc.masking.hash_key.as_deref().map(str::as_bytes);
                Some(std::sync::Arc::new(crate::http::compile(
                    &doc.name,
                    h,
                    masking.as_ref(),
                    key,
                )?))
            }
        };
        Ok(Self {
            masking,
            http,
            targets,
            groups: doc.applies_to.groups.clone(),
            functions,
            settings,
            setting_values,
            rules,
            doc,
        })
    }

    /// The policy's result masking, if any.
    pub fn masking(&self) -> Option<&crate::mask::Masking> {
        self.masking.as_deref()
    }

    /// The multi-statement mode.
    pub(crate) fn multi(&self) -> MultiStatement {
        self.doc
            .statements
            .as_ref()
            .map_or(MultiStatement::AllAllowed, |s| s.multi_statement)
    }

    /// Whether the policy decides SQL statements (has `statements:`).
    pub fn decides_sql(&self) -> bool {
        self.doc.statements.is_some()
    }

    /// Whether the policy decides HTTP requests (has `http:`).
    pub fn decides_http(&self) -> bool {
        self.http.is_some()
    }
}

fn rule(path: &str, r: &RuleDoc, named: &HashMap<String, GlobSet>) -> Result<Rule, PolicyError> {
    let tables = match &r.tables {
        None => None,
        Some(TablesRef::Named(n)) => Some(Tables {
            set_name: Some(n.clone()),
            globs: named.get(n).cloned().ok_or_else(|| {
                err(
                    format!("{path}.tables"),
                    format!("no table set named {n:?} in statements.tables"),
                )
            })?,
        }),
        Some(TablesRef::Globs(list)) => Some(Tables {
            set_name: None,
            globs: globs(&format!("{path}.tables"), list, table_glob)?,
        }),
    };
    if let Some(k) = &r.kinds
        && k.is_empty()
    {
        return Err(err(
            format!("{path}.kinds"),
            "an empty list matches nothing; leave it out to match every kind",
        ));
    }
    Ok(Rule {
        name: r.name.clone(),
        kinds: r.kinds.as_ref().map(|k| k.iter().copied().collect()),
        tables,
        where_: r.where_,
        locking: r.locking,
        settings: r.settings,
        decision: r.decision,
        reason: r.reason.clone(),
    })
}

/// The most approvals a policy may require: more cannot be gathered in
/// practice and only makes statements impossible to run.
const MAX_REQUIRED_APPROVALS: u32 = 10;

/// Approval settings must name real groups and a reachable count.
fn check_approval(a: &crate::model::ApprovalDoc) -> Result<(), PolicyError> {
    if a.required == 0 || a.required > MAX_REQUIRED_APPROVALS {
        return Err(err(
            "approval.required",
            format!("must be between 1 and {MAX_REQUIRED_APPROVALS}"),
        ));
    }
    if a.expires_after.is_zero() || a.expires_after > std::time::Duration::from_secs(7 * 24 * 3600)
    {
        return Err(err(
            "approval.expires_after",
            "must be more than zero and at most 7 days",
        ));
    }
    for (i, g) in a.approvers.iter().enumerate() {
        if g.is_empty() || g.len() > 200 {
            return Err(err(
                format!("approval.approvers[{i}]"),
                "a group name must be 1 to 200 characters",
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_name(path: &str, name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(err(
            path,
            format!("{name:?} must be 1 to 63 letters, digits, '-', '_' or '.'"),
        ))
    }
}

fn table_glob(pattern: &str) -> Result<(), String> {
    if pattern.split('.').count() == 2 {
        Ok(())
    } else {
        Err(format!(
            "{pattern:?} must be schema.table (globs allowed, e.g. public.* )"
        ))
    }
}

fn globs(
    path: &str,
    list: &[String],
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<GlobSet, PolicyError> {
    let mut b = GlobSetBuilder::new();
    for (i, p) in list.iter().enumerate() {
        check(p).map_err(|m| err(format!("{path}[{i}]"), m))?;
        let g = Glob::new(p).map_err(|e| err(format!("{path}[{i}]"), e.kind().to_string()))?;
        b.add(g);
    }
    b.build().map_err(|e| err(path, e.to_string()))
}

fn lower_set(path: &str, list: &[String]) -> Result<HashSet<String>, PolicyError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            if v.is_empty() || v.contains(char::is_whitespace) {
                Err(err(
                    format!("{path}[{i}]"),
                    format!("{v:?} is not a valid name"),
                ))
            } else {
                Ok(v.to_ascii_lowercase())
            }
        })
        .collect()
}

/// A setting value as compared: case-insensitive, without `-` and `_`
/// (so `UTF8`, `utf-8` and `Utf_8` are one value).
pub(crate) fn normalize_value(v: &str) -> String {
    v.chars()
        .filter(|c| !matches!(c, '-' | '_' | '\'' | '"'))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(rules: &str) -> String {
        format!("name: p\nstatements:\n  rules:\n{rules}")
    }

    #[test]
    fn a_minimal_policy_compiles() {
        let p = Policy::from_yaml(&minimal(
            "    - name: reads\n      kinds: [select]\n      decision: allow\n",
        ))
        .unwrap();
        assert_eq!(p.name(), "p");
        assert_eq!(p.rules.len(), 1);
    }

    #[test]
    fn unknown_fields_and_kinds_are_errors_with_a_location() {
        let e = Policy::from_yaml(&minimal(
            "    - name: r\n      kind: [select]\n      decision: allow\n",
        ))
        .unwrap_err();
        assert!(e.message.contains("kind"), "{e}");
        assert!(e.message.contains("line"), "names the line: {e}");
        let e = Policy::from_yaml(&minimal(
            "    - name: r\n      kinds: [selectt]\n      decision: allow\n",
        ))
        .unwrap_err();
        assert!(e.message.contains("selectt"), "{e}");
        let e =
            Policy::from_yaml(&minimal("    - name: r\n      decision: perhaps\n")).unwrap_err();
        assert!(e.message.contains("perhaps"), "{e}");
    }

    #[test]
    fn semantic_mistakes_name_the_field() {
        let e = Policy::from_yaml(&minimal(
            "    - name: r\n      tables: critcal\n      decision: deny\n",
        ))
        .unwrap_err();
        assert_eq!(e.path, "statements.rules[0].tables");
        let e = Policy::from_yaml(&minimal(
            "    - name: r\n      decision: deny\n    - name: r\n      decision: allow\n",
        ))
        .unwrap_err();
        assert_eq!(e.path, "statements.rules[1].name");
        let e = Policy::from_yaml(&minimal(
            "    - name: r\n      tables: [customers]\n      decision: deny\n",
        ))
        .unwrap_err();
        assert_eq!(e.path, "statements.rules[0].tables[0]");
        let e = Policy::from_yaml(
            "name: p\nstatements:\n  functions:\n    allow: [a]\n    deny: [b]\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "statements.functions");
        let e = Policy::from_yaml("name: 'bad name'\nstatements: {}\n").unwrap_err();
        assert_eq!(e.path, "name");
        let e = Policy::from_yaml(
            "name: p\nstatements:\n  settings:\n    values:\n      client_encoding: [UTF8]\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "statements.settings.values.client_encoding");
    }

    #[test]
    fn approval_settings_are_read_and_checked() {
        let p = Policy::from_yaml(
            "name: p\napproval:\n  mode: hold\n  expires_after: 5m\n  approvers: [dba, oncall]\n  required: 2\nstatements: {}\n",
        )
        .unwrap();
        let a = p.approval();
        assert_eq!(a.mode, crate::model::ApprovalMode::Hold);
        assert_eq!(a.expires_after, std::time::Duration::from_secs(300));
        assert_eq!(a.approvers, vec!["dba".to_owned(), "oncall".to_owned()]);
        assert_eq!(a.required, 2);
        let d = Policy::from_yaml("name: p\nstatements: {}\n").unwrap();
        assert_eq!(d.approval().required, 1);
        assert!(d.approval().approvers.is_empty());
        for (bad, path) in [
            ("approval:\n  required: 0\n", "approval.required"),
            ("approval:\n  required: 11\n", "approval.required"),
            ("approval:\n  expires_after: 0s\n", "approval.expires_after"),
            ("approval:\n  approvers: ['']\n", "approval.approvers[0]"),
        ] {
            let e = Policy::from_yaml(&format!("name: p\n{bad}statements: {{}}\n")).unwrap_err();
            assert_eq!(e.path, path, "{bad}");
        }
        assert!(Policy::from_yaml("name: p\napproval:\n  requird: 2\nstatements: {}\n").is_err());
    }

    #[test]
    fn garbage_yaml_is_an_error_not_a_panic() {
        for text in [
            "",
            "[",
            "name: [1, 2",
            "\t\t: :",
            "name: p\nstatements: 5\n",
            "*anchor",
        ] {
            assert!(Policy::from_yaml(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn setting_values_normalise() {
        assert_eq!(normalize_value("UTF-8"), normalize_value("utf8"));
        assert_eq!(normalize_value("'Utf_8'"), "utf8");
    }
}

//! JSONPath-like selectors for masks and body conditions: `$`, `.key`,
//! `['key']`, `[*]`, `.*`, `[n]` and `..key` (the key at any depth).

/// One step of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(u64),
    /// Any member or element.
    Any,
    /// The member at any depth below (the step after `..`).
    Deep(String),
}

/// Where a value sits: the object keys and array indexes leading to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem {
    /// An object member.
    Key(String),
    /// An array element.
    Index(u64),
}

/// A checked selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

/// The most steps a selector may have.
const MAX_STEPS: usize = 64;

impl JsonPath {
    /// Parses a selector.
    pub fn new(text: &str) -> Result<Self, String> {
        let b = text.as_bytes();
        if b.first() != Some(&b'$') {
            return Err(format!("{text:?} must start with '$'"));
        }
        let mut steps = Vec::new();
        let mut i = 1;
        while i < b.len() {
            if steps.len() >= MAX_STEPS {
                return Err(format!("{text:?} has more than {MAX_STEPS} steps"));
            }
            match b[i] {
                b'.' if b.get(i + 1) == Some(&b'.') => {
                    let (name, next) = name_at(text, i + 2)?;
                    if name == "*" {
                        return Err(format!("{text:?}: '..*' is not supported; name a key"));
                    }
                    steps.push(Step::Deep(name));
                    i = next;
                }
                b'.' => {
                    let (name, next) = name_at(text, i + 1)?;
                    steps.push(if name == "*" {
                        Step::Any
                    } else {
                        Step::Key(name)
                    });
                    i = next;
                }
                b'[' => {
                    let close = text[i..]
                        .find(']')
                        .map(|c| c + i)
                        .ok_or_else(|| format!("{text:?}: '[' without ']'"))?;
                    let inner = &text[i + 1..close];
                    steps.push(bracket(text, inner)?);
                    i = close + 1;
                }
                _ => return Err(format!("{text:?}: expected '.' or '[' at byte {i}")),
            }
        }
        Ok(Self {
            text: text.to_owned(),
            steps,
        })
    }

    /// The selector as written (the name used in audit counts).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it selects exactly one place (no `*`, no `..`).
    pub fn is_definite(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s, Step::Key(_) | Step::Index(_)))
    }

    /// Whether the value at `path` is selected.
    pub fn matches(&self, path: &[Elem]) -> bool {
        // The last step must take the last element: most values are told
        // apart here, without the full walk.
        match (self.steps.last(), path.last()) {
            (None, _) => return path.is_empty(),
            (Some(_), None) => return false,
            (Some(Step::Key(k) | Step::Deep(k)), Some(Elem::Key(e))) if k != e => return false,
            (Some(Step::Key(_) | Step::Deep(_)), Some(Elem::Index(_)))
            | (Some(Step::Index(_)), Some(Elem::Key(_))) => return false,
            (Some(Step::Index(k)), Some(Elem::Index(e))) if k != e => return false,
            _ => {}
        }
        // Which prefixes of `path` the steps so far match: on the stack for
        // the depths a JSON body may reach, so matching allocates nothing.
        const ROW: usize = 160;
        if path.len() < ROW {
            let mut row = [false; ROW];
            let mut next = [false; ROW];
            self.run(path, &mut row, &mut next)
        } else {
            let mut row = vec![false; path.len() + 1];
            let mut next = vec![false; path.len() + 1];
            self.run(path, &mut row, &mut next)
        }
    }

    fn run<'a>(&self, path: &[Elem], mut row: &'a mut [bool], mut next: &'a mut [bool]) -> bool {
        let n = path.len();
        row[..=n].fill(false);
        row[0] = true;
        for step in &self.steps {
            next[..=n].fill(false);
            let mut reach = false;
            let mut any = false;
            for j in 0..n {
                reach |= row[j];
                let hit = match (step, &path[j]) {
                    (Step::Any, _) => row[j],
                    (Step::Key(k), Elem::Key(e)) => row[j] && k == e,
                    (Step::Index(k), Elem::Index(e)) => row[j] && k == e,
                    (Step::Deep(k), Elem::Key(e)) => reach && k == e,
                    _ => false,
                };
                if hit {
                    next[j + 1] = true;
                    any = true;
                }
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut row, &mut next);
        }
        row[n]
    }
}

/// A dotted name from byte `at`: up to the next `.` or `[`.
fn name_at(text: &str, at: usize) -> Result<(String, usize), String> {
    let rest = text.get(at..).unwrap_or("");
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty() {
        return Err(format!("{text:?}: empty name at byte {at}"));
    }
    if name.contains(['\'', '"', ']', ' ']) {
        return Err(format!("{text:?}: write {name:?} in brackets: ['name']"));
    }
    Ok((name.to_owned(), at + end))
}

fn bracket(text: &str, inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Any);
    }
    if let Ok(n) = inner.parse::<u64>() {
        return Ok(Step::Index(n));
    }
    let quoted = inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
    match quoted {
        Some(k) if !k.is_empty() => Ok(Step::Key(k.to_owned())),
        _ => Err(format!("{text:?}: [{inner}] must be [*], [n] or ['name']")),
    }
}

impl JsonPath {
    /// The places of a definite selector, in order; `None` if it has `*`
    /// or `..`.
    pub fn elems(&self) -> Option<Vec<Elem>> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => Some(Elem::Key(k.clone())),
                Step::Index(i) => Some(Elem::Index(*i)),
                Step::Any | Step::Deep(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(elems: &[&str]) -> Vec<Elem> {
        elems
            .iter()
            .map(|e| match e.parse::<u64>() {
                Ok(n) => Elem::Index(n),
                Err(_) => Elem::Key((*e).to_owned()),
            })
            .collect()
    }

    #[test]
    fn selectors_match_where_they_should_and_nowhere_else() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("$", &[], true),
            ("$", &["a"], false),
            ("$.a", &[], false),
            ("$.a", &["a"], true),
            ("$.a", &["b"], false),
            ("$.a", &["0"], false),
            ("$.a.b", &["a", "b"], true),
            ("$.a.b", &["x", "b"], false),
            ("$..email", &["data", "3", "email"], true),
            ("$..email", &["email"], true),
            ("$..email", &["data", "3", "name"], false),
            ("$..email", &["email", "0"], false),
            ("$.data[*].email", &["data", "7", "email"], true),
            ("$.data[*].email", &["data", "x", "email"], true),
            ("$.data[*].email", &["other", "7", "email"], false),
            ("$.data[2]", &["data", "2"], true),
            ("$.data[2]", &["data", "3"], false),
            ("$.data[2]", &["data", "two"], false),
            ("$.data.*", &["data", "3"], true),
            ("$.data.*", &["data"], false),
            ("$..a.b", &["x", "a", "b"], true),
            ("$..a.b", &["x", "c", "b"], false),
        ];
        for (sel, at, want) in cases {
            let p = JsonPath::new(sel).unwrap();
            assert_eq!(p.matches(&path(at)), *want, "{sel} at {at:?}");
        }
    }
}

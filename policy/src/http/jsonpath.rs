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
const MAX_STEPS: usize = 63;

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

/// How far a selector has matched a path prefix, for matching values one
/// element at a time as a streaming reader meets them: bit `k` is set when
/// the first `k` steps match the prefix (a selector has at most
/// [`MAX_STEPS`] steps, so bits 0 to 63 are enough). Matching a value then
/// costs one [`JsonPath::advance`] per element entered, not a walk of the
/// whole path per value.
pub type Progress = u64;

/// One element of a path as [`JsonPath::advance`] takes it: borrowed, so a
/// streaming reader need not build an [`Elem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemRef<'a> {
    /// An object member: its key's bytes (JSON escapes decoded; bytes that
    /// are not UTF-8 stand for U+FFFD, as in [`Elem::Key`]).
    Key(&'a [u8]),
    /// An array element.
    Index(u64),
}

/// Several selectors compiled for matching one element at a time: the
/// steps of each are bits of a [`Progress`], so entering an element costs
/// one look-up of its key among the selectors' key names and a few bit
/// operations per selector, whatever the selectors' shapes.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    /// Per selector: the bits of its `..key` steps (they may skip
    /// elements, so their bits stay set).
    deep: Vec<Progress>,
    /// Per selector: the bits of its `*` steps.
    any: Vec<Progress>,
    /// Per selector: its accepting bit (one past its last step).
    accept: Vec<Progress>,
    /// Each key name any step takes (`.key`, `['key']`, `..key`), with the
    /// bits of those steps per selector.
    names: Vec<(String, Vec<Progress>)>,
    /// Each index any step takes (`[n]`), likewise.
    indexes: Vec<(u64, Vec<Progress>)>,
    /// Whether a key name holds U+FFFD, which a key that is not UTF-8 may
    /// stand for: only then is such a key converted before it is looked up.
    replacement: bool,
    /// Bit `n` set when some key name is `n` bytes long (bit 63: 63 or
    /// more): most keys are told apart from every name by their length.
    lengths: u64,
    /// Whether some selector has a `*` step.
    has_any: bool,
}

impl Selectors {
    /// Compiles `paths`; selector `i` is the `i`th of them.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a JsonPath>) -> Self {
        let paths: Vec<&JsonPath> = paths.into_iter().collect();
        let n = paths.len();
        let mut s = Self {
            deep: vec![0; n],
            any: vec![0; n],
            accept: vec![0; n],
            names: Vec::new(),
            indexes: Vec::new(),
            replacement: false,
            lengths: 0,
            has_any: false,
        };
        for (i, p) in paths.iter().enumerate() {
            s.accept[i] = 1 << p.steps.len();
            for (k, step) in p.steps.iter().enumerate() {
                let bit: Progress = 1 << k;
                match step {
                    Step::Any => s.any[i] |= bit,
                    Step::Deep(name) | Step::Key(name) => {
                        if matches!(step, Step::Deep(_)) {
                            s.deep[i] |= bit;
                        }
                        let at = match s.names.iter().position(|(x, _)| x == name) {
                            Some(at) => at,
                            None => {
                                s.names.push((name.clone(), vec![0; n]));
                                s.names.len() - 1
                            }
                        };
                        s.names[at].1[i] |= bit;
                    }
                    Step::Index(x) => {
                        let at = match s.indexes.iter().position(|(y, _)| y == x) {
                            Some(at) => at,
                            None => {
                                s.indexes.push((*x, vec![0; n]));
                                s.indexes.len() - 1
                            }
                        };
                        s.indexes[at].1[i] |= bit;
                    }
                }
            }
        }
        s.replacement = s.names.iter().any(|(x, _)| x.contains('\u{fffd}'));
        s.lengths = s.names.iter().fold(0, |l, (x, _)| l | length_bit(x.len()));
        s.has_any = s.any.iter().any(|a| *a != 0);
        s
    }

    /// The bits of the steps named `k`, per selector.
    fn named(&self, k: &[u8]) -> Option<&[Progress]> {
        if !self.replacement && self.lengths & length_bit(k.len()) == 0 {
            return None;
        }
        let found = self.names.iter().find(|(x, _)| x.as_bytes() == k);
        if let Some((_, b)) = found {
            return Some(b);
        }
        if self.replacement && std::str::from_utf8(k).is_err() {
            let lossy = String::from_utf8_lossy(k);
            return self
                .names
                .iter()
                .find(|(x, _)| *x == lossy)
                .map(|(_, b)| b.as_slice());
        }
        None
    }

    /// Number of selectors.
    pub fn len(&self) -> usize {
        self.accept.len()
    }

    /// No selector.
    pub fn is_empty(&self) -> bool {
        self.accept.is_empty()
    }

    /// Each selector's progress at the document's root (the empty path).
    pub const START: Progress = 1;

    /// Writes to `row` each selector's progress after one more element
    /// `e`, from `parent`, their progress on its parent's path.
    #[inline]
    pub fn advance(&self, parent: &[Progress], e: ElemRef<'_>, row: &mut [Progress]) {
        // The usual case, told from a key's length alone (or, for an index,
        // from there being no `[n]` step): an element no step names, and no
        // `*`; only the `..` steps carry over.
        let unnamed = match e {
            ElemRef::Key(k) => !self.replacement && self.lengths & length_bit(k.len()) == 0,
            ElemRef::Index(_) => self.indexes.is_empty(),
        };
        if unnamed && !self.has_any {
            for ((slot, p), deep) in row.iter_mut().zip(parent).zip(&self.deep) {
                *slot = p & deep;
            }
            return;
        }
        self.advance_named(parent, e, row);
    }

    fn advance_named(&self, parent: &[Progress], e: ElemRef<'_>, row: &mut [Progress]) {
        let named = match e {
            ElemRef::Key(k) => self.named(k),
            ElemRef::Index(i) => self
                .indexes
                .iter()
                .find(|(x, _)| *x == i)
                .map(|(_, b)| b.as_slice()),
        };
        match named {
            // The usual case: an element no step names, and no `*`.
            None if !self.has_any => {
                for ((slot, p), deep) in row.iter_mut().zip(parent).zip(&self.deep) {
                    *slot = p & deep;
                }
            }
            Some(named) => {
                // One entry per selector in each (the bound spares the
                // loop its checks).
                let n = row.len().min(parent.len()).min(self.deep.len());
                let n = n.min(self.any.len()).min(named.len());
                for i in 0..n {
                    let p = parent[i];
                    row[i] = (p & self.deep[i]) | ((p & (self.any[i] | named[i])) << 1);
                }
            }
            None => {
                let n = row.len().min(parent.len()).min(self.deep.len());
                let n = n.min(self.any.len());
                for i in 0..n {
                    let p = parent[i];
                    row[i] = (p & self.deep[i]) | ((p & self.any[i]) << 1);
                }
            }
        }
    }

    /// Whether selector `i` selects a value whose path has progress `p`.
    pub fn accepts(&self, i: usize, p: Progress) -> bool {
        self.accept.get(i).is_some_and(|a| p & a != 0)
    }
}

/// The bit of [`Selectors::lengths`] for a name `n` bytes long.
fn length_bit(n: usize) -> u64 {
    1 << n.min(63)
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

    /// What [`Selectors`] say of `paths` at `path`, element by element.
    fn stepwise_all(paths: &[JsonPath], path: &[Elem]) -> Vec<bool> {
        let s = Selectors::new(paths);
        let mut at = vec![Selectors::START; s.len()];
        for e in path {
            let mut next = vec![0; s.len()];
            let e = match e {
                Elem::Key(k) => ElemRef::Key(k.as_bytes()),
                Elem::Index(i) => ElemRef::Index(*i),
            };
            s.advance(&at, e, &mut next);
            at = next;
        }
        at.iter()
            .enumerate()
            .map(|(i, p)| s.accepts(i, *p))
            .collect()
    }

    fn stepwise(p: &JsonPath, path: &[Elem]) -> bool {
        stepwise_all(std::slice::from_ref(p), path)[0]
    }

    proptest::proptest! {
        #[test]
        fn stepwise_matching_agrees_with_the_whole_path_walk(
            steps in proptest::collection::vec(
                proptest::sample::select(vec![
                    ".a", ".b", "['a']", "[0]", "[1]", "[*]", ".*", "..a", "..b",
                ]),
                0..6,
            ),
            elems in proptest::collection::vec(
                proptest::sample::select(vec!["a", "b", "c", "0", "1", "2"]),
                0..8,
            ),
        ) {
            let sel = format!("${}", steps.concat());
            let p = JsonPath::new(&sel).unwrap();
            let at = path(&elems);
            proptest::prop_assert_eq!(stepwise(&p, &at), p.matches(&at), "{} at {:?}", sel, elems);
            // With others compiled alongside, sharing names and indexes.
            let all: Vec<JsonPath> = [sel.as_str(), "$..a", "$.b[1]", "$[*].a..b", "$"]
                .iter()
                .map(|t| JsonPath::new(t).unwrap())
                .collect();
            let want: Vec<bool> = all.iter().map(|p| p.matches(&at)).collect();
            proptest::prop_assert_eq!(stepwise_all(&all, &at), want, "{} at {:?}", sel, elems);
        }
    }

    #[test]
    fn the_longest_selector_fits_the_progress_bits() {
        let sel = format!("${}", "..a".repeat(MAX_STEPS));
        let p = JsonPath::new(&sel).unwrap();
        let at = path(&["a"; MAX_STEPS + 2]);
        assert!(stepwise(&p, &at) && p.matches(&at));
        assert!(!stepwise(&p, &at[..MAX_STEPS - 1]) && !p.matches(&at[..MAX_STEPS - 1]));
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
            assert_eq!(stepwise(&p, &path(at)), *want, "{sel} at {at:?}, stepwise");
        }
    }
}

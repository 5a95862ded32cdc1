//! Detectors: find secrets and personal data in any text value, whatever
//! column it came from. All patterns are compiled once per policy into one
//! [`RegexSet`], so a value with nothing to find (the common case) costs a
//! single scan; only the patterns that matched are run again to find spans.

mod email;

use regex::bytes::{Regex, RegexSet};

use super::model::{CustomDetectorDoc, DetectorKind};

/// Why a detector set cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// A custom pattern does not compile.
    #[error("custom detector {index} ({name:?}): {message}")]
    Pattern {
        /// Position in `detectors.custom`.
        index: usize,
        /// Its name.
        name: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A custom pattern matches the empty string, so it would match everywhere.
    #[error("custom detector {index} ({name:?}) matches the empty string")]
    Empty {
        /// Position in `detectors.custom`.
        index: usize,
        /// Its name.
        name: String,
    },
}

/// Extra check a match must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Luhn,
    Iban,
}

#[derive(Debug, Clone)]
struct Detector {
    name: String,
    regex: Regex,
    check: Check,
    /// The built-in, whose [`Profile::needs`] says what any match needs to
    /// find in the value's bytes; `None` for custom patterns, which are
    /// always run.
    kind: Option<DetectorKind>,
}

/// Largest compiled size of one custom pattern, so a policy cannot make the
/// node build a huge automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiled detectors.
#[derive(Debug, Clone)]
pub struct Detectors {
    set: RegexSet,
    detectors: Vec<Detector>,
    /// Each detector's built-in kind (`None` for a custom one), packed
    /// apart from the compiled patterns so the prefilter's loop over them
    /// stays in a few cache lines.
    kinds: Vec<Option<DetectorKind>>,
    /// With built-ins only, a coarser first test than theirs (see
    /// [`Gate`]); `None` when a custom detector (always run) is present.
    gate: Option<Gate>,
    /// Whether every name is printable ASCII without `"` or `\\`.
    plain_names: bool,
    /// No match of any detector is shorter (1 with a custom one): shorter
    /// values (ids, amounts, short words) are turned away on their length.
    shortest: usize,
}

/// What a value needs for any of a set of built-ins to match, in one test
/// of the [`Profile`]'s counts: each built-in's [`Profile::needs`] implies
/// its term here, so a value the gate turns away could match none of them,
/// and most values (names, words, amounts, ids) are turned away before any
/// per-detector test.
#[derive(Debug, Clone, Copy)]
struct Gate {
    /// Flags any one of which opens it (`@` for email, a secret-key
    /// character for secret keys).
    flags: u8,
    /// The fewest digits that open it, and likewise letters and digits,
    /// dots and dashes (`u64::MAX`: no detector counts them).
    digits: u64,
    alnum: u64,
    dots: u64,
    dashes: u64,
}

impl Gate {
    fn of(kinds: &[Option<DetectorKind>]) -> Option<Self> {
        let mut g = Self {
            flags: 0,
            digits: u64::MAX,
            alnum: u64::MAX,
            dots: u64::MAX,
            dashes: u64::MAX,
        };
        for k in kinds {
            match (*k)? {
                DetectorKind::Email => g.flags |= AT,
                DetectorKind::Card => g.digits = g.digits.min(13),
                DetectorKind::Ssn => g.digits = g.digits.min(9),
                DetectorKind::Phone => g.digits = g.digits.min(6),
                DetectorKind::Iban => g.digits = g.digits.min(2),
                DetectorKind::AwsAccessKey => g.alnum = 20,
                DetectorKind::Jwt => g.dots = 2,
                DetectorKind::PrivateKey => g.dashes = 10,
                DetectorKind::SecretKey => g.flags |= KEYISH,
            }
        }
        Some(g)
    }

    /// Whether some built-in of the set may match the value of `p`.
    fn open(&self, p: &Profile<'_>) -> bool {
        p.flags & self.flags != 0
            || p.digits() >= self.digits
            || p.count(ALNUM) >= self.alnum
            || p.count(DOT) >= self.dots
            || p.count(DASH) >= self.dashes
    }
}

/// One detector's hits in a value, for audit counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Index of the detector (see [`Detectors::name`]).
    pub detector: usize,
}

type Builtin = (&'static str, &'static str, Check);

fn builtin(kind: DetectorKind) -> Builtin {
    match kind {
        DetectorKind::Email => (
            "email",
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
            Check::None,
        ),
        DetectorKind::Card => ("card", r"\b\d(?:[ \-]?\d){12,18}\b", Check::Luhn),
        DetectorKind::Ssn => ("ssn", r"\b\d{3}[\- ]\d{2}[\- ]\d{4}\b", Check::None),
        DetectorKind::Phone => (
            "phone",
            r"(?:\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{2,4}){2,4}\b|\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}\b|\b\d{3}[.\-]\d{3}[.\-]\d{4}\b)",
            Check::None,
        ),
        DetectorKind::Iban => (
            "iban",
            r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
            Check::Iban,
        ),
        DetectorKind::AwsAccessKey => (
            "aws_access_key",
            r"(?i)\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b",
            Check::None,
        ),
        DetectorKind::Jwt => (
            "jwt",
            r"(?i)\beyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",
            Check::None,
        ),
        DetectorKind::PrivateKey => (
            "private_key",
            r"(?s)-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|\z)",
            Check::None,
        ),
        DetectorKind::SecretKey => (
            "secret_key",
            r"(?i)(?:sk_live_|sk_test_|rk_live_|rk_test_|pk_live_|whsec_|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|xox[abposr]-|glpat-|npm_|AIza)[A-Za-z0-9_\-]{6,}",
            Check::None,
        ),
    }
}

/// The length of the shortest text the built-in `kind`'s pattern matches
/// (a lower bound: its check may want more), checked against the patterns
/// in the tests.
fn shortest_match(kind: DetectorKind) -> usize {
    match kind {
        // a@b.cd
        DetectorKind::Email => 6,
        // +1 1 22 33 without separators
        DetectorKind::Phone => 7,
        // eyJa.eyJb.
        DetectorKind::Jwt => 10,
        // npm_ and six more
        DetectorKind::SecretKey => 10,
        // 123-45-6789
        DetectorKind::Ssn => 11,
        // GB82 and two groups of four
        DetectorKind::Iban => 12,
        DetectorKind::Card => 13,
        DetectorKind::AwsAccessKey => 20,
        // -----BEGIN and PRIVATE KEY-----
        DetectorKind::PrivateKey => 26,
    }
}

impl Detectors {
    /// Compiles the enabled built-ins and the custom detectors.
    pub fn new(
        builtins: &[DetectorKind],
        custom: &[CustomDetectorDoc],
    ) -> Result<Self, DetectError> {
        let mut kinds = builtins.to_vec();
        kinds.sort();
        kinds.dedup();
        let mut detectors = Vec::new();
        for k in kinds {
            let (name, pattern, check) = builtin(k);
            #[allow(clippy::expect_used)]
            let regex = Regex::new(pattern).expect("built-in detector patterns compile");
            detectors.push(Detector {
                name: name.to_owned(),
                regex,
                check,
                kind: Some(k),
            });
        }
        for (index, c) in custom.iter().enumerate() {
            let regex = regex::bytes::RegexBuilder::new(&c.pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| DetectError::Pattern {
                    index,
                    name: c.name.clone(),
                    message: e.to_string(),
                })?;
            if regex.is_match(b"") {
                return Err(DetectError::Empty {
                    index,
                    name: c.name.clone(),
                });
            }
            detectors.push(Detector {
                name: c.name.clone(),
                regex,
                check: Check::None,
                kind: None,
            });
        }
        let set = RegexSet::new(detectors.iter().map(|d| d.regex.as_str())).map_err(|e| {
            DetectError::Pattern {
                index: 0,
                name: "(all)".to_owned(),
                message: e.to_string(),
            }
        })?;
        let kinds: Vec<Option<DetectorKind>> = detectors.iter().map(|d| d.kind).collect();
        let gate = Gate::of(&kinds);
        let plain_names = detectors.iter().all(|d| {
            d.name
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        });
        let shortest = kinds
            .iter()
            .map(|k| k.map_or(1, shortest_match))
            .min()
            .unwrap_or(1);
        Ok(Self {
            set,
            detectors,
            kinds,
            gate,
            plain_names,
            shortest,
        })
    }

    /// No detector at all.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// Whether every `[name]` [`Detectors::replace`] writes may stand in a
    /// JSON string as it is, so a plain value with finds replaced needs no
    /// re-encoding.
    pub fn names_plain(&self) -> bool {
        self.plain_names
    }

    /// Number of detectors.
    pub fn len(&self) -> usize {
        self.detectors.len()
    }

    /// A detector's name, for audit counts.
    pub fn name(&self, index: usize) -> &str {
        self.detectors.get(index).map_or("?", |d| d.name.as_str())
    }

    /// Every detected span in `value` as `(start, end, detector)`, sorted
    /// by start; spans may overlap.
    pub fn spans(&self, value: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut spans = Vec::new();
        self.spans_into(value, &mut spans);
        spans
    }

    /// [`Detectors::spans`] into `spans` (cleared first), so a caller
    /// scanning many values reuses one buffer.
    ///
    /// When the prefilter leaves at most [`DIRECT_MAX`] candidates (an
    /// address in a note leaves only the email pattern), their own patterns
    /// run directly: one pass each, instead of the set's pass to tell
    /// whether anything matches, its pass to tell which, and then theirs.
    pub fn spans_into(&self, value: &[u8], spans: &mut Vec<(usize, usize, usize)>) {
        spans.clear();
        if self.detectors.is_empty() || value.len() < self.shortest {
            return;
        }
        let Some(profile) = Profile::of(value) else {
            return self.scan(value, spans);
        };
        if self.gate.is_some_and(|g| !g.open(&profile)) {
            return;
        }
        let mut candidates = [0usize; DIRECT_MAX];
        let mut n = 0;
        for (i, kind) in self.kinds.iter().enumerate() {
            if kind.is_none_or(|k| profile.needs(k)) {
                if n == DIRECT_MAX {
                    return self.scan(value, spans);
                }
                candidates[n] = i;
                n += 1;
            }
        }
        for &i in &candidates[..n] {
            self.find(i, value, spans);
        }
        spans.sort_unstable();
    }

    /// [`Self::spans_into`] without the prefilter.
    fn scan(&self, value: &[u8], spans: &mut Vec<(usize, usize, usize)>) {
        // `is_match` stops early and allocates nothing; most values end here.
        if !self.set.is_match(value) {
            return;
        }
        let matched = self.set.matches(value);
        for i in matched.iter() {
            self.find(i, value, spans);
        }
        spans.sort_unstable();
    }

    /// Adds the spans of detector `i` in `value` that pass its check.
    fn find(&self, i: usize, value: &[u8], spans: &mut Vec<(usize, usize, usize)>) {
        let d = &self.detectors[i];
        if d.kind == Some(DetectorKind::Email) {
            email::find_emails(value, |start, end| spans.push((start, end, i)));
            return;
        }
        for m in d.regex.find_iter(value) {
            let ok = match d.check {
                Check::None => true,
                Check::Luhn => luhn(m.as_bytes()),
                Check::Iban => iban(m.as_bytes()),
            };
            if ok && m.end() > m.start() {
                spans.push((m.start(), m.end(), i));
            }
        }
    }

    /// The value with every detected span replaced by `[name]`, or `None`
    /// when nothing was found (the value goes out unchanged). `hits` gets one
    /// entry per replaced span.
    #[inline]
    pub fn scrub(&self, value: &[u8], hits: &mut Vec<Hit>) -> Option<Vec<u8>> {
        let spans = self.spans(value);
        if spans.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(value.len());
        self.replace(value, &spans, &mut out, hits);
        Some(out)
    }

    /// Writes `value` to `out` with `spans` (from [`Detectors::spans`])
    /// replaced by `[name]`; overlapping spans are merged into the first.
    pub fn replace(
        &self,
        value: &[u8],
        spans: &[(usize, usize, usize)],
        out: &mut Vec<u8>,
        hits: &mut Vec<Hit>,
    ) {
        let mut at = 0;
        for &(start, end, i) in spans {
            if end <= at {
                continue;
            }
            let start = start.max(at);
            out.extend_from_slice(&value[at..start]);
            out.push(b'[');
            out.extend_from_slice(self.name(i).as_bytes());
            out.push(b']');
            hits.push(Hit { detector: i });
            at = end;
        }
        out.extend_from_slice(&value[at..]);
    }
}

impl Detectors {
    /// Whether any detector could match `value`, from one cheap pass over
    /// its bytes: most values (names, words, amounts, ids) lack what every
    /// built-in pattern needs, and skip the regex scan altogether.
    #[cfg(test)]
    fn may_match(&self, value: &[u8]) -> bool {
        let Some(p) = Profile::of(value) else {
            return true;
        };
        self.detectors
            .iter()
            .any(|d| d.kind.is_none_or(|k| p.needs(k)))
    }
}

/// The most prefilter candidates whose patterns run one by one; with more,
/// the set's one pass is cheaper.
const DIRECT_MAX: usize = 2;

/// Longer values go straight to the regex scan: they usually hold what some
/// pattern needs, and the per-class counts below fit in one byte each.
const PREFILTER_MAX: usize = 255;

// Lanes of the packed per-class counters, one byte each.
const DIGIT: u64 = 1;
const DOT: u64 = 1 << 8;
const DASH: u64 = 1 << 16;
const UPPER: u64 = 1 << 24;
const ALNUM: u64 = 1 << 32;
const WORD: u64 = 1 << 40;
// Flags, or-ed together.
const AT: u8 = 1;
const PLUS: u8 = 2;
/// `_`, `-` or `z`: every secret-key prefix holds one (`AIza` the `z`).
const KEYISH: u8 = 4;
const NON_ASCII: u8 = 8;

/// Per byte value: the counter lanes it adds to, and its flags.
const CLASSES: [(u64, u8); 256] = {
    let mut t = [(0u64, 0u8); 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut inc = 0;
        let mut flags = 0;
        if c.is_ascii_digit() {
            inc |= DIGIT | ALNUM | WORD;
        }
        if c.is_ascii_alphabetic() {
            inc |= ALNUM | WORD;
        }
        if c.is_ascii_uppercase() {
            inc |= UPPER;
        }
        match c {
            b'.' => inc |= DOT,
            b'-' => {
                inc |= DASH | WORD;
                flags |= KEYISH;
            }
            b'_' => {
                inc |= WORD;
                flags |= KEYISH;
            }
            b'z' | b'Z' => flags |= KEYISH,
            b'@' => flags |= AT,
            b'+' => flags |= PLUS,
            _ => {}
        }
        if !c.is_ascii() {
            flags |= NON_ASCII;
        }
        t[b] = (inc, flags);
        b += 1;
    }
    t
};

/// What a value's ASCII bytes hold, as far as the built-in patterns care:
/// counts per class from one table-driven pass, and the value itself for
/// the few patterns whose test needs to look at runs. Every condition built
/// on it is a necessary one, so a detector whose condition fails cannot
/// match.
struct Profile<'a> {
    counts: u64,
    flags: u8,
    value: &'a [u8],
}

impl<'a> Profile<'a> {
    /// `None` when the value is long or holds a non-ASCII byte: Unicode
    /// digits and case folding widen what the patterns match, so such values
    /// are always scanned.
    fn of(value: &'a [u8]) -> Option<Self> {
        if value.len() > PREFILTER_MAX {
            return None;
        }
        let (mut counts, mut flags) = (0u64, 0u8);
        for &b in value {
            let (inc, f) = CLASSES[usize::from(b)];
            counts += inc;
            flags |= f;
        }
        (flags & NON_ASCII == 0).then_some(Self {
            counts,
            flags,
            value,
        })
    }

    /// Whether the value holds what any match of the built-in `kind` needs
    /// (a necessary condition, not a sufficient one).
    fn needs(&self, kind: DetectorKind) -> bool {
        match kind {
            DetectorKind::Email => self.email(),
            DetectorKind::Card => self.digits() >= 13,
            DetectorKind::Ssn => self.digits() >= 9,
            DetectorKind::Phone => self.phone(),
            DetectorKind::Iban => self.iban(),
            DetectorKind::AwsAccessKey => self.aws_key(),
            DetectorKind::Jwt => self.jwt(),
            DetectorKind::PrivateKey => self.private_key(),
            DetectorKind::SecretKey => self.secret_key(),
        }
    }

    fn count(&self, lane: u64) -> u64 {
        (self.counts / lane) & 0xff
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn digits(&self) -> u64 {
        self.count(DIGIT)
    }

    /// Email: an `@` and a dot after it.
    fn email(&self) -> bool {
        self.has(AT) && self.count(DOT) >= 1
    }

    /// Phone numbers: with a country code at least 6 digits, without 10.
    fn phone(&self) -> bool {
        self.digits() >= 10 || (self.has(PLUS) && self.digits() >= 6)
    }

    /// IBAN: two upper-case letters directly followed by two digits.
    fn iban(&self) -> bool {
        self.digits() >= 2
            && self.count(UPPER) >= 2
            && self.value.windows(4).any(|w| {
                w[0].is_ascii_uppercase()
                    && w[1].is_ascii_uppercase()
                    && w[2].is_ascii_digit()
                    && w[3].is_ascii_digit()
            })
    }

    /// AWS access key ids: 20 letters and digits in a row.
    fn aws_key(&self) -> bool {
        if self.count(ALNUM) < 20 {
            return false;
        }
        has_alnum_run(self.value, 20)
    }

    /// JWTs: `eyJ…` twice, each part ended by a dot.
    fn jwt(&self) -> bool {
        self.count(DOT) >= 2 && self.count(WORD) >= 6
    }

    /// Private key blocks: `-----BEGIN … PRIVATE KEY-----`.
    fn private_key(&self) -> bool {
        self.count(DASH) >= 10
    }

    /// Secret-key shapes: a prefix (at least 3 letters, and `_`, `-` or
    /// `z`) and 6 more of `[A-Za-z0-9_-]`; the prefix is one of a known
    /// list, so two letters before some `_` or `-` end one (`sk_`, `whsec_`,
    /// `xoxb-`, ...) or the value holds `AIza`. Codes such as `REF-2041`
    /// fail here.
    fn secret_key(&self) -> bool {
        self.has(KEYISH)
            && self.count(WORD) >= 10
            && self.count(ALNUM) - self.digits() >= 3
            && (self.value.windows(3).any(|w| {
                matches!(w[2], b'_' | b'-')
                    && SECRET_PREFIX_ENDS.contains(&[w[0] | 0x20, w[1] | 0x20])
            }) || self
                .value
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"aiza")))
    }
}

/// Whether `v` holds `n` (at least 1) ASCII letters and digits in a row.
/// Any such run covers one of the places `n - 1`, `2n - 1`, ...: only the
/// runs through those places are measured, so prose (short words) costs
/// about one look per `n` bytes instead of one per byte.
fn has_alnum_run(v: &[u8], n: usize) -> bool {
    let alnum = |i: usize| v.get(i).is_some_and(u8::is_ascii_alphanumeric);
    let mut at = n.saturating_sub(1);
    while at < v.len() {
        if alnum(at) {
            let mut start = at;
            while start > 0 && alnum(start - 1) {
                start -= 1;
            }
            let mut end = at + 1;
            while end - start < n && alnum(end) {
                end += 1;
            }
            if end - start >= n {
                return true;
            }
        }
        at += n.max(1);
    }
    false
}

/// The last two letters (lower case) before the first `_` or `-` of every
/// secret-key prefix of the `secret_key` pattern: `sk_`, `rk_`, `pk_`,
/// `whsec_`, `gh[pousr]_`, `github_pat_` (`pat_`), `glpat-`, `xox[abposr]-`,
/// `npm_`. `| 0x20` lower-cases letters and leaves `_`/`-`/digits unequal
/// to any entry.
const SECRET_PREFIX_ENDS: [[u8; 2]; 17] = [
    *b"sk", *b"rk", *b"pk", *b"ec", *b"hp", *b"ho", *b"hu", *b"hs", *b"hr", *b"at", *b"xa", *b"xb",
    *b"xp", *b"xo", *b"xs", *b"xr", *b"pm",
];

/// The Luhn checksum over the digits of `s` (separators ignored).
pub fn luhn(s: &[u8]) -> bool {
    let digits: Vec<u32> = s
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| u32::from(b - b'0'))
        .collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The IBAN mod-97 check over `s` (spaces ignored).
pub fn iban(s: &[u8]) -> bool {
    let compact: Vec<u8> = s.iter().copied().filter(|b| *b != b' ').collect();
    if compact.len() < 15 || compact.len() > 34 {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    const ALL: [DetectorKind; 9] = [
        DetectorKind::Email,
        DetectorKind::Card,
        DetectorKind::Ssn,
        DetectorKind::Phone,
        DetectorKind::Iban,
        DetectorKind::AwsAccessKey,
        DetectorKind::Jwt,
        DetectorKind::PrivateKey,
        DetectorKind::SecretKey,
    ];

    fn scrub(d: &Detectors, v: &str) -> (String, Vec<String>) {
        let mut hits = Vec::new();
        let out = d
            .scrub(v.as_bytes(), &mut hits)
            .map_or_else(|| v.to_owned(), |b| String::from_utf8(b).unwrap());
        (
            out,
            hits.iter().map(|h| d.name(h.detector).to_owned()).collect(),
        )
    }

    fn all() -> Detectors {
        Detectors::new(&ALL, &[]).unwrap()
    }

    #[test]
    fn each_builtin_detector_finds_its_kind() {
        let d = all();
        for (text, secret, kind) in [
            (
                "mail bob.backup@corpmail.example now",
                "bob.backup@corpmail.example",
                "email",
            ),
            ("card 4111 1111 1111 1111 ok", "4111 1111 1111 1111", "card"),
            ("card 4111111111111111", "4111111111111111", "card"),
            ("ssn 123-45-6789.", "123-45-6789", "ssn"),
            ("call +41-44-555-0199 today", "+41-44-555-0199", "phone"),
            ("call (202) 555-0143", "(202) 555-0143", "phone"),
            (
                "iban GB82 WEST 1234 5698 7654 32 ok",
                "GB82 WEST 1234 5698 7654 32",
                "iban",
            ),
            (
                "key AKIAZ7QX4EXAMPLE9PLM was rotated",
                "AKIAZ7QX4EXAMPLE9PLM",
                "aws_access_key",
            ),
            (
                "key akiaz7qx4example9plm",
                "akiaz7qx4example9plm",
                "aws_access_key",
            ),
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaGVuIn0.c2lnbmF0dXJlMTIz",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaGVuIn0.c2lnbmF0dXJlMTIz",
                "jwt",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----",
                "MIIEabc",
                "private_key",
            ),
            (
                "sk_live_51HxQeZ2eZvKYlo2CqTmR8wPv",
                "sk_live_51HxQeZ2eZvKYlo2CqTmR8wPv",
                "secret_key",
            ),
            (
                "whsec_Qm9vYmFyQmF6UXV4MTIzNDU2Nzg5",
                "Qm9vYmFyQmF6UXV4MTIzNDU2Nzg5",
                "secret_key",
            ),
            ("ghp_abcdefghijklmnop", "ghp_abcdefghijklmnop", "secret_key"),
            ("xoxb-1234567890-abc", "xoxb-1234567890-abc", "secret_key"),
        ] {
            let (out, kinds) = scrub(&d, text);
            assert!(!out.contains(secret), "{text:?} -> {out:?}");
            assert!(kinds.contains(&kind.to_owned()), "{text:?}: {kinds:?}");
        }
    }

    #[test]
    fn checks_reject_lookalikes_and_plain_data_passes() {
        let d = all();
        for text in [
            "4111111111111112",
            "GB82 WEST 1234 5698 7654 33",
            "paid 120.50 on 2026-01-10 00:00:00+00",
            "order 12345, id 7",
            "no notes",
            "Alice Wonder",
            "127.0.0.1",
        ] {
            let (out, kinds) = scrub(&d, text);
            assert_eq!(out, text, "{kinds:?}");
        }
    }

    #[test]
    fn replacements_name_the_detector_and_keep_the_rest() {
        let d = all();
        let (out, kinds) = scrub(&d, "a 123-45-6789 b x@y.io c");
        assert_eq!(out, "a [ssn] b [email] c");
        assert_eq!(kinds.len(), 2);
    }

    #[test]
    fn custom_detectors_compile_or_fail_precisely() {
        let c = |p: &str| CustomDetectorDoc {
            name: "emp".into(),
            pattern: p.into(),
        };
        let d = Detectors::new(&[], &[c(r"EMP-\d{6}")]).unwrap();
        assert_eq!(scrub(&d, "id EMP-123456").0, "id [emp]");
        assert!(matches!(
            Detectors::new(&[], &[c("(")]),
            Err(DetectError::Pattern { index: 0, .. })
        ));
        assert!(matches!(
            Detectors::new(&[], &[c("a*")]),
            Err(DetectError::Empty { .. })
        ));
    }

    fn prefilter_agrees(d: &Detectors, v: &[u8]) {
        let mut scanned = Vec::new();
        d.scan(v, &mut scanned);
        assert_eq!(d.spans(v), scanned, "{:?}", String::from_utf8_lossy(v));
    }

    #[test]
    fn the_prefilter_skips_plain_values_and_keeps_every_finding() {
        let d = all();
        assert!(
            d.may_match("Alice ".repeat(50).as_bytes()),
            "long values are scanned"
        );
        assert!(!d.may_match("Alice ".repeat(42).as_bytes()));
        for v in [
            "Alice Wonder",
            "paid 120.50",
            "2026-01-10",
            "order 12345, id 7",
            "REF-654321",
            "Customer 654321",
        ] {
            assert!(!d.may_match(v.as_bytes()), "{v}");
        }
        for v in ["x@y.io", "AB12", "ghp_abcdef", "Zoë 123-45-6789"] {
            assert!(d.may_match(v.as_bytes()), "{v}");
        }
        for v in [
            "mail bob.backup@corpmail.example now",
            "card 4111 1111 1111 1111 ok",
            "ssn 123-45-6789.",
            "call +41-44-555-0199 today",
            "iban GB82 WEST 1234 5698 7654 32 ok",
            "key akiaz7qx4example9plm",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc",
            "xoxb-1234567890-abc",
            "ssn \u{661}\u{662}\u{663}-45-6789",
        ] {
            prefilter_agrees(&d, v.as_bytes());
        }
    }

    proptest::proptest! {
        #[test]
        fn the_prefilter_never_changes_a_result(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "4111 1111 1111 1111", "123-45-6789", "x@y.io", "GB82 WEST 1234 5698 7654 32",
                        "AKIAZ7QX4EXAMPLE9PLM", "eyJa.eyJb.c", "-----BEGIN PRIVATE KEY-----",
                        "sk_live_abcdef", "+41-44-555-0199", "(202) 555-0143", "\u{663}", "é",
                        "whsec_", "GHP_", "xoxb-", "github_pat_", "GLPAT-", "npm_", "AIza", "RK_TEST_",
                        "REF-", "abcdef123456",
                    ]).prop_map(|s| s.as_bytes().to_vec()),
                    "[0-9A-Za-z .@_+()\\-]{0,12}".prop_map(String::into_bytes),
                    proptest::num::u8::ANY.prop_map(|b| vec![b]),
                ],
                0..8,
            ),
        ) {
            static ALL_DETECTORS: std::sync::LazyLock<Detectors> = std::sync::LazyLock::new(all);
            // Each built-in alone too: the gate then opens on its term only.
            static EACH: std::sync::LazyLock<Vec<Detectors>> = std::sync::LazyLock::new(|| {
                ALL.iter().map(|k| Detectors::new(&[*k], &[]).unwrap()).collect()
            });
            let v = pieces.concat();
            prefilter_agrees(&ALL_DETECTORS, &v);
            for d in EACH.iter() {
                prefilter_agrees(d, &v);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn alnum_runs_are_found_as_a_byte_by_byte_count_finds_them(
            v in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"aZ09 .-_\xff".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..80,
            ),
            n in 1usize..25,
        ) {
            let naive = v.split(|b| !b.is_ascii_alphanumeric()).any(|r| r.len() >= n);
            proptest::prop_assert_eq!(has_alnum_run(&v, n), naive);
        }
    }

    #[test]
    fn no_built_in_matches_anything_shorter_than_its_bound() {
        for kind in ALL {
            let (name, pattern, _) = builtin(kind);
            let hir = regex_syntax::parse(pattern).unwrap();
            let shortest = hir.properties().minimum_len().unwrap();
            assert_eq!(shortest_match(kind), shortest, "{name}");
        }
        let d = all();
        assert_eq!(d.shortest, 6);
        assert!(d.spans(b"a@b.c").is_empty());
        assert_eq!(d.spans(b"a@b.cd"), vec![(0, 6, 0)]);
        let custom = CustomDetectorDoc {
            name: "x".into(),
            pattern: "x".into(),
        };
        let d = Detectors::new(&ALL, &[custom]).unwrap();
        assert_eq!(d.shortest, 1);
        assert_eq!(scrub(&d, "x").0, "[x]");
    }

    #[test]
    fn luhn_and_iban_checks() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"340000000000009"));
        assert!(!luhn(b"4111111111111121"));
        assert!(!luhn(b"1234"));
        assert!(iban(b"DE89370400440532013000"));
        assert!(!iban(b"DE89370400440532013001"));
    }
}

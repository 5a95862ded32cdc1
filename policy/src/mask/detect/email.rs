//! The email detector without its regex: the same spans as
//! `Regex::find_iter` of the built-in pattern
//!
//! ```text
//! [A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}
//! ```
//!
//! found from each `@` outwards. Notes and messages often hold an address,
//! so this runs on many values that pass the prefilter; the regex engine
//! finds the same spans with a reverse search from each `@` at several
//! times the cost. `tests::the_finder_agrees_with_the_regex` holds the two
//! to the same results on arbitrary bytes.

/// Bytes of the local part (`[A-Za-z0-9._%+\-]`) and of a domain label
/// (`[A-Za-z0-9\-]`), as bit flags per byte value.
const LOCAL: u8 = 1;
const LABEL: u8 = 2;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' {
            t[b] = LOCAL | LABEL;
        } else if matches!(c, b'.' | b'_' | b'%' | b'+') {
            t[b] = LOCAL;
        }
        b += 1;
    }
    t
};

fn is(v: &[u8], i: usize, class: u8) -> bool {
    v.get(i)
        .is_some_and(|&b| CLASS[usize::from(b)] & class != 0)
}

/// Calls `found(start, end)` for every address in `value`, leftmost first
/// and not overlapping, exactly where the pattern's leftmost-first matches
/// are.
///
/// A match holds one `@`, and the local part cannot hold one, so the
/// leftmost match is at the first `@` (after the previous match) that has
/// a local part before it and a valid domain after it; it starts where the
/// run of local-part bytes before that `@` starts, but not before the
/// previous match's end (where the regex's next search starts).
pub(super) fn find_emails(value: &[u8], mut found: impl FnMut(usize, usize)) {
    let mut from = 0;
    let mut search = 0;
    while let Some(k) = value
        .get(search..)
        .and_then(|rest| memchr::memchr(b'@', rest))
    {
        let at = search + k;
        let mut start = at;
        while start > from && is(value, start - 1, LOCAL) {
            start -= 1;
        }
        match domain_end(value, at + 1) {
            Some(end) if start < at => {
                found(start, end);
                from = end;
                search = end;
            }
            _ => search = at + 1,
        }
    }
}

/// Where the domain that starts at `i` ends, if there is one.
///
/// After the `@` come labels of `[A-Za-z0-9\-]`, one dot apart. Each label
/// is taken whole (a shorter one could be followed by neither a dot nor the
/// end), the starred group takes as many as it can, and the top-level
/// domain is the letters that begin the last label with two or more; the
/// match ends after them.
fn domain_end(v: &[u8], mut i: usize) -> Option<usize> {
    let first = i;
    while is(v, i, LABEL) {
        i += 1;
    }
    if i == first {
        return None;
    }
    let mut end = None;
    while v.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut j = start;
        while is(v, j, LABEL) {
            j += 1;
        }
        if j == start {
            break;
        }
        let letters = v[start..j]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        if letters >= 2 {
            end = Some(start + letters);
        }
        i = j;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use regex::bytes::Regex;

    const PATTERN: &str = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}";

    fn spans(v: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        find_emails(v, |a, b| out.push((a, b)));
        out
    }

    fn regex_spans(v: &[u8]) -> Vec<(usize, usize)> {
        static RE: std::sync::LazyLock<Regex> =
            std::sync::LazyLock::new(|| Regex::new(PATTERN).unwrap());
        RE.find_iter(v).map(|m| (m.start(), m.end())).collect()
    }

    #[test]
    fn the_pattern_is_the_built_in_one() {
        assert_eq!(
            super::super::builtin(crate::mask::model::DetectorKind::Email).1,
            PATTERN
        );
    }

    #[test]
    fn addresses_are_found_where_the_regex_finds_them() {
        for v in [
            "backup contact backup12@corpmail.example",
            "a@b.co",
            "a@b.c",
            "a@b.com1@c.io",
            "x@y@z.io",
            "a@b.com.x1",
            "a@b..com",
            "@x.io and .@x.io",
            "first.last+tag@mail.example.co.uk, second@x-y.org.",
            "a@b.c0m.io9.x",
            "a@-.-.ab",
            "é@x.iö a@b.cd",
        ] {
            assert_eq!(spans(v.as_bytes()), regex_spans(v.as_bytes()), "{v:?}");
        }
        assert_eq!(spans(b"mail x@y.io now"), vec![(5, 11)]);
        assert_eq!(spans(b"no address"), vec![]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        #[test]
        fn the_finder_agrees_with_the_regex(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "@", ".", "..", "-", "_", "%", "+", " ", "com", "io", "a1", "x", "9",
                        "example.com", "mail.example.co.uk", "user.name", "\u{e9}", ",",
                    ]).prop_map(|s| s.as_bytes().to_vec()),
                    "[a-zA-Z0-9.@_%+ \\-]{0,6}".prop_map(String::into_bytes),
                    proptest::num::u8::ANY.prop_map(|b| vec![b]),
                ],
                0..16,
            ),
        ) {
            let v = pieces.concat();
            proptest::prop_assert_eq!(spans(&v), regex_spans(&v));
        }
    }
}

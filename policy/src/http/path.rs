//! Request paths: one canonical form, decided and forwarded, and the
//! segment globs rules match it with. Anything that could make the target
//! see a different path than the one decided is refused.

/// The longest path accepted, in bytes as received.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a path is refused. The message is fit for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// Does not start with `/`.
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// `//`: an empty segment.
    #[error("the path has an empty segment ('//')")]
    EmptySegment,
    /// `.` or `..`, in any encoding.
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    /// `%2f` or `%5c` (or a raw backslash).
    #[error("the path has an encoded slash or a backslash")]
    EncodedSlash,
    /// `;` matrix parameters.
    #[error("the path has a ';' (matrix parameters are not accepted)")]
    Semicolon,
    /// A `%` not followed by two hex digits, or one left after decoding.
    #[error("the path has invalid or double percent-encoding")]
    BadEncoding,
    /// Decodes to bytes that are not UTF-8 (overlong forms included).
    #[error("the path does not decode to UTF-8")]
    NotUtf8,
    /// NUL, control characters, spaces, `?`, `#` or non-ASCII bytes as sent.
    #[error("the path has control, space or non-ASCII characters")]
    BadCharacter,
}

/// A checked path: decoded segments for matching, and the canonical
/// encoding that is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// Decoded segments (no empty ones; a trailing `/` is not a segment).
    pub segments: Vec<String>,
    /// The canonical form: each segment percent-encoded minimally.
    pub encoded: String,
}

/// The canonical form of a raw (percent-encoded) request path, or why it is
/// refused. An empty path is `/`.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    parse_path(raw).map(|p| p.encoded)
}

/// Checks and decodes a raw path.
pub fn parse_path(raw: &str) -> Result<NormalPath, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if raw.is_empty() || raw == "/" {
        return Ok(NormalPath {
            segments: Vec::new(),
            encoded: "/".to_owned(),
        });
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    let (rest, trailing) = match rest.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let mut segments = Vec::new();
    let mut encoded = String::with_capacity(raw.len());
    for seg in rest.split('/') {
        let decoded = segment(seg)?;
        encoded.push('/');
        encode_into(&decoded, &mut encoded);
        segments.push(decoded);
    }
    if trailing {
        encoded.push('/');
    }
    Ok(NormalPath { segments, encoded })
}

/// One raw segment, checked and decoded.
fn segment(seg: &str) -> Result<String, PathError> {
    if seg.is_empty() {
        return Err(PathError::EmptySegment);
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEncoding);
                };
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'\\' => return Err(PathError::EncodedSlash),
            b';' => return Err(PathError::Semicolon),
            0x21..=0x7e if b != b'?' && b != b'#' => {
                out.push(b);
                i += 1;
            }
            _ => return Err(PathError::BadCharacter),
        }
    }
    let text = String::from_utf8(out).map_err(|_| PathError::NotUtf8)?;
    if text == "." || text == ".." {
        return Err(PathError::DotSegment);
    }
    for c in text.chars() {
        match c {
            '/' | '\\' => return Err(PathError::EncodedSlash),
            ';' => return Err(PathError::Semicolon),
            '%' => return Err(PathError::BadEncoding),
            c if c.is_control() => return Err(PathError::BadCharacter),
            _ => {}
        }
    }
    Ok(text)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and the
/// sub-delimiters, `:` and `@` (what a segment may carry as is).
fn encode_into(text: &str, out: &mut String) {
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            )
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// One segment of a path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `**`: any number of segments, none included.
    Any,
    /// A literal segment, or one with `*` wildcards inside it.
    Seg(String),
}

/// A path glob by segments, matched case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    parts: Vec<Part>,
}

impl PathGlob {
    /// Parses `/v1/customers/*/refunds`, `/v1/**`.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(format!("{pattern:?} must start with '/'"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut parts = Vec::new();
        if rest.is_empty() {
            return Ok(Self { parts });
        }
        for seg in rest.split('/') {
            if seg.is_empty() {
                return Err(format!("{pattern:?} has an empty segment"));
            }
            if seg == "**" {
                parts.push(Part::Any);
            } else if seg.contains("**") {
                return Err(format!("{pattern:?}: '**' must be a whole segment"));
            } else if seg == "." || seg == ".." || seg.contains(['\\', ';', '%', '?', '#']) {
                return Err(format!(
                    "{pattern:?}: segments are matched decoded; write them without '.', '..', '%', ';', '?', '#' or '\\'"
                ));
            } else {
                parts.push(Part::Seg(seg.to_owned()));
            }
        }
        Ok(Self { parts })
    }

    /// Whether the decoded `segments` match.
    pub fn matches(&self, segments: &[String]) -> bool {
        // Table of which (pattern part, segment) prefixes match; bounded by
        // parts × segments, whatever the number of `**`.
        let n = segments.len();
        let mut row = vec![false; n + 1];
        row[0] = true;
        for part in &self.parts {
            let mut next = vec![false; n + 1];
            match part {
                Part::Any => {
                    let mut reach = false;
                    for j in 0..=n {
                        reach |= row[j];
                        next[j] = reach;
                    }
                }
                Part::Seg(p) => {
                    for j in 0..n {
                        if row[j] && wildcard(p.as_bytes(), segments[j].as_bytes()) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            row = next;
        }
        row[n]
    }
}

/// `*` matches any run of characters (within one segment or value).
pub(crate) fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

//! Query strings: parsed for rule conditions, redacted for the record.

use super::model::QueryAudit;
use crate::mask::rules::REDACTED;

/// Why a query string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A `%` not followed by two hex digits, or bytes that are not UTF-8.
    #[error("the query string has invalid percent-encoding")]
    BadEncoding,
    /// Longer than the limit.
    #[error("the query string is longer than {MAX_QUERY_BYTES} bytes")]
    TooLong,
}

/// The longest query string accepted.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// Decoded `(name, value)` pairs in order (`+` is a space).
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, QueryError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(QueryError::TooLong);
    }
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, QueryError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = b.get(i + 1).and_then(|&x| (x as char).to_digit(16));
                let lo = b.get(i + 2).and_then(|&x| (x as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(QueryError::BadEncoding);
                };
                out.push(u8::try_from(hi * 16 + lo).map_err(|_| QueryError::BadEncoding)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::BadEncoding)
}

/// The query as the audit record keeps it: as sent, or with every value
/// replaced by `****` (names kept as sent; a
/// parameter without `=` is all value, so it is replaced whole).
pub fn redact_query(raw: &str, mode: QueryAudit) -> String {
    match mode {
        QueryAudit::Keep => raw.to_owned(),
        QueryAudit::Redact => raw
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}={REDACTED}"),
                None if pair.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&"),
    }
}

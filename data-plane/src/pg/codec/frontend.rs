//! Messages a client sends, parsed just enough to decide and track them.

use super::frame::Frame;
use super::{take_cstr, take_i16, take_i32};

/// A client message that breaks the protocol.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("malformed {0} message")]
pub struct Malformed(pub &'static str);

/// Query: the SQL text.
pub fn query(body: &[u8]) -> Result<&[u8], Malformed> {
    let mut b = body;
    let text = take_cstr(&mut b).ok_or(Malformed("Query"))?;
    if !b.is_empty() {
        return Err(Malformed("Query"));
    }
    Ok(text)
}

/// A Parse message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Prepared statement name (empty: unnamed).
    pub name: &'a [u8],
    /// SQL text.
    pub query: &'a [u8],
    /// Raw parameter type section (count and OIDs), kept to rebuild the message.
    pub param_types: &'a [u8],
}

/// Parses a Parse message.
pub fn parse(body: &[u8]) -> Result<Parse<'_>, Malformed> {
    let err = Malformed("Parse");
    let mut b = body;
    let name = take_cstr(&mut b).ok_or(err)?;
    let query = take_cstr(&mut b).ok_or(err)?;
    let param_types = b;
    let n = take_i16(&mut b).ok_or(err)?;
    let n = usize::try_from(n).map_err(|_| err)?;
    if b.len() != n * 4 {
        return Err(err);
    }
    Ok(Parse {
        name,
        query,
        param_types,
    })
}

/// Builds a Parse message.
pub fn encode_parse(name: &[u8], query: &[u8], param_types: &[u8]) -> Frame {
    let mut body = Vec::with_capacity(name.len() + query.len() + param_types.len() + 2);
    body.extend_from_slice(name);
    body.push(0);
    body.extend_from_slice(query);
    body.push(0);
    body.extend_from_slice(if param_types.is_empty() {
        &[0, 0]
    } else {
        param_types
    });
    Frame::new(b'P', &body)
}

/// Builds a Query message.
pub fn encode_query(text: &[u8]) -> Frame {
    let mut body = Vec::with_capacity(text.len() + 1);
    body.extend_from_slice(text);
    body.push(0);
    Frame::new(b'Q', &body)
}

/// Bind: the portal and statement names.
pub fn bind(body: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let mut b = body;
    let portal = take_cstr(&mut b).ok_or(Malformed("Bind"))?;
    let statement = take_cstr(&mut b).ok_or(Malformed("Bind"))?;
    Ok((portal, statement))
}

/// One bound parameter: its format code (0 text, 1 binary) and its value
/// (`None` for NULL).
pub type BoundParam<'a> = (i16, Option<&'a [u8]>);

/// A Bind's parameter values, in order.
pub fn bind_parameters(body: &[u8]) -> Result<Vec<BoundParam<'_>>, Malformed> {
    const W: Malformed = Malformed("Bind");
    let mut b = body;
    take_cstr(&mut b).ok_or(W)?;
    take_cstr(&mut b).ok_or(W)?;
    let nfmt = usize::try_from(take_i16(&mut b).ok_or(W)?).map_err(|_| W)?;
    let mut formats = Vec::with_capacity(nfmt.min(64));
    for _ in 0..nfmt {
        formats.push(take_i16(&mut b).ok_or(W)?);
    }
    let n = usize::try_from(take_i16(&mut b).ok_or(W)?).map_err(|_| W)?;
    if nfmt > 1 && nfmt != n {
        return Err(W);
    }
    let mut out = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let format = match nfmt {
            0 => 0,
            1 => formats[0],
            _ => formats[i],
        };
        let len = take_i32(&mut b).ok_or(W)?;
        let value = if len < 0 {
            None
        } else {
            let len = usize::try_from(len).map_err(|_| W)?;
            if b.len() < len {
                return Err(W);
            }
            let (v, rest) = b.split_at(len);
            b = rest;
            Some(v)
        };
        out.push((format, value));
    }
    Ok(out)
}

/// Execute: the portal name and row limit.
pub fn execute(body: &[u8]) -> Result<(&[u8], i32), Malformed> {
    let mut b = body;
    let portal = take_cstr(&mut b).ok_or(Malformed("Execute"))?;
    let max_rows = take_i32(&mut b).ok_or(Malformed("Execute"))?;
    if !b.is_empty() {
        return Err(Malformed("Execute"));
    }
    Ok((portal, max_rows))
}

/// Describe or Close: `S` (statement) or `P` (portal), and the name.
pub fn target<'a>(body: &'a [u8], what: &'static str) -> Result<(u8, &'a [u8]), Malformed> {
    let (&kind, mut b) = body.split_first().ok_or(Malformed(what))?;
    if kind != b'S' && kind != b'P' {
        return Err(Malformed(what));
    }
    let name = take_cstr(&mut b).ok_or(Malformed(what))?;
    if !b.is_empty() {
        return Err(Malformed(what));
    }
    Ok((kind, name))
}

/// PasswordMessage: the password (here, an access token).
pub fn password(body: &[u8]) -> Result<&[u8], Malformed> {
    let mut b = body;
    let pw = take_cstr(&mut b).ok_or(Malformed("PasswordMessage"))?;
    if !b.is_empty() {
        return Err(Malformed("PasswordMessage"));
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_with_types() {
        let f = encode_parse(b"s1", b"SELECT $1", &[0, 1, 0, 0, 0, 23]);
        let p = parse(f.body()).unwrap();
        assert_eq!((p.name, p.query), (&b"s1"[..], &b"SELECT $1"[..]));
        assert_eq!(p.param_types, &[0, 1, 0, 0, 0, 23]);
        let again = encode_parse(p.name, p.query, p.param_types);
        assert_eq!(again, f);
    }

    #[test]
    fn bind_parameters_come_with_their_formats() {
        // portal "", statement "s", one format (binary), 3 params: 'ab', NULL, 4 bytes.
        let mut body = b"\0s\0\0\x01\0\x01\0\x03".to_vec();
        body.extend_from_slice(&[
            0, 0, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 7,
        ]);
        body.extend_from_slice(&[0, 0]);
        let p = bind_parameters(&body).unwrap();
        assert_eq!(
            p,
            vec![
                (1, Some(&b"ab"[..])),
                (1, None),
                (1, Some(&[0, 0, 0, 7][..]))
            ]
        );
        // Text by default; a value longer than the message is malformed.
        assert_eq!(
            bind_parameters(b"\0\0\0\0\0\x01\0\0\0\x01x").unwrap(),
            vec![(0, Some(&b"x"[..]))]
        );
        assert!(bind_parameters(b"\0\0\0\0\0\x01\0\0\0\x09x").is_err());
        assert!(bind_parameters(b"\0\0\0\x02\0\0\0\0\0\x01").is_err());
    }

    #[test]
    fn truncated_messages_are_malformed() {
        assert!(parse(b"s1\0SELECT 1\0\0").is_err(), "count cut short");
        assert!(
            parse(b"s1\0SELECT 1\0\0\x02\0\0\0\x17").is_err(),
            "fewer types than counted"
        );
        assert!(parse(b"s1\0SELECT 1\0\xff\xff").is_err(), "negative count");
        assert!(query(b"SELECT 1").is_err());
        assert!(query(b"SELECT 1\0trailing").is_err());
        assert!(execute(b"p\0\0\0").is_err());
        assert!(target(b"X\0", "Describe").is_err());
        assert_eq!(target(b"Pcur\0", "Close").unwrap(), (b'P', &b"cur"[..]));
        assert_eq!(bind(b"\0s1\0rest").unwrap(), (&b""[..], &b"s1"[..]));
    }
}

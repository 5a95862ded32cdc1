//! The few server and client messages masking reads and rewrites:
//! RowDescription, DataRow, the result formats of a Bind, and the fields of
//! ErrorResponse / NoticeResponse. Pure parsers of untrusted bytes (fuzzed):
//! every length is checked, and a malformed message is an error, never a
//! panic.

/// A message masking cannot read: the statement's results are not forwarded
/// as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0} message")]
pub struct Malformed(pub &'static str);

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name as the server reports it.
    pub name: String,
    /// Source table OID (0 when computed).
    pub table_oid: u32,
    /// Attribute number in that table.
    pub column: i16,
    /// Declared type OID.
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
}

fn take<'a>(b: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
    if b.len() < n {
        return Err(Malformed(what));
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn i16_at(b: &mut &[u8], what: &'static str) -> Result<i16, Malformed> {
    let s = take(b, 2, what)?;
    Ok(i16::from_be_bytes([s[0], s[1]]))
}

fn i32_at(b: &mut &[u8], what: &'static str) -> Result<i32, Malformed> {
    let s = take(b, 4, what)?;
    Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn cstr<'a>(b: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], Malformed> {
    let end = b.iter().position(|&c| c == 0).ok_or(Malformed(what))?;
    let s = &b[..end];
    *b = &b[end + 1..];
    Ok(s)
}

/// Parses a RowDescription body.
pub fn row_description(body: &[u8]) -> Result<Vec<Field>, Malformed> {
    const W: &str = "RowDescription";
    let mut b = body;
    let n = i16_at(&mut b, W)?;
    let n = usize::try_from(n).map_err(|_| Malformed(W))?;
    let mut out = Vec::with_capacity(n.min(1600));
    for _ in 0..n {
        let name = String::from_utf8_lossy(cstr(&mut b, W)?).into_owned();
        let table_oid = i32_at(&mut b, W)? as u32;
        let column = i16_at(&mut b, W)?;
        let type_oid = i32_at(&mut b, W)? as u32;
        let _size = i16_at(&mut b, W)?;
        let _modifier = i32_at(&mut b, W)?;
        let format = i16_at(&mut b, W)?;
        out.push(Field {
            name,
            table_oid,
            column,
            type_oid,
            format,
        });
    }
    if !b.is_empty() {
        return Err(Malformed(W));
    }
    Ok(out)
}

/// The values of a DataRow body (`None` for NULL).
pub fn data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, Malformed> {
    const W: &str = "DataRow";
    let mut b = body;
    let n = i16_at(&mut b, W)?;
    let n = usize::try_from(n).map_err(|_| Malformed(W))?;
    let mut out = Vec::with_capacity(n.min(1600));
    for _ in 0..n {
        let len = i32_at(&mut b, W)?;
        if len < 0 {
            out.push(None);
        } else {
            let len = usize::try_from(len).map_err(|_| Malformed(W))?;
            out.push(Some(take(&mut b, len, W)?));
        }
    }
    if !b.is_empty() {
        return Err(Malformed(W));
    }
    Ok(out)
}

/// The values of a DataRow body read one at a time, each with where it
/// starts in the body, without collecting them: the masking loop copies the
/// untouched prefix of a row in one piece.
#[derive(Debug, Clone)]
pub struct DataRowValues<'a> {
    body: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> DataRowValues<'a> {
    /// Reads the column count.
    pub fn new(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut b = body;
        let n = i16_at(&mut b, "DataRow")?;
        let left = usize::try_from(n).map_err(|_| Malformed("DataRow"))?;
        Ok(Self { body, at: 2, left })
    }

    /// The number of values still to read.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Whether every value has been read.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The next value (`None` for NULL) and the offset in the body where
    /// its length field starts.
    pub fn next_value(&mut self) -> Result<(usize, Option<&'a [u8]>), Malformed> {
        const W: &str = "DataRow";
        if self.left == 0 {
            return Err(Malformed(W));
        }
        let start = self.at;
        let mut b = self.body.get(start..).ok_or(Malformed(W))?;
        let len = i32_at(&mut b, W)?;
        self.left -= 1;
        if len < 0 {
            self.at += 4;
            return Ok((start, None));
        }
        let len = usize::try_from(len).map_err(|_| Malformed(W))?;
        let v = take(&mut b, len, W)?;
        self.at += 4 + len;
        Ok((start, Some(v)))
    }

    /// Checks that nothing follows the last value.
    pub fn finish(&self) -> Result<(), Malformed> {
        if self.left == 0 && self.at == self.body.len() {
            Ok(())
        } else {
            Err(Malformed("DataRow"))
        }
    }
}

/// Encodes a DataRow body.
pub fn encode_data_row<'a>(values: impl ExactSizeIterator<Item = Option<&'a [u8]>>) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(
        &i16::try_from(values.len())
            .unwrap_or(i16::MAX)
            .to_be_bytes(),
    );
    for v in values {
        match v {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                body.extend_from_slice(&i32::try_from(v.len()).unwrap_or(i32::MAX).to_be_bytes());
                body.extend_from_slice(v);
            }
        }
    }
    body
}

/// The result-column format codes of a Bind body: empty for all text, one
/// for all columns, or one per column.
pub fn bind_result_formats(body: &[u8]) -> Result<Vec<i16>, Malformed> {
    const W: &str = "Bind";
    let mut b = body;
    cstr(&mut b, W)?;
    cstr(&mut b, W)?;
    let nf = usize::try_from(i16_at(&mut b, W)?).map_err(|_| Malformed(W))?;
    take(&mut b, nf * 2, W)?;
    let np = usize::try_from(i16_at(&mut b, W)?).map_err(|_| Malformed(W))?;
    for _ in 0..np {
        let len = i32_at(&mut b, W)?;
        if len > 0 {
            take(&mut b, usize::try_from(len).map_err(|_| Malformed(W))?, W)?;
        }
    }
    let nr = usize::try_from(i16_at(&mut b, W)?).map_err(|_| Malformed(W))?;
    let mut out = Vec::with_capacity(nr.min(1600));
    for _ in 0..nr {
        out.push(i16_at(&mut b, W)?);
    }
    if !b.is_empty() {
        return Err(Malformed(W));
    }
    Ok(out)
}

/// The format of result column `i` under Bind format codes.
pub fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

/// The fields of an ErrorResponse or NoticeResponse body, in order.
pub fn notice_fields(body: &[u8]) -> Result<Vec<(u8, &[u8])>, Malformed> {
    const W: &str = "ErrorResponse";
    let mut b = body;
    let mut out = Vec::new();
    loop {
        let code = *take(&mut b, 1, W)?.first().ok_or(Malformed(W))?;
        if code == 0 {
            break;
        }
        out.push((code, cstr(&mut b, W)?));
    }
    if !b.is_empty() {
        return Err(Malformed(W));
    }
    Ok(out)
}

/// Encodes ErrorResponse / NoticeResponse fields.
pub fn encode_notice_fields<'a>(fields: impl Iterator<Item = (u8, &'a [u8])>) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    for (code, v) in fields {
        body.push(code);
        body.extend(v.iter().copied().filter(|&c| c != 0));
        body.push(0);
    }
    body.push(0);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(fields: &[(&str, u32, i16)]) -> Vec<u8> {
        let mut b = (fields.len() as i16).to_be_bytes().to_vec();
        for (name, ty, fmt) in fields {
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&7u32.to_be_bytes());
            b.extend_from_slice(&2i16.to_be_bytes());
            b.extend_from_slice(&ty.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.extend_from_slice(&fmt.to_be_bytes());
        }
        b
    }

    #[test]
    fn row_description_round_trip_and_truncation() {
        let body = rd(&[("id", 23, 0), ("ssn", 25, 1)]);
        let f = row_description(&body).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].name, "ssn");
        assert_eq!(f[1].type_oid, 25);
        assert_eq!(f[1].format, 1);
        assert_eq!(f[0].table_oid, 7);
        for cut in 0..body.len() {
            assert!(row_description(&body[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn data_rows_round_trip() {
        let values = [Some(&b"1"[..]), None, Some(&b""[..])];
        let body = encode_data_row(values.iter().copied());
        assert_eq!(data_row(&body).unwrap(), values);
        for cut in 0..body.len() {
            assert!(data_row(&body[..cut]).is_err(), "{cut}");
        }
        let mut long = body;
        long.push(0);
        assert!(data_row(&long).is_err());
    }

    #[test]
    fn data_row_values_agree_with_data_row() {
        let values = [Some(&b"1"[..]), None, Some(&b"abc"[..])];
        let body = encode_data_row(values.iter().copied());
        let mut it = DataRowValues::new(&body).unwrap();
        assert_eq!(it.len(), 3);
        assert_eq!(it.next_value().unwrap(), (2, Some(&b"1"[..])));
        assert_eq!(it.next_value().unwrap(), (7, None));
        assert_eq!(it.next_value().unwrap(), (11, Some(&b"abc"[..])));
        assert!(it.finish().is_ok());
        assert!(it.next_value().is_err());
        for cut in 0..body.len() {
            let ok = DataRowValues::new(&body[..cut]).and_then(|mut it| {
                while !it.is_empty() {
                    it.next_value()?;
                }
                it.finish()
            });
            assert!(ok.is_err(), "{cut}");
        }
    }

    #[test]
    fn bind_formats() {
        let mut b = b"p\0s\0".to_vec();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.push(b'7');
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        assert_eq!(bind_result_formats(&b).unwrap(), [0, 1]);
        assert_eq!(format_of(&[0, 1], 1), 1);
        assert_eq!(format_of(&[1], 5), 1);
        assert_eq!(format_of(&[], 5), 0);
        assert!(bind_result_formats(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn notice_fields_round_trip() {
        let body =
            encode_notice_fields([(b'S', &b"ERROR"[..]), (b'M', &b"bad \"x\""[..])].into_iter());
        let f = notice_fields(&body).unwrap();
        assert_eq!(f, [(b'S', &b"ERROR"[..]), (b'M', &b"bad \"x\""[..])]);
        assert!(notice_fields(&body[..body.len() - 1]).is_err());
    }
}

//! Messages the server sends: the ones the gateway builds itself, and the
//! few it reads (errors, command tags, authentication requests).

use super::frame::Frame;
use super::{take_cstr, take_i32};

/// Builds an ErrorResponse (or, with `notice`, a NoticeResponse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    /// ERROR, FATAL or NOTICE.
    pub severity: &'a str,
    /// SQLSTATE.
    pub code: &'a str,
    /// Primary message.
    pub message: &'a str,
    /// Optional detail.
    pub detail: Option<&'a str>,
    /// Optional hint.
    pub hint: Option<&'a str>,
}

impl ErrorFields<'_> {
    fn encode(&self, tag: u8) -> Frame {
        let mut body = Vec::with_capacity(64 + self.message.len());
        let mut field = |t: u8, v: &str| {
            body.push(t);
            // A NUL inside a field would end it early and desynchronise the
            // client's parser; drop any.
            body.extend(v.bytes().filter(|&b| b != 0));
            body.push(0);
        };
        field(b'S', self.severity);
        field(b'V', self.severity);
        field(b'C', self.code);
        field(b'M', self.message);
        if let Some(d) = self.detail {
            field(b'D', d);
        }
        if let Some(h) = self.hint {
            field(b'H', h);
        }
        body.push(0);
        Frame::new(tag, &body)
    }

    /// As an ErrorResponse (`tag` E) or NoticeResponse (N).
    pub fn encode_for(&self, tag: u8) -> Frame {
        self.encode(if tag == b'N' { b'N' } else { b'E' })
    }

    /// As an ErrorResponse.
    pub fn error(&self) -> Frame {
        self.encode(b'E')
    }

    /// As a NoticeResponse.
    pub fn notice(&self) -> Frame {
        self.encode(b'N')
    }
}

/// Reads one field (`C` for SQLSTATE, `M` for message, ...) of an
/// ErrorResponse or NoticeResponse body.
pub fn error_field(body: &[u8], wanted: u8) -> Option<&[u8]> {
    let mut b = body;
    loop {
        let (&t, rest) = b.split_first()?;
        if t == 0 {
            return None;
        }
        b = rest;
        let value = take_cstr(&mut b)?;
        if t == wanted {
            return Some(value);
        }
    }
}

/// The row count at the end of a CommandComplete tag (`SELECT 5`, `INSERT 0 5`).
pub fn command_rows(body: &[u8]) -> u64 {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    tag.rsplit(|&b| b == b' ')
        .next()
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An authentication request from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    /// Authentication succeeded.
    Ok,
    /// Send the password in clear.
    Cleartext,
    /// Send an MD5 hash with this salt.
    Md5([u8; 4]),
    /// SASL: the mechanisms offered.
    Sasl(Vec<&'a [u8]>),
    /// SASL continuation data.
    SaslContinue(&'a [u8]),
    /// SASL final data.
    SaslFinal(&'a [u8]),
    /// Anything else (Kerberos, GSS, SSPI): unsupported.
    Other(i32),
}

/// Parses an Authentication message body.
pub fn auth_request(body: &[u8]) -> Option<AuthRequest<'_>> {
    let mut b = body;
    let code = take_i32(&mut b)?;
    Some(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => AuthRequest::Md5(b.get(..4)?.try_into().ok()?),
        10 => {
            let mut mechs = Vec::new();
            loop {
                let m = take_cstr(&mut b)?;
                if m.is_empty() {
                    break;
                }
                mechs.push(m);
            }
            AuthRequest::Sasl(mechs)
        }
        11 => AuthRequest::SaslContinue(b),
        12 => AuthRequest::SaslFinal(b),
        other => AuthRequest::Other(other),
    })
}

/// AuthenticationOk.
pub fn auth_ok() -> Frame {
    Frame::new(b'R', &0i32.to_be_bytes())
}

/// AuthenticationCleartextPassword: how the gateway asks for the token.
pub fn auth_cleartext() -> Frame {
    Frame::new(b'R', &3i32.to_be_bytes())
}

/// ParameterStatus.
pub fn parameter_status(name: &str, value: &str) -> Frame {
    let mut body = Vec::with_capacity(name.len() + value.len() + 2);
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body.extend_from_slice(value.as_bytes());
    body.push(0);
    Frame::new(b'S', &body)
}

/// Parses ParameterStatus into name and value.
pub fn parse_parameter_status(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut b = body;
    let name = take_cstr(&mut b)?;
    let value = take_cstr(&mut b)?;
    Some((name, value))
}

/// BackendKeyData.
pub fn backend_key_data(pid: i32, secret: i32) -> Frame {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&pid.to_be_bytes());
    body[4..].copy_from_slice(&secret.to_be_bytes());
    Frame::new(b'K', &body)
}

/// ReadyForQuery with transaction status `I`, `T` or `E`.
pub fn ready_for_query(status: u8) -> Frame {
    Frame::new(b'Z', &[status])
}

/// NegotiateProtocolVersion: the newest minor version supported, and the
/// protocol options not recognised.
pub fn negotiate_protocol_version(minor: i32, unsupported: &[&str]) -> Frame {
    let mut body = minor.to_be_bytes().to_vec();
    body.extend_from_slice(&i32::try_from(unsupported.len()).unwrap_or(0).to_be_bytes());
    for o in unsupported {
        body.extend_from_slice(o.as_bytes());
        body.push(0);
    }
    Frame::new(b'v', &body)
}

/// A NotificationResponse sent by backend `from`, re-addressed as sent by
/// `to`; `None` if the frame is not one or comes from another backend. A
/// client compares the sender with the process id it was given at startup
/// (the gateway's own) to recognise its own notifications.
pub fn renumber_notification(frame: &Frame, from: i32, to: i32) -> Option<Frame> {
    let body = frame.body();
    if frame.tag() != b'A' || body.len() < 4 || body[..4] != from.to_be_bytes() {
        return None;
    }
    let mut out = body.to_vec();
    out[..4].copy_from_slice(&to.to_be_bytes());
    Some(Frame::new(b'A', &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_round_trip() {
        let f = ErrorFields {
            severity: "ERROR",
            code: "42501",
            message: "denied\0sneaky",
            detail: None,
            hint: Some("ask"),
        }
        .error();
        assert_eq!(f.tag(), b'E');
        assert_eq!(error_field(f.body(), b'C'), Some(&b"42501"[..]));
        assert_eq!(error_field(f.body(), b'M'), Some(&b"deniedsneaky"[..]));
        assert_eq!(error_field(f.body(), b'H'), Some(&b"ask"[..]));
        assert_eq!(error_field(f.body(), b'D'), None);
    }

    #[test]
    fn notifications_from_the_own_backend_are_renumbered() {
        let mut body = 77i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"chan\0hello\0");
        let f = Frame::new(b'A', &body);
        let r = renumber_notification(&f, 77, 5).unwrap();
        assert_eq!(&r.body()[..4], &5i32.to_be_bytes());
        assert_eq!(&r.body()[4..], b"chan\0hello\0");
        assert!(
            renumber_notification(&f, 78, 5).is_none(),
            "another session's notification keeps its sender"
        );
        assert!(renumber_notification(&Frame::new(b'N', &body), 77, 5).is_none());
    }

    #[test]
    fn command_tags_give_row_counts() {
        assert_eq!(command_rows(b"SELECT 5\0"), 5);
        assert_eq!(command_rows(b"INSERT 0 12\0"), 12);
        assert_eq!(command_rows(b"BEGIN\0"), 0);
    }

    #[test]
    fn auth_requests_parse() {
        assert_eq!(auth_request(&0i32.to_be_bytes()), Some(AuthRequest::Ok));
        assert_eq!(
            auth_request(&[0, 0, 0, 5, 1, 2, 3, 4]),
            Some(AuthRequest::Md5([1, 2, 3, 4]))
        );
        assert_eq!(auth_request(&[0, 0, 0, 5, 1]), None);
        let sasl = b"\0\0\0\x0aSCRAM-SHA-256\0\0";
        assert_eq!(
            auth_request(sasl),
            Some(AuthRequest::Sasl(vec![&b"SCRAM-SHA-256"[..]]))
        );
    }
}

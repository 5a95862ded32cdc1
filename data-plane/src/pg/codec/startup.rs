//! The untagged first packet of a connection: SSL/GSS negotiation, cancel
//! requests and the startup message.

use bytes::{Buf as _, BytesMut};

use super::take_cstr;

/// Protocol 3.0.
pub const PROTOCOL_3_0: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// The largest startup packet accepted, as the server itself enforces.
pub const MAX_STARTUP_LEN: u32 = 10_000;

/// A decoded first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption (declined).
    GssEncRequest,
    /// Cancel the query running on the connection with this key.
    Cancel {
        /// Process id from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData.
        secret: Vec<u8>,
    },
    /// Open a session.
    Startup {
        /// Requested protocol major version.
        major: u16,
        /// Requested protocol minor version.
        minor: u16,
        /// Parameters in the order sent (`user`, `database`, ...).
        params: Vec<(String, String)>,
    },
}

/// Why a first packet is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    /// Length out of bounds.
    #[error("invalid startup packet length {0}")]
    Length(u32),
    /// Unknown request code or protocol version.
    #[error("unsupported frontend protocol {0}.{1}: the gateway supports 3.0")]
    Protocol(u16, u16),
    /// Malformed parameter list.
    #[error("malformed startup packet")]
    Malformed,
}

/// Decodes the first packet from the front of `buf`, if it has fully arrived.
pub fn decode(buf: &mut BytesMut) -> Result<Option<StartupPacket>, StartupError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(StartupError::Length(len));
    }
    if buf.len() < len as usize {
        return Ok(None);
    }
    let packet = buf.split_to(len as usize);
    let mut body = &packet[4..];
    let code = body.get_u32();
    let parsed = match code {
        SSL_REQUEST if body.is_empty() => StartupPacket::SslRequest,
        GSSENC_REQUEST if body.is_empty() => StartupPacket::GssEncRequest,
        CANCEL_REQUEST if (8..=260).contains(&body.len()) => StartupPacket::Cancel {
            pid: body.get_i32(),
            secret: body.to_vec(),
        },
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => return Err(StartupError::Malformed),
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != 3 {
                return Err(StartupError::Protocol(major, minor));
            }
            StartupPacket::Startup {
                major,
                minor,
                params: params(body)?,
            }
        }
    };
    Ok(Some(parsed))
}

fn params(mut body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut out = Vec::new();
    loop {
        let name = take_cstr(&mut body).ok_or(StartupError::Malformed)?;
        if name.is_empty() {
            break;
        }
        let value = take_cstr(&mut body).ok_or(StartupError::Malformed)?;
        let name = std::str::from_utf8(name).map_err(|_| StartupError::Malformed)?;
        let value = std::str::from_utf8(value).map_err(|_| StartupError::Malformed)?;
        out.push((name.to_owned(), value.to_owned()));
    }
    if !body.is_empty() {
        return Err(StartupError::Malformed);
    }
    Ok(out)
}

/// Encodes a startup message (to the upstream server).
pub fn encode_startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    with_length(&body)
}

/// Encodes an SSLRequest.
pub fn encode_ssl_request() -> Vec<u8> {
    with_length(&SSL_REQUEST.to_be_bytes())
}

/// Encodes a CancelRequest.
pub fn encode_cancel(pid: i32, secret: &[u8]) -> Vec<u8> {
    let mut body = CANCEL_REQUEST.to_be_bytes().to_vec();
    body.extend_from_slice(&pid.to_be_bytes());
    body.extend_from_slice(secret);
    with_length(&body)
}

fn with_length(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len() + 4)
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trips() {
        let mut buf =
            BytesMut::from(&encode_startup(&[("user", "agent"), ("database", "demo")])[..]);
        let p = decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            p,
            StartupPacket::Startup {
                major: 3,
                minor: 0,
                params: vec![
                    ("user".into(), "agent".into()),
                    ("database".into(), "demo".into())
                ],
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn ssl_and_cancel_requests_decode() {
        let mut buf = BytesMut::from(&encode_ssl_request()[..]);
        assert_eq!(decode(&mut buf).unwrap(), Some(StartupPacket::SslRequest));
        let mut buf = BytesMut::from(&encode_cancel(42, &7i32.to_be_bytes())[..]);
        assert_eq!(
            decode(&mut buf).unwrap(),
            Some(StartupPacket::Cancel {
                pid: 42,
                secret: 7i32.to_be_bytes().to_vec()
            })
        );
    }

    #[test]
    fn bad_packets_are_refused() {
        let mut huge = BytesMut::from(&[0u8, 1, 0, 0][..]);
        assert_eq!(decode(&mut huge), Err(StartupError::Length(65536)));
        let mut tiny = BytesMut::from(&[0u8, 0, 0, 4][..]);
        assert_eq!(decode(&mut tiny), Err(StartupError::Length(4)));
        let mut v2 = BytesMut::from(&with_length(&0x0002_0000u32.to_be_bytes())[..]);
        assert_eq!(decode(&mut v2), Err(StartupError::Protocol(2, 0)));
        let mut unterminated = BytesMut::from(&with_length(b"\x00\x03\x00\x00user\x00agent")[..]);
        assert_eq!(decode(&mut unterminated), Err(StartupError::Malformed));
        let mut half = BytesMut::from(&encode_startup(&[("user", "a")])[..6]);
        assert_eq!(decode(&mut half), Ok(None));
    }
}

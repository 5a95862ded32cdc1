//! Framing of regular (tagged) messages: a type byte, a 4-byte length that
//! counts itself, then the body.

use bytes::{Buf as _, Bytes, BytesMut};

/// Why a byte stream is not a valid message sequence.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below its own size.
    #[error("invalid message length {0}")]
    BadLength(u32),
    /// The message is larger than this connection accepts.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// One complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The whole message: tag, length and body, ready to forward unchanged.
    pub raw: Bytes,
}

impl Frame {
    /// The type byte.
    pub fn tag(&self) -> u8 {
        self.raw[0]
    }

    /// The body, after the tag and length.
    pub fn body(&self) -> &[u8] {
        &self.raw[5..]
    }

    /// Builds a frame from a tag and body.
    pub fn new(tag: u8, body: &[u8]) -> Self {
        let mut raw = BytesMut::with_capacity(body.len() + 5);
        raw.extend_from_slice(&[tag]);
        raw.extend_from_slice(
            &u32::try_from(body.len() + 4)
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        raw.extend_from_slice(body);
        Self { raw: raw.freeze() }
    }
}

/// Splits one complete message off the front of `buf`, if `buf` holds one.
/// Checks the declared length before waiting for the body, so an oversized
/// message is refused as soon as its header arrives.
pub fn decode(buf: &mut BytesMut, limit: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength(len));
    }
    let size = len as usize + 1;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    Ok(Some(Frame {
        raw: buf.split_to(size).freeze(),
    }))
}

/// Whether `buf` holds the start of a message that has not fully arrived.
pub fn partial(buf: &BytesMut) -> bool {
    buf.has_remaining()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_exactly_at_their_length() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&Frame::new(b'Q', b"SELECT 1\0").raw);
        buf.extend_from_slice(&Frame::new(b'S', b"").raw[..3]);
        let f = decode(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.tag(), b'Q');
        assert_eq!(f.body(), b"SELECT 1\0");
        assert_eq!(decode(&mut buf, 1024).unwrap(), None, "half a header waits");
        buf.extend_from_slice(&[0, 4]);
        assert_eq!(decode(&mut buf, 1024).unwrap().unwrap().tag(), b'S');
        assert!(!partial(&buf));
    }

    #[test]
    fn bad_and_oversized_lengths_are_errors() {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::BadLength(3)));
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0, 0, 0][..]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Err(FrameError::TooLarge { .. })
        ));
    }
}

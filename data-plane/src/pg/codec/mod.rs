//! The Postgres wire codec: message framing with hard size limits, parsing of
//! the few messages the gateway must understand, and building of the ones it
//! must send. Everything else passes through as opaque frames.
//!
//! Pure: no I/O here, so the parsers can be fuzzed directly.

pub mod backend;
pub mod frame;
pub mod frontend;
pub mod startup;

pub use frame::{Frame, FrameError};

/// Reads a NUL-terminated string from the front of `buf`, advancing it.
pub(crate) fn take_cstr<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = buf.iter().position(|&b| b == 0)?;
    let (s, rest) = buf.split_at(end);
    *buf = &rest[1..];
    Some(s)
}

/// Reads a big-endian i16 from the front of `buf`, advancing it.
pub(crate) fn take_i16(buf: &mut &[u8]) -> Option<i16> {
    let (head, rest) = buf.split_first_chunk::<2>()?;
    *buf = rest;
    Some(i16::from_be_bytes(*head))
}

/// Reads a big-endian i32 from the front of `buf`, advancing it.
pub(crate) fn take_i32(buf: &mut &[u8]) -> Option<i32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(i32::from_be_bytes(*head))
}

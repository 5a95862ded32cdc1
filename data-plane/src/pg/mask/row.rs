//! A DataRow written straight into its outgoing frame.

use bytes::Bytes;

use crate::pg::codec::frame::Frame;

/// A rewritten DataRow, begun where the first changed value starts.
pub(super) struct RowWriter {
    raw: Vec<u8>,
}

impl RowWriter {
    /// A row whose body starts as `prefix`: the column count and the values
    /// before the first changed one, copied as they came.
    pub(super) fn with_prefix(prefix: &[u8]) -> Self {
        let mut raw = Vec::with_capacity(5 + prefix.len() + 256);
        raw.extend_from_slice(&[b'D', 0, 0, 0, 0]);
        raw.extend_from_slice(prefix);
        Self { raw }
    }

    /// Appends a value (`None` for NULL).
    pub(super) fn push(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.raw.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
                self.raw.extend_from_slice(&len.to_be_bytes());
                self.raw.extend_from_slice(v);
            }
        }
    }

    /// Appends the value `write` produces in place; it returns `false` for
    /// NULL.
    pub(super) fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) {
        let at = self.raw.len();
        self.raw.extend_from_slice(&[0; 4]);
        if write(&mut self.raw) {
            let len = i32::try_from(self.raw.len() - at - 4).unwrap_or(i32::MAX);
            self.raw[at..at + 4].copy_from_slice(&len.to_be_bytes());
        } else {
            self.raw.truncate(at);
            self.push(None);
        }
    }

    /// The finished frame.
    pub(super) fn finish(mut self) -> Frame {
        let len = u32::try_from(self.raw.len() - 1).unwrap_or(u32::MAX);
        self.raw[1..5].copy_from_slice(&len.to_be_bytes());
        Frame {
            raw: Bytes::from(self.raw),
        }
    }
}

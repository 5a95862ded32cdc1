//! Streaming detector scan of text bodies. The body is scanned in windows;
//! the last part of each window is held back and scanned again with what
//! follows, so a value split across chunks is still found. A find that
//! reaches into the held-back part is held back whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::json::HttpMaskError;
use super::response::Plan;

/// Bytes gathered before a scan.
const WINDOW: usize = 64 * 1024;

/// Bytes held back after each scan: longer than any value the detectors
/// look for (a PEM key's find runs to the end of the window, so it is held
/// back whole).
const OVERLAP: usize = 4 * 1024;

/// The most a single find may hold back before it is masked as far as it
/// goes.
const MAX_HELD: usize = 16 * 1024 * 1024;

/// Scans a text body chunk by chunk with the detectors.
#[derive(Debug)]
pub struct TextMasker {
    plan: Arc<Plan>,
    counts: BTreeMap<String, u64>,
    buf: Vec<u8>,
    failed: bool,
}

impl TextMasker {
    pub(crate) fn new(plan: Arc<Plan>) -> Self {
        let failed = plan.closed;
        Self {
            plan,
            counts: BTreeMap::new(),
            buf: Vec::new(),
            failed,
        }
    }

    /// Scans the next chunk, appending what may be sent to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), HttpMaskError> {
        if self.failed {
            return Err(HttpMaskError::Closed);
        }
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= WINDOW {
            self.scan(self.buf.len() >= MAX_HELD, out);
        }
        Ok(())
    }

    /// Ends the body, appending what is left to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), HttpMaskError> {
        if self.failed {
            return Err(HttpMaskError::Closed);
        }
        self.scan(true, out);
        Ok(())
    }

    /// Values replaced so far, by detector (`detector:<name>`).
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Sends what is safe of the buffer: all of it when `all`, otherwise
    /// all but the held-back part.
    fn scan(&mut self, all: bool, out: &mut Vec<u8>) {
        // (start, end, detector set, detector)
        let mut spans: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (set, m) in self.plan.detectors.iter().enumerate() {
            spans.extend(
                m.detectors
                    .spans(&self.buf)
                    .into_iter()
                    .map(|(s, e, d)| (s, e, set, d)),
            );
        }
        spans.sort_unstable();
        let mut cut = if all {
            self.buf.len()
        } else {
            self.buf.len().saturating_sub(OVERLAP)
        };
        // A find that crosses the cut moves it back to the find's start;
        // repeated, since an earlier find may overlap that one.
        let mut moved = true;
        while moved {
            moved = false;
            for &(s, e, _, _) in &spans {
                if s < cut && e > cut {
                    cut = s;
                    moved = true;
                }
            }
        }
        let mut at = 0;
        for &(s, e, set, d) in &spans {
            if e > cut {
                continue;
            }
            if e <= at {
                continue;
            }
            let s = s.max(at);
            out.extend_from_slice(&self.buf[at..s]);
            let name = self.plan.detectors[set].detectors.name(d);
            out.push(b'[');
            out.extend_from_slice(name.as_bytes());
            out.push(b']');
            *self.counts.entry(format!("detector:{name}")).or_insert(0) += 1;
            at = e;
        }
        if at < cut {
            out.extend_from_slice(&self.buf[at..cut]);
        }
        self.buf.drain(..cut);
    }
}

//! Streaming JSON masking: a small incremental tokenizer that tracks where
//! each value sits, masks the values policies name and runs the detectors
//! on every string (and number) value. Chunks may split anywhere, inside
//! strings and escapes included. A value that may be masked is held back
//! whole until its end, so no byte of it is ever sent unmasked; everything
//! else streams through as received. Object keys are not scanned by
//! detectors (they name fields, they do not carry data).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::jsonpath::{ElemRef, Progress, Selectors};
use super::response::Plan;
use crate::mask::Mask;
use crate::mask::detect::Hit;
use crate::mask::rules::REDACTED;

/// The deepest nesting accepted.
pub const MAX_DEPTH: usize = 128;

/// The longest string held back for masking, detection or as a key.
pub const MAX_STRING: usize = 16 * 1024 * 1024;

/// The longest number accepted.
const MAX_NUMBER: usize = 1024;

/// Why a body cannot be masked; the node then fails the response closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpMaskError {
    /// Not JSON.
    #[error("the response is not valid JSON ({0})")]
    Invalid(&'static str),
    /// Nested deeper than the limit.
    #[error("the response nests JSON deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A single string (or number) longer than the limit.
    #[error("the response has a JSON value longer than the limit")]
    TooLong,
    /// The body ended inside a value.
    #[error("the response ended inside a JSON value")]
    Truncated,
    /// The plan refuses every body.
    #[error("the response is refused")]
    Closed,
}

/// A container being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Object,
    /// The index of the element being read.
    Array(u64),
}

/// Inside a string: where an escape is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    /// Hex digits of `\u` still to come.
    Unicode(u8),
}

/// What the tokenizer expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value (start of document, after `:` or `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,`, a closing bracket, or the end.
    After,
    /// Inside a string.
    Str { key: bool, held: bool, esc: Esc },
    /// Inside a number (held in `buf`).
    Num,
    /// Inside `true`, `false` or `null`: the word and how much is read.
    Lit(&'static [u8], u8),
    /// The document is complete: only whitespace may follow.
    End,
    /// An error was returned; every later call returns it again.
    Failed,
}

/// Masks a JSON body chunk by chunk.
#[derive(Debug)]
pub struct JsonMasker {
    plan: Arc<Plan>,
    counts: BTreeMap<String, u64>,
    state: State,
    stack: Vec<Frame>,
    /// How far each mask's selector matches the path, one row of
    /// `plan.masks.len()` per depth (row 0 the root, row `d` the element
    /// being read at depth `d`): each element costs one step per selector
    /// when it is entered, instead of a walk of the whole path per value.
    /// Rows inside a masked container are not kept up to date, and rows
    /// deeper than the current depth are left over (kept, so the vector
    /// grows only with the deepest nesting seen).
    progress: Vec<Progress>,
    /// The held-back value or key (raw bytes, quotes included for strings).
    buf: Vec<u8>,
    /// Whether the string held in `buf` has an escape (else it need not be
    /// decoded).
    escaped: bool,
    /// The mask of the value being read, if any.
    mask: Option<usize>,
    /// Depth at which a masked container started: nothing is sent until
    /// it closes, then its replacement.
    suppress: Option<(usize, usize)>,
    hits: Vec<Hit>,
    /// Scratch for a count's name.
    key: String,
    /// Scratch for a masked value before it is encoded.
    scratch: Vec<u8>,
    /// Scratch for the detectors' spans in a value.
    spans: Vec<(usize, usize, usize)>,
    /// Values masked per rule since the counts were last brought up to
    /// date: a counter per value instead of a map look-up per value.
    rule_counts: Vec<u64>,
    /// Finds per detector of each entry of `plan.detectors`, likewise.
    detector_counts: Vec<Vec<u64>>,
    /// The error returned, once one was.
    error: Option<HttpMaskError>,
}

impl JsonMasker {
    pub(crate) fn new(plan: Arc<Plan>) -> Self {
        let (state, error) = if plan.closed {
            (State::Failed, Some(HttpMaskError::Closed))
        } else {
            (State::Value, None)
        };
        let progress = vec![Selectors::START; plan.masks.len()];
        let rule_counts = vec![0; plan.masks.len()];
        let detector_counts = plan
            .detectors
            .iter()
            .map(|m| vec![0; m.detectors.len()])
            .collect();
        Self {
            plan,
            counts: BTreeMap::new(),
            state,
            stack: Vec::new(),
            progress,
            buf: Vec::new(),
            escaped: false,
            mask: None,
            suppress: None,
            hits: Vec::new(),
            key: String::new(),
            scratch: Vec::new(),
            spans: Vec::new(),
            rule_counts,
            detector_counts,
            error,
        }
    }

    /// Adds the pending per-rule and per-detector counters to `counts`.
    fn flush_counts(&mut self) {
        for (rule, n) in self.plan.masks.iter().zip(&mut self.rule_counts) {
            if *n > 0 {
                add(&mut self.counts, &rule.counter, std::mem::take(n));
            }
        }
        for (m, ns) in self.plan.detectors.iter().zip(&mut self.detector_counts) {
            for (i, n) in ns.iter_mut().enumerate() {
                if *n > 0 {
                    self.key.clear();
                    self.key.push_str("detector:");
                    self.key.push_str(m.detectors.name(i));
                    add(&mut self.counts, &self.key, std::mem::take(n));
                }
            }
        }
    }

    fn fail(&mut self, e: HttpMaskError) -> HttpMaskError {
        self.state = State::Failed;
        self.error = Some(e.clone());
        e
    }

    fn failed(&self) -> Option<HttpMaskError> {
        match self.state {
            State::Failed => Some(self.error.clone().unwrap_or(HttpMaskError::Closed)),
            _ => None,
        }
    }

    /// Masks the next chunk, appending what may be sent to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), HttpMaskError> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        let mut sink = Sink::new(out, chunk);
        let r = self.run(chunk, &mut sink);
        sink.flush();
        self.flush_counts();
        r.map_err(|e| self.fail(e))
    }

    /// Ends the body, appending what is left to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), HttpMaskError> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        if self.state == State::Num {
            let mut sink = Sink::new(out, &[]);
            let r = self.end_number(&mut sink);
            sink.flush();
            self.flush_counts();
            r.map_err(|e| self.fail(e))?;
        }
        match self.state {
            State::End => Ok(()),
            _ => Err(self.fail(HttpMaskError::Truncated)),
        }
    }

    /// Values masked so far, by rule (`json:<policy>:<path>`) and detector
    /// (`detector:<name>`), up to date after every [`JsonMasker::push`] and
    /// [`JsonMasker::finish`].
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Writes `bytes` (not the chunk's own) unless a masked container is
    /// being read.
    fn emit(&self, out: &mut Sink<'_>, bytes: &[u8]) {
        if self.suppress.is_none() {
            out.out().extend_from_slice(bytes);
        }
    }

    /// Sends the chunk's bytes `a..b` on unchanged unless a masked
    /// container is being read.
    fn pass(&self, out: &mut Sink<'_>, a: usize, b: usize) {
        if self.suppress.is_none() {
            out.pass(a, b);
        }
    }

    fn run(&mut self, chunk: &[u8], out: &mut Sink<'_>) -> Result<(), HttpMaskError> {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.state {
                State::Str { key, held, esc } => {
                    i = self.string(chunk, i, key, held, esc, out)?;
                    continue;
                }
                State::Num => {
                    let start = i;
                    while i < chunk.len()
                        && matches!(chunk[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    {
                        i += 1;
                    }
                    if self.buf.len() + (i - start) > MAX_NUMBER {
                        return Err(HttpMaskError::TooLong);
                    }
                    if i < chunk.len() && start > 0 && self.buf.len() == 1 {
                        // Begun at `start - 1` (by `value`) and ended in
                        // this chunk: read in place, without a copy.
                        self.number_done(&chunk[start - 1..i], Some((start - 1, i)), out)?;
                        continue;
                    }
                    self.buf.extend_from_slice(&chunk[start..i]);
                    if i < chunk.len() {
                        // The byte ends the number and is read again.
                        self.end_number(out)?;
                    }
                    continue;
                }
                State::Lit(word, at) => {
                    // As much of the rest of the word as the chunk holds, at once.
                    let rest = word.get(usize::from(at)..).unwrap_or(&[]);
                    let n = rest.len().min(chunk.len() - i);
                    if chunk.get(i..i + n) != rest.get(..n) {
                        return Err(HttpMaskError::Invalid("bad literal"));
                    }
                    let start = i;
                    i += n;
                    if n == rest.len() {
                        // Begun at `start - 1` (by `value`) in this chunk?
                        let span = (at == 1 && start > 0).then(|| (start - 1, i));
                        self.end_literal(word, span, out);
                    } else {
                        self.state =
                            State::Lit(word, at.saturating_add(u8::try_from(n).unwrap_or(u8::MAX)));
                    }
                    continue;
                }
                State::Failed => return Err(HttpMaskError::Closed),
                _ => {}
            }
            // Between tokens: whitespace (usually one space after `:` and
            // `,`) is passed here, without a trip round the loop.
            let mut b = b;
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                let start = i;
                i += 1;
                while i < chunk.len() && matches!(chunk[i], b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                self.pass(out, start, i);
                match chunk.get(i) {
                    Some(&next) => b = next,
                    None => break,
                }
            }
            i += 1;
            match self.state {
                State::ArrayFirst if b == b']' => self.close(false, i - 1, out)?,
                State::Value | State::ArrayFirst => {
                    self.value(b, i - 1, out)?;
                    if let State::Str { key, held, esc } = self.state {
                        // Straight into the string, without a trip round
                        // the loop.
                        i = self.string(chunk, i, key, held, esc, out)?;
                    }
                }
                State::ObjectFirst if b == b'}' => self.close(true, i - 1, out)?,
                State::ObjectFirst | State::Key if b == b'"' => {
                    // A key is held only to match the mask selectors.
                    let held = self.suppress.is_none() && !self.plan.masks.is_empty();
                    if held {
                        self.buf.clear();
                        self.buf.push(b);
                        self.escaped = false;
                    } else {
                        self.pass(out, i - 1, i);
                    }
                    i = self.string(chunk, i, true, held, Esc::None, out)?;
                }
                State::Colon if b == b':' => {
                    self.pass(out, i - 1, i);
                    self.state = State::Value;
                }
                State::After => self.after(b, i - 1, out)?,
                State::End => return Err(HttpMaskError::Invalid("data after the document")),
                _ => return Err(HttpMaskError::Invalid("unexpected character")),
            }
        }
        Ok(())
    }

    /// The mask of the value at the current path: the most restrictive of
    /// the rules selecting it.
    fn mask_here(&self) -> Option<usize> {
        let n = self.plan.masks.len();
        if self.suppress.is_some() || n == 0 {
            return None;
        }
        let at = self.stack.len() * n;
        let row = self.progress.get(at..at + n)?;
        let mut best: Option<usize> = None;
        for (i, (m, p)) in self.plan.masks.iter().zip(row).enumerate() {
            if self.plan.selectors.accepts(i, *p)
                && best.is_none_or(|b| rank(&m.mask) < rank(&self.plan.masks[b].mask))
            {
                best = Some(i);
            }
        }
        best
    }

    /// The element at the current depth is now `e`: its row of
    /// [`JsonMasker::progress`] follows from its parent's.
    fn enter(&mut self, e: ElemRef<'_>) {
        let n = self.plan.masks.len();
        let depth = self.stack.len();
        if n == 0 || depth == 0 || self.suppress.is_some() {
            return;
        }
        let (parents, row) = self.progress.split_at_mut(depth * n);
        let parent = &parents[(depth - 1) * n..];
        self.plan.selectors.advance(parent, e, row);
    }

    fn detects(&self) -> bool {
        self.suppress.is_none() && !self.plan.detectors.is_empty()
    }

    /// The first byte of a value, at `at` in the chunk.
    fn value(&mut self, b: u8, at: usize, out: &mut Sink<'_>) -> Result<(), HttpMaskError> {
        self.mask = self.mask_here();
        match b {
            b'"' => {
                let held = self.mask.is_some() || self.detects();
                if held {
                    self.buf.clear();
                    self.buf.push(b);
                    self.escaped = false;
                } else {
                    self.pass(out, at, at + 1);
                }
                self.state = State::Str {
                    key: false,
                    held,
                    esc: Esc::None,
                };
            }
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(HttpMaskError::TooDeep);
                }
                if let Some(m) = self.mask {
                    self.suppress = Some((self.stack.len(), m));
                }
                self.pass(out, at, at + 1);
                let n = self.plan.masks.len();
                let rows = (self.stack.len() + 2) * n;
                if self.progress.len() < rows {
                    self.progress.resize(rows, 0);
                }
                if b == b'{' {
                    self.stack.push(Frame::Object);
                    self.state = State::ObjectFirst;
                } else {
                    self.stack.push(Frame::Array(0));
                    self.enter(ElemRef::Index(0));
                    self.state = State::ArrayFirst;
                }
            }
            b'-' | b'0'..=b'9' => {
                self.buf.clear();
                self.buf.push(b);
                self.state = State::Num;
            }
            b't' | b'f' | b'n' => {
                let word: &'static [u8] = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.state = State::Lit(word, 1);
            }
            _ => return Err(HttpMaskError::Invalid("expected a value")),
        }
        Ok(())
    }

    /// After a value: a separator, a closing bracket or the end (`b`, at
    /// `at` in the chunk).
    fn after(&mut self, b: u8, at: usize, out: &mut Sink<'_>) -> Result<(), HttpMaskError> {
        match (b, self.stack.last()) {
            (b',', Some(Frame::Object)) => {
                self.pass(out, at, at + 1);
                self.state = State::Key;
            }
            (b',', Some(&Frame::Array(i))) => {
                self.pass(out, at, at + 1);
                if let Some(Frame::Array(n)) = self.stack.last_mut() {
                    *n = i + 1;
                }
                self.enter(ElemRef::Index(i + 1));
                self.state = State::Value;
            }
            (b']', Some(Frame::Array(_))) => self.close(false, at, out)?,
            (b'}', Some(Frame::Object)) => self.close(true, at, out)?,
            _ => return Err(HttpMaskError::Invalid("unexpected character after a value")),
        }
        Ok(())
    }

    /// Closes the innermost container (an object or an array; its bracket
    /// at `at` in the chunk).
    fn close(&mut self, object: bool, at: usize, out: &mut Sink<'_>) -> Result<(), HttpMaskError> {
        match self.stack.pop() {
            Some(Frame::Object) if object => {}
            Some(Frame::Array(_)) if !object => {}
            _ => return Err(HttpMaskError::Invalid("mismatched bracket")),
        }
        self.pass(out, at, at + 1);
        if let Some((depth, m)) = self.suppress
            && depth == self.stack.len()
        {
            self.suppress = None;
            let rule = &self.plan.masks[m];
            if rule.mask == Mask::Null {
                out.out().extend_from_slice(b"null");
            } else {
                encode(REDACTED.as_bytes(), out.out());
            }
            self.rule_counts[m] += 1;
        }
        self.value_done();
        Ok(())
    }

    /// A value is complete: what follows depends on where it was.
    fn value_done(&mut self) {
        self.mask = None;
        self.state = if self.stack.is_empty() {
            State::End
        } else {
            State::After
        };
    }

    /// Reads string bytes from `i`; returns where it stopped.
    fn string(
        &mut self,
        chunk: &[u8],
        mut i: usize,
        key: bool,
        held: bool,
        mut esc: Esc,
        out: &mut Sink<'_>,
    ) -> Result<usize, HttpMaskError> {
        let start = i;
        let mut closed = false;
        while i < chunk.len() {
            if esc == Esc::None {
                // Plain string bytes, the bulk of most bodies, in a tight loop.
                i = plain_run(chunk, i);
                if i == chunk.len() {
                    break;
                }
            }
            let b = chunk[i];
            match esc {
                Esc::None => match b {
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        esc = Esc::Backslash;
                        self.escaped = true;
                    }
                    0..=0x1f => {
                        return Err(HttpMaskError::Invalid("control character in a string"));
                    }
                    _ => {}
                },
                Esc::Backslash => {
                    esc = match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Esc::None,
                        b'u' => Esc::Unicode(4),
                        _ => return Err(HttpMaskError::Invalid("bad escape")),
                    }
                }
                Esc::Unicode(n) => {
                    if !b.is_ascii_hexdigit() {
                        return Err(HttpMaskError::Invalid("bad \\u escape"));
                    }
                    esc = if n == 1 {
                        Esc::None
                    } else {
                        Esc::Unicode(n - 1)
                    };
                }
            }
            i += 1;
        }
        let run = &chunk[start..i];
        if held {
            if self.buf.len() + run.len() > MAX_STRING {
                return Err(HttpMaskError::TooLong);
            }
            if closed && self.buf.len() == 1 {
                // All of it after the opening quote is in this chunk: read
                // in place, without a copy into `buf`.
                // With its opening quote when that is in this chunk too.
                let span = (start > 0).then(|| (start - 1, i));
                self.end_held(key, &run[..run.len() - 1], span, out);
                return Ok(i);
            }
            self.buf.extend_from_slice(run);
        } else {
            self.pass(out, start, i);
        }
        if !closed {
            self.state = State::Str { key, held, esc };
            return Ok(i);
        }
        if held {
            let raw = std::mem::take(&mut self.buf);
            self.end_held(key, &raw[1..raw.len() - 1], None, out);
            self.buf = raw;
            self.buf.clear();
        } else if key {
            self.state = State::Colon;
        } else {
            self.value_done();
        }
        Ok(i)
    }

    /// A held key or string value is complete; `inner` is what was between
    /// its quotes, and `span` where all of it, quotes included, is in the
    /// chunk (`None`: not all of it is).
    fn end_held(
        &mut self,
        key: bool,
        inner: &[u8],
        span: Option<(usize, usize)>,
        out: &mut Sink<'_>,
    ) {
        let decoded = decode(inner, self.escaped);
        let unchanged = |out: &mut Sink<'_>| match span {
            Some((a, b)) => out.pass(a, b),
            None => quoted(inner, out.out()),
        };
        if key {
            self.enter(ElemRef::Key(&decoded));
            unchanged(out);
            self.state = State::Colon;
            return;
        }
        if let Some(m) = self.mask {
            self.apply_mask(m, &decoded, out);
        } else if !self.detect(&decoded, self.escaped, out) {
            unchanged(out);
        }
        self.value_done();
    }

    fn apply_mask(&mut self, m: usize, value: &[u8], out: &mut Sink<'_>) {
        let out = out.out();
        let rule = &self.plan.masks[m];
        // Written in place between quotes; re-encoded only if the masked
        // text needs an escape.
        let at = out.len();
        out.push(b'"');
        if rule.mask.write_to(value, out) {
            let text = &out[at + 1..];
            if text.is_ascii() && plain_run(text, 0) == text.len() {
                out.push(b'"');
            } else {
                self.scratch.clear();
                self.scratch.extend_from_slice(text);
                out.truncate(at);
                encode(&self.scratch, out);
            }
        } else {
            out.truncate(at);
            out.extend_from_slice(b"null");
        }
        self.rule_counts[m] += 1;
    }

    /// A value no mask selects (a string's contents, `escaped` if it had an
    /// escape, or a number) through the detectors: written as a string
    /// with their finds replaced; `false` (nothing written) when they found
    /// nothing.
    fn detect(&mut self, value: &[u8], escaped: bool, out: &mut Sink<'_>) -> bool {
        match self.scrub_plain(value, escaped, out) {
            Some(written) => written,
            None => self.scrub_encoded(value, out),
        }
    }

    /// A string value without escapes, in ASCII, under one set of
    /// detectors whose names need no escape (the usual case): written at
    /// once with the finds replaced, since the rest of it is already valid
    /// between quotes. Whether something was written (`false`: nothing
    /// found), or `None` when the value is not such a value.
    fn scrub_plain(&mut self, value: &[u8], escaped: bool, out: &mut Sink<'_>) -> Option<bool> {
        let [m] = self.plan.detectors.as_slice() else {
            return None;
        };
        if self.suppress.is_some() || escaped || !m.detectors.names_plain() {
            return None;
        }
        let mut spans = std::mem::take(&mut self.spans);
        m.detectors.spans_into(value, &mut spans);
        if spans.is_empty() {
            self.spans = spans;
            return Some(false);
        }
        if !value.is_ascii() {
            // Rare: found in a value that `encode` may have to rewrite.
            self.spans = spans;
            return None;
        }
        let out = out.out();
        out.reserve(value.len() + 2);
        out.push(b'"');
        self.hits.clear();
        m.detectors.replace(value, &spans, out, &mut self.hits);
        out.push(b'"');
        self.spans = spans;
        let counts = &mut self.detector_counts[0];
        for h in &self.hits {
            if let Some(n) = counts.get_mut(h.detector) {
                *n += 1;
            }
        }
        Some(true)
    }

    /// Any other string value through the detectors, re-encoded when they
    /// found something; `false` (nothing written) when they did not.
    fn scrub_encoded(&mut self, value: &[u8], out: &mut Sink<'_>) -> bool {
        match self.scrub(value) {
            Some(v) => {
                encode(&v, out.out());
                true
            }
            None => false,
        }
    }

    /// The value with every detector's finds replaced, or `None` if none
    /// found anything.
    fn scrub(&mut self, value: &[u8]) -> Option<Vec<u8>> {
        if !self.detects() {
            return None;
        }
        let mut current: Option<Vec<u8>> = None;
        for (m, counts) in self.plan.detectors.iter().zip(&mut self.detector_counts) {
            self.hits.clear();
            let input = current.as_deref().unwrap_or(value);
            if let Some(v) = m.detectors.scrub(input, &mut self.hits) {
                for h in &self.hits {
                    if let Some(n) = counts.get_mut(h.detector) {
                        *n += 1;
                    }
                }
                current = Some(v);
            }
        }
        current
    }

    fn end_number(&mut self, out: &mut Sink<'_>) -> Result<(), HttpMaskError> {
        let raw = std::mem::take(&mut self.buf);
        let r = self.number_done(&raw, None, out);
        self.buf = raw;
        self.buf.clear();
        r
    }

    /// A number is complete: `raw` is all of it, at `span` in the chunk if
    /// all of it is there.
    fn number_done(
        &mut self,
        raw: &[u8],
        span: Option<(usize, usize)>,
        out: &mut Sink<'_>,
    ) -> Result<(), HttpMaskError> {
        if !valid_number(raw) {
            return Err(HttpMaskError::Invalid("bad number"));
        }
        self.end_scalar(raw, span, out);
        self.value_done();
        Ok(())
    }

    /// `true`, `false` or `null` (`word`) is complete, at `span` in the
    /// chunk if all of it is there.
    fn end_literal(&mut self, word: &[u8], span: Option<(usize, usize)>, out: &mut Sink<'_>) {
        match (self.mask, span) {
            // Null has nothing to hide; booleans carry no data to detect.
            (Some(_), _) if word == b"null" => out.out().extend_from_slice(b"null"),
            (Some(m), _) => self.apply_mask(m, word, out),
            (None, Some((a, b))) => self.pass(out, a, b),
            (None, None) => self.emit(out, word),
        }
        self.value_done();
    }

    /// A number: masked to the mask's form (a string, or null), or scanned
    /// by the detectors (a card number sent as a number); `span` as for
    /// [`JsonMasker::number_done`].
    fn end_scalar(&mut self, raw: &[u8], span: Option<(usize, usize)>, out: &mut Sink<'_>) {
        if let Some(m) = self.mask {
            self.apply_mask(m, raw, out);
        } else if !self.detect(raw, false, out) {
            match span {
                Some((a, b)) => self.pass(out, a, b),
                None => self.emit(out, raw),
            }
        }
    }
}

/// Where a chunk's output goes: bytes of the chunk sent on unchanged (most
/// of a body) are only noted as a range, and copied in one piece when
/// something else has to be written or the chunk ends, instead of a copy
/// per token.
struct Sink<'a> {
    out: &'a mut Vec<u8>,
    chunk: &'a [u8],
    /// The chunk's bytes `from..to` are to be sent next.
    from: usize,
    to: usize,
}

impl<'a> Sink<'a> {
    fn new(out: &'a mut Vec<u8>, chunk: &'a [u8]) -> Self {
        Self {
            out,
            chunk,
            from: 0,
            to: 0,
        }
    }

    /// The chunk's bytes `a..b` are sent next.
    fn pass(&mut self, a: usize, b: usize) {
        if a != self.to {
            self.flush();
            self.from = a;
        }
        self.to = b;
    }

    /// Copies the noted bytes.
    fn flush(&mut self) {
        if let Some(bytes) = self.chunk.get(self.from..self.to) {
            self.out.extend_from_slice(bytes);
        }
        self.from = self.to;
    }

    /// The output, to write something that is not the chunk's own bytes.
    fn out(&mut self) -> &mut Vec<u8> {
        self.flush();
        self.out
    }
}

/// Where the run of plain string bytes (no quote, backslash or control
/// character) that starts at `i` ends: eight bytes at a time, the last few
/// padded with plain bytes, and the first special byte of a block found
/// from the block's bits rather than byte by byte.
fn plain_run(chunk: &[u8], mut i: usize) -> usize {
    loop {
        let rest = chunk.get(i..).unwrap_or(&[]);
        let mut eight = [b'a'; 8];
        let n = if let Some(block) = rest.get(..8) {
            eight.copy_from_slice(block);
            8
        } else if rest.is_empty() {
            return i;
        } else {
            eight[..rest.len()].copy_from_slice(rest);
            rest.len()
        };
        let special = special_bytes(u64::from_le_bytes(eight));
        if special != 0 {
            // The lowest flag is exact (see `special_bytes`).
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += n;
    }
}

/// The high bit of each byte of `x` (little-endian) that is a quote, a
/// backslash or a control character, and possibly of bytes above the first
/// such byte (a borrow carries into them); the lowest bit set is always the
/// first special byte, and none is set when no byte is special.
fn special_bytes(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    control | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')))
}

/// Writes a JSON string's raw contents back between quotes.
fn quoted(inner: &[u8], out: &mut Vec<u8>) {
    out.reserve(inner.len() + 2);
    out.push(b'"');
    out.extend_from_slice(inner);
    out.push(b'"');
}

/// Counts `n` more under `name`, allocating only for a name not seen yet.
fn add(counts: &mut BTreeMap<String, u64>, name: &str, n: u64) {
    match counts.get_mut(name) {
        Some(c) => *c += n,
        None => {
            counts.insert(name.to_owned(), n);
        }
    }
}

/// Lower is more restrictive: the mask kept when several select a value.
fn rank(m: &Mask) -> u8 {
    match m {
        Mask::Null => 0,
        Mask::Redact => 1,
        Mask::Hash(_) => 2,
        Mask::Email => 3,
        Mask::KeepFirst(_) | Mask::KeepLast(_) => 4,
    }
}

/// The JSON number grammar.
fn valid_number(s: &[u8]) -> bool {
    let mut i = 0;
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return false,
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        let d = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == d {
            return false;
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let d = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == d {
            return false;
        }
    }
    i == s.len()
}

fn hex4(s: &[u8]) -> Option<u32> {
    let t = std::str::from_utf8(s.get(..4)?).ok()?;
    u32::from_str_radix(t, 16).ok()
}

/// The bytes a JSON string's contents (between the quotes, already checked)
/// stand for. A lone surrogate becomes U+FFFD. `escaped` is whether the
/// reader saw a backslash in it: without one there is nothing to decode.
fn decode(inner: &[u8], escaped: bool) -> Cow<'_, [u8]> {
    if !escaped {
        return Cow::Borrowed(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let e = inner.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        let c = match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = hex4(inner.get(i..).unwrap_or(&[])).unwrap_or(0xfffd);
                i += 4;
                let mut code = hi;
                if (0xd800..0xdc00).contains(&hi)
                    && inner.get(i) == Some(&b'\\')
                    && inner.get(i + 1) == Some(&b'u')
                    && let Some(lo) = hex4(inner.get(i + 2..).unwrap_or(&[]))
                    && (0xdc00..0xe000).contains(&lo)
                {
                    code = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
                let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                continue;
            }
            other => other,
        };
        out.push(c);
    }
    Cow::Owned(out)
}

/// A JSON string for `value` (bytes that are not UTF-8 become U+FFFD).
/// Runs of bytes that need no escape are copied whole.
fn encode(value: &[u8], out: &mut Vec<u8>) {
    // Printable ASCII without a quote or backslash, the usual masked value,
    // goes out as it is.
    if value.is_ascii() && plain_run(value, 0) == value.len() {
        out.reserve(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value);
        out.push(b'"');
        return;
    }
    let text = utf8(value);
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `value` as text, borrowed when it is valid UTF-8 (the usual case,
/// checked faster than the lossy conversion does).
fn utf8(value: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        let scalar = |c: &[u8], mut i: usize| {
            while i < c.len() && c[i] >= 0x20 && c[i] != b'"' && c[i] != b'\\' {
                i += 1;
            }
            i
        };
        // Every special byte (and a harmless one) at every place of a run
        // longer than two blocks, from every start, with UTF-8 around.
        let base = "abcdé漢xyz0123456789-ABCDEFGHIJ".as_bytes();
        for special in [b'"', b'\\', 0x00, 0x01, 0x1f, b' ', 0x7f, 0xff] {
            for at in 0..base.len() {
                let mut c = base.to_vec();
                c[at] = special;
                for start in 0..c.len() {
                    assert_eq!(
                        plain_run(&c, start),
                        scalar(&c, start),
                        "{special:#x} at {at} from {start}"
                    );
                }
            }
        }
        assert_eq!(plain_run(b"", 0), 0);
        assert_eq!(plain_run(b"abc", 3), 3);
    }

    #[test]
    fn encoded_strings_read_back_as_the_same_text() {
        let cases: &[&[u8]] = &[
            b"",
            b"plain",
            b"quote \" and backslash \\ and slash /",
            b"controls \x00\x01\x1f\n\r\t end",
            "unicode é 漢 🎉".as_bytes(),
            b"not utf-8 \xff\xfe here",
        ];
        for v in cases {
            let mut out = Vec::new();
            encode(v, &mut out);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, String::from_utf8_lossy(v), "{out:?}");
            // And decoding the escaped form gives the same bytes back.
            let inner = &out[1..out.len() - 1];
            assert_eq!(&*decode(inner, inner.contains(&b'\\')), back.as_bytes());
        }
        let mut out = Vec::new();
        encode(b"\x1f", &mut out);
        assert_eq!(out, b"\"\\u001f\"");
    }
}

//! Masking results as they stream to the client. The policy side decides
//! which output columns are masked (a [`MaskPlan`] per statement); this
//! module applies it to each message as it passes, one at a time, never
//! holding more than the message at hand:
//!
//! - RowDescription fixes, per column, what happens to its values;
//! - each DataRow is rewritten value by value (text format, or binary for
//!   types that carry text; any other binary value that must be masked
//!   becomes NULL);
//! - detectors scan every text value of every row, and every error and
//!   notice text; errors of statements that touch a masked column also lose
//!   their quoted literals (a cast error quotes the value it failed on).

pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sluice_policy::mask::detect::Hit;
use sluice_policy::mask::{Lineage, MaskPlan, OutCol, Taint};

use self::wire::{Field, Malformed};
use crate::pg::codec::frame::Frame;

/// A RowDescription seen for a prepared statement or portal, shared between
/// the client side (which records what to expect) and the server side
/// (which fills it in).
pub type DescSlot = Arc<Mutex<Option<Arc<Vec<Field>>>>>;

/// What happens to the values of one result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnAction {
    /// Forwarded; scanned by detectors when it is text.
    Pass { scan: bool },
    /// Masked with a column rule.
    Mask {
        taint: Taint,
        /// The value travels as text (or a binary form that is text).
        text: bool,
    },
}

/// Type OIDs whose binary form is their text: text, varchar, bpchar, name,
/// unknown, json.
const TEXT_TYPES: [u32; 6] = [25, 1043, 1042, 19, 705, 114];

/// Masking state of one execution (a Query's statements, or an Execute).
#[derive(Debug, Clone)]
pub struct ExecMask {
    plan: Arc<MaskPlan>,
    /// Index of the statement whose results are passing (a Query may hold
    /// several).
    statement: usize,
    /// Per column, once known.
    actions: Option<Vec<ColumnAction>>,
    /// For an Execute: the descriptions of its statement and portal, and
    /// the portal's result formats.
    described: Option<(DescSlot, DescSlot, Arc<[i16]>)>,
    /// Values masked, per rule or detector.
    pub counts: BTreeMap<String, u64>,
}

impl ExecMask {
    /// For a Query message.
    pub fn simple(plan: Arc<MaskPlan>) -> Self {
        Self {
            plan,
            statement: 0,
            actions: None,
            described: None,
            counts: BTreeMap::new(),
        }
    }

    /// For an Execute of a portal.
    pub fn execute(
        plan: Arc<MaskPlan>,
        statement: DescSlot,
        portal: DescSlot,
        formats: Arc<[i16]>,
    ) -> Self {
        Self {
            plan,
            statement: 0,
            actions: None,
            described: Some((statement, portal, formats)),
            counts: BTreeMap::new(),
        }
    }

    /// The plan.
    pub fn plan(&self) -> &Arc<MaskPlan> {
        &self.plan
    }

    fn lineage(&self) -> Option<&Lineage> {
        self.plan.statements.get(self.statement)
    }

    /// A RowDescription passed: its columns fix the actions.
    pub fn on_row_description(&mut self, body: &[u8]) {
        self.actions = Some(match wire::row_description(body) {
            Ok(fields) => self.actions_for(&fields, &[]),
            Err(_) => Vec::new(),
        });
    }

    /// A CommandComplete passed: the next statement of a Query begins.
    pub fn on_complete(&mut self) {
        self.statement += 1;
        self.actions = None;
    }

    fn actions_for(&self, fields: &[Field], formats: &[i16]) -> Vec<ColumnAction> {
        let names: Vec<Option<&str>> = fields.iter().map(|f| Some(f.name.as_str())).collect();
        let taints = taints(self.lineage(), &names);
        fields
            .iter()
            .zip(taints)
            .enumerate()
            .map(|(i, (f, t))| {
                let format = if formats.is_empty() {
                    f.format
                } else {
                    wire::format_of(formats, i)
                };
                let text = format == 0 || TEXT_TYPES.contains(&f.type_oid);
                match t {
                    Taint::Clear => ColumnAction::Pass { scan: text },
                    _ => ColumnAction::Mask { taint: t, text },
                }
            })
            .collect()
    }

    /// The actions of an Execute, from the portal's or statement's
    /// description; without either, from the row's width alone.
    fn execute_actions(&self, width: usize) -> Vec<ColumnAction> {
        if let Some((stmt, portal, formats)) = &self.described {
            let portal = portal.lock().ok().and_then(|g| g.clone());
            if let Some(f) = portal {
                return self.actions_for(&f, &[]);
            }
            let stmt = stmt.lock().ok().and_then(|g| g.clone());
            if let Some(f) = stmt {
                return self.actions_for(&f, formats);
            }
            let names = vec![None; width];
            // Formats unknown per type: binary values are treated as
            // non-text, so masked ones become NULL.
            return taints(self.lineage(), &names)
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    let text = wire::format_of(formats, i) == 0;
                    match t {
                        Taint::Clear => ColumnAction::Pass { scan: text },
                        _ => ColumnAction::Mask { taint: t, text },
                    }
                })
                .collect();
        }
        let names = vec![None; width];
        taints(self.lineage(), &names)
            .into_iter()
            .map(|t| match t {
                Taint::Clear => ColumnAction::Pass { scan: true },
                _ => ColumnAction::Mask {
                    taint: t,
                    text: true,
                },
            })
            .collect()
    }

    /// A DataRow: the frame to send instead, or `None` to send it unchanged.
    pub fn on_data_row(&mut self, body: &[u8]) -> Option<Frame> {
        let values = match wire::data_row(body) {
            Ok(v) => v,
            Err(Malformed(_)) => {
                // Cannot be read, so cannot be checked: send an empty row.
                *self.counts.entry("malformed_row".to_owned()).or_default() += 1;
                return Some(Frame::new(b'D', &0i16.to_be_bytes()));
            }
        };
        if self
            .actions
            .as_ref()
            .is_none_or(|a| a.len() != values.len())
        {
            self.actions = Some(self.execute_actions(values.len()));
        }
        let actions = self.actions.take().unwrap_or_default();
        let out = self.rewrite(&values, &actions);
        self.actions = Some(actions);
        out
    }

    fn rewrite(&mut self, values: &[Option<&[u8]>], actions: &[ColumnAction]) -> Option<Frame> {
        let set = Arc::clone(&self.plan.set);
        // The new row, begun only once a value changes: rows with nothing
        // to mask (the common case) are forwarded as they came.
        let mut out: Option<RowWriter> = None;
        let mut hits: Vec<Hit> = Vec::new();
        for (i, (v, a)) in values.iter().zip(actions).enumerate() {
            let new: Option<Option<Vec<u8>>> = match (v, a) {
                (None, _) | (Some(_), ColumnAction::Pass { scan: false }) => None,
                (Some(v), ColumnAction::Pass { scan: true }) => {
                    let mut scrubbed: Option<Vec<u8>> = None;
                    for (_, m) in &set.policies {
                        let input = scrubbed.as_deref().unwrap_or(v);
                        if let Some(s) = m.detectors.scrub(input, &mut hits) {
                            scrubbed = Some(s);
                        }
                        for h in hits.drain(..) {
                            *self
                                .counts
                                .entry(format!("detector:{}", m.detectors.name(h.detector)))
                                .or_default() += 1;
                        }
                    }
                    scrubbed.map(Some)
                }
                (Some(v), ColumnAction::Mask { taint, text }) => {
                    let (key, masked) = match taint {
                        Taint::Column(r) => {
                            (set.counter_name(*r), set.mask(*r).and_then(|m| m.apply(v)))
                        }
                        _ => (
                            "computed".to_owned(),
                            Some(sluice_policy::mask::rules::REDACTED.as_bytes().to_vec()),
                        ),
                    };
                    *self.counts.entry(key).or_default() += 1;
                    // A binary value of a type that cannot hold the mask
                    // goes out as NULL.
                    Some(if *text { masked } else { None })
                }
            };
            match (new, out.as_mut()) {
                (Some(n), Some(w)) => w.push(n.as_deref()),
                (Some(n), None) => {
                    let mut w = RowWriter::new(values.len());
                    values[..i].iter().for_each(|v| w.push(*v));
                    w.push(n.as_deref());
                    out = Some(w);
                }
                (None, Some(w)) => w.push(*v),
                (None, None) => {}
            }
        }
        out.map(RowWriter::finish)
    }

    /// An ErrorResponse or NoticeResponse: the frame to send instead.
    pub fn on_notice(&mut self, tag: u8, body: &[u8]) -> Option<Frame> {
        scrub_notice(&self.plan, tag, body, &mut self.counts)
    }
}

/// A DataRow written straight into its outgoing frame.
struct RowWriter {
    raw: bytes::BytesMut,
}

impl RowWriter {
    fn new(width: usize) -> Self {
        let mut raw = bytes::BytesMut::with_capacity(64 + width * 32);
        raw.extend_from_slice(&[b'D', 0, 0, 0, 0]);
        raw.extend_from_slice(&i16::try_from(width).unwrap_or(i16::MAX).to_be_bytes());
        Self { raw }
    }

    fn push(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.raw.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
                self.raw.extend_from_slice(&len.to_be_bytes());
                self.raw.extend_from_slice(v);
            }
        }
    }

    fn finish(mut self) -> Frame {
        let len = u32::try_from(self.raw.len() - 1).unwrap_or(u32::MAX);
        self.raw[1..5].copy_from_slice(&len.to_be_bytes());
        Frame {
            raw: self.raw.freeze(),
        }
    }
}

/// Scrubs an error or notice: detectors over its texts, and for a statement
/// that touches a masked column, quoted literals removed.
pub fn scrub_notice(
    plan: &MaskPlan,
    tag: u8,
    body: &[u8],
    counts: &mut BTreeMap<String, u64>,
) -> Option<Frame> {
    let Ok(fields) = wire::notice_fields(body) else {
        return Some(
            crate::pg::codec::backend::ErrorFields {
                severity: "ERROR",
                code: "XX000",
                message: "the server sent an error the gateway could not read",
                detail: None,
                hint: None,
            }
            .encode_for(tag),
        );
    };
    let strict = plan.touches_masked();
    let mut changed = false;
    let mut out: Vec<(u8, Vec<u8>)> = Vec::with_capacity(fields.len());
    for (code, v) in fields {
        let mut v = v.to_vec();
        if matches!(code, b'M' | b'D' | b'H' | b'W' | b'q') {
            if strict && let Some(s) = strip_literals(&v) {
                v = s;
                changed = true;
                *counts.entry("error_literal".to_owned()).or_default() += 1;
            }
            let mut hits = Vec::new();
            for (_, m) in &plan.set.policies {
                if let Some(s) = m.detectors.scrub(&v, &mut hits) {
                    v = s;
                    changed = true;
                }
                for h in &hits {
                    *counts
                        .entry(format!("detector:{}", m.detectors.name(h.detector)))
                        .or_default() += 1;
                }
                hits.clear();
            }
        }
        out.push((code, v));
    }
    if !changed {
        return None;
    }
    let body = wire::encode_notice_fields(out.iter().map(|(c, v)| (*c, v.as_slice())));
    Some(Frame::new(tag, &body))
}

/// Replaces the inside of every `"..."` and `=(...)` with `****`: how the
/// server quotes values in messages such as `invalid input syntax for type
/// integer: "123-45-6789"` or `Key (ssn)=(123-45-6789) already exists`.
fn strip_literals(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let mut changed = false;
    let mut i = 0;
    while i < v.len() {
        let c = v[i];
        let close = if c == b'"' {
            Some(b'"')
        } else if c == b'(' && i > 0 && v[i - 1] == b'=' {
            Some(b')')
        } else {
            None
        };
        if let Some(close) = close
            && let Some(end) = v[i + 1..].iter().position(|&x| x == close)
        {
            out.push(c);
            out.extend_from_slice(sluice_policy::mask::rules::REDACTED.as_bytes());
            out.push(close);
            changed = true;
            i += end + 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

/// Per column, its taint: the lineage's items aligned with the described
/// columns. Items before the first star and after the last are placed by
/// position; columns in between are matched by name against the stars (and
/// take every item between stars, failing closed). A shape that does not fit
/// masks everything.
fn taints(lineage: Option<&Lineage>, names: &[Option<&str>]) -> Vec<Taint> {
    let n = names.len();
    let Some(l) = lineage else {
        return vec![Taint::Derived; n];
    };
    let cols = &l.columns;
    let first_span = cols.iter().position(|c| matches!(c, OutCol::Span(_)));
    let Some(first) = first_span else {
        if cols.len() != n {
            return vec![Taint::Derived; n];
        }
        return cols
            .iter()
            .map(|c| match c {
                OutCol::One(t) => *t,
                OutCol::Span(_) => Taint::Derived,
            })
            .collect();
    };
    let last = cols
        .iter()
        .rposition(|c| matches!(c, OutCol::Span(_)))
        .unwrap_or(first);
    let prefix = first;
    let suffix = cols.len() - last - 1;
    if prefix + suffix > n {
        return vec![Taint::Derived; n];
    }
    let one = |c: &OutCol| match c {
        OutCol::One(t) => *t,
        OutCol::Span(_) => Taint::Derived,
    };
    let middle_ones = cols[first..=last]
        .iter()
        .filter_map(|c| match c {
            OutCol::One(t) => Some(*t),
            OutCol::Span(_) => None,
        })
        .fold(Taint::Clear, Taint::union);
    let spans: Vec<_> = cols[first..=last]
        .iter()
        .filter_map(|c| match c {
            OutCol::Span(s) => Some(s),
            OutCol::One(_) => None,
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        if i < prefix {
            out.push(one(&cols[i]));
        } else if i >= n - suffix {
            out.push(one(&cols[cols.len() - (n - i)]));
        } else {
            let mut t = middle_ones;
            for s in &spans {
                t = t.union(match name {
                    Some(name) => s.taint_of(name),
                    None => s.by_name.values().fold(s.fallback, |a, &b| a.union(b)),
                });
            }
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests;

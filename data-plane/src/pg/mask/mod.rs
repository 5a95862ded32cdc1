//! Masking results as they stream to the client. The policy side decides
//! which output columns are masked (a [`MaskPlan`] per statement); this
//! module applies it to each message as it passes, one at a time, never
//! holding more than the message at hand:
//!
//! - RowDescription fixes, per column, what happens to its values (from the
//!   statement's lineage, and from the table and attribute the server names
//!   for the column, resolved through the target's catalog);
//! - each DataRow is rewritten value by value (text format, or binary for
//!   types that carry text; any other binary value that must be masked
//!   becomes NULL);
//! - detectors scan every text value of every row, and every error and
//!   notice text; errors of statements that touch a masked column also lose
//!   their quoted literals (a cast error quotes the value it failed on).

pub mod counts;
mod row;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sluice_policy::mask::detect::Hit;
use sluice_policy::mask::{Lineage, Mask, MaskPlan, MaskSet, OutCol, Taint};

use self::counts::{Counts, Other};
use self::row::RowWriter;
use self::wire::{DataRowValues, Field, Malformed};
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
    Mask { taint: Taint, carry: Carry },
}

/// How a masked value is written in its column's format and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carry {
    /// Text format, or a binary form that is the text.
    Text,
    /// Binary `bytea`: raw bytes, which hold the masked text but are not
    /// text to scan.
    Bytes,
    /// Binary `jsonb`: a version byte, then the text.
    Jsonb,
    /// Binary of a type that cannot hold a masked text: only SQL NULL.
    NullOnly,
}

/// Type OIDs whose binary form is their text: text, varchar, bpchar, name,
/// unknown, json, xml.
const TEXT_TYPES: [u32; 7] = [25, 1043, 1042, 19, 705, 114, 142];
/// `bytea`.
const BYTEA: u32 = 17;
/// `jsonb`, whose binary form is a version byte and the text.
const JSONB: u32 = 3802;

impl Carry {
    fn of(format: i16, type_oid: Option<u32>) -> Self {
        match (format, type_oid) {
            (0, _) => Self::Text,
            (_, Some(t)) if TEXT_TYPES.contains(&t) => Self::Text,
            (_, Some(JSONB)) => Self::Jsonb,
            (_, Some(BYTEA)) => Self::Bytes,
            _ => Self::NullOnly,
        }
    }
}

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
    counts: Counts,
    /// Detector hits of the value at hand (kept to reuse its allocation).
    hits: Vec<Hit>,
}

impl ExecMask {
    /// For a Query message.
    pub fn simple(plan: Arc<MaskPlan>) -> Self {
        Self {
            counts: Counts::new(&plan.set),
            plan,
            statement: 0,
            actions: None,
            described: None,
            hits: Vec::new(),
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
            described: Some((statement, portal, formats)),
            ..Self::simple(plan)
        }
    }

    /// The plan.
    pub fn plan(&self) -> &Arc<MaskPlan> {
        &self.plan
    }

    /// Values masked so far, by rule or detector name, for the audit record.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.named(&self.plan.set)
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
                // The server names each plain column's table and attribute:
                // a masked column stays masked whatever the statement
                // called it.
                let t = match self.lineage() {
                    Some(l) => t.union(self.plan.set.origin_taint(l, f.table_oid, f.column)),
                    None => t,
                };
                let format = if formats.is_empty() {
                    f.format
                } else {
                    wire::format_of(formats, i)
                };
                action(t, Carry::of(format, Some(f.type_oid)))
            })
            .collect()
    }

    /// The described columns of an Execute (portal first, then statement
    /// with the Bind's formats), when the server has described either.
    fn described_actions(&self) -> Option<(Arc<Vec<Field>>, Vec<ColumnAction>)> {
        let (stmt, portal, formats) = self.described.as_ref()?;
        if let Some(f) = portal.lock().ok().and_then(|g| g.clone()) {
            let a = self.actions_for(&f, &[]);
            return Some((f, a));
        }
        let f = stmt.lock().ok().and_then(|g| g.clone())?;
        let a = self.actions_for(&f, formats);
        Some((f, a))
    }

    /// The actions of an Execute, from the portal's or statement's
    /// description; without either, from the row's width alone.
    fn execute_actions(&self, width: usize) -> Vec<ColumnAction> {
        if let Some((_, a)) = self.described_actions() {
            return a;
        }
        let names = vec![None; width];
        let formats = self.described.as_ref().map(|(_, _, f)| f.clone());
        // Types unknown: a binary value is taken as one that cannot carry a
        // mask, so masked ones become NULL.
        taints(self.lineage(), &names)
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let format = formats.as_deref().map_or(0, |f| wire::format_of(f, i));
                action(t, Carry::of(format, None))
            })
            .collect()
    }

    /// Why an Execute must not run, decided before it reaches the server:
    /// a masked column requested in the binary format of a type that cannot
    /// hold a masked value (an `int4` cannot read `****`). `None` when every
    /// masked column can carry its mask, or the columns are not known yet
    /// (then such values go out as NULL, never as they are).
    pub fn binary_refusal(&self) -> Option<String> {
        let (fields, actions) = self.described_actions()?;
        fields.iter().zip(&actions).find_map(|(f, a)| match a {
            ColumnAction::Mask {
                taint,
                carry: Carry::NullOnly,
            } if !self.masks_to_null(*taint) => Some(format!(
                "column \"{}\" is masked and was requested in binary format as a type \
                 (OID {}) that cannot hold a masked value; request it in text format",
                f.name, f.type_oid
            )),
            _ => None,
        })
    }

    fn masks_to_null(&self, taint: Taint) -> bool {
        match taint {
            Taint::Column(r) => self.plan.set.mask(r) == Some(&Mask::Null),
            _ => false,
        }
    }

    /// A DataRow: the frame to send instead, or `None` to send it unchanged.
    pub fn on_data_row(&mut self, body: &[u8]) -> Option<Frame> {
        let width = match DataRowValues::new(body) {
            Ok(v) => v.len(),
            Err(_) => return Some(self.malformed_row()),
        };
        if self.actions.as_ref().is_none_or(|a| a.len() != width) {
            self.actions = Some(self.execute_actions(width));
        }
        let actions = self.actions.take().unwrap_or_default();
        let out = self.rewrite(body, &actions);
        self.actions = Some(actions);
        match out {
            Ok(frame) => frame,
            Err(Malformed(_)) => Some(self.malformed_row()),
        }
    }

    /// A row that cannot be read cannot be checked: it goes out empty.
    fn malformed_row(&mut self) -> Frame {
        self.counts.other(Other::MalformedRow);
        Frame::new(b'D', &0i16.to_be_bytes())
    }

    fn rewrite(
        &mut self,
        body: &[u8],
        actions: &[ColumnAction],
    ) -> Result<Option<Frame>, Malformed> {
        let mut values = DataRowValues::new(body)?;
        // The new row, begun only once a value changes: rows with nothing
        // to mask (the common case) are forwarded as they came.
        let mut out: Option<RowWriter> = None;
        for a in actions {
            let (start, v) = values.next_value()?;
            let Some(v) = v else {
                if let Some(w) = out.as_mut() {
                    w.push(None);
                }
                continue;
            };
            let changed = match a {
                ColumnAction::Pass { scan: false } => None,
                ColumnAction::Pass { scan: true } => self.scrub(v).map(Change::Value),
                ColumnAction::Mask { taint, carry } => Some(self.mask(*taint, *carry)),
            };
            match (changed, out.as_mut()) {
                (None, None) => {}
                (None, Some(w)) => w.push(Some(v)),
                (Some(c), w) => {
                    let w = match w {
                        Some(w) => w,
                        None => out.insert(RowWriter::with_prefix(&body[..start])),
                    };
                    c.write(w, &self.plan.set, v);
                }
            }
        }
        values.finish()?;
        Ok(out.map(RowWriter::finish))
    }

    /// The value with detected spans replaced, if any detector found one.
    fn scrub(&mut self, v: &[u8]) -> Option<Vec<u8>> {
        let mut scrubbed: Option<Vec<u8>> = None;
        for (policy, (_, m)) in self.plan.set.policies.iter().enumerate() {
            let input = scrubbed.as_deref().unwrap_or(v);
            if let Some(s) = m.detectors.scrub(input, &mut self.hits) {
                scrubbed = Some(s);
            }
            for h in self.hits.drain(..) {
                self.counts.detector(policy, h.detector);
            }
        }
        scrubbed
    }

    /// Counts a masked value and says how to write it.
    fn mask(&mut self, taint: Taint, carry: Carry) -> Change {
        match taint {
            Taint::Column(r) => self.counts.rule(r),
            _ => self.counts.other(Other::Computed),
        }
        Change::Mask { taint, carry }
    }

    /// An ErrorResponse or NoticeResponse: the frame to send instead.
    pub fn on_notice(&mut self, tag: u8, body: &[u8]) -> Option<Frame> {
        scrub_notice(&self.plan, tag, body, &mut self.counts)
    }
}

fn action(taint: Taint, carry: Carry) -> ColumnAction {
    match taint {
        Taint::Clear => ColumnAction::Pass {
            scan: matches!(carry, Carry::Text | Carry::Jsonb),
        },
        _ => ColumnAction::Mask { taint, carry },
    }
}

/// What replaces a value in a rewritten row.
enum Change {
    /// Detector findings replaced.
    Value(Vec<u8>),
    /// Masked by a column rule (or redacted whole when computed).
    Mask { taint: Taint, carry: Carry },
}

impl Change {
    fn write(self, w: &mut RowWriter, set: &MaskSet, v: &[u8]) {
        match self {
            Self::Value(s) => w.push(Some(&s)),
            Self::Mask {
                carry: Carry::NullOnly,
                ..
            } => w.push(None),
            Self::Mask { taint, carry } => w.push_with(|out| {
                if carry == Carry::Jsonb {
                    out.push(1);
                }
                match taint {
                    Taint::Column(r) => set.mask(r).is_some_and(|m| m.write_to(v, out)),
                    _ => {
                        out.extend_from_slice(sluice_policy::mask::rules::REDACTED.as_bytes());
                        true
                    }
                }
            }),
        }
    }
}

/// Scrubs an error or notice: detectors over its texts, and for a statement
/// that touches a masked column, quoted literals removed.
pub fn scrub_notice(plan: &MaskPlan, tag: u8, body: &[u8], counts: &mut Counts) -> Option<Frame> {
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
                counts.other(Other::ErrorLiteral);
            }
            let mut hits = Vec::new();
            for (policy, (_, m)) in plan.set.policies.iter().enumerate() {
                if let Some(s) = m.detectors.scrub(&v, &mut hits) {
                    v = s;
                    changed = true;
                }
                for h in hits.drain(..) {
                    counts.detector(policy, h.detector);
                }
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

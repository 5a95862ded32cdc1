//! Applies result masking to server messages as they pass, attributing
//! each to its execution through the tracker. Runs before the tracker
//! places the message, since a CommandComplete ends its execution.

use std::sync::Arc;

use sluice_policy::mask::MaskPlan;

use super::tracker::{Expect, Tracker};
use crate::pg::codec::frame::Frame;
use crate::pg::mask::{self, wire};

/// The frame to send in place of `frame`, if masking changes it. `last` is
/// the most recent plan seen, used for errors and notices that belong to no
/// execution.
pub fn on_server(
    t: &mut Tracker,
    frame: &Frame,
    last: &mut Option<Arc<MaskPlan>>,
) -> Option<Frame> {
    let tag = frame.tag();
    match t.front_expect_mut() {
        Some(Expect::DescribeStatement(Some(slot)) | Expect::DescribePortal(Some(slot))) => {
            if tag == b'T'
                && let Ok(mut g) = slot.lock()
            {
                *g = wire::row_description(frame.body()).ok().map(Arc::new);
            }
            notice(tag, frame, last.as_deref())
        }
        Some(Expect::Simple(x)) => match x.mask.as_mut() {
            Some(m) => {
                remember(last, m.plan());
                match tag {
                    b'T' => {
                        m.on_row_description(frame.body());
                        None
                    }
                    b'D' => m.on_data_row(frame.body()),
                    b'C' => {
                        m.on_complete();
                        None
                    }
                    b'E' | b'N' => m.on_notice(tag, frame.body()),
                    _ => None,
                }
            }
            None => notice(tag, frame, last.as_deref()),
        },
        Some(Expect::Execute(x)) => match x.mask.as_mut() {
            Some(m) => {
                remember(last, m.plan());
                match tag {
                    b'D' => m.on_data_row(frame.body()),
                    b'E' | b'N' => m.on_notice(tag, frame.body()),
                    _ => None,
                }
            }
            None => notice(tag, frame, last.as_deref()),
        },
        _ => notice(tag, frame, last.as_deref()),
    }
}

/// Keeps `plan` as the last one seen; rows of one execution pass it again
/// and again, so it is cloned only when it changes.
fn remember(last: &mut Option<Arc<MaskPlan>>, plan: &Arc<MaskPlan>) {
    if !last.as_ref().is_some_and(|l| Arc::ptr_eq(l, plan)) {
        *last = Some(plan.clone());
    }
}

fn notice(tag: u8, frame: &Frame, last: Option<&MaskPlan>) -> Option<Frame> {
    match (tag, last) {
        (b'E' | b'N', Some(plan)) => {
            let mut counts = mask::counts::Counts::new(&plan.set);
            mask::scrub_notice(plan, tag, frame.body(), &mut counts)
        }
        _ => None,
    }
}

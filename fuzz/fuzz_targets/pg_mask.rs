//! Server bytes through result masking: RowDescription, DataRow, Bind
//! result formats and error fields, parsed and rewritten under the
//! reference policy's masks and detectors.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sluice_data_plane::pg::mask::counts::Counts;
use sluice_data_plane::pg::mask::{ExecMask, scrub_notice, wire};
use sluice_policy::mask::MaskPlan;
use sluice_policy::{Policy, PolicySet, Subject};

fn plan() -> Arc<MaskPlan> {
    static PLAN: OnceLock<Arc<MaskPlan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let text = include_str!("../../examples/policies/reference.yaml");
        let set = PolicySet::new(vec![Policy::from_yaml(text).expect("reference policy")]);
        let groups = vec!["agents".to_owned()];
        let subject = Subject { identity: "f", groups: &groups, target: "t" };
        set.decide(&subject, "SELECT *, lower(email) FROM customers")
            .masking
            .expect("masked")
            .0
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let _ = wire::bind_result_formats(data);
    let _ = wire::notice_fields(data);
    let mut counts = Counts::new(&plan().set);
    let _ = scrub_notice(&plan(), b'E', data, &mut counts);
    // The one-at-a-time reader agrees with the collecting one.
    let whole = wire::data_row(data);
    let each = wire::DataRowValues::new(data).and_then(|mut it| {
        let mut v = Vec::new();
        while !it.is_empty() {
            v.push(it.next_value()?.1);
        }
        it.finish().map(|()| v)
    });
    assert_eq!(whole, each);
    let mut m = ExecMask::simple(plan());
    let (head, tail) = data.split_at(data.len() / 2);
    m.on_row_description(head);
    if let Some(f) = m.on_data_row(tail) {
        assert!(wire::data_row(&f.raw[5..]).is_ok(), "a rewritten row is well formed");
    }
    let _ = m.counts();
});

//! Pure statement decisions: parse, classify, decide. No I/O, no clocks, no
//! globals, so every decision can be unit-tested, fuzzed and benchmarked
//! alone, and reused unchanged by the proxy, `sluice policy check` and the
//! REST dry run.

mod decision;
pub mod sql;

pub use decision::{Decision, Subject, Verdict};

/// Decides one message of SQL text (possibly several statements) for
/// `subject`. The foundation engine records everything and allows what it can
/// parse; policies refine this.
pub fn decide(subject: &Subject<'_>, sql_text: &str) -> Decision {
    let _ = subject;
    match sql::parse(sql_text) {
        Ok(parsed) => Decision {
            verdict: Verdict::Allow,
            policy: None,
            rule: None,
            reason: String::new(),
            kinds: parsed.kinds(),
        },
        Err(e) => Decision {
            verdict: Verdict::Allow,
            policy: None,
            rule: None,
            reason: format!("not parsed: {e}"),
            kinds: vec!["unparsed".to_owned()],
        },
    }
}

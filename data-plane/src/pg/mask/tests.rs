#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_policy::{Policy, PolicySet, Subject};

use super::*;

fn plan(sql: &str) -> Arc<MaskPlan> {
    let text = include_str!("../../../../examples/policies/reference.yaml");
    let set = PolicySet::new(vec![Policy::from_yaml(text).unwrap()]);
    let groups = vec!["agents".to_owned()];
    let d = set.decide(
        &Subject {
            identity: "a",
            groups: &groups,
            target: "demo",
        },
        sql,
    );
    d.masking.expect(&d.reason).0
}

fn row_desc(fields: &[(&str, u32, i16)]) -> Vec<u8> {
    let mut b = (fields.len() as i16).to_be_bytes().to_vec();
    for (name, ty, fmt) in fields {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&ty.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&fmt.to_be_bytes());
    }
    b
}

fn row(values: &[Option<&str>]) -> Vec<u8> {
    wire::encode_data_row(values.iter().map(|v| v.map(str::as_bytes)))
}

fn values(f: &Frame) -> Vec<Option<String>> {
    wire::data_row(f.body())
        .unwrap()
        .into_iter()
        .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
        .collect()
}

#[test]
fn star_rows_mask_by_name_and_scan_the_rest() {
    let mut m = ExecMask::simple(plan("SELECT * FROM customers"));
    m.on_row_description(&row_desc(&[
        ("id", 23, 0),
        ("name", 25, 0),
        ("email", 25, 0),
        ("card_number", 25, 0),
        ("notes", 25, 0),
    ]));
    let out = m
        .on_data_row(&row(&[
            Some("1"),
            Some("Alice Wonder"),
            Some("alice.wonder@example.com"),
            Some("4111111111111111"),
            Some("key AKIAZ7QX4EXAMPLE9PLM"),
        ]))
        .unwrap();
    assert_eq!(
        values(&out),
        [
            Some("1".into()),
            Some("Alice Wonder".into()),
            Some("a***@example.com".into()),
            Some("****1111".into()),
            Some("key [aws_access_key]".into()),
        ]
    );
    assert_eq!(m.counts()["column:public.customers.email"], 1);
    assert_eq!(m.counts()["detector:aws_access_key"], 1);
    // Nothing to change: the frame goes out as it came.
    let mut clean = ExecMask::simple(plan("SELECT id, name FROM customers"));
    clean.on_row_description(&row_desc(&[("id", 23, 0), ("name", 25, 0)]));
    assert!(clean.on_data_row(&row(&[Some("1"), None])).is_none());
}

#[test]
fn computed_columns_are_redacted_and_binary_non_text_becomes_null() {
    let mut m = ExecMask::simple(plan("SELECT lower(email), ssn::int FROM customers"));
    m.on_row_description(&row_desc(&[("lower", 25, 0), ("ssn", 23, 1)]));
    let out = m.on_data_row(&row(&[Some("alice"), Some("1234")])).unwrap();
    assert_eq!(values(&out), [Some("****".into()), None]);
    assert_eq!(m.counts()["computed"], 2);
}

#[test]
fn each_statement_of_a_query_gets_its_own_lineage() {
    let mut m = ExecMask::simple(plan(
        "SELECT name FROM customers; SELECT ssn FROM customers",
    ));
    m.on_row_description(&row_desc(&[("name", 25, 0)]));
    assert!(m.on_data_row(&row(&[Some("Alice")])).is_none());
    m.on_complete();
    m.on_row_description(&row_desc(&[("ssn", 25, 0)]));
    let out = m.on_data_row(&row(&[Some("123-45-6789")])).unwrap();
    assert_eq!(values(&out), [Some("****".into())]);
}

#[test]
fn execute_uses_the_statement_description_and_bind_formats() {
    let stmt: DescSlot = Arc::default();
    *stmt.lock().unwrap() = Some(Arc::new(
        wire::row_description(&row_desc(&[("id", 23, 0), ("ssn", 25, 0)])).unwrap(),
    ));
    let mut m = ExecMask::execute(
        plan("SELECT id, ssn FROM customers"),
        stmt,
        DescSlot::default(),
        Arc::from([1i16]),
    );
    let id = 7i32.to_be_bytes();
    let body = wire::encode_data_row([Some(&id[..]), Some(&b"123-45-6789"[..])].into_iter());
    let out = m.on_data_row(&body).unwrap();
    let v = wire::data_row(out.body()).unwrap();
    assert_eq!(v[0], Some(&id[..]));
    assert_eq!(v[1], Some(&b"****"[..]));
    // Without any description, every column of a star is masked.
    let mut blind = ExecMask::execute(
        plan("SELECT * FROM customers"),
        DescSlot::default(),
        DescSlot::default(),
        Arc::from([]),
    );
    let out = blind
        .on_data_row(&row(&[Some("1"), Some("Alice")]))
        .unwrap();
    assert_eq!(values(&out), [Some("****".into()), Some("****".into())]);
}

#[test]
fn errors_lose_quoted_values_and_detected_secrets() {
    let p = plan("SELECT ssn::int FROM customers");
    let body = wire::encode_notice_fields(
        [
            (b'S', &b"ERROR"[..]),
            (b'C', &b"22P02"[..]),
            (
                b'M',
                &b"invalid input syntax for type integer: \"123-45-6789\""[..],
            ),
            (b'D', &b"Key (ssn)=(123-45-6789) already exists."[..]),
        ]
        .into_iter(),
    );
    let mut counts = counts::Counts::new(&p.set);
    let out = scrub_notice(&p, b'E', &body, &mut counts).unwrap();
    assert_eq!(counts.named(&p.set)["error_literal"], 2);
    let text = String::from_utf8_lossy(out.body()).into_owned();
    assert!(!text.contains("123-45-6789"), "{text}");
    assert!(
        text.contains("invalid input syntax for type integer: \"****\""),
        "{text}"
    );
    assert!(text.contains("22P02"));
    // Statements that touch no masked column keep their quotes; detectors
    // still run.
    let p = plan("SELECT name::int FROM customers");
    let body = wire::encode_notice_fields([(b'M', &b"bad \"Alice\" mail x@y.io"[..])].into_iter());
    let mut counts = counts::Counts::new(&p.set);
    let out = scrub_notice(&p, b'N', &body, &mut counts).unwrap();
    assert_eq!(counts.named(&p.set)["detector:email"], 1);
    assert_eq!(out.tag(), b'N');
    let text = String::from_utf8_lossy(out.body()).into_owned();
    assert!(
        text.contains("\"Alice\"") && text.contains("[email]"),
        "{text}"
    );
}

#[test]
fn malformed_rows_are_not_forwarded() {
    let mut m = ExecMask::simple(plan("SELECT name FROM customers"));
    let out = m.on_data_row(&[0, 1, 0, 0]).unwrap();
    assert_eq!(wire::data_row(out.body()).unwrap().len(), 0);
}

fn described(fields: &[(&str, u32, i16)]) -> DescSlot {
    let slot: DescSlot = Arc::default();
    *slot.lock().unwrap() = Some(Arc::new(wire::row_description(&row_desc(fields)).unwrap()));
    slot
}

#[test]
fn a_masked_column_asked_in_binary_of_a_type_that_cannot_hold_a_mask_is_refused() {
    // ssn::int keeps the lineage of the masked column; int4 in binary
    // cannot read `****`.
    let m = ExecMask::execute(
        plan("SELECT id, ssn::int AS n FROM customers"),
        described(&[("id", 23, 0), ("n", 23, 0)]),
        DescSlot::default(),
        Arc::from([1i16]),
    );
    let why = m.binary_refusal().unwrap();
    assert!(
        why.contains("\"n\"") && why.contains("text format"),
        "{why}"
    );
    // The same in text format, or a text type in binary, runs.
    for (fields, formats) in [
        (vec![("id", 23, 0), ("n", 23, 0)], vec![0i16]),
        (vec![("id", 23, 0), ("n", 25, 0)], vec![1i16]),
        (vec![("id", 23, 0), ("n", 23, 0)], vec![1, 0]),
    ] {
        let m = ExecMask::execute(
            plan("SELECT id, ssn::int AS n FROM customers"),
            described(&fields),
            DescSlot::default(),
            Arc::from(formats.as_slice()),
        );
        assert_eq!(m.binary_refusal(), None, "{fields:?} {formats:?}");
    }
    // A portal's own description takes precedence over the statement's.
    let m = ExecMask::execute(
        plan("SELECT ssn FROM customers"),
        described(&[("ssn", 25, 0)]),
        described(&[("ssn", 1700, 1)]),
        Arc::from([0i16]),
    );
    assert!(m.binary_refusal().is_some());
    // Not described yet: nothing to refuse before running, and a binary
    // value that cannot be told apart goes out as NULL.
    let mut m = ExecMask::execute(
        plan("SELECT ssn FROM customers"),
        DescSlot::default(),
        DescSlot::default(),
        Arc::from([1i16]),
    );
    assert_eq!(m.binary_refusal(), None);
    let out = m.on_data_row(&row(&[Some("123-45-6789")])).unwrap();
    assert_eq!(values(&out), [None]);
}

#[test]
fn binary_bytea_and_jsonb_carry_the_mask_in_their_own_encoding() {
    let mut m = ExecMask::execute(
        plan("SELECT api_key, ssn FROM customers"),
        described(&[("api_key", 17, 0), ("ssn", 3802, 0)]),
        DescSlot::default(),
        Arc::from([1i16]),
    );
    assert_eq!(m.binary_refusal(), None);
    let out = m
        .on_data_row(&row(&[
            Some("sk_live_abcdef123456"),
            Some("\u{1}\"123-45-6789\""),
        ]))
        .unwrap();
    assert_eq!(
        values(&out),
        [Some("****".into()), Some("\u{1}****".into())]
    );
}

#[test]
fn counts_name_rules_and_detectors_once_per_execution() {
    let mut m = ExecMask::simple(plan("SELECT email, notes FROM customers"));
    m.on_row_description(&row_desc(&[("email", 25, 0), ("notes", 25, 0)]));
    for _ in 0..3 {
        m.on_data_row(&row(&[
            Some("a@b.io"),
            Some("key AKIAZ7QX4EXAMPLE9PLM and x@y.io"),
        ]))
        .unwrap();
    }
    let c = m.counts();
    assert_eq!(c["column:public.customers.email"], 3);
    assert_eq!(c["detector:aws_access_key"], 3);
    assert_eq!(c["detector:email"], 3);
    assert_eq!(c.len(), 3, "{c:?}");
}

#[test]
fn a_row_changed_late_keeps_its_earlier_values_byte_for_byte() {
    let mut m = ExecMask::simple(plan("SELECT id, name, ssn FROM customers"));
    m.on_row_description(&row_desc(&[("id", 23, 0), ("name", 25, 0), ("ssn", 25, 0)]));
    let out = m
        .on_data_row(&row(&[Some("1"), None, Some("123-45-6789")]))
        .unwrap();
    assert_eq!(values(&out), [Some("1".into()), None, Some("****".into())]);
    // Trailing bytes after the last value: not forwarded.
    let mut long = row(&[Some("1"), None, Some("123-45-6789")]);
    long.push(0);
    let out = m.on_data_row(&long).unwrap();
    assert!(values(&out).is_empty());
}

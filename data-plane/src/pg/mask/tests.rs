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
    assert_eq!(m.counts["column:public.customers.email"], 1);
    assert_eq!(m.counts["detector:aws_access_key"], 1);
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
    assert_eq!(m.counts["computed"], 2);
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
    let mut counts = BTreeMap::new();
    let out = scrub_notice(&p, b'E', &body, &mut counts).unwrap();
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
    let out = scrub_notice(&p, b'N', &body, &mut counts).unwrap();
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

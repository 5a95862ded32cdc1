//! Streaming JSON and text masking of HTTP responses: every document is
//! also fed split at every byte boundary (and byte by byte), and must come
//! out the same, with no masked value anywhere in the output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use sluice_policy::http::{HttpMaskError, ResponsePlan};
use sluice_policy::{HttpRequest, Policy, PolicySet, Subject, Verdict};

const POLICY: &str = r#"
name: p
masking:
  hash_key: 0123456789abcdef0123
  detectors:
    builtin: [email, card, secret_key]
http:
  default: allow
  response:
    mask:
      - path: $.data[*].email
        mask: email
      - path: $..card_number
        mask: { keep_last: 4 }
      - path: $..api_key
        mask: redact
      - path: $.data[*].ssn
        mask: 'null'
      - path: $.profile
        mask: redact
      - path: $.items[1]
        mask: hash
      - path: $['odd key']
        mask: redact
    detectors: true
"#;

fn plan_of(yaml: &str) -> ResponsePlan {
    let set = PolicySet::new(vec![Policy::from_yaml(yaml).unwrap()]);
    let d = set.decide_http(
        &Subject {
            identity: "a",
            groups: &[],
            target: "t",
        },
        &HttpRequest {
            method: "GET",
            path: "/",
            query: None,
            content_type: None,
            body: None,
        },
    );
    assert_eq!(d.decision.verdict, Verdict::Allow);
    d.response
}

fn plan() -> ResponsePlan {
    plan_of(POLICY)
}

/// Masks `doc` in the given chunks.
fn mask_chunks(p: &ResponsePlan, chunks: &[&[u8]]) -> Result<Vec<u8>, HttpMaskError> {
    let mut m = p.json_masker();
    let mut out = Vec::new();
    for c in chunks {
        m.push(c, &mut out)?;
    }
    m.finish(&mut out)?;
    Ok(out)
}

/// Masks `doc` whole, then split at every boundary and byte by byte, and
/// checks every way gives the same answer.
fn mask(p: &ResponsePlan, doc: &str) -> Result<String, HttpMaskError> {
    let b = doc.as_bytes();
    let whole = mask_chunks(p, &[b]);
    for i in 0..=b.len() {
        let (x, y) = b.split_at(i);
        assert_eq!(mask_chunks(p, &[x, y]), whole, "split at {i} of {doc}");
    }
    let bytes: Vec<&[u8]> = b.chunks(1).collect();
    assert_eq!(mask_chunks(p, &bytes), whole, "byte by byte: {doc}");
    whole.map(|v| String::from_utf8(v).unwrap())
}

const SECRETS: &[&str] = &[
    "alice@example.com",
    "4111111111111111",
    "sk_live_abcdefghijklmnop",
    "123-45-6789",
    "top secret profile",
    "second item",
    "bob@corp.example",
];

fn assert_clean(out: &str) {
    for s in SECRETS {
        assert!(!out.contains(s), "{s} leaked: {out}");
    }
}

#[test]
fn masks_by_path_and_keeps_everything_else_byte_for_byte() {
    let p = plan();
    let doc = r#"{"data": [ {"id": 1, "email": "alice@example.com", "name": "Alice", "ssn": "123-45-6789",
        "card_number": "4111111111111111", "nested": {"api_key": "sk_live_abcdefghijklmnop"}} ],
        "profile": {"bio": "top secret profile", "tags": ["a", {"x": [1,2]}]},
        "items": ["first", "second item", "third"], "odd key": 42, "count": 1.5e3, "ok": true, "none": null}"#;
    let out = mask(&p, doc).unwrap();
    assert_clean(&out);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"][0]["email"], "a***@example.com");
    assert_eq!(v["data"][0]["card_number"], "****1111");
    assert_eq!(v["data"][0]["nested"]["api_key"], "****");
    assert_eq!(v["data"][0]["ssn"], serde_json::Value::Null);
    assert_eq!(v["data"][0]["name"], "Alice");
    assert_eq!(v["profile"], "****");
    assert_eq!(v["items"][0], "first");
    assert_eq!(v["items"][2], "third");
    assert_eq!(v["items"][1].as_str().unwrap().len(), 16, "hash prefix");
    assert_eq!(
        v["odd key"], "****",
        "non-string values take the mask's form"
    );
    assert_eq!(v["count"], 1500.0);
    assert_eq!(v["ok"], true);
    assert!(
        out.contains(r#""name": "Alice""#),
        "untouched text is unchanged: {out}"
    );
    let mut m = p.json_masker();
    let mut o = Vec::new();
    m.push(doc.as_bytes(), &mut o).unwrap();
    m.finish(&mut o).unwrap();
    let c = m.counts();
    assert_eq!(c["json:p:$.data[*].email"], 1);
    assert_eq!(c["json:p:$..card_number"], 1);
    assert_eq!(c["json:p:$.profile"], 1);
}

#[test]
fn detectors_catch_unlisted_fields_escapes_and_numbers() {
    let p = plan();
    let out = mask(
        &p,
        r#"{"note": "write to bob@corp.example or call", "esc": "bob\u0040corp.example",
            "card": 4111111111111111, "k": ["sk_live_abcdefghijklmnop"], "bob@corp.example": 1}"#,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["note"], "write to [email] or call");
    assert_eq!(v["esc"], "[email]");
    assert_eq!(v["card"], "[card]");
    assert_eq!(v["k"][0], "[secret_key]");
    // Keys are not scanned: they name fields.
    assert!(v.get("bob@corp.example").is_some());
}

#[test]
fn escapes_and_unicode_survive_and_masked_escaped_values_do_not_leak() {
    let p = plan();
    let doc = r#"{"data":[{"email":"al\"ice\\@ex\u0061mple.com","name":"Zo\u00eb \ud83d\ude00 \"q\""}],"t":"\n\t\/"}"#;
    let out = mask(&p, doc).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"][0]["email"], "a***@example.com");
    assert_eq!(v["data"][0]["name"], "Zo\u{eb} \u{1f600} \"q\"");
    assert_eq!(v["t"], "\n\t/");
}

#[test]
fn top_level_scalars_arrays_and_whole_document_masks() {
    let p = plan();
    assert_eq!(mask(&p, "  42 ").unwrap(), "  42 ");
    assert_eq!(mask(&p, r#""x""#).unwrap(), r#""x""#);
    assert_eq!(mask(&p, "[]").unwrap(), "[]");
    assert_eq!(mask(&p, "{}").unwrap(), "{}");
    assert_eq!(mask(&p, "[1,[2,[3]],{}]").unwrap(), "[1,[2,[3]],{}]");
    let all = plan_of(
        "name: p\nhttp:\n  default: allow\n  response:\n    mask:\n      - path: $\n        mask: redact\n",
    );
    assert_eq!(mask(&all, r#"{"a": "secret"}"#).unwrap(), r#""****""#);
    assert_eq!(mask(&all, r#""secret""#).unwrap(), r#""****""#);
    assert_eq!(mask(&all, "null").unwrap(), "null");
}

#[test]
fn invalid_json_is_an_error() {
    let p = plan();
    for bad in [
        "",
        "{",
        "[1,]",
        "{\"a\" 1}",
        "{\"a\":}",
        "[1 2]",
        "tru",
        "nul",
        "01",
        "1.",
        "-",
        "1e",
        "\"abc",
        "\"a\\x\"",
        "\"\\u12G4\"",
        "{} {}",
        "[}",
        "{]",
        "\"a\u{1}\"",
        "{1:2}",
        "[,1]",
        "{\"a\":1,}",
        "truex",
        "NaN",
    ] {
        assert!(mask(&p, bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn errors_stick_and_limits_hold() {
    let p = plan();
    let mut m = p.json_masker();
    let mut out = Vec::new();
    assert!(m.push(b"[1,,", &mut out).is_err());
    assert!(m.push(b"2]", &mut out).is_err());
    assert!(m.finish(&mut out).is_err());
    let deep = "[".repeat(129) + &"]".repeat(129);
    assert_eq!(
        mask_chunks(&p, &[deep.as_bytes()]),
        Err(HttpMaskError::TooDeep)
    );
    let ok = "[".repeat(128) + &"]".repeat(128);
    assert!(mask_chunks(&p, &[ok.as_bytes()]).is_ok());
    let long = format!(
        "\"{}\"",
        "a".repeat(sluice_policy::http::json::MAX_STRING + 1)
    );
    assert_eq!(
        mask_chunks(&p, &[long.as_bytes()]),
        Err(HttpMaskError::TooLong),
        "a held-back string is bounded"
    );
    let closed = ResponsePlan::closed();
    assert_eq!(mask_chunks(&closed, &[b"{}"]), Err(HttpMaskError::Closed));
}

#[test]
fn nothing_to_mask_streams_strings_through_unheld() {
    let p = plan_of(
        "name: p\nhttp:\n  default: allow\n  response:\n    mask:\n      - path: $.secret\n        mask: redact\n",
    );
    let mut m = p.json_masker();
    let mut out = Vec::new();
    m.push(br#"{"open": "abc"#, &mut out).unwrap();
    assert_eq!(out, br#"{"open": "abc"#, "unmasked strings stream");
    out.clear();
    m.push(br#"def", "secret": "xy"#, &mut out).unwrap();
    assert_eq!(out, br#"def", "secret": "#, "a masked value is held back");
    out.clear();
    m.push(br#"z"}"#, &mut out).unwrap();
    m.finish(&mut out).unwrap();
    assert_eq!(out, br#""****"}"#);
}

#[test]
fn text_bodies_are_scanned_across_chunk_boundaries() {
    let p = plan();
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!("line {i}: nothing here\n"));
        if i % 500 == 7 {
            text.push_str(
                "mail bob@corp.example, card 4111 1111 1111 1111, key sk_live_abcdefghijklmnop\n",
            );
        }
    }
    let whole = {
        let mut m = p.text_masker();
        let mut out = Vec::new();
        m.push(text.as_bytes(), &mut out).unwrap();
        m.finish(&mut out).unwrap();
        assert_eq!(m.counts()["detector:email"], 6);
        String::from_utf8(out).unwrap()
    };
    assert_clean(&whole);
    assert!(!whole.contains("4111 1111 1111 1111"));
    assert_eq!(whole.matches("[email]").count(), 6);
    for size in [1, 7, 100, 4096, 65536, 70001] {
        let mut m = p.text_masker();
        let mut out = Vec::new();
        for c in text.as_bytes().chunks(size) {
            m.push(c, &mut out).unwrap();
        }
        m.finish(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), whole, "chunks of {size}");
    }
}

/// A document built from pieces, with secret values at masked paths.
fn document() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just(r#""alice@example.com""#.to_owned()),
        Just(r#""4111111111111111""#.to_owned()),
        Just("4111111111111111".to_owned()),
        Just(r#""sk_live_abcdefghijklmnop""#.to_owned()),
        Just(r#""plain""#.to_owned()),
        Just("12".to_owned()),
        Just("null".to_owned()),
        Just(r#"{"email": "alice@example.com"}"#.to_owned()),
    ];
    prop::collection::vec(
        (
            prop_oneof![
                Just("email"),
                Just("card_number"),
                Just("api_key"),
                Just("name")
            ],
            value,
        ),
        0..6,
    )
    .prop_map(|fields| {
        let members: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!(r#""{k}": {v}"#))
            .collect();
        format!(
            r#"{{"data": [{{{}}}], "x": [{}]}}"#,
            members.join(", "),
            members.len()
        )
    })
}

proptest! {
    /// However a document is cut into chunks, the output is the same and
    /// holds no secret.
    #[test]
    fn any_chunking_masks_the_same(doc in document(), cuts in prop::collection::vec(0usize..400, 0..6)) {
        let p = plan();
        let b = doc.as_bytes();
        let whole = mask_chunks(&p, &[b]).unwrap();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (b.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in points {
            chunks.push(&b[at..c]);
            at = c;
        }
        chunks.push(&b[at..]);
        let out = mask_chunks(&p, &chunks).unwrap();
        prop_assert_eq!(&out, &whole);
        let text = String::from_utf8(out).unwrap();
        for s in SECRETS {
            prop_assert!(!text.contains(s), "{} leaked: {}", s, text);
        }
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
    }

    /// A value the detectors find something in reads the same whether it
    /// is written straight out (no escape, all ASCII) or decoded and
    /// re-encoded (the same text with its first character escaped).
    #[test]
    fn finds_read_the_same_written_directly_or_re_encoded(
        pieces in prop::collection::vec(
            prop_oneof![
                Just("alice@example.com".to_owned()),
                Just("4111 1111 1111 1111".to_owned()),
                Just("sk_live_abcdefghijklmnop".to_owned()),
                "[a-z0-9 .@_+-]{0,8}",
            ],
            1..5,
        ),
    ) {
        let text = pieces.concat();
        prop_assume!(!text.is_empty());
        let p = plan();
        let direct = mask_chunks(&p, &[format!(r#"{{"note": "{text}"}}"#).as_bytes()]).unwrap();
        let escaped = format!(r#"{{"note": "\u{:04x}{}"}}"#, text.as_bytes()[0], &text[1..]);
        let encoded = mask_chunks(&p, &[escaped.as_bytes()]).unwrap();
        let a: serde_json::Value = serde_json::from_slice(&direct).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&encoded).unwrap();
        prop_assert_eq!(a, b);
    }

    /// Arbitrary bytes never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
        let p = plan();
        let cut = cut.min(bytes.len());
        let _ = mask_chunks(&p, &[&bytes[..cut], &bytes[cut..]]);
    }
}

#[test]
fn counts_are_current_after_every_push() {
    let p = plan();
    let mut m = p.json_masker();
    let mut out = Vec::new();
    m.push(
        br#"{"data": [{"email": "a@b.io", "card_number": "411111"#,
        &mut out,
    )
    .unwrap();
    assert_eq!(m.counts().get("json:p:$.data[*].email"), Some(&1));
    assert_eq!(m.counts().get("json:p:$..card_number"), None, "still held");
    m.push(
        br#"1111111111"}, {"email": "c@d.io", "note": "x@y.io"}]}"#,
        &mut out,
    )
    .unwrap();
    m.finish(&mut out).unwrap();
    let c = m.counts();
    assert_eq!(c["json:p:$.data[*].email"], 2);
    assert_eq!(c["json:p:$..card_number"], 1);
    assert_eq!(c["detector:email"], 1);
}

#[test]
fn keys_are_matched_decoded_and_lookalikes_are_not() {
    let p = plan();
    // `api\u005fkey` is `api_key`; `api-key` and `apI_key` (same length)
    // are other keys; the detectors still see their values.
    let doc = br#"{"api\u005fkey": "k1", "api-key": "k2", "apI_key": "k3", "card_number": 4111111111111111}"#;
    let out = String::from_utf8(mask_chunks(&p, &[doc]).unwrap()).unwrap();
    assert_eq!(
        out,
        r#"{"api\u005fkey": "****", "api-key": "k2", "apI_key": "k3", "card_number": "****1111"}"#
    );
}

#[test]
fn literals_split_anywhere_are_read_alike() {
    let p = plan();
    for (doc, ok) in [
        (r#"[true, false, null, {"ok": true}]"#, true),
        ("[trXe]", false),
        ("[fals]", false),
        ("[nulL]", false),
        ("[truefalse]", false),
    ] {
        let whole = mask(&p, doc);
        assert_eq!(whole.is_ok(), ok, "{doc}");
        for at in 0..=doc.len() {
            let (a, b) = doc.as_bytes().split_at(at);
            let split = mask_chunks(&p, &[a, b]).map(|o| String::from_utf8(o).unwrap());
            assert_eq!(split, whole, "{doc} split at {at}");
        }
    }
}

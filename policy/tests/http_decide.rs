//! HTTP request decisions: the canonical path (every trick refused), rule
//! matching by method, path, query and JSON body, defaults, and how
//! policies combine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use sluice_policy::http::model::QueryAudit;
use sluice_policy::http::path::PathError;
use sluice_policy::http::{
    ContentAction, HeaderAction, approval_hash, is_method_override_header, normalize_path,
    redact_query,
};
use sluice_policy::model::ApprovalMode;
use sluice_policy::{HttpDecision, HttpRequest, Policy, PolicySet, Subject, Verdict};

fn set(yamls: &[&str]) -> PolicySet {
    PolicySet::new(
        yamls
            .iter()
            .map(|y| Policy::from_yaml(y).unwrap())
            .collect(),
    )
}

fn agents() -> PolicySet {
    set(&[include_str!("../../examples/policies/http-agents.yaml")])
}

fn observe() -> PolicySet {
    set(&[include_str!("../../examples/policies/observe.yaml")])
}

const GROUPS: &[String] = &[];

fn subject() -> Subject<'static> {
    Subject {
        identity: "agent",
        groups: GROUPS,
        target: "crm",
    }
}

fn req<'a>(method: &'a str, path: &'a str) -> HttpRequest<'a> {
    HttpRequest {
        method,
        path,
        query: None,
        content_type: None,
        body: None,
    }
}

fn decide(s: &PolicySet, r: &HttpRequest<'_>) -> HttpDecision {
    s.decide_http(&subject(), r)
}

fn verdict(s: &PolicySet, method: &str, path: &str) -> Verdict {
    decide(s, &req(method, path)).decision.verdict
}

#[test]
fn path_tricks_are_refused_case_by_case() {
    for (raw, want) in [
        ("/v1/../admin", PathError::DotSegment),
        ("/v1/./admin", PathError::DotSegment),
        ("/v1/%2e%2e/admin", PathError::DotSegment),
        ("/v1/%2E%2E/admin", PathError::DotSegment),
        ("/v1/%2E./admin", PathError::DotSegment),
        ("/v1/.%2e/admin", PathError::DotSegment),
        ("/v1/%2e/admin", PathError::DotSegment),
        ("/..", PathError::DotSegment),
        ("/v1/%2fadmin", PathError::EncodedSlash),
        ("/v1/a%2Fb", PathError::EncodedSlash),
        ("/v1/a%5cb", PathError::EncodedSlash),
        ("/v1/a\\b", PathError::EncodedSlash),
        ("//admin", PathError::EmptySegment),
        ("/v1//admin", PathError::EmptySegment),
        ("/v1/customers;jsessionid=1", PathError::Semicolon),
        ("/v1/customers%3bx", PathError::Semicolon),
        ("/v1/a%00b", PathError::BadCharacter),
        ("/v1/a%0ab", PathError::BadCharacter),
        ("/v1/a%7fb", PathError::BadCharacter),
        ("/v1/a b", PathError::BadCharacter),
        ("/v1/a\u{e9}", PathError::BadCharacter),
        ("/v1/a?b", PathError::BadCharacter),
        ("/v1/a#b", PathError::BadCharacter),
        ("/v1/%zz", PathError::BadEncoding),
        ("/v1/%2", PathError::BadEncoding),
        ("/v1/%", PathError::BadEncoding),
        ("/v1/%u002e%u002e", PathError::BadEncoding),
        ("/v1/%252e%252e", PathError::BadEncoding),
        ("/v1/%c0%ae%c0%ae", PathError::NotUtf8),
        ("/v1/%c0%af", PathError::NotUtf8),
        ("/v1/%e0%80%ae", PathError::NotUtf8),
        ("/v1/%ff", PathError::NotUtf8),
        ("v1/customers", PathError::NotAbsolute),
    ] {
        assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
    }
    assert_eq!(
        normalize_path(&format!("/{}", "a".repeat(9000))),
        Err(PathError::TooLong)
    );
}

#[test]
fn paths_normalise_to_one_canonical_form() {
    for (raw, want) in [
        ("", "/"),
        ("/", "/"),
        ("/v1/customers", "/v1/customers"),
        ("/v1/customers/", "/v1/customers/"),
        ("/v1/%41bc", "/v1/Abc"),
        ("/v1/caf%c3%a9", "/v1/caf%C3%A9"),
        ("/v1/a%20b", "/v1/a%20b"),
        ("/v1/a.b/..c/~x", "/v1/a.b/..c/~x"),
        ("/v1/a:b@c", "/v1/a:b@c"),
    ] {
        assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw:?}");
    }
}

#[test]
fn refused_paths_are_denied_with_a_clear_reason() {
    let d = decide(&observe(), &req("GET", "/v1/%2e%2e/admin"));
    assert_eq!(d.decision.verdict, Verdict::Deny);
    assert!(
        d.decision.reason.contains("'.' or '..'"),
        "{}",
        d.decision.reason
    );
    assert_eq!(d.path, None);
    assert_eq!(
        d.response.content(Some("application/json")),
        ContentAction::Deny
    );
}

#[test]
fn observe_allows_plain_requests_and_still_refuses_path_tricks() {
    let s = observe();
    assert_eq!(verdict(&s, "GET", "/v1/customers"), Verdict::Allow);
    assert_eq!(verdict(&s, "DELETE", "/v1/customers/1"), Verdict::Allow);
    for trick in ["/v1/%2e%2e/admin", "//admin", "/a;b", "/a%2fb", "/a/../b"] {
        assert_eq!(verdict(&s, "GET", trick), Verdict::Deny, "{trick}");
    }
    assert_eq!(verdict(&s, "get", "/v1"), Verdict::Deny);
    assert_eq!(verdict(&s, "TRACE", "/v1"), Verdict::Deny);
    // Unknown methods are not covered by a default.
    assert_eq!(verdict(&s, "PROPFIND", "/v1"), Verdict::Deny);
    // Still records SQL as before.
    assert_eq!(
        s.decide(&subject(), "SELECT 1").verdict,
        Verdict::Allow,
        "the observe policy keeps deciding statements"
    );
}

#[test]
fn the_agent_default_reads_writes_and_deletes() {
    let s = agents();
    assert_eq!(verdict(&s, "GET", "/orders"), Verdict::Allow);
    assert_eq!(verdict(&s, "HEAD", "/orders"), Verdict::Allow);
    assert_eq!(verdict(&s, "OPTIONS", "/orders"), Verdict::Allow);
    assert_eq!(verdict(&s, "POST", "/orders"), Verdict::Approval);
    assert_eq!(verdict(&s, "PUT", "/orders/1"), Verdict::Approval);
    assert_eq!(verdict(&s, "PATCH", "/orders/1"), Verdict::Approval);
    assert_eq!(verdict(&s, "DELETE", "/orders/1"), Verdict::Deny);
    assert_eq!(verdict(&s, "PURGE", "/orders/1"), Verdict::Deny);
    let d = decide(&s, &req("DELETE", "/customers/1"));
    assert_eq!(d.decision.rule.as_deref(), Some("no-deletes"));
    assert!(
        d.decision
            .reason
            .contains("deleting through the gateway is not allowed")
    );
    // Case games: methods are case-sensitive, and so are paths.
    assert_eq!(verdict(&s, "get", "/orders"), Verdict::Deny);
    assert_eq!(verdict(&s, "Delete", "/orders/1"), Verdict::Deny);
    assert_eq!(verdict(&s, "GET", "/admin/users"), Verdict::Deny);
    let d = decide(&s, &req("GET", "/Admin/users"));
    assert_eq!(
        d.decision.verdict,
        Verdict::Allow,
        "paths are case-sensitive"
    );
    assert_eq!(verdict(&s, "GET", "/%61dmin/users"), Verdict::Deny);
}

#[test]
fn approvals_carry_the_policy_settings() {
    let d = decide(&agents(), &req("POST", "/orders"));
    assert_eq!(d.decision.verdict, Verdict::Approval);
    let a = d.approval.unwrap();
    assert_eq!(a.mode, ApprovalMode::Answer);
    assert_eq!(a.expires_after.as_secs(), 900);
    assert_eq!(d.decision.delivery, sluice_policy::Delivery::Strict);
    assert_eq!(d.path.as_deref(), Some("/orders"));
}

const RULES: &str = r#"
name: api
http:
  default: deny
  rules:
    - name: read-customers
      methods: [GET, HEAD]
      path: /v1/customers/**
      decision: allow
    - name: refunds
      methods: [POST]
      path: /v1/customers/*/refunds
      decision: allow
    - name: big-refunds
      methods: [POST]
      path: /v1/customers/*/refunds
      body: { "$.amount": ">100" }
      decision: approval
    - name: dry-run-refunds
      methods: [POST]
      path: /v1/customers/*/refunds
      query: { dry_run: "true" }
      decision: allow
    - name: eu-exports
      methods: [POST]
      path: /v1/exports
      body: { "$.region": "eu-*", "$.items[0].kind": "csv" }
      decision: allow
    - name: no-secrets
      methods: [GET]
      path: /v1/customers/*/secret*
      decision: deny
      reason: secrets stay in the vault
    - name: search
      methods: [GET]
      path: /v1/search
      query: { q: "*" }
      decision: allow
"#;

fn json_req<'a>(path: &'a str, body: &'a str) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path,
        query: None,
        content_type: Some("application/json; charset=utf-8"),
        body: Some(body.as_bytes()),
    }
}

#[test]
fn rules_match_by_segment_globs() {
    let s = set(&[RULES]);
    assert_eq!(verdict(&s, "GET", "/v1/customers"), Verdict::Allow);
    assert_eq!(
        verdict(&s, "GET", "/v1/customers/7/orders/1"),
        Verdict::Allow
    );
    assert_eq!(verdict(&s, "GET", "/v1/customersX"), Verdict::Deny);
    assert_eq!(verdict(&s, "GET", "/v1"), Verdict::Deny);
    assert_eq!(verdict(&s, "PUT", "/v1/customers/7"), Verdict::Deny);
    let d = decide(&s, &req("GET", "/v1/customers/7/secrets"));
    assert_eq!(
        d.decision.verdict,
        Verdict::Deny,
        "most restrictive match wins"
    );
    assert_eq!(d.decision.rule.as_deref(), Some("no-secrets"));
    assert!(d.decision.reason.contains("secrets stay in the vault"));
    // `*` is exactly one segment.
    assert_eq!(
        decide(&s, &json_req("/v1/customers/7/x/refunds", "{}"))
            .decision
            .verdict,
        Verdict::Deny
    );
}

#[test]
fn body_conditions_decide_and_unreadable_bodies_are_refused() {
    let s = set(&[RULES]);
    let r = |b: &'static str| decide(&s, &json_req("/v1/customers/7/refunds", b));
    assert_eq!(r(r#"{"amount": 50}"#).decision.verdict, Verdict::Allow);
    let big = r(r#"{"amount": 150}"#);
    assert_eq!(big.decision.verdict, Verdict::Approval);
    assert_eq!(big.decision.rule.as_deref(), Some("big-refunds"));
    assert_eq!(
        r(r#"{"amount": "150"}"#).decision.verdict,
        Verdict::Approval
    );
    assert_eq!(r(r#"{"amount": 100}"#).decision.verdict, Verdict::Allow);
    // A repeated key could be read either way by the target.
    let dup = r(r#"{"amount": 5, "amount": 500}"#);
    assert_eq!(dup.decision.verdict, Verdict::Deny);
    assert!(
        dup.decision.reason.contains("not JSON"),
        "{}",
        dup.decision.reason
    );
    assert_eq!(r("amount=500").decision.verdict, Verdict::Deny);
    // Not declared as JSON: the target would not read it as JSON either.
    let mut plain = json_req("/v1/customers/7/refunds", r#"{"amount": 5}"#);
    plain.content_type = Some("text/plain");
    assert_eq!(decide(&s, &plain).decision.verdict, Verdict::Deny);
    let e = |b: &'static str| decide(&s, &json_req("/v1/exports", b)).decision.verdict;
    assert_eq!(
        e(r#"{"region": "eu-west", "items": [{"kind": "csv"}]}"#),
        Verdict::Allow
    );
    assert_eq!(
        e(r#"{"region": "us-east", "items": [{"kind": "csv"}]}"#),
        Verdict::Deny
    );
    assert_eq!(e(r#"{"region": "eu-west", "items": []}"#), Verdict::Deny);
    // Whether the decision rests on the body: the gateway streams a body
    // too large to hold only when it does not.
    assert!(r(r#"{"amount": 50}"#).reads_body);
    let get = decide(&s, &req("GET", "/v1/customers/7"));
    assert!(!get.reads_body, "{:?}", get.decision);
}

#[test]
fn query_conditions_decide_and_repeats_are_refused() {
    let s = set(&[RULES]);
    let mut r = req("GET", "/v1/search");
    assert_eq!(decide(&s, &r).decision.verdict, Verdict::Deny);
    r.query = Some("q=alice&page=2");
    assert_eq!(decide(&s, &r).decision.verdict, Verdict::Allow);
    r.query = Some("q=alice&q=bob");
    let d = decide(&s, &r);
    assert_eq!(d.decision.verdict, Verdict::Deny);
    assert!(
        d.decision.reason.contains("more than once"),
        "{}",
        d.decision.reason
    );
    r.query = Some("q=%zz");
    assert_eq!(decide(&s, &r).decision.verdict, Verdict::Deny);
    let mut dry = json_req("/v1/customers/7/refunds", r#"{"amount": 5}"#);
    dry.query = Some("dry_run=true");
    assert_eq!(decide(&s, &dry).decision.verdict, Verdict::Allow);
    dry.body = Some(br#"{"amount": 500}"#);
    assert_eq!(
        decide(&s, &dry).decision.verdict,
        Verdict::Approval,
        "every matching rule counts"
    );
}

#[test]
fn policies_combine_most_restrictive_and_sql_only_policies_decide_nothing_for_http() {
    let sql_only = "name: sql\nstatements:\n  default: allow\n";
    // No http: section anywhere: HTTP is refused.
    let d = decide(&set(&[sql_only]), &req("GET", "/v1"));
    assert_eq!(d.decision.verdict, Verdict::Deny);
    assert!(
        d.decision
            .reason
            .contains("no policy gives agent HTTP access")
    );
    assert!(d.uncovered);
    // A refused path or a policy's own refusal is no lack of cover.
    assert!(!decide(&set(&[sql_only]), &req("GET", "/v1/%2e%2e/admin")).uncovered);
    let deny_all = "name: closed\nhttp:\n  default: deny\n";
    let d = decide(&set(&[deny_all]), &req("GET", "/v1"));
    assert_eq!(d.decision.verdict, Verdict::Deny);
    assert!(!d.uncovered);
    // An http-only policy decides nothing for SQL.
    let http_only = "name: web\nhttp:\n  default: allow\n";
    let both = set(&[sql_only, http_only]);
    assert_eq!(both.decide(&subject(), "SELECT 1").verdict, Verdict::Allow);
    assert_eq!(verdict(&both, "GET", "/v1"), Verdict::Allow);
    let with_agents = set(&[
        http_only,
        include_str!("../../examples/policies/http-agents.yaml"),
    ]);
    let d = decide(&with_agents, &req("DELETE", "/x"));
    assert_eq!(d.decision.verdict, Verdict::Deny);
    assert_eq!(d.decision.policy.as_deref(), Some("http-agents"));
    // Policies that do not apply to the target are not consulted.
    let other = "name: other\napplies_to:\n  targets: [billing]\nhttp:\n  default: allow\n";
    assert_eq!(verdict(&set(&[other]), "GET", "/v1"), Verdict::Deny);
}

#[test]
fn bad_http_sections_name_the_field() {
    for (yaml, path) in [
        (
            "name: p\nhttp:\n  rules:\n    - name: r\n      methods: [get]\n      decision: allow\n",
            "http.rules[0].methods[0]",
        ),
        (
            "name: p\nhttp:\n  rules:\n    - name: r\n      methods: [TRACE]\n      decision: allow\n",
            "http.rules[0].methods[0]",
        ),
        (
            "name: p\nhttp:\n  rules:\n    - name: r\n      path: v1\n      decision: allow\n",
            "http.rules[0].path",
        ),
        (
            "name: p\nhttp:\n  rules:\n    - name: r\n      path: /a/../b\n      decision: allow\n",
            "http.rules[0].path",
        ),
        (
            "name: p\nhttp:\n  rules:\n    - name: r\n      body: {'$..a': '1'}\n      decision: allow\n",
            "http.rules[0].body.$..a",
        ),
        (
            "name: p\nhttp:\n  rules:\n    - name: r\n      body: {'$.a': '>x'}\n      decision: allow\n",
            "http.rules[0].body.$.a",
        ),
        (
            "name: p\nhttp:\n  rules:\n    - name: r\n      decision: allow\n    - name: r\n      decision: deny\n",
            "http.rules[1].name",
        ),
        (
            "name: p\nhttp:\n  response:\n    mask:\n      - path: data.email\n        mask: email\n",
            "http.response.mask[0].path",
        ),
        (
            "name: p\nhttp:\n  response:\n    mask:\n      - path: $.a\n        mask: hash\n",
            "http.response.mask[0].mask",
        ),
        (
            "name: p\nhttp:\n  response:\n    detectors: true\n",
            "http.response.detectors",
        ),
        ("name: p\n", "statements"),
    ] {
        let e = Policy::from_yaml(yaml).unwrap_err();
        assert_eq!(e.path, path, "{yaml}: {e}");
    }
    assert!(Policy::from_yaml("name: p\nhttp:\n  defualt: allow\n").is_err());
    assert!(Policy::from_yaml("name: p\nhttp:\n  default: maybe\n").is_err());
}

#[test]
fn response_plans_say_what_to_do_with_headers_and_content() {
    let d = decide(&agents(), &req("GET", "/customers"));
    let r = &d.response;
    assert_eq!(r.header_action("Set-Cookie"), HeaderAction::Remove);
    assert_eq!(r.header_action("authorization"), HeaderAction::Remove);
    assert_eq!(r.header_action("Content-Type"), HeaderAction::Pass);
    assert_eq!(r.content(Some("application/json")), ContentAction::Json);
    assert_eq!(
        r.content(Some("application/vnd.api+json")),
        ContentAction::Json
    );
    assert_eq!(
        r.content(Some("text/plain; charset=utf-8")),
        ContentAction::Text
    );
    assert_eq!(r.content(Some("image/png")), ContentAction::Deny);
    assert_eq!(r.content(None), ContentAction::Deny);
    assert!(!r.is_noop());
    let o = decide(&observe(), &req("GET", "/customers"));
    assert_eq!(o.response.content(Some("image/png")), ContentAction::Pass);
    assert_eq!(
        o.response.content(Some("application/json")),
        ContentAction::Pass
    );
    assert!(o.response.is_noop());
    // Secrets are removed by default, unless a policy says otherwise.
    assert_eq!(o.response.header_action("SET-COOKIE"), HeaderAction::Remove);
    let p = set(&[
        "name: p\nhttp:\n  default: allow\n  response:\n    headers: {set-cookie: pass, x-debug: mask}\n",
    ]);
    let d = decide(&p, &req("GET", "/"));
    assert_eq!(d.response.header_action("set-cookie"), HeaderAction::Pass);
    assert_eq!(d.response.header_action("X-Debug"), HeaderAction::Mask);
}

#[test]
fn helpers_for_the_node() {
    assert!(is_method_override_header("X-HTTP-Method-Override"));
    assert!(is_method_override_header("x-http-method"));
    assert!(is_method_override_header("X-Method-Override"));
    assert!(!is_method_override_header("X-Request-Id"));
    let h = approval_hash("POST", "/v1/refunds", Some("x=1"), b"{}");
    assert!(h.starts_with("h1:") && h.len() == 67, "{h}");
    assert_eq!(h, approval_hash("POST", "/v1/refunds", Some("x=1"), b"{}"));
    assert_ne!(h, approval_hash("POST", "/v1/refunds", Some("x=2"), b"{}"));
    assert_ne!(h, approval_hash("POST", "/v1/refunds", None, b"{}"));
    assert_ne!(h, approval_hash("PUT", "/v1/refunds", Some("x=1"), b"{}"));
    assert_ne!(h, approval_hash("POST", "/v1/refund", Some("sx=1"), b"{}"));
    assert_ne!(h, approval_hash("POST", "/v1/refunds", Some("x=1"), b"{ }"));
    assert_eq!(
        redact_query("q=alice&page=2&flag&sk_live_x", QueryAudit::Redact),
        "q=****&page=****&****&****"
    );
    assert_eq!(redact_query("q=alice", QueryAudit::Keep), "q=alice");
    let mut r = req("GET", "/customers");
    r.query = Some("q=alice");
    let d = decide(&agents(), &r);
    assert_eq!(d.audit_query("q=alice"), "q=****");
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,6}",
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%2E.".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("".to_owned()),
        Just(";x=1".to_owned()),
        Just("%00".to_owned()),
        Just("%c0%ae".to_owned()),
        Just("%25".to_owned()),
        Just("admin".to_owned()),
    ]
}

proptest! {
    /// Whatever a path is made of, a canonical form never holds a dot
    /// segment, an empty segment, an encoded slash or a ';', and
    /// normalising it again changes nothing.
    #[test]
    fn canonical_paths_are_clean_and_stable(segs in prop::collection::vec(segment(), 0..8)) {
        let raw = format!("/{}", segs.join("/"));
        if let Ok(p) = normalize_path(&raw) {
            for s in p.split('/').skip(1) {
                prop_assert!(s != "." && s != "..", "{raw} -> {p}");
                let lower = s.to_ascii_lowercase();
                prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !s.contains(';'));
                prop_assert!(!lower.contains("%2e"), "{raw} -> {p}");
            }
            prop_assert!(!p[1..].contains("//"), "{raw} -> {p}");
            let again = normalize_path(&p);
            prop_assert_eq!(again, Ok(p));
        }
    }

    /// Arbitrary bytes never panic and never reach a rule unless clean.
    #[test]
    fn arbitrary_paths_never_panic(raw in "\\PC{0,40}", method in "[A-Za-z]{0,8}") {
        let s = agents();
        let d = decide(&s, &req(&method, &raw));
        if d.decision.verdict != Verdict::Deny {
            let p = d.path.unwrap();
            prop_assert!(!p.split('/').any(|x| x == ".." || x == "."));
        }
    }

    /// The admin API stays closed however its name is encoded.
    #[test]
    fn admin_stays_closed(mask in 0u32..32, tail in "[a-z]{0,5}") {
        let name: String = "admin"
            .bytes()
            .enumerate()
            .map(|(i, b)| if mask & (1 << i) != 0 { format!("%{b:02x}") } else { char::from(b).to_string() })
            .collect();
        let path = format!("/{name}/{tail}");
        prop_assert_eq!(verdict(&agents(), "GET", &path), Verdict::Deny);
    }
}

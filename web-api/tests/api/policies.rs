use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use sluice_policy::{Policy, PolicySet, Subject};

use crate::common::{Api, assert_problem, send};

const REFERENCE: &str = include_str!("../../../examples/policies/reference.yaml");

/// A small valid policy named `name` that allows reads for `group`.
fn reads_for(name: &str, group: &str) -> String {
    format!(
        "name: {name}\n\
         description: reads for {group}\n\
         applies_to:\n  groups: [{group}]\n  targets: [\"*\"]\n\
         statements:\n  default: deny\n  rules:\n    - name: reads\n      kinds: [select]\n      decision: allow\n"
    )
}

/// A policy whose only rule refers to a table set that does not exist.
const BAD_TABLES: &str = "name: broken\n\
statements:\n  default: deny\n  rules:\n    - name: r\n      kinds: [delete]\n      tables: nosuchset\n      decision: deny\n";

fn yaml(req: RequestBuilder, source: &str) -> RequestBuilder {
    req.header("content-type", "application/yaml")
        .body(source.to_owned())
}

async fn create_yaml(api: &Api, source: &str) -> (u16, Value) {
    send(yaml(api.req(Method::POST, "/api/v1/policies"), source)).await
}

/// Polls the control plane's current snapshot until `pred` holds of its
/// policies (name, version), for up to five seconds.
async fn snapshot_eventually(api: &Api, what: &str, pred: impl Fn(&[(String, u64)]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let policies: Vec<(String, u64)> = api
            .cp
            .current_snapshot()
            .policies
            .iter()
            .map(|p| (p.name.clone(), p.version))
            .collect();
        if pred(&policies) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot never showed {what}: {policies:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Create, read, list, replace, refuse a duplicate, delete, and the history
/// of it all.
async fn lifecycle(api: &Api) {
    let (status, created) = create_yaml(api, REFERENCE).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "reference");
    assert_eq!(created["version"], 1);
    assert_eq!(created["source"], REFERENCE, "source kept byte for byte");
    assert_eq!(
        created["description"],
        "Read freely, see no secrets, write only with a human's approval, never destroy."
    );
    assert_eq!(created["applies_to"]["groups"], json!(["agents"]));
    assert_eq!(created["applies_to"]["targets"], json!(["*"]));
    assert_eq!(created["error"], Value::Null);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(created["created_at_us"].as_i64().unwrap() > 0);
    assert_eq!(created["created_at_us"], created["updated_at_us"]);

    let (status, one) = api.get("/api/v1/policies/reference").await;
    assert_eq!(status, 200);
    assert_eq!(one, created);

    let (status, list) = api.get("/api/v1/policies").await;
    assert_eq!(status, 200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["name"], "reference");
    assert_eq!(items[0]["version"], 1);
    assert_eq!(items[0]["description"], created["description"]);
    assert_eq!(items[0]["applies_to"], created["applies_to"]);
    assert_eq!(items[0]["updated_at"], created["updated_at"]);
    assert!(items[0].get("source").is_none(), "listing omits sources");

    // Replace with a changed document, sent as JSON this time.
    let changed = REFERENCE.replace("groups: [agents]", "groups: [agents, bots]");
    assert_ne!(changed, REFERENCE);
    let (status, replaced) = send(
        api.req(Method::PUT, "/api/v1/policies/reference")
            .json(&json!({ "source": changed })),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["source"], changed.as_str());
    assert_eq!(replaced["applies_to"]["groups"], json!(["agents", "bots"]));
    assert_eq!(replaced["created_at_us"], created["created_at_us"]);
    assert!(replaced["updated_at_us"].as_i64() >= created["updated_at_us"].as_i64());
    let (_, one) = api.get("/api/v1/policies/reference").await;
    assert_eq!(one["version"], 2);
    assert_eq!(one["source"], changed.as_str());

    let resp = yaml(api.req(Method::POST, "/api/v1/policies"), REFERENCE)
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 409).await;
    assert!(p["detail"].as_str().unwrap().contains("reference"), "{p}");
    assert!(p.get("errors").is_none(), "only 422s carry errors: {p}");

    let (status, history) = api.get("/api/v1/policies/reference/versions").await;
    assert_eq!(status, 200);
    let h = history["items"].as_array().unwrap();
    assert_eq!(h.len(), 2, "{history}");
    assert_eq!(h[0]["version"], 1);
    assert_eq!(h[0]["source"], REFERENCE);
    assert_eq!(h[1]["version"], 2);
    assert_eq!(h[1]["source"], changed.as_str());
    for v in h {
        assert_eq!(v["author"], "alice", "the caller is the author");
        assert_eq!(v["deleted"], false);
        assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
    }

    let resp = api
        .req(Method::DELETE, "/api/v1/policies/reference")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(
        api.cp
            .store
            .get_policy("reference")
            .await
            .unwrap()
            .is_none()
    );
    for method in [Method::GET, Method::DELETE] {
        let resp = api
            .req(method, "/api/v1/policies/reference")
            .send()
            .await
            .unwrap();
        let p = assert_problem(resp, 404).await;
        assert!(p["detail"].as_str().unwrap().contains("reference"), "{p}");
    }
    let resp = yaml(
        api.req(Method::PUT, "/api/v1/policies/reference"),
        REFERENCE,
    )
    .send()
    .await
    .unwrap();
    assert_problem(resp, 404).await;
    let (_, list) = api.get("/api/v1/policies").await;
    assert_eq!(list["items"], json!([]));

    // The history outlives the policy and ends with its deletion.
    let (status, history) = api.get("/api/v1/policies/reference/versions").await;
    assert_eq!(status, 200);
    let h = history["items"].as_array().unwrap();
    assert_eq!(h.len(), 3, "{history}");
    assert_eq!(h[2]["version"], 3);
    assert_eq!(h[2]["deleted"], true);
    assert_eq!(h[2]["source"], Value::Null);
    assert_eq!(h[2]["author"], "alice");

    // Created again, it continues the numbering.
    let (status, again) = create_yaml(api, REFERENCE).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["version"], 4);

    let resp = api
        .req(Method::GET, "/api/v1/policies/never/versions")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404).await;
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    lifecycle(&Api::sqlite().await).await;
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    lifecycle(&Api::postgres().await).await;
}

#[tokio::test]
async fn the_author_is_the_callers_identity() {
    let api = Api::sqlite().await;
    let bob = api.token("bob", &[sluice_identity::Role::Admin]);
    let (status, _) = send(yaml(
        api.anon(Method::POST, "/api/v1/policies").bearer_auth(&bob),
        &reads_for("p", "eng"),
    ))
    .await;
    assert_eq!(status, 201);
    let resp = api
        .anon(Method::DELETE, "/api/v1/policies/p")
        .bearer_auth(&api.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let history = api.cp.store.policy_versions("p").await.unwrap();
    let authors: Vec<&str> = history.iter().map(|v| v.author.as_str()).collect();
    assert_eq!(authors, ["bob", "alice"]);
}

#[tokio::test]
async fn yaml_media_types_and_json_are_accepted() {
    let api = Api::sqlite().await;
    for (i, ctype) in [
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "Application/YAML; charset=utf-8",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("p{i}");
        let (status, body) = send(
            api.req(Method::POST, "/api/v1/policies")
                .header("content-type", ctype)
                .body(reads_for(&name, "eng")),
        )
        .await;
        assert_eq!(status, 201, "{ctype}: {body}");
        assert_eq!(body["name"], name.as_str());
    }
    let (status, body) = api
        .post(
            "/api/v1/policies",
            &json!({ "source": reads_for("as-json", "eng") }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["source"], reads_for("as-json", "eng").as_str());
    assert_eq!(api.cp.store.list_policies().await.unwrap().len(), 5);
}

#[tokio::test]
async fn other_media_types_malformed_and_oversized_bodies_are_problems() {
    let api = Api::sqlite().await;
    let source = reads_for("p", "eng");
    for ctype in [Some("text/plain"), Some("application/xml"), None] {
        let mut req = api
            .req(Method::POST, "/api/v1/policies")
            .body(source.clone());
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        let p = assert_problem(req.send().await.unwrap(), 415).await;
        assert!(
            p["detail"].as_str().unwrap().contains("application/yaml"),
            "{ctype:?}: {p}"
        );
    }
    // Also on replace.
    let resp = api
        .req(Method::PUT, "/api/v1/policies/p")
        .header("content-type", "text/plain")
        .body(source.clone())
        .send()
        .await
        .unwrap();
    assert_problem(resp, 415).await;

    for (what, req) in [
        (
            "malformed json",
            api.req(Method::POST, "/api/v1/policies")
                .header("content-type", "application/json")
                .body("{\"source\": "),
        ),
        (
            "unknown field",
            api.req(Method::POST, "/api/v1/policies")
                .json(&json!({"source": source, "yaml": "x"})),
        ),
        (
            "missing source",
            api.req(Method::POST, "/api/v1/policies").json(&json!({})),
        ),
        (
            "not utf-8",
            api.req(Method::POST, "/api/v1/policies")
                .header("content-type", "application/yaml")
                .body(vec![b'n', b':', b' ', 0xff, 0xfe]),
        ),
    ] {
        let p = assert_problem(req.send().await.unwrap(), 400).await;
        assert!(p.get("errors").is_none(), "{what}: {p}");
    }

    // Over 1 MiB, as YAML and as JSON.
    let big = format!("{source}# {}\n", "x".repeat(1 << 20));
    let resp = yaml(api.req(Method::POST, "/api/v1/policies"), &big)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 413).await;
    let resp = api
        .req(Method::POST, "/api/v1/policies")
        .json(&json!({ "source": big }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 413).await;
    // Just under the limit is fine.
    let padded = format!("{source}# {}\n", "x".repeat((1 << 20) - source.len() - 3));
    assert_eq!(padded.len(), 1 << 20);
    let (status, body) = create_yaml(&api, &padded).await;
    assert_eq!(status, 201, "{body}");

    assert_eq!(
        api.cp.store.list_policies().await.unwrap().len(),
        1,
        "only the last one was stored"
    );
}

#[tokio::test]
async fn invalid_policies_are_422_naming_the_field() {
    let api = Api::sqlite().await;

    let resp = yaml(api.req(Method::POST, "/api/v1/policies"), BAD_TABLES)
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 422).await;
    assert_eq!(p["errors"][0]["path"], "statements.rules[0].tables", "{p}");
    let message = p["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("nosuchset"), "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("statements.rules[0].tables"),
        "{p}"
    );

    // The same through JSON.
    let resp = api
        .req(Method::POST, "/api/v1/policies")
        .json(&json!({ "source": BAD_TABLES }))
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 422).await;
    assert_eq!(p["errors"][0]["path"], "statements.rules[0].tables", "{p}");

    // A YAML syntax error has no path; its message gives the position.
    let resp = yaml(
        api.req(Method::POST, "/api/v1/policies"),
        "name: x\nstatements: [unclosed\n",
    )
    .send()
    .await
    .unwrap();
    let p = assert_problem(resp, 422).await;
    assert_eq!(p["errors"][0]["path"], "", "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line")),
        "{p}"
    );

    // A bad name is named too.
    let resp = yaml(
        api.req(Method::POST, "/api/v1/policies"),
        &reads_for("bad name!", "eng").replace("bad name!", "\"bad name!\""),
    )
    .send()
    .await
    .unwrap();
    let p = assert_problem(resp, 422).await;
    assert_eq!(p["errors"][0]["path"], "name", "{p}");

    assert!(api.cp.store.list_policies().await.unwrap().is_empty());

    // Replacing: an invalid document, and one named differently from the path.
    let (status, _) = create_yaml(&api, &reads_for("p", "eng")).await;
    assert_eq!(status, 201);
    let broken_p = BAD_TABLES.replace("name: broken", "name: p");
    let resp = yaml(api.req(Method::PUT, "/api/v1/policies/p"), &broken_p)
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 422).await;
    assert_eq!(p["errors"][0]["path"], "statements.rules[0].tables", "{p}");

    let resp = yaml(
        api.req(Method::PUT, "/api/v1/policies/p"),
        &reads_for("q", "eng"),
    )
    .send()
    .await
    .unwrap();
    let p = assert_problem(resp, 422).await;
    assert_eq!(p["errors"][0]["path"], "name", "{p}");
    let message = p["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("\"q\"") && message.contains("\"p\""),
        "{p}"
    );

    let stored = api.cp.store.get_policy("p").await.unwrap().unwrap();
    assert_eq!(stored.version, 1, "refused replacements stored nothing");
    assert_eq!(api.cp.store.policy_versions("p").await.unwrap().len(), 1);
    assert!(api.cp.store.get_policy("q").await.unwrap().is_none());
}

/// A policy stored by other means that no longer checks is still listed,
/// with the reason.
#[tokio::test]
async fn a_stored_policy_that_does_not_check_is_listed_with_its_error() {
    let api = Api::sqlite().await;
    api.cp
        .store
        .put_policy(
            "broken",
            BAD_TABLES,
            "someone",
            sluice_control_plane::store::PutMode::Create,
        )
        .await
        .unwrap();
    let (status, list) = api.get("/api/v1/policies").await;
    assert_eq!(status, 200);
    let item = &list["items"][0];
    assert_eq!(item["name"], "broken");
    assert_eq!(item["version"], 1);
    assert_eq!(item["description"], Value::Null);
    assert_eq!(item["applies_to"], Value::Null);
    assert!(
        item["error"]
            .as_str()
            .unwrap()
            .contains("statements.rules[0].tables"),
        "{item}"
    );
    let (status, one) = api.get("/api/v1/policies/broken").await;
    assert_eq!(status, 200);
    assert_eq!(one["source"], BAD_TABLES);

    // A node refuses everything then; so does the dry run.
    let (status, answer) = api
        .post(
            "/api/v1/policies/check",
            &json!({"sql": "SELECT 1", "target": "app", "groups": ["agents"]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "deny");
    assert!(
        answer["reasons"][0]
            .as_str()
            .unwrap()
            .contains("policy \"broken\" is invalid"),
        "{answer}"
    );
}

/// `check` is a valid policy name even though the dry run lives at
/// `/api/v1/policies/check`.
#[tokio::test]
async fn a_policy_named_check_is_reachable() {
    let api = Api::sqlite().await;
    let (status, _) = create_yaml(&api, &reads_for("check", "eng")).await;
    assert_eq!(status, 201);
    let (status, one) = api.get("/api/v1/policies/check").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["name"], "check");
    let (status, replaced) = send(yaml(
        api.req(Method::PUT, "/api/v1/policies/check"),
        &reads_for("check", "ops"),
    ))
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["version"], 2);
    let (status, history) = api.get("/api/v1/policies/check/versions").await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
    let resp = api
        .req(Method::DELETE, "/api/v1/policies/check")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(api.cp.store.get_policy("check").await.unwrap().is_none());
    // The dry run itself still answers.
    let (status, answer) = api
        .post(
            "/api/v1/policies/check",
            &json!({"sql": "SELECT 1", "target": "app", "groups": ["eng"]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "deny");
}

async fn dry_run(api: &Api, body: Value) -> Value {
    let (status, answer) = api.post("/api/v1/policies/check", &body).await;
    assert_eq!(status, 200, "{body} -> {answer}");
    answer
}

async fn dry_run_on_reference(api: &Api) {
    let (status, _) = create_yaml(api, REFERENCE).await;
    assert_eq!(status, 201);

    let a = dry_run(
        api,
        json!({"sql": "DELETE FROM customers WHERE id = 4", "target": "app", "groups": ["agents"]}),
    )
    .await;
    // The same document as `sluice policy check --format json`.
    let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "decision",
            "policies_applied",
            "policy",
            "reasons",
            "rule",
            "statements"
        ]
    );
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["policy"], "reference");
    assert_eq!(a["rule"], "no-critical-deletes");
    assert_eq!(a["policies_applied"], json!(["reference"]));
    assert_eq!(a["reasons"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a["statements"][0]["kind"], "delete", "{a}");
    assert_eq!(
        a["statements"][0]["actions"][0]["table"],
        "public.customers"
    );

    let a = dry_run(
        api,
        json!({"sql": "UPDATE orders SET status = 'x' WHERE id = 2", "target": "app", "groups": ["agents"]}),
    )
    .await;
    assert_eq!(a["decision"], "approval", "{a}");
    assert_eq!(a["rule"], "writes-need-approval");
    assert_eq!(a["statements"][0]["kind"], "update");

    let a = dry_run(
        api,
        json!({"sql": "SELECT * FROM orders", "target": "app", "groups": ["agents"]}),
    )
    .await;
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["rule"], "reads");

    // No policy applies to interns: denied, and the reason names the caller.
    let a = dry_run(
        api,
        json!({"sql": "SELECT 1", "target": "app", "groups": ["interns"]}),
    )
    .await;
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["policies_applied"], json!([]));
    assert_eq!(a["policy"], Value::Null);
    assert_eq!(a["rule"], Value::Null);
    let reason = a["reasons"][0].as_str().unwrap();
    assert!(reason.contains("alice") && reason.contains("app"), "{a}");
    // An explicit identity replaces the caller's.
    let a = dry_run(
        api,
        json!({"sql": "SELECT 1", "target": "app", "groups": ["interns"], "identity": "agent-7"}),
    )
    .await;
    assert!(a["reasons"][0].as_str().unwrap().contains("agent-7"), "{a}");

    // What does not parse is denied, as on a node.
    let a = dry_run(
        api,
        json!({"sql": "SELEC oops", "target": "app", "groups": ["agents"]}),
    )
    .await;
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["statements"], json!([]));
}

#[tokio::test]
async fn dry_run_on_the_reference_policy_on_sqlite() {
    dry_run_on_reference(&Api::sqlite().await).await;
}

#[tokio::test]
async fn dry_run_on_the_reference_policy_on_postgres() {
    dry_run_on_reference(&Api::postgres().await).await;
}

/// The dry run answers exactly what the engine nodes run answers, for the
/// stored policies, in the order a node holds them.
#[tokio::test]
async fn dry_run_matches_the_engine() {
    let api = Api::sqlite().await;
    let permissive =
        "name: permissive\napplies_to:\n  groups: [agents]\nstatements:\n  default: allow\n";
    for source in [REFERENCE, permissive, &reads_for("eng-reads", "eng")] {
        let (status, body) = create_yaml(&api, source).await;
        assert_eq!(status, 201, "{body}");
    }
    // Built as a node builds its set: from the snapshot's documents.
    let stored = api.cp.store.list_policies().await.unwrap();
    let set = PolicySet::new(
        stored
            .iter()
            .map(|p| Policy::from_yaml(&p.source).unwrap())
            .collect(),
    );
    let groups_cases: [&[&str]; 4] = [&["agents"], &["eng"], &["agents", "eng"], &[]];
    let sqls = [
        "SELECT * FROM orders",
        "DELETE FROM customers WHERE id = 4",
        "DELETE FROM orders",
        "UPDATE orders SET status = 'x' WHERE id = 2",
        "SELECT 1; DROP TABLE orders",
        "SET statement_timeout = 5",
        "SELECT pg_sleep(1)",
        "BEGIN",
        "not sql at all",
    ];
    for groups in groups_cases {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        for sql in sqls {
            let a = dry_run(
                &api,
                json!({"sql": sql, "target": "app", "groups": groups, "identity": "agent-7"}),
            )
            .await;
            let expected = set.check(
                &Subject {
                    identity: "agent-7",
                    groups: &groups,
                    target: "app",
                },
                sql,
            );
            let d = &expected.decision;
            let what = format!("{sql:?} for {groups:?}: {a}");
            assert_eq!(a["decision"], d.verdict.as_str(), "{what}");
            assert_eq!(a["policy"], json!(d.policy), "{what}");
            assert_eq!(a["rule"], json!(d.rule), "{what}");
            let reasons: Vec<&str> = if d.reason.is_empty() {
                vec![]
            } else {
                vec![d.reason.as_str()]
            };
            assert_eq!(a["reasons"], json!(reasons), "{what}");
            assert_eq!(a["policies_applied"], json!(expected.policies), "{what}");
            assert_eq!(
                a["statements"],
                serde_json::to_value(&expected.statements).unwrap(),
                "{what}"
            );
        }
    }
    // The set of two agent policies is stricter than the permissive one alone.
    let both = dry_run(
        &api,
        json!({"sql": "DELETE FROM orders WHERE id = 1", "target": "app", "groups": ["agents"]}),
    )
    .await;
    assert_eq!(both["decision"], "approval", "{both}");
    assert_eq!(both["policies_applied"], json!(["permissive", "reference"]));
    let only = dry_run(
        &api,
        json!({"sql": "DELETE FROM orders WHERE id = 1", "target": "app", "groups": ["agents"],
               "policies": ["permissive"]}),
    )
    .await;
    assert_eq!(only["decision"], "allow", "{only}");
    assert_eq!(only["policies_applied"], json!(["permissive"]));
}

#[tokio::test]
async fn dry_run_with_an_unsaved_document() {
    let api = Api::sqlite().await;
    let (status, _) = create_yaml(&api, &reads_for("stored", "agents")).await;
    assert_eq!(status, 201);

    // The draft alone decides: the stored policy would allow this read.
    let draft = "name: draft\napplies_to:\n  groups: [agents]\nstatements:\n  default: deny\n";
    let a = dry_run(
        &api,
        json!({"sql": "SELECT 1", "target": "app", "groups": ["agents"], "source": draft}),
    )
    .await;
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["policies_applied"], json!(["draft"]));
    let a = dry_run(
        &api,
        json!({"sql": "SELECT 1", "target": "app", "groups": ["agents"]}),
    )
    .await;
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["policies_applied"], json!(["stored"]));
    assert!(
        api.cp.store.get_policy("draft").await.unwrap().is_none(),
        "a dry run stores nothing"
    );

    // An invalid draft is a 422 naming the field.
    let resp = api
        .req(Method::POST, "/api/v1/policies/check")
        .json(&json!({"sql": "SELECT 1", "target": "app", "groups": ["agents"], "source": BAD_TABLES}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 422).await;
    assert_eq!(p["errors"][0]["path"], "statements.rules[0].tables", "{p}");
}

#[tokio::test]
async fn dry_run_refuses_bad_requests() {
    let api = Api::sqlite().await;
    let (status, _) = create_yaml(&api, &reads_for("stored", "agents")).await;
    assert_eq!(status, 201);

    let resp = api
        .req(Method::POST, "/api/v1/policies/check")
        .json(&json!({"sql": "SELECT 1", "target": "app", "groups": [], "policies": ["stored", "nope", "nada"]}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 404).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("nope") && detail.contains("nada") && !detail.contains("stored"),
        "{p}"
    );

    for (what, body) in [
        (
            "both",
            json!({"sql": "SELECT 1", "target": "app", "policies": ["stored"], "source": reads_for("x", "y")}),
        ),
        (
            "empty policies",
            json!({"sql": "SELECT 1", "target": "app", "policies": []}),
        ),
        ("missing sql", json!({"target": "app"})),
        ("missing target", json!({"sql": "SELECT 1"})),
        (
            "unknown field",
            json!({"sql": "SELECT 1", "target": "app", "group": "agents"}),
        ),
        (
            "wrong type",
            json!({"sql": "SELECT 1", "target": "app", "groups": "agents"}),
        ),
    ] {
        let resp = api
            .req(Method::POST, "/api/v1/policies/check")
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(resp, 400).await;
        assert!(p.get("errors").is_none(), "{what}: {p}");
    }
    let resp = api
        .req(Method::POST, "/api/v1/policies/check")
        .header("content-type", "application/yaml")
        .body("sql: SELECT 1")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 415).await;
}

/// A change through the API reaches what nodes receive.
#[tokio::test]
async fn changes_reach_the_node_snapshot() {
    let api = Api::sqlite().await;
    let (status, _) = create_yaml(&api, REFERENCE).await;
    assert_eq!(status, 201);
    snapshot_eventually(&api, "reference v1", |p| p == [("reference".to_owned(), 1)]).await;
    let source = api
        .cp
        .current_snapshot()
        .policies
        .iter()
        .find(|p| p.name == "reference")
        .map(|p| p.source.clone());
    assert_eq!(source.as_deref(), Some(REFERENCE));

    let changed = REFERENCE.replace("groups: [agents]", "groups: [bots]");
    let (status, _) = send(yaml(
        api.req(Method::PUT, "/api/v1/policies/reference"),
        &changed,
    ))
    .await;
    assert_eq!(status, 200);
    snapshot_eventually(&api, "reference v2", |p| p == [("reference".to_owned(), 2)]).await;
    assert!(
        api.cp
            .current_snapshot()
            .policies
            .iter()
            .any(|p| p.source == changed)
    );

    let before = api.cp.current_snapshot().version;
    let resp = api
        .req(Method::DELETE, "/api/v1/policies/reference")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    snapshot_eventually(&api, "no policy", <[_]>::is_empty).await;
    assert!(api.cp.current_snapshot().version > before);
}

const HTTP_AGENTS: &str = include_str!("../../../examples/policies/http-agents.yaml");

/// The dry run decides HTTP requests as a node would, from stored policies
/// or an unsaved document, with the same answer as `sluice policy check
/// --http`.
#[tokio::test]
async fn dry_run_decides_http_requests() {
    let api = Api::sqlite().await;
    let (status, _) = create_yaml(&api, HTTP_AGENTS).await;
    assert_eq!(status, 201);
    let http = |method: &str, path: &str, body: Value| json!({"http": {"method": method, "path": path, "body": body}, "target": "crm"});
    let a = dry_run(&api, http("GET", "/customers/7", Value::Null)).await;
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["rule"], "read-customers");
    assert_eq!(a["path"], "/customers/7");
    assert_eq!(a["policies_applied"], json!(["http-agents"]));
    let a = dry_run(&api, http("DELETE", "/customers/7", Value::Null)).await;
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["rule"], "no-deletes");
    let a = dry_run(&api, http("POST", "/refunds", json!({"amount": 500}))).await;
    assert_eq!(a["decision"], "approval", "{a}");
    assert_eq!(a["rule"], "large-refunds-need-approval");
    let a = dry_run(&api, http("GET", "/customers/%2e%2e/admin", Value::Null)).await;
    assert_eq!(a["decision"], "deny", "{a}");
    assert!(a["path"].is_null(), "{a}");
    assert!(a["reasons"][0].as_str().unwrap().contains("'..'"), "{a}");
    // SQL answers keep their shape: no path.
    let a = dry_run(&api, json!({"sql": "SELECT 1", "target": "crm"})).await;
    assert!(a.get("path").is_none(), "{a}");
    // An unsaved document that only decides SQL gives no HTTP access.
    let a = dry_run(
        &api,
        json!({"http": {"method": "GET", "path": "/"}, "target": "crm", "source": reads_for("x", "agents")}),
    )
    .await;
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["policies_applied"], json!([]));
    for body in [
        json!({"sql": "SELECT 1", "http": {"method": "GET", "path": "/"}, "target": "crm"}),
        json!({"http": {"method": "GET"}, "target": "crm"}),
        json!({"http": {"method": "GET", "path": "/", "verb": "x"}, "target": "crm"}),
    ] {
        let resp = api
            .req(Method::POST, "/api/v1/policies/check")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400).await;
    }
}

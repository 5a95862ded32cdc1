//! The approval pages of the web UI: the queue, a request's page, and its
//! Approve / Deny forms, signed in by cookie, refused across sites.

use std::time::Duration;

use reqwest::header::{LOCATION, SET_COOKIE};
use sluice_control_plane::approvals::State;
use sluice_control_plane::store::NewApproval;
use sluice_identity::{PrincipalKind, Role};

use crate::common::Api;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A token for `name` with `groups` and `roles`, signed in: the cookie.
async fn cookie(api: &Api, name: &str, groups: &[&str], roles: &[Role]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    let token = api
        .cp
        .issuer
        .issue(
            name,
            PrincipalKind::Person,
            &groups,
            roles,
            Duration::from_secs(300),
        )
        .unwrap()
        .token;
    let resp = no_redirects()
        .post(format!("{}/ui/login", api.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let set = resp.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("SameSite=Strict"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

async fn request(api: &Api, statement: &str, required: u32) -> String {
    api.cp
        .store
        .create_approval(NewApproval {
            mode: "answer".to_owned(),
            identity: "agent".to_owned(),
            target: "demo".to_owned(),
            session_id: "s1".to_owned(),
            node_id: "n1".to_owned(),
            node_request_id: "r1".to_owned(),
            statement: statement.to_owned(),
            statement_hash: format!("{:064x}", statement.len()),
            policy: "reference".to_owned(),
            rule: "writes-need-approval".to_owned(),
            reason: "writes need approval".to_owned(),
            approvers: vec!["dba".to_owned()],
            required,
            ttl_us: 600_000_000,
        })
        .await
        .unwrap()
        .id
}

async fn get(api: &Api, path: &str, cookie: &str) -> (u16, String) {
    let resp = no_redirects()
        .get(format!("{}{path}", api.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Posts a form as the browser would from `origin` (None: no header).
async fn post(
    api: &Api,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let mut req = no_redirects()
        .post(format!("{}{path}", api.base))
        .header("cookie", cookie)
        .form(form);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let resp = req.send().await.unwrap();
    let location = resp
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), location, resp.text().await.unwrap())
}

async fn state(api: &Api, id: &str) -> State {
    api.cp.store.get_approval(id).await.unwrap().unwrap().state
}

#[tokio::test]
async fn the_queue_shows_pending_requests_newest_first_escaped() {
    let api = Api::sqlite().await;
    let older = request(&api, "UPDATE orders SET note = '<script>x</script>'", 1).await;
    let newer = request(&api, "DELETE FROM orders WHERE id = 9", 1).await;
    let decided = request(&api, "UPDATE orders SET status = 'gone'", 1).await;
    let bob = cookie(&api, "bob", &["dba"], &[Role::Approver]).await;
    let (status, _, _) = post(
        &api,
        &format!("/ui/approvals/{decided}/deny"),
        &bob,
        None,
        &[("reason", "no")],
    )
    .await;
    assert_eq!(status, 303);

    let (status, html) = get(&api, "/ui/approvals", &bob).await;
    assert_eq!(status, 200, "{html}");
    let (o, n) = (html.find(&older).unwrap(), html.find(&newer).unwrap());
    assert!(n < o, "newest first");
    assert!(!html.contains(&decided), "only pending requests");
    assert!(!html.contains("<script>x"), "{html}");
    assert!(html.contains("&lt;script&gt;x"), "{html}");

    // Auditors see sessions, not the approval queue; strangers sign in first.
    let auditor = cookie(&api, "audrey", &[], &[Role::Auditor]).await;
    assert_eq!(get(&api, "/ui/approvals", &auditor).await.0, 403);
    let (status, _) = get(&api, "/ui/approvals", "sluice_ui=garbage").await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn an_approver_decides_from_the_request_page() {
    let api = Api::sqlite().await;
    let id = request(
        &api,
        "UPDATE orders SET status = 'refunded' WHERE id = 2",
        1,
    )
    .await;
    let bob = cookie(&api, "bob", &["dba"], &[Role::Approver]).await;
    let (status, html) = get(&api, &format!("/ui/approvals/{id}"), &bob).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("refunded") && html.contains("No votes yet"),
        "{html}"
    );
    assert!(html.contains(&format!("/ui/approvals/{id}/approve")));

    let (status, location, _) = post(
        &api,
        &format!("/ui/approvals/{id}/approve"),
        &bob,
        Some(&api.base),
        &[],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some(format!("/ui/approvals/{id}").as_str())
    );
    assert_eq!(state(&api, &id).await, State::Approved);
    let (_, html) = get(&api, &format!("/ui/approvals/{id}"), &bob).await;
    assert!(
        html.contains("approved in the web UI") && html.contains(">web<"),
        "{html}"
    );
    assert!(!html.contains("/approve\""), "no forms once decided");
    let history = api.cp.store.approval_history(&id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].actor, "bob");
    assert_eq!(history[0].channel, "web");
}

#[tokio::test]
async fn denials_need_a_reason_and_the_approval_rules_hold() {
    let api = Api::sqlite().await;
    let id = request(&api, "UPDATE orders SET status = 'x' WHERE id = 2", 1).await;
    let bob = cookie(&api, "bob", &["dba"], &[Role::Approver]).await;
    let deny = format!("/ui/approvals/{id}/deny");
    assert_eq!(post(&api, &deny, &bob, None, &[]).await.0, 400);
    // Not in the policy's approver groups; the requester itself.
    let eve = cookie(&api, "eve", &["developers"], &[Role::Approver]).await;
    let (status, _, html) = post(&api, &deny, &eve, None, &[("reason", "no")]).await;
    assert_eq!(status, 403, "{html}");
    let agent = cookie(&api, "agent", &["dba"], &[Role::Approver]).await;
    let approve = format!("/ui/approvals/{id}/approve");
    assert_eq!(post(&api, &approve, &agent, None, &[]).await.0, 403);
    assert_eq!(state(&api, &id).await, State::Pending);

    let (status, _, _) = post(&api, &deny, &bob, None, &[("reason", "<i>risky</i>")]).await;
    assert_eq!(status, 303);
    assert_eq!(state(&api, &id).await, State::Denied);
    let (_, html) = get(&api, &format!("/ui/approvals/{id}"), &bob).await;
    assert!(html.contains("&lt;i&gt;risky&lt;/i&gt;"), "{html}");
    let (status, _, html) = post(&api, &approve, &bob, None, &[]).await;
    assert_eq!(status, 409, "{html}");
    let (status, _) = get(&api, "/ui/approvals/apr_none", &bob).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn cross_site_forms_are_refused() {
    let api = Api::sqlite().await;
    let id = request(&api, "UPDATE orders SET status = 'x' WHERE id = 2", 1).await;
    let bob = cookie(&api, "bob", &["dba"], &[Role::Approver]).await;
    let approve = format!("/ui/approvals/{id}/approve");
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let (status, _, html) = post(&api, &approve, &bob, Some(origin), &[]).await;
        assert_eq!(status, 403, "{origin}: {html}");
    }
    let resp = no_redirects()
        .post(format!("{}{approve}", api.base))
        .header("cookie", &bob)
        .header("referer", "https://evil.example/page")
        .form(&[("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(state(&api, &id).await, State::Pending);
    assert!(api.cp.store.approval_history(&id).await.unwrap().is_empty());
    // Without a cookie the form does nothing either.
    let (status, _, _) = post(&api, &approve, "", Some(&api.base), &[]).await;
    assert_eq!(status, 303);
    assert_eq!(state(&api, &id).await, State::Pending);
}

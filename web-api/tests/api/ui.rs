//! The auditor's web pages: sign-in by cookie (for `/ui` only), the session
//! list and a session's timeline with its verdict, everything a client
//! chose shown escaped.

use reqwest::Method;
use reqwest::header::{LOCATION, SET_COOKIE};
use sluice_control_plane::store::{EventKind, StoredEvent};
use sluice_identity::Role;

use crate::common::Api;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with `token`; returns the status and the cookie set, if any.
async fn sign_in(api: &Api, token: &str) -> (u16, Option<String>) {
    let resp = no_redirects()
        .post(format!("{}/ui/login", api.base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let cookie = resp
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), cookie)
}

async fn page(api: &Api, path: &str, cookie: &str) -> (u16, String) {
    let resp = no_redirects()
        .get(format!("{}{path}", api.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let csp = resp.headers().get("content-security-policy").cloned();
    let html = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"));
    let status = resp.status().as_u16();
    if html {
        assert!(csp.is_some_and(|v| v.to_str().unwrap().contains("default-src 'none'")));
    }
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn an_auditor_signs_in_and_reads_sessions_as_escaped_html() {
    let api = Api::sqlite().await;
    api.add_session("s-ui", "agent-7", "orders", 1_700_000_000_000_000)
        .await;
    let statement = StoredEvent {
        session_id: "s-ui".to_owned(),
        seq: 2,
        at: 1_700_000_000_000_100,
        kind: EventKind::Statement {
            text: "SELECT '<script>alert(1)</script>'".to_owned(),
            decision: "deny".to_owned(),
            policy: "reference".to_owned(),
            rule: "reads".to_owned(),
            reason: "no".to_owned(),
            kinds: vec!["select".to_owned()],
            protocol: "simple".to_owned(),
            duration_us: 0,
            rows: 0,
            sqlstate: "42501".to_owned(),
            command_tag: String::new(),
            approval_id: String::new(),
            masked: Default::default(),
            sample: None,
            parameters: Vec::new(),
            bytes: 0,
            http: None,
        },
    };
    api.cp.store.append_events(&[statement]).await.unwrap();

    // Not signed in: sent to the sign-in page.
    let resp = no_redirects()
        .get(format!("{}/ui/sessions", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    // A bad token sets nothing.
    let (status, cookie) = sign_in(&api, "not-a-token").await;
    assert_eq!((status, cookie), (401, None));

    let auditor = api.token("erin", &[Role::Auditor]);
    let (status, cookie) = sign_in(&api, &auditor).await;
    assert_eq!(status, 303);
    let cookie = cookie.unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let cookie = cookie.split(';').next().unwrap().to_owned();

    let (status, list) = page(&api, "/ui/sessions?identity=agent-7", &cookie).await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("href=\"/ui/sessions/s-ui\""), "{list}");
    assert!(list.contains("agent-7"));
    let (_, none) = page(&api, "/ui/sessions?identity=nobody", &cookie).await;
    assert!(none.contains("No sessions match."));
    let (status, bad) = page(&api, "/ui/sessions?kind=robot", &cookie).await;
    assert_eq!(status, 400, "{bad}");

    let (status, timeline) = page(&api, "/ui/sessions/s-ui", &cookie).await;
    assert_eq!(status, 200, "{timeline}");
    assert!(!timeline.contains("<script>"), "{timeline}");
    assert!(timeline.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(timeline.contains("reference/reads"));
    assert!(timeline.contains("intact: 2 events"), "{timeline}");
    let (status, export) = page(&api, "/ui/sessions/s-ui/export?format=jsonl", &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(export.lines().count(), 3, "two events and the seal");
    let (status, _) = page(&api, "/ui/sessions/nope", &cookie).await;
    assert_eq!(status, 404);

    // The cookie is for the pages only: the REST API ignores it.
    let resp = no_redirects()
        .get(format!("{}/api/v1/sessions", api.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn an_approver_may_sign_in_but_not_read_sessions() {
    let api = Api::sqlite().await;
    let approver = api.token("pat", &[Role::Approver]);
    let resp = no_redirects()
        .post(format!("{}/ui/login", api.base))
        .form(&[("token", approver.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()[LOCATION],
        "/ui/approvals",
        "approvers land on their queue"
    );
    let (status, cookie) = sign_in(&api, &approver).await;
    assert_eq!(status, 303);
    let cookie = cookie.unwrap().split(';').next().unwrap().to_owned();
    let (status, body) = page(&api, "/ui/sessions", &cookie).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("auditor or admin"), "{body}");
    // Signing out clears the cookie.
    let resp = no_redirects()
        .request(Method::POST, format!("{}/ui/logout", api.base))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

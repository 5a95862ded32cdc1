//! One request's path through the node: route, authenticate, read the body
//! (whole when it fits what the gateway holds, else its head, the rest
//! streamed), decide, ask for approval if needed, forward with the
//! target's credential, and stream the masked response back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Request, Response, header};
use sluice_common::Shutdown;
use sluice_policy::http::{HttpDecision, HttpRequest, approval_hash};
use sluice_policy::{Decision, Subject, Verdict};

use super::HttpLimits;
use super::approval::{self, Bound};
use super::headers;
use super::problem::GatewayError;
use super::request::{self, Incoming};
use super::response::{self, Record, SAMPLE_BYTES};
use super::sessions::{HttpSession, HttpSessions, InFlight, Opening};
use super::upstream::{self, Clients};
use crate::control::approvals::Approvals;
use crate::control::audit::AuditSink;
use crate::control::credentials::CredentialSource;
use crate::control::snapshot::{NodeSnapshot, NodeTarget, SnapshotCell};
use crate::pg::relay::SessionCtx;
use crate::pg::relay::session::{ClientInfo, Limits};
use crate::sessions::Sessions;

/// What every request of the gateway shares.
pub struct Shared {
    /// The gateway's limits.
    pub http: HttpLimits,
    /// Session limits (for the audit session shared with the SQL path).
    pub limits: Limits,
    /// The current snapshot.
    pub snapshot: Arc<SnapshotCell>,
    /// Where audit events go.
    pub audit: AuditSink,
    /// Live sessions of every protocol (kill switches).
    pub sessions: Arc<Sessions>,
    /// Live HTTP sessions.
    pub http_sessions: Arc<HttpSessions>,
    /// Upstream credentials held by the control plane.
    pub credentials: CredentialSource,
    /// Where sessions ask the control plane for approvals.
    pub approvals: Arc<Approvals>,
    /// Upstream clients.
    pub clients: Clients,
    /// Recently verified tokens: agents send theirs on every request.
    pub tokens: crate::auth::TokenCache,
    /// Node shutdown.
    pub shutdown: Shutdown,
    /// Route `{target}.{suffix}` hosts by name, when set.
    pub host_suffix: Option<super::host::HostSuffix>,
}

/// Where a connection came from, attached to each of its requests.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether it spoke TLS.
    pub tls: bool,
}

/// Serves one request; every failure becomes a problem document.
pub async fn handle(shared: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let conn = req.extensions().get::<Conn>().copied();
    let (parts, body) = req.into_parts();
    let peer = conn.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.peer);
    let tls = conn.is_some_and(|c| c.tls);
    match route(&shared, &parts, peer, tls).await {
        Ok((session, target, path)) => serve(&shared, session, &target, parts, body, &path).await,
        Err(e) => {
            tracing::info!(status = e.status().0.as_u16(), error = %e, "http request refused");
            if has_body(&parts) {
                closing(e.response(), parts.version)
            } else {
                e.response()
            }
        }
    }
}

/// Checks that need no session: headers, route, snapshot, token, target.
async fn route(
    shared: &Arc<Shared>,
    parts: &Parts,
    peer: SocketAddr,
    tls: bool,
) -> Result<(Arc<HttpSession>, Arc<NodeTarget>, String), GatewayError> {
    if let Some(n) = headers::method_override(&parts.headers) {
        return Err(GatewayError::BadRequest(format!(
            "the {n} header is refused: the gateway decides the request's own method only"
        )));
    }
    if headers::size(&parts.headers) > shared.http.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge(shared.http.max_header_bytes));
    }
    let host = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
        parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let super::host::Route { target: name, path } =
        super::host::route(host, parts.uri.path(), shared.host_suffix.as_ref())
            .map_err(|e| GatewayError::NotFound(e.to_string()))?;
    let name = name.as_ref();
    let snapshot = shared
        .snapshot
        .usable()
        .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
    let token = headers::bearer_token(&parts.headers).ok_or_else(|| {
        GatewayError::Unauthenticated(
            "authentication required: send your Sluice access token as Authorization: Bearer TOKEN"
                .to_owned(),
        )
    })?;
    let identity = match shared.tokens.verify(&snapshot, &token, peer, "http").await {
        Ok(id) => id,
        Err(e) => {
            metrics::counter!("sluice_http_auth_failures_total").increment(1);
            let e = e.to_string();
            crate::auth::record_refused_sign_in(
                &shared.audit,
                crate::auth::RefusedSignIn {
                    peer,
                    user: "",
                    target: name,
                    token: &token,
                    reason: e.clone(),
                    protocol: "http",
                    tls,
                },
            );
            return Err(GatewayError::Unauthenticated(e));
        }
    };
    let target = match http_target(&snapshot, name) {
        Ok(t) => t,
        Err(e) => {
            let ctx = SessionCtx::new(
                identity,
                name.chars().take(64).collect(),
                shared.limits,
                shared.audit.clone(),
                shared.snapshot.clone(),
            );
            let client = ClientInfo {
                peer,
                tls,
                protocol: "http",
                application_name: "",
            };
            ctx.refused(&client, &e.to_string());
            return Err(e);
        }
    };
    let session = shared
        .http_sessions
        .get_or_open(
            shared,
            Opening {
                identity,
                token: &token,
                target: &target,
                peer,
                tls,
            },
        )
        .await?;
    Ok((session, target, path.to_owned()))
}

fn http_target(snapshot: &NodeSnapshot, name: &str) -> Result<Arc<NodeTarget>, GatewayError> {
    snapshot
        .targets
        .get(name)
        .filter(|t| t.0.kind == "http")
        .cloned()
        .ok_or_else(|| {
            GatewayError::NotFound(format!(
                "HTTP target \"{}\" does not exist or is not available to you",
                name.chars().take(64).collect::<String>()
            ))
        })
}

/// A refusal before the policy decided, in the record's terms.
fn undecided(e: &GatewayError) -> Arc<Decision> {
    Arc::new(Decision::deny(e.to_string()))
}

async fn serve(
    shared: &Arc<Shared>,
    session: Arc<HttpSession>,
    target: &NodeTarget,
    parts: Parts,
    body: Body,
    raw_path: &str,
) -> Response<Body> {
    let flight = session.start();
    let method = parts.method.as_str().to_owned();
    let bounded_path: String = raw_path.chars().take(512).collect();
    let version = parts.version;
    let body = match request::read(&shared.http, &parts, body).await {
        Ok(b) => b,
        Err(e) => {
            let r = Record::new(flight, undecided(&e), &method, &bounded_path, String::new());
            r.refused(&e);
            return closing(e.response(), version);
        }
    };
    let streaming = matches!(body, Incoming::Streaming { .. });
    let resp = serve_read(shared, session, target, parts, body, raw_path, flight).await;
    // A body not read to its end leaves the connection unusable for another
    // request: say so, as a reverse proxy should.
    if streaming {
        closing(resp, version)
    } else {
        resp
    }
}

/// Whether the request says it has a body (which a refusal leaves unread).
fn has_body(parts: &Parts) -> bool {
    parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Marks an HTTP/1 response as the last on its connection (HTTP/2 streams
/// end on their own).
fn closing(mut resp: Response<Body>, version: axum::http::Version) -> Response<Body> {
    if version < axum::http::Version::HTTP_2 {
        resp.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// The request once its body has been read (whole, or its head).
async fn serve_read(
    shared: &Arc<Shared>,
    session: Arc<HttpSession>,
    target: &NodeTarget,
    parts: Parts,
    body: Incoming,
    raw_path: &str,
    flight: InFlight,
) -> Response<Body> {
    let method = parts.method.as_str().to_owned();
    let raw_query = parts.uri.query().map(str::to_owned);
    let bounded_path: String = raw_path.chars().take(512).collect();
    if let (Some(q), Some(n)) = (&raw_query, session.credential.reserved_query())
        && upstream::query_names(q, n)
    {
        let e = GatewayError::BadRequest(format!(
            "the query parameter {n:?} is reserved for the gateway's own credential"
        ));
        let r = Record::new(flight, undecided(&e), &method, &bounded_path, String::new());
        r.refused(&e);
        return e.response();
    }
    let (head, streamed) = match body {
        Incoming::Whole(b) => (b, None),
        Incoming::Streaming {
            head,
            rest,
            declared,
        } => (head, Some((rest, declared))),
    };
    let decided = decide(
        shared,
        &session,
        &method,
        raw_path,
        raw_query.as_deref(),
        &parts,
        streamed.is_none().then_some(&head[..]),
    );
    let (http, decision) = match decided {
        Ok(d) => d,
        Err(e) => {
            let r = Record::new(flight, undecided(&e), &method, &bounded_path, String::new());
            r.refused(&e);
            return e.response();
        }
    };
    let path = http.path.clone().unwrap_or_else(|| bounded_path.clone());
    let query_record = audit_query(&http, raw_query.as_deref());
    let mut record = Record::new(flight, decision.clone(), &method, &path, query_record);
    record.request_bytes = head.len() as u64;
    record.request_sample = sample_request(&http, &head);
    if streamed.is_some()
        && let Some(e) = not_streamable(&shared.http, &http)
    {
        record.refused(&e);
        return e.response();
    }
    let forward_path = match (decision.verdict, &http.path) {
        (Verdict::Deny, _) => {
            let e = refusal(&decision);
            record.refused(&e);
            return e.response();
        }
        (_, None) => {
            let e = GatewayError::Denied {
                rule: None,
                policy: decision.policy.clone(),
                reason: "the request's path could not be normalised".to_owned(),
            };
            record.refused(&e);
            return e.response();
        }
        (_, Some(p)) => p.clone(),
    };
    if decision.verdict == Verdict::Approval {
        let line = match &raw_query {
            Some(q) => format!("{method} {forward_path}?{q}"),
            None => format!("{method} {forward_path}"),
        };
        let hash = approval_hash(&method, &forward_path, raw_query.as_deref(), &head);
        let bound = Bound {
            hash: &hash,
            line: &line,
            body: &head,
        };
        let hold = shared.http.approval_hold;
        match approval::approve(&session.ctx, &decision, &bound, hold, session.ended()).await {
            Ok(id) => record.approval_id = id,
            Err(e) => {
                if let GatewayError::ApprovalRequired {
                    approval_id: Some(id),
                    ..
                } = &e
                {
                    record.approval_id.clone_from(id);
                }
                record.refused(&e);
                return e.response();
            }
        }
    }
    let body = match streamed {
        None => Outgoing::Held(head),
        Some((rest, declared)) => Outgoing::Streamed {
            head,
            rest,
            declared,
        },
    };
    forward(
        shared,
        &session,
        target,
        parts,
        body,
        &forward_path,
        raw_query,
        http,
        record,
    )
    .await
}

/// The policy's decision, or why there is none (fail closed).
fn decide(
    shared: &Shared,
    session: &HttpSession,
    method: &str,
    path: &str,
    query: Option<&str>,
    parts: &Parts,
    body: Option<&[u8]>,
) -> Result<(HttpDecision, Arc<Decision>), GatewayError> {
    let snapshot = shared
        .snapshot
        .usable()
        .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
    let policies = snapshot.policies.as_ref().map_err(|e| {
        tracing::error!(error = %e, "no usable policies");
        GatewayError::Unavailable(
            "the gateway's policies are unusable; every request is refused".to_owned(),
        )
    })?;
    if shared.audit.is_full() {
        return Err(GatewayError::Unavailable(
            "the gateway cannot record requests right now; nothing was sent".to_owned(),
        ));
    }
    let ctx = &session.ctx;
    let subject = Subject {
        identity: &ctx.identity.name,
        groups: &ctx.identity.groups,
        target: &ctx.target,
    };
    let req = HttpRequest {
        method,
        path,
        query,
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body,
    };
    let http = policies.decide_http(&subject, &req);
    // No policy governs HTTP on this target for this subject: nothing is
    // served there (a policy's refusal is a 403 instead).
    if http.uncovered {
        return Err(GatewayError::Unavailable(format!(
            "no policy decides HTTP requests to target \"{}\"; every request is refused",
            ctx.target
        )));
    }
    let decision = Arc::new(http.decision.clone());
    Ok((http, decision))
}

/// Why a body larger than the gateway holds cannot be streamed: the
/// decision rests on the body, or an approval would be bound to all of it.
fn not_streamable(limits: &HttpLimits, http: &HttpDecision) -> Option<GatewayError> {
    let held = limits.max_request_body_bytes;
    if http.reads_body {
        return Some(GatewayError::BodyNotHeld(format!(
            "a rule looks at the request's JSON body, and the body is larger than the {held} bytes this gateway holds to read it"
        )));
    }
    (http.decision.verdict == Verdict::Approval).then(|| {
        GatewayError::BodyNotHeld(format!(
            "the request needs approval, which is bound to its whole body, and the body is larger than the {held} bytes this gateway holds"
        ))
    })
}

/// The request body as it goes upstream.
enum Outgoing {
    /// Held whole.
    Held(bytes::Bytes),
    /// Its head, then the rest as it arrives.
    Streamed {
        head: bytes::Bytes,
        rest: Body,
        declared: Option<u64>,
    },
}

fn refusal(d: &Decision) -> GatewayError {
    GatewayError::Denied {
        rule: d.rule.clone(),
        policy: d.policy.clone(),
        reason: if d.reason.is_empty() {
            "denied by policy".to_owned()
        } else {
            d.reason.clone()
        },
    }
}

/// The query as the record keeps it, redacted as the policy says.
fn audit_query(http: &HttpDecision, raw: Option<&str>) -> String {
    raw.map(|q| http.audit_query(q)).unwrap_or_default()
}

/// The start of the request body, through the policy's text detectors.
fn sample_request(http: &HttpDecision, body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let mut m = http.response.text_masker();
    let mut out = Vec::new();
    let head = &body[..body.len().min(SAMPLE_BYTES)];
    if m.push(head, &mut out).is_err() || m.finish(&mut out).is_err() {
        return format!("<{} bytes, not sampled>", body.len());
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[allow(
    clippy::too_many_arguments,
    reason = "one request's parts, passed once"
)]
async fn forward(
    shared: &Shared,
    session: &HttpSession,
    target: &NodeTarget,
    parts: Parts,
    body: Outgoing,
    path: &str,
    query: Option<String>,
    http: HttpDecision,
    mut record: Record,
) -> Response<Body> {
    let fail = |mut record: Record, e: GatewayError| {
        record.started = None;
        record.refused(&e);
        e.response()
    };
    let upstream = match shared.clients.for_target(&target.0, &shared.http) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "unusable HTTP target");
            return fail(
                record,
                GatewayError::BadGateway(format!("target \"{}\" is unavailable", target.0.name)),
            );
        }
    };
    let mut headers = headers::upstream_request(parts.headers);
    let mut query = query;
    if let Err(e) = session.credential.apply(&mut headers, &mut query) {
        tracing::error!(error = %e, "credential cannot be sent");
        return fail(
            record,
            GatewayError::BadGateway(format!("target \"{}\" is unavailable", target.0.name)),
        );
    }
    let url = upstream.url(path, query.as_deref());
    let body = match body {
        Outgoing::Held(b) => reqwest::Body::from(b),
        Outgoing::Streamed {
            head,
            rest,
            declared,
        } => {
            if let Some(n) = declared {
                headers.insert(header::CONTENT_LENGTH, n.into());
            }
            let upload = request::Upload::default();
            record.upload = Some(upload.clone());
            request::upstream_body(head, rest, &shared.http, &upload)
        }
    };
    let request = upstream
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body);
    record.started = Some(Instant::now());
    let sent = tokio::select! {
        biased;
        () = session.ended().cancelled() => {
            return fail(record, GatewayError::Unauthenticated(SESSION_ENDED.to_owned()));
        }
        sent = tokio::time::timeout(shared.http.upstream_timeout, request.send()) => sent,
    };
    let resp = match sent {
        Err(_) => {
            return fail(
                record,
                GatewayError::UpstreamTimeout(shared.http.upstream_timeout.as_secs()),
            );
        }
        Ok(Err(_))
            if let Some(f) = record.upload.as_ref().and_then(|u| u.failure(&shared.http)) =>
        {
            return fail(record, f);
        }
        Ok(Err(e)) => {
            // Without the URL: with query placement it carries the credential.
            let e = e.without_url();
            tracing::warn!(error = %e, target_name = %target.0.name, "upstream request failed");
            let why = if e.is_connect() {
                "the gateway could not connect to the upstream"
            } else if e.is_timeout() {
                "the upstream timed out"
            } else {
                "the upstream closed the connection without a response"
            };
            return fail(record, GatewayError::BadGateway(why.to_owned()));
        }
        Ok(Ok(r)) => r,
    };
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let encoding = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let action =
        match response::body_action(&http.response, content_type.as_deref(), encoding.as_deref()) {
            Ok(a) => a,
            Err(e) => return fail(record, e),
        };
    response::stream(
        resp,
        &http.response,
        action,
        &session.secrets,
        shared.http.upstream_stall,
        session.ended().clone(),
        record,
    )
}

/// What a request in flight when its session ends is told: the upstream's
/// answer is not waited for (a kill switch works on requests under way too).
const SESSION_ENDED: &str = "the session ended while the request was under way: it was killed, or \
     its token expired or was revoked";

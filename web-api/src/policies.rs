//! `/api/v1/policies`: the rules nodes decide every statement by, their
//! history, and a dry run that decides a statement exactly as a node would.
//!
//! A policy is sent as the YAML document itself (`application/yaml`,
//! `application/x-yaml` or `text/yaml`) or as JSON `{"source": "…"}`. Every
//! change is checked by the policy engine before it is stored, so a document
//! that would not compile never reaches a node; the error names the field
//! at fault.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sluice_control_plane::store::{PolicyVersion, PutMode, StoredPolicy};
use sluice_policy::classify::Statement;
use sluice_policy::compile::MAX_POLICY_BYTES;
use sluice_policy::{
    Check, Decision, HttpDecision, HttpRequest, Policy, PolicySet, Subject, Verdict,
};
use utoipa::ToSchema;

use crate::auth::{AdminOnly, Caller};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, from_bytes_rejection};
use crate::{AppState, Items, rfc3339};

/// `check` is a valid policy name, but the dry run's static route takes
/// precedence over `{name}`: the policy's own methods are routed there too.
const CHECK: &str = "check";

/// The routes of this module. Request bodies are limited to the size of the
/// largest policy the engine accepts.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/policies", get(list).post(create))
        .route(
            "/api/v1/policies/check",
            post(check)
                .get(|c: Caller<AdminOnly>, s: State<AppState>| show(c, s, Path(CHECK.to_owned())))
                .put(
                    |c: Caller<AdminOnly>, s: State<AppState>, body: PolicySource| {
                        replace(c, s, Path(CHECK.to_owned()), body)
                    },
                )
                .delete(|c: Caller<AdminOnly>, s: State<AppState>| {
                    remove(c, s, Path(CHECK.to_owned()))
                }),
        )
        .route(
            "/api/v1/policies/{name}",
            get(show).put(replace).delete(remove),
        )
        .route("/api/v1/policies/{name}/versions", get(versions))
        .layer(DefaultBodyLimit::max(MAX_POLICY_BYTES))
}

/// Which sessions a policy governs, as its document says.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppliesToView {
    /// Target name globs (`*` for all).
    pub targets: Vec<String>,
    /// Identity groups; the policy applies to an identity in any of them
    /// (`*` for every identity).
    pub groups: Vec<String>,
}

/// What the stored source says about itself, or why it cannot be read.
struct Described {
    description: Option<String>,
    applies_to: Option<AppliesToView>,
    error: Option<String>,
}

impl Described {
    fn of(source: &str) -> Self {
        match Policy::from_yaml(source) {
            Ok(p) => Self {
                description: Some(p.doc.description),
                applies_to: Some(AppliesToView {
                    targets: p.doc.applies_to.targets,
                    groups: p.doc.applies_to.groups,
                }),
                error: None,
            },
            Err(e) => Self {
                description: None,
                applies_to: None,
                error: Some(e.to_string()),
            },
        }
    }
}

/// A policy in a listing: what it is for and whom it governs, without its
/// source.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicySummary {
    /// Unique name, from the document.
    pub name: String,
    /// Grows with every change, never reused (not even after a delete).
    pub version: u64,
    /// The document's description; `null` only if the source does not check.
    pub description: Option<String>,
    /// The sessions it governs; `null` only if the source does not check.
    pub applies_to: Option<AppliesToView>,
    /// Why the stored source no longer checks (nodes then refuse every
    /// statement); `null` for a valid policy.
    pub error: Option<String>,
    /// First creation, RFC 3339.
    pub created_at: String,
    /// First creation, µs since the epoch.
    pub created_at_us: i64,
    /// Last change, RFC 3339.
    pub updated_at: String,
    /// Last change, µs since the epoch.
    pub updated_at_us: i64,
}

impl From<StoredPolicy> for PolicySummary {
    fn from(p: StoredPolicy) -> Self {
        let d = Described::of(&p.source);
        Self {
            name: p.name,
            version: p.version,
            description: d.description,
            applies_to: d.applies_to,
            error: d.error,
            created_at: rfc3339(p.created_at),
            created_at_us: p.created_at,
            updated_at: rfc3339(p.updated_at),
            updated_at_us: p.updated_at,
        }
    }
}

/// The current version of a policy, with its source.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    /// What a listing shows.
    #[serde(flatten)]
    pub summary: PolicySummary,
    /// The YAML document, exactly as it was sent.
    pub source: String,
}

impl From<StoredPolicy> for PolicyView {
    fn from(p: StoredPolicy) -> Self {
        let source = p.source.clone();
        Self {
            summary: p.into(),
            source,
        }
    }
}

/// One entry of a policy's history: a version stored, or its deletion.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersionView {
    /// Version number.
    pub version: u64,
    /// Who made the change (the identity of the caller's token).
    pub author: String,
    /// Whether this entry records the policy's deletion.
    pub deleted: bool,
    /// The YAML document of this version; `null` for a deletion.
    pub source: Option<String>,
    /// When, RFC 3339.
    pub created_at: String,
    /// When, µs since the epoch.
    pub created_at_us: i64,
}

impl From<PolicyVersion> for PolicyVersionView {
    fn from(v: PolicyVersion) -> Self {
        Self {
            version: v.version,
            author: v.author,
            deleted: v.source.is_none(),
            source: v.source,
            created_at: rfc3339(v.created_at),
            created_at_us: v.created_at,
        }
    }
}

/// A policy sent as JSON rather than as YAML.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// The YAML document.
    pub source: String,
}

/// A policy document from a request body, YAML or JSON by its content type.
#[derive(Debug)]
pub(crate) struct PolicySource(String);

impl<S: Send + Sync> FromRequest<S> for PolicySource {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match media_type(req.headers()).as_deref() {
            Some("application/yaml" | "application/x-yaml" | "text/yaml") => {
                let bytes = Bytes::from_request(req, state)
                    .await
                    .map_err(|r| from_bytes_rejection(&r))?;
                String::from_utf8(bytes.into()).map(Self).map_err(|_| {
                    ApiError::BadRequest("the policy document is not valid UTF-8".to_owned())
                })
            }
            Some("application/json") => {
                let Json(body) = Json::<PolicyBody>::from_request(req, state).await?;
                Ok(Self(body.source))
            }
            _ => Err(ApiError::Body {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail: "send the policy as YAML (Content-Type: application/yaml) or as JSON \
                         {\"source\": \"...\"} (Content-Type: application/json)"
                    .to_owned(),
            }),
        }
    }
}

/// The media type of the body, lower case, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

fn no_policy(name: &str) -> ApiError {
    ApiError::NotFound(format!("no policy named {name:?}"))
}

/// Lists every policy, by name.
#[utoipa::path(get, path = "/api/v1/policies", operation_id = "list_policies", tag = "policies", security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "All policies", body = Items<PolicySummary>),
    ))]
pub(crate) async fn list(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
) -> Result<Json<Items<PolicySummary>>, ApiError> {
    let policies = s.cp.store.list_policies().await?;
    Ok(Json(Items::new(
        policies.into_iter().map(PolicySummary::from).collect(),
    )))
}

/// Creates a policy from its document; nodes decide by it from the next
/// snapshot on.
#[utoipa::path(post, path = "/api/v1/policies", operation_id = "create_policy", tag = "policies", security(("bearer" = ["admin"])),
    request_body(description = "The policy document: YAML as is, or JSON with the YAML in `source`",
        content(
            (String = "application/yaml"),
            (String = "application/x-yaml"),
            (String = "text/yaml"),
            (PolicyBody = "application/json"),
        )),
    responses(
        (status = 201, description = "Created, as version 1 or the version after its last deletion", body = PolicyView),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A policy with the document's name exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither YAML nor JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy does not check; `errors` names the field", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    PolicySource(source): PolicySource,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    let stored =
        s.cp.put_policy(&source, &caller.identity.name, PutMode::Create, None)
            .await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// The current version of a policy, with its source.
#[utoipa::path(get, path = "/api/v1/policies/{name}", operation_id = "get_policy", tag = "policies", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 200, description = "The policy", body = PolicyView),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn show(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    match s.cp.store.get_policy(&name).await? {
        Some(p) => Ok(Json(p.into())),
        None => Err(no_policy(&name)),
    }
}

/// Replaces a policy with a new version of its document; nodes decide by
/// it from the next snapshot on.
#[utoipa::path(put, path = "/api/v1/policies/{name}", operation_id = "replace_policy", tag = "policies", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Policy name; the document must carry the same name")),
    request_body(description = "The policy document: YAML as is, or JSON with the YAML in `source`",
        content(
            (String = "application/yaml"),
            (String = "application/x-yaml"),
            (String = "text/yaml"),
            (PolicyBody = "application/json"),
        )),
    responses(
        (status = 200, description = "Stored as a new version", body = PolicyView),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither YAML nor JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The policy does not check, or names another policy; `errors` names the field", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn replace(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
    PolicySource(source): PolicySource,
) -> Result<Json<PolicyView>, ApiError> {
    let stored =
        s.cp.put_policy(
            &source,
            &caller.identity.name,
            PutMode::Replace,
            Some(&name),
        )
        .await?;
    Ok(Json(stored.into()))
}

/// Deletes a policy, recording the deletion in its history; nodes stop
/// applying it with the next snapshot.
#[utoipa::path(delete, path = "/api/v1/policies/{name}", operation_id = "delete_policy", tag = "policies", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn remove(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.cp.delete_policy(&name, &caller.identity.name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_policy(&name))
    }
}

/// A policy's whole history, oldest first, deletions included.
#[utoipa::path(get, path = "/api/v1/policies/{name}/versions", operation_id = "list_policy_versions", tag = "policies", security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 200, description = "Every version, oldest first", body = Items<PolicyVersionView>),
        (status = 404, description = "No policy of this name ever existed", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn versions(
    _: Caller<AdminOnly>,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Items<PolicyVersionView>>, ApiError> {
    let history = s.cp.store.policy_versions(&name).await?;
    if history.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no policy named {name:?} ever existed"
        )));
    }
    Ok(Json(Items::new(
        history.into_iter().map(PolicyVersionView::from).collect(),
    )))
}

/// A statement or an HTTP request to decide, and for whom.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The SQL text, as one client message (it may hold several
    /// statements). Give this or `http`.
    #[serde(default)]
    pub sql: Option<String>,
    /// An HTTP request to decide instead of SQL, for an HTTP target.
    #[serde(default)]
    pub http: Option<HttpCheck>,
    /// The target the statement would be sent to.
    pub target: String,
    /// The identity's groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The identity's name; defaults to the caller's.
    #[serde(default)]
    pub identity: Option<String>,
    /// Decide by only these stored policies. Omit to decide by every stored
    /// policy, as a node does.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// Decide by this unsaved document alone instead of stored policies.
    #[serde(default)]
    pub source: Option<String>,
}

/// An HTTP request for a dry run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The method as the agent would send it (case matters).
    pub method: String,
    /// The path after `/http/{target}`, still percent-encoded.
    pub path: String,
    /// The raw query string, without `?`.
    #[serde(default)]
    pub query: Option<String>,
    /// The request's content type; `application/json` when `body` is not a
    /// string.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The request body: a string is taken as the body's text, any other
    /// JSON value as a JSON body.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
}

/// The answer of a dry run; the same document as
/// `sluice policy check --format json`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckAnswer {
    /// What a node would do with the message.
    pub decision: DecisionName,
    /// Why, in the words a client would be told; empty when allowed without
    /// a reason.
    pub reasons: Vec<String>,
    /// The deciding policy, if one matched.
    pub policy: Option<String>,
    /// The deciding rule, if one matched.
    pub rule: Option<String>,
    /// Every policy that applies to this identity and target.
    pub policies_applied: Vec<String>,
    /// How each statement was classified: its kind, the tables it reads and
    /// writes, the functions it calls, the settings it touches. Empty when
    /// the text does not parse.
    #[schema(value_type = Vec<Object>)]
    pub statements: Vec<Statement>,
    /// For an HTTP request: the canonical path that would be forwarded;
    /// absent for SQL, `null` when the path itself is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Option<String>>,
}

/// A decision.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionName {
    /// Forwarded.
    Allow,
    /// Held until a human approves.
    Approval,
    /// Refused.
    Deny,
}

impl From<Verdict> for DecisionName {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => Self::Allow,
            Verdict::Approval => Self::Approval,
            Verdict::Deny => Self::Deny,
        }
    }
}

impl CheckAnswer {
    fn new(decision: Decision, policies_applied: Vec<String>, statements: Vec<Statement>) -> Self {
        Self {
            decision: decision.verdict.into(),
            reasons: if decision.reason.is_empty() {
                Vec::new()
            } else {
                vec![decision.reason]
            },
            policy: decision.policy,
            rule: decision.rule,
            policies_applied,
            statements,
            path: None,
        }
    }

    /// The answer for an HTTP request.
    fn http(d: HttpDecision, policies_applied: Vec<String>) -> Self {
        let path = d.path;
        Self {
            path: Some(path),
            ..Self::new(d.decision, policies_applied, Vec::new())
        }
    }
}

impl From<Check> for CheckAnswer {
    fn from(c: Check) -> Self {
        Self::new(c.decision, c.policies, c.statements)
    }
}

/// Decides a statement (`sql`) or an HTTP request (`http`) exactly as a
/// node would, without running it: by every stored policy (what nodes
/// hold), by some of them, or by an unsaved document.
#[utoipa::path(post, path = "/api/v1/policies/check", operation_id = "check_policy", tag = "policies", security(("bearer" = ["admin"])),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "The decision", body = CheckAnswer),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A named policy does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The unsaved document does not check; `errors` names the field", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn check(
    caller: Caller<AdminOnly>,
    State(s): State<AppState>,
    Json(body): Json<CheckRequest>,
) -> Result<Json<CheckAnswer>, ApiError> {
    let what = match (body.sql, body.http) {
        (Some(sql), None) => Ok(sql),
        (None, Some(http)) => Err(http),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give sql or http, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "give sql (a statement) or http (a request) to decide".to_owned(),
            ));
        }
    };
    let set = match (body.source, body.policies) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give source (an unsaved document) or policies (stored ones), not both".to_owned(),
            ));
        }
        (Some(source), None) => PolicySet::new(vec![Policy::from_yaml(&source)?]),
        (None, names) => match stored_set(&s, names).await? {
            Ok(set) => set,
            // A node refuses every statement when a policy does not compile.
            Err(reason) => {
                return Ok(Json(CheckAnswer::new(
                    Decision::deny(reason),
                    Vec::new(),
                    Vec::new(),
                )));
            }
        },
    };
    let identity = body.identity.unwrap_or(caller.identity.name);
    let subject = Subject {
        identity: &identity,
        groups: &body.groups,
        target: &body.target,
    };
    match what {
        Ok(sql) => Ok(Json(set.check(&subject, &sql).into())),
        Err(http) => {
            let (bytes, default_type) = match http.body {
                None => (None, None),
                Some(serde_json::Value::String(text)) => (Some(text.into_bytes()), None),
                Some(v) => (Some(v.to_string().into_bytes()), Some("application/json")),
            };
            let req = HttpRequest {
                method: &http.method,
                path: &http.path,
                query: http.query.as_deref(),
                content_type: http.content_type.as_deref().or(default_type),
                body: bytes.as_deref(),
            };
            let applied = set.http_policies(&subject);
            Ok(Json(CheckAnswer::http(
                set.decide_http(&subject, &req),
                applied,
            )))
        }
    }
}

/// The stored policies (all, or those named) compiled as a node compiles
/// its snapshot, in the same order; `Err` carries the reason a node would
/// give for refusing everything.
async fn stored_set(
    s: &AppState,
    names: Option<Vec<String>>,
) -> Result<Result<PolicySet, String>, ApiError> {
    let mut stored = s.cp.store.list_policies().await?;
    if let Some(names) = names {
        if names.is_empty() {
            return Err(ApiError::BadRequest(
                "policies names no policy; omit it to check against every stored policy".to_owned(),
            ));
        }
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !stored.iter().any(|p| &p.name == *n))
            .collect();
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|n| format!("{n:?}")).collect();
            return Err(ApiError::NotFound(format!(
                "no policy named {}",
                list.join(", ")
            )));
        }
        stored.retain(|p| names.contains(&p.name));
    }
    Ok(stored
        .iter()
        .map(|p| {
            Policy::from_yaml(&p.source).map_err(|e| format!("policy {:?} is invalid: {e}", p.name))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(PolicySet::new))
}

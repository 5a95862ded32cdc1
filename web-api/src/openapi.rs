//! The OpenAPI 3.1 description of the API, generated from the handlers'
//! annotations so it cannot drift from the routes, and served unauthenticated
//! so clients and tools can discover the API.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, PROBLEM_JSON, Problem};
use crate::{
    api_keys, approvals, audit, auth, events, grants, join_tokens, nodes, oauth, policies,
    service_accounts, sessions, targets,
};

/// The API document. `ApiDoc::openapi()` builds it.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Sluice API",
        description = "Manage the targets Sluice guards, the policies that decide every statement, the nodes that guard them, \
                       and read the record of every session. \
                       Every /api/v1 endpoint except this document needs `Authorization: Bearer <token or API key>`, \
                       and each names the roles that may call it in its security requirement; \
                       every error is an RFC 9457 problem document."
    ),
    paths(
        targets::list, targets::create, targets::show, targets::remove,
        policies::list, policies::create, policies::show, policies::replace, policies::remove,
        policies::versions, policies::check,
        sessions::list, sessions::show, sessions::end, events::list,
        audit::verify_session, audit::export, audit::verify_store, audit::feed,
        nodes::list,
        join_tokens::create, join_tokens::list, join_tokens::revoke,
        service_accounts::create, service_accounts::list, service_accounts::show, service_accounts::disable,
        service_accounts::issue_token, service_accounts::list_tokens, service_accounts::revoke_token,
        api_keys::create, api_keys::list, api_keys::revoke,
        approvals::list, approvals::show, approvals::approve, approvals::deny,
        grants::list, grants::create, grants::show, grants::approve, grants::deny, grants::revoke,
        oauth::token,
        auth::jwks,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&CommonResponses),
    tags(
        (name = "targets", description = "The systems Sluice guards"),
        (name = "policies", description = "The rules every statement is decided by, and a dry run"),
        (name = "sessions", description = "Recorded sessions and their events"),
        (name = "audit", description = "Verification, exports and SIEM pulls of the tamper-evident record"),
        (name = "nodes", description = "Data-plane nodes"),
        (name = "join-tokens", description = "Credentials nodes use to join"),
        (name = "identities", description = "Service accounts for agents and automation, their tokens, and API keys"),
        (name = "approvals", description = "Statements waiting for a human's decision"),
        (name = "grants", description = "Time-boxed access grants: per-statement approval lifted for a while (security role `any`: every verified identity)"),
        (name = "auth", description = "Token verification keys and the OAuth2 token endpoint"),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme and the error responses every protected operation
/// shares, instead of repeating them on each handler.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        components.responses.insert(
            "Unauthenticated".to_owned(),
            RefOr::T(problem("Missing or invalid bearer token")),
        );
        components.responses.insert(
            "Forbidden".to_owned(),
            RefOr::T(problem("The token lacks the role this endpoint needs")),
        );
        components.responses.insert(
            "InternalError".to_owned(),
            RefOr::T(problem("Server-side failure; details are only logged")),
        );
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ] {
                if let Some(op) = op.as_mut() {
                    add_common(op);
                }
            }
        }
    }
}

fn add_common(op: &mut Operation) {
    let responses = &mut op.responses.responses;
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        responses.insert(
            "401".to_owned(),
            RefOr::Ref(Ref::from_response_name("Unauthenticated")),
        );
        responses.insert(
            "403".to_owned(),
            RefOr::Ref(Ref::from_response_name("Forbidden")),
        );
    }
    responses.insert(
        "500".to_owned(),
        RefOr::Ref(Ref::from_response_name("InternalError")),
    );
}

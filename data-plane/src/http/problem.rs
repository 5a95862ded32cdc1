//! Every refusal the gateway answers itself, as `application/problem+json`
//! (RFC 9457). Details name the rule and the reason, never a credential, a
//! token or an upstream address.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// The base of the `type` URIs of the gateway's problems.
pub const TYPE_BASE: &str = "https://sluice.dev/problems/http/";

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No token, or one that did not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// The path does not name a target under `/http/`.
    #[error("{0}")]
    NotFound(String),
    /// A request the gateway refuses to interpret (method override headers,
    /// a reserved query parameter).
    #[error("{0}")]
    BadRequest(String),
    /// The policy denied it.
    #[error("{reason}")]
    Denied {
        /// The deciding rule, if one matched.
        rule: Option<String>,
        /// The deciding policy.
        policy: Option<String>,
        /// Why.
        reason: String,
    },
    /// The request needs an approval it does not (yet) have.
    #[error("{reason}")]
    ApprovalRequired {
        /// The approval request to decide, if one exists.
        approval_id: Option<String>,
        /// Where to decide it.
        url: Option<String>,
        /// The deciding rule.
        rule: Option<String>,
        /// Why.
        reason: String,
    },
    /// The body is larger than allowed.
    #[error("the request body is larger than the {0} bytes this gateway accepts")]
    BodyTooLarge(usize),
    /// The body is larger than the gateway holds, and the request cannot be
    /// streamed (a rule reads its body, or it needs approval).
    #[error("{0}")]
    BodyNotHeld(String),
    /// The headers are larger than allowed.
    #[error("the request headers are larger than the {0} bytes this gateway accepts")]
    HeadersTooLarge(usize),
    /// The client did not send its body in time.
    #[error("the request body did not arrive within {0}s")]
    BodyTimeout(u64),
    /// Nothing can be decided right now (no snapshot, no policy).
    #[error("{0}")]
    Unavailable(String),
    /// The upstream could not be reached or answered badly.
    #[error("{0}")]
    BadGateway(String),
    /// The upstream did not answer in time.
    #[error("the upstream did not answer within {0}s")]
    UpstreamTimeout(u64),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_url: Option<&'a str>,
}

impl GatewayError {
    /// The status and `type` slug of this problem.
    pub fn status(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "no-such-target", "No such target"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Denied { .. } => (StatusCode::FORBIDDEN, "denied", "Denied by policy"),
            Self::ApprovalRequired { .. } => (
                StatusCode::FORBIDDEN,
                "approval-required",
                "Approval required",
            ),
            Self::BodyTooLarge(_) | Self::BodyNotHeld(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
            ),
            Self::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request headers too large",
            ),
            Self::BodyTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body too slow",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Gateway unavailable",
            ),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad-gateway", "Upstream failed"),
            Self::UpstreamTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                "Upstream timed out",
            ),
        }
    }

    /// The response the client receives.
    pub fn response(&self) -> Response<Body> {
        let (status, slug, title) = self.status();
        let (rule, policy, approval_id, approval_url) = match self {
            Self::Denied { rule, policy, .. } => (rule.as_deref(), policy.as_deref(), None, None),
            Self::ApprovalRequired {
                rule,
                approval_id,
                url,
                ..
            } => (
                rule.as_deref(),
                None,
                approval_id.as_deref(),
                url.as_deref(),
            ),
            _ => (None, None, None, None),
        };
        let body = Problem {
            kind: format!("{TYPE_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            rule,
            policy,
            approval_id,
            approval_url,
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = Response::new(Body::from(json));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_name_the_rule_and_approvals_their_id() {
        let denied = GatewayError::Denied {
            rule: Some("no-deletes".to_owned()),
            policy: Some("agents".to_owned()),
            reason: "deleting is not allowed".to_owned(),
        };
        let r = denied.response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let approval = GatewayError::ApprovalRequired {
            approval_id: Some("a1".to_owned()),
            url: Some("http://x/approvals/a1".to_owned()),
            rule: None,
            reason: "writes need approval".to_owned(),
        };
        assert_eq!(approval.status().1, "approval-required");
        assert_eq!(
            GatewayError::Unauthenticated(String::new())
                .response()
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

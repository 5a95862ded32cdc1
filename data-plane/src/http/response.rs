//! The response's way back: headers filtered as the policy says, the body
//! streamed through the JSON or text masker and the secret scrubber, and
//! the request's audit record written when the body ends (or is cut off).
//! A masking error ends the response with an error, which aborts the
//! connection: the client gets a truncated response, never unmasked bytes.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, header};
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use sluice_policy::http::{
    ContentAction, HeaderAction, HttpMaskError, JsonMasker, ResponsePlan, TextMasker,
};
use sluice_proto::v1;
use sluice_proto::v1::audit_event::Payload;

use super::headers::strip_hop_by_hop;
use super::problem::GatewayError;
use super::scrub::{REDACTED, Scrubber, Secrets};
use super::sessions::InFlight;

/// The most body bytes an audit sample keeps.
pub const SAMPLE_BYTES: usize = 1024;

/// What the audit record of one request says, filled in as it goes.
pub struct Record {
    /// The request's session, held until the record is written.
    pub flight: InFlight,
    /// The decision.
    pub decision: Arc<sluice_policy::Decision>,
    /// The method as received.
    pub method: String,
    /// The decided path (or the raw one when it was refused before).
    pub path: String,
    /// The query as the record keeps it.
    pub query: String,
    /// Request body bytes (of a held body).
    pub request_bytes: u64,
    /// A streamed body's upload, counting its bytes as they go.
    pub upload: Option<super::request::Upload>,
    /// The start of the request body, masked.
    pub request_sample: String,
    /// The approval it ran under, or the one it needs.
    pub approval_id: String,
    /// When the request was forwarded (None: it was not).
    pub started: Option<Instant>,
    /// The status the client got.
    pub status: u16,
    /// Why it failed, when it did after forwarding.
    pub error: String,
    response_bytes: u64,
    sample: Vec<u8>,
    masked: BTreeMap<String, u64>,
}

impl Record {
    /// A record for a request of `flight`'s session.
    pub fn new(
        flight: InFlight,
        decision: Arc<sluice_policy::Decision>,
        method: &str,
        path: &str,
        query: String,
    ) -> Self {
        Self {
            flight,
            decision,
            method: method.to_owned(),
            path: path.to_owned(),
            query,
            request_bytes: 0,
            upload: None,
            request_sample: String::new(),
            approval_id: String::new(),
            started: None,
            status: 0,
            error: String::new(),
            response_bytes: 0,
            sample: Vec::new(),
            masked: BTreeMap::new(),
        }
    }

    fn sent(&mut self, bytes: &[u8]) {
        self.response_bytes += bytes.len() as u64;
        let room = SAMPLE_BYTES.saturating_sub(self.sample.len());
        self.sample
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Records a refusal the client received as a problem document.
    pub fn refused(mut self, e: &GatewayError) {
        self.status = e.status().0.as_u16();
        if self.decision.reason.is_empty() || matches!(e, GatewayError::ApprovalRequired { .. }) {
            let d = Arc::make_mut(&mut self.decision);
            d.reason = e.to_string();
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(u) = &self.upload {
            self.request_bytes = u.sent();
        }
        let ctx = &self.flight.session().ctx;
        ctx.count_statement(self.request_bytes, self.response_bytes);
        let d = &self.decision;
        metrics::counter!("sluice_http_requests_total", "decision" => d.verdict.as_str())
            .increment(1);
        let duration_us = self.started.map_or(0, |s| {
            u64::try_from(s.elapsed().as_micros()).unwrap_or(u64::MAX)
        });
        let reason = if self.error.is_empty() {
            d.reason.clone()
        } else if d.reason.is_empty() {
            self.error.clone()
        } else {
            format!("{}; {}", d.reason, self.error)
        };
        let _ = ctx.emit(Payload::Statement(v1::Statement {
            text: format!("{} {}", self.method, self.path),
            decision: d.verdict.as_str().to_owned(),
            rule: d.rule.clone().unwrap_or_default(),
            reason,
            kinds: vec![format!("http:{}", self.method.to_ascii_lowercase())],
            protocol: "http".to_owned(),
            duration_us,
            rows: 0,
            sqlstate: String::new(),
            command_tag: format!("HTTP {}", self.status),
            approval_id: self.approval_id.clone(),
            policy: d.policy.clone().unwrap_or_default(),
            policy_version: String::new(),
            masked: self.masked.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            sample: None,
            parameters: Vec::new(),
            bytes: self.response_bytes,
            http: Some(v1::HttpExchange {
                method: self.method.clone(),
                path: self.path.clone(),
                query: self.query.clone(),
                status: u32::from(self.status),
                request_bytes: self.request_bytes,
                response_bytes: self.response_bytes,
                request_sample: std::mem::take(&mut self.request_sample),
                response_sample: String::from_utf8_lossy(&self.sample).into_owned(),
            }),
        }));
    }
}

enum Masker {
    Json(Box<JsonMasker>),
    Text(Box<TextMasker>),
    Pass,
}

impl Masker {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), HttpMaskError> {
        match self {
            Self::Json(m) => m.push(chunk, out),
            Self::Text(m) => m.push(chunk, out),
            Self::Pass => {
                out.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), HttpMaskError> {
        match self {
            Self::Json(m) => m.finish(out),
            Self::Text(m) => m.finish(out),
            Self::Pass => Ok(()),
        }
    }

    fn counts(&self) -> Option<&BTreeMap<String, u64>> {
        match self {
            Self::Json(m) => Some(m.counts()),
            Self::Text(m) => Some(m.counts()),
            Self::Pass => None,
        }
    }
}

/// The response headers the client receives: hop-by-hop headers dropped,
/// the policy's header actions applied, and any header carrying a secret
/// masked. `transformed` drops the length (masking changes it).
pub fn client_headers(
    upstream: &HeaderMap,
    plan: &ResponsePlan,
    secrets: &Secrets,
    transformed: bool,
) -> HeaderMap {
    let mut h = upstream.clone();
    strip_hop_by_hop(&mut h);
    if transformed {
        h.remove(header::CONTENT_LENGTH);
        h.remove(header::ETAG);
        h.remove("content-md5");
        h.remove("digest");
    }
    let names: Vec<HeaderName> = h.keys().cloned().collect();
    for n in names {
        match plan.header_action(n.as_str()) {
            HeaderAction::Remove => {
                h.remove(&n);
            }
            HeaderAction::Mask => {
                h.insert(n, HeaderValue::from_static("[masked by sluice]"));
            }
            HeaderAction::Pass => {
                if h.get_all(&n).iter().any(|v| secrets.found_in(v.as_bytes())) {
                    h.insert(
                        n,
                        HeaderValue::from_bytes(REDACTED).unwrap_or(HeaderValue::from_static("")),
                    );
                }
            }
        }
    }
    h
}

/// How the body of a response with `content_type` and `encoding` is
/// treated; `Err` when the policy refuses it.
pub fn body_action(
    plan: &ResponsePlan,
    content_type: Option<&str>,
    encoding: Option<&str>,
) -> Result<ContentAction, GatewayError> {
    let action = plan.content(content_type);
    let encoded = encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    match action {
        ContentAction::Deny => Err(GatewayError::BadGateway(format!(
            "the policy refuses responses of content type {:?}",
            content_type.unwrap_or("(none)")
        ))),
        ContentAction::Json | ContentAction::Text if encoded => Err(GatewayError::BadGateway(
            "the upstream sent a compressed response that must be masked; the gateway asked for none".to_owned(),
        )),
        a => Ok(a),
    }
}

type Upstream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

struct Pipe {
    upstream: Upstream,
    masker: Masker,
    scrub: Scrubber,
    stall: Duration,
    /// The session's end: a killed session's responses stop at once.
    ended: sluice_common::Shutdown,
    record: Record,
    done: bool,
    /// Bytes received from the upstream: an empty body has nothing to mask
    /// (and is no invalid JSON document).
    received: u64,
}

fn failed(p: &mut Pipe, why: &str) -> std::io::Error {
    p.done = true;
    why.clone_into(&mut p.record.error);
    if let Some(c) = p.masker.counts() {
        p.record.masked.clone_from(c);
    }
    tracing::warn!(error = why, "response cut off");
    std::io::Error::other(why.to_owned())
}

async fn step(mut p: Pipe) -> Option<(Result<Bytes, std::io::Error>, Pipe)> {
    if p.done {
        return None;
    }
    loop {
        // Masked into, scrubbed in and sent from this one buffer.
        let mut out = Vec::new();
        let next = tokio::select! {
            biased;
            () = p.ended.cancelled() => {
                let e = failed(&mut p, "the session ended mid-response");
                return Some((Err(e), p));
            }
            next = tokio::time::timeout(p.stall, p.upstream.next()) => next,
        };
        match next {
            Err(_) => {
                let e = failed(&mut p, "the upstream stalled mid-response");
                return Some((Err(e), p));
            }
            Ok(Some(Err(_))) => {
                let e = failed(&mut p, "the upstream ended the response abruptly");
                return Some((Err(e), p));
            }
            Ok(Some(Ok(chunk))) => {
                p.received += chunk.len() as u64;
                p.scrub.begin(&mut out);
                out.reserve(chunk.len());
                if let Err(e) = p.masker.push(&chunk, &mut out) {
                    let e = failed(&mut p, &format!("the response could not be masked: {e}"));
                    return Some((Err(e), p));
                }
                p.scrub.release(&mut out);
                if out.is_empty() {
                    continue;
                }
            }
            Ok(None) => {
                p.scrub.begin(&mut out);
                if p.received > 0
                    && let Err(e) = p.masker.finish(&mut out)
                {
                    let e = failed(&mut p, &format!("the response could not be masked: {e}"));
                    return Some((Err(e), p));
                }
                p.scrub.release(&mut out);
                p.scrub.finish(&mut out);
                p.done = true;
                if let Some(c) = p.masker.counts() {
                    p.record.masked.clone_from(c);
                }
                if p.scrub.count() > 0 {
                    p.record
                        .masked
                        .insert("echo:secret".to_owned(), p.scrub.count());
                }
                if out.is_empty() {
                    return None;
                }
            }
        }
        p.record.sent(&out);
        return Some((Ok(Bytes::from(out)), p));
    }
}

/// The client's response: `upstream`'s status and filtered headers, its
/// body streamed through the masker `action` picks and the scrubber.
pub fn stream(
    upstream: reqwest::Response,
    plan: &ResponsePlan,
    action: ContentAction,
    secrets: &Secrets,
    stall: Duration,
    ended: sluice_common::Shutdown,
    mut record: Record,
) -> Response<Body> {
    let status = upstream.status();
    record.status = status.as_u16();
    let masker = match action {
        ContentAction::Json => Masker::Json(Box::new(plan.json_masker())),
        ContentAction::Text => Masker::Text(Box::new(plan.text_masker())),
        _ => Masker::Pass,
    };
    let transformed = !matches!(masker, Masker::Pass) || !secrets.is_empty();
    let headers = client_headers(upstream.headers(), plan, secrets, transformed);
    let pipe = Pipe {
        upstream: Box::pin(upstream.bytes_stream()),
        masker,
        scrub: secrets.scrubber(),
        stall,
        ended,
        record,
        done: false,
        received: 0,
    };
    let body = Body::from_stream(futures::stream::unfold(pipe, step));
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

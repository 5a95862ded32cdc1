//! How a response is treated: which content is masked, which headers go,
//! and whether bodies that cannot be checked pass. Built once per decision
//! from every applicable policy; cheap to clone.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::json::JsonMasker;
use super::jsonpath::{JsonPath, Selectors};
use super::model::{HeaderDoc, OtherContent};
use super::text::TextMasker;
use crate::mask::{Mask, Masking};

/// What happens to one response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeaderAction {
    /// Sent on unchanged.
    Pass,
    /// Kept, its value replaced by `****`.
    Mask,
    /// Dropped.
    Remove,
}

impl From<HeaderDoc> for HeaderAction {
    fn from(d: HeaderDoc) -> Self {
        match d {
            HeaderDoc::Pass => Self::Pass,
            HeaderDoc::Remove => Self::Remove,
            HeaderDoc::Mask => Self::Mask,
        }
    }
}

/// Headers removed unless a policy names them: they carry sessions or
/// credentials, of the target or echoed from the request.
pub const SECRET_HEADERS: [&str; 5] = [
    "set-cookie",
    "set-cookie2",
    "authorization",
    "proxy-authorization",
    "cookie",
];

/// How a response body is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentAction {
    /// Through [`ResponsePlan::json_masker`].
    Json,
    /// Through [`ResponsePlan::text_masker`].
    Text,
    /// Sent on unchanged.
    Pass,
    /// The response is refused.
    Deny,
}

/// One JSON mask, with the name its audit count goes under.
#[derive(Debug, Clone)]
pub(crate) struct JsonMaskRule {
    pub path: JsonPath,
    pub mask: Mask,
    /// `json:<policy>:<path>`.
    pub counter: String,
}

/// The plan's contents.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Nothing may pass (the request was not allowed).
    pub closed: bool,
    pub masks: Vec<JsonMaskRule>,
    /// The masks' selectors, compiled together (selector `i` is mask `i`'s).
    pub selectors: Selectors,
    pub detectors: Vec<Arc<Masking>>,
    /// Lower-case names.
    pub headers: BTreeMap<String, HeaderAction>,
    pub other: Option<OtherContent>,
}

/// How to treat a response. Shared, so cloning is cheap.
#[derive(Debug, Clone)]
pub struct ResponsePlan(pub(crate) Arc<Plan>);

impl Default for ResponsePlan {
    /// Refuses every body: the plan of a request that was not allowed.
    fn default() -> Self {
        Self::closed()
    }
}

impl PartialEq for ResponsePlan {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ResponsePlan {}

impl ResponsePlan {
    /// A plan that refuses every body.
    pub fn closed() -> Self {
        Self(Arc::new(Plan {
            closed: true,
            ..Plan::default()
        }))
    }

    /// A streaming masker for a JSON body.
    pub fn json_masker(&self) -> JsonMasker {
        JsonMasker::new(Arc::clone(&self.0))
    }

    /// A streaming masker for a text body (detectors only).
    pub fn text_masker(&self) -> TextMasker {
        TextMasker::new(Arc::clone(&self.0))
    }

    /// What happens to the response header `name` (any case).
    pub fn header_action(&self, name: &str) -> HeaderAction {
        // Header names from `http` are lower case already: no copy then.
        let lower: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if let Some(a) = self.0.headers.get(lower.as_ref()) {
            return *a;
        }
        if SECRET_HEADERS.contains(&lower.as_ref()) {
            HeaderAction::Remove
        } else {
            HeaderAction::Pass
        }
    }

    /// How a body of `content_type` is handled.
    pub fn content(&self, content_type: Option<&str>) -> ContentAction {
        if self.0.closed {
            return ContentAction::Deny;
        }
        let detects = !self.0.detectors.is_empty();
        match content_type.map(kind_of) {
            Some(Kind::Json) if detects || !self.0.masks.is_empty() => ContentAction::Json,
            Some(Kind::Text) if detects => ContentAction::Text,
            Some(Kind::Json | Kind::Text) => ContentAction::Pass,
            Some(Kind::Other) | None => match self.other() {
                OtherContent::Pass => ContentAction::Pass,
                OtherContent::Deny => ContentAction::Deny,
            },
        }
    }

    /// Whether the plan changes nothing in any body (headers aside).
    pub fn is_noop(&self) -> bool {
        !self.0.closed
            && self.0.masks.is_empty()
            && self.0.detectors.is_empty()
            && self.other() == OtherContent::Pass
    }

    /// Bodies that cannot be checked: denied unless a policy says pass or
    /// nothing is masked.
    fn other(&self) -> OtherContent {
        self.0
            .other
            .unwrap_or(if self.0.masks.is_empty() && self.0.detectors.is_empty() {
                OtherContent::Pass
            } else {
                OtherContent::Deny
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Text,
    Other,
}

/// The kind of a `Content-Type` value, by its media type (parameters
/// ignored, any case).
fn kind_of(content_type: &str) -> Kind {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Kind::Json
    } else if essence.starts_with("text/")
        || essence == "application/xml"
        || essence.ends_with("+xml")
        || essence == "application/javascript"
        || essence == "application/x-www-form-urlencoded"
    {
        Kind::Text
    } else {
        Kind::Other
    }
}

//! The `masking:` section of a policy document, as admins write it. Every
//! struct refuses unknown fields, so a typo is an error, not a rule that
//! silently does nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Result masking: per-column masks and value detectors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MaskingDoc {
    /// Key of the `hash` mask (HMAC-SHA256), at least 16 characters. Needed
    /// only when a column uses `hash`: a keyless hash of a small value space
    /// (SSNs, card numbers) could be reversed by trying every value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    /// Masked columns, keyed `schema.table.column` (or `table.column` for
    /// `public`).
    #[serde(default)]
    pub columns: BTreeMap<String, MaskDoc>,
    /// Detectors that scan every text value reaching the client.
    #[serde(default)]
    pub detectors: DetectorsDoc,
}

/// How a masked column's value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MaskDoc {
    /// Replaced whole by `****`.
    Redact,
    /// The first N characters, then `****`.
    KeepFirst(u8),
    /// `****`, then the last N characters.
    KeepLast(u8),
    /// The first character of the local part and the domain: `a***@example.com`.
    Email,
    /// A keyed hash (hex prefix), stable so equal values stay joinable.
    Hash,
    /// SQL NULL.
    Null,
}

/// Built-in detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// Email addresses.
    Email,
    /// Payment card numbers that pass the Luhn check.
    Card,
    /// US social security numbers (`123-45-6789`).
    Ssn,
    /// Phone numbers in international (`+41 44 555 0199`) or US form.
    Phone,
    /// IBANs that pass the mod-97 check.
    Iban,
    /// AWS access key ids (`AKIA...`).
    AwsAccessKey,
    /// JSON web tokens.
    Jwt,
    /// PEM private key blocks.
    PrivateKey,
    /// Secret keys with a well-known prefix (`sk_live_`, `whsec_`, `ghp_`, `xoxb-` ...).
    SecretKey,
}

/// Which detectors run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DetectorsDoc {
    /// Built-in detectors to enable.
    #[serde(default)]
    pub builtin: Vec<DetectorKind>,
    /// Admin-written detectors.
    #[serde(default)]
    pub custom: Vec<CustomDetectorDoc>,
}

/// A detector given as a regular expression.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorDoc {
    /// Name used in audit counts.
    pub name: String,
    /// Regular expression (Rust `regex` syntax); every match is replaced.
    pub pattern: String,
}

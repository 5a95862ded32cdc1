//! How one external OpenID Connect issuer is trusted: written by an
//! administrator, never influenced by a token.

use std::collections::BTreeMap;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::{PrincipalKind, Role};

/// A signature algorithm an external issuer may use. The list is closed on
/// purpose: symmetric algorithms and `none` cannot even be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, on an RSA key of at least 2048 bits.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlg {
    /// The `jsonwebtoken` algorithm this names.
    pub fn jwt(self) -> Algorithm {
        match self {
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }

    /// The name used in configuration and JOSE headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Parses a configured name; unknown names are `None` (and refused by
    /// whoever reads the configuration).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::RS256),
            "ES256" => Some(Self::ES256),
            "EdDSA" => Some(Self::EdDSA),
            _ => None,
        }
    }
}

/// One trusted external issuer (`[[oidc]]` in the control-plane
/// configuration). Tokens are routed to it by their `iss` claim and must
/// then satisfy every rule here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The issuer URL, exactly as the IdP writes it in `iss`.
    pub issuer: String,
    /// The `aud` tokens must carry to be accepted by this gateway.
    pub audience: String,
    /// Accepted signature algorithms; the key's type must match too.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<SigningAlg>,
    /// The claim holding the caller's groups (a list of strings, or one
    /// string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Every principal of this issuer is of this kind (e.g. `agent` for an
    /// issuer that only serves machines); people otherwise.
    #[serde(default)]
    pub principal_kind: Option<PrincipalKind>,
    /// Where the discovery document is; default
    /// `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// Where the key set is; when set, discovery is skipped.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// REST API roles granted to members of a group (group -> roles).
    #[serde(default)]
    pub group_roles: BTreeMap<String, Vec<Role>>,
    /// Clock skew tolerated on `exp` and `nbf`; capped at 60 s.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The least time between two key-set fetches caused by unknown `kid`s.
    #[serde(default = "default_cooldown")]
    pub refresh_cooldown_secs: u64,
    /// Keys older than this are fetched again before use; if that fails,
    /// tokens are refused.
    #[serde(default = "default_max_age")]
    pub max_key_age_secs: u64,
}

impl OidcIssuerConfig {
    /// A configuration with defaults for everything but issuer and audience.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: default_algorithms(),
            groups_claim: default_groups_claim(),
            principal_kind: None,
            discovery_url: None,
            jwks_url: None,
            group_roles: BTreeMap::new(),
            leeway_secs: default_leeway(),
            refresh_cooldown_secs: default_cooldown(),
            max_key_age_secs: default_max_age(),
        }
    }

    /// The discovery document's URL.
    pub fn discovery(&self) -> String {
        self.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            )
        })
    }

    /// Why this configuration cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.issuer.is_empty() {
            return Some("issuer is empty".to_owned());
        }
        if self.audience.is_empty() {
            return Some(format!("issuer {}: audience is empty", self.issuer));
        }
        if self.algorithms.is_empty() {
            return Some(format!("issuer {}: no algorithm is allowed", self.issuer));
        }
        if self.groups_claim.is_empty() {
            return Some(format!("issuer {}: groups_claim is empty", self.issuer));
        }
        None
    }

    /// The REST roles `groups` grant, sorted and without duplicates.
    pub fn roles_for(&self, groups: &[String]) -> Vec<Role> {
        let mut roles: Vec<Role> = groups
            .iter()
            .filter_map(|g| self.group_roles.get(g))
            .flatten()
            .copied()
            .collect();
        roles.sort_by_key(|r| *r as u8);
        roles.dedup();
        roles
    }
}

fn default_algorithms() -> Vec<SigningAlg> {
    vec![SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA]
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_leeway() -> u64 {
    30
}

fn default_cooldown() -> u64 {
    30
}

fn default_max_age() -> u64 {
    3600
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn none_and_hmac_cannot_be_configured() {
        let toml = r#"{"issuer":"https://idp","audience":"sluice","algorithms":["HS256"]}"#;
        assert!(serde_json::from_str::<OidcIssuerConfig>(toml).is_err());
        let toml = r#"{"issuer":"https://idp","audience":"sluice","algorithms":["none"]}"#;
        assert!(serde_json::from_str::<OidcIssuerConfig>(toml).is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"issuer":"https://idp","audience":"sluice","groupz":"x"}"#;
        assert!(serde_json::from_str::<OidcIssuerConfig>(json).is_err());
    }

    #[test]
    fn groups_map_to_roles_once_each() {
        let mut c = OidcIssuerConfig::new("https://idp/", "sluice");
        c.group_roles
            .insert("dba".into(), vec![Role::Admin, Role::Auditor]);
        c.group_roles.insert("sec".into(), vec![Role::Auditor]);
        let roles = c.roles_for(&["sec".into(), "dba".into(), "other".into()]);
        assert_eq!(roles, vec![Role::Admin, Role::Auditor]);
        assert_eq!(
            c.discovery(),
            "https://idp/.well-known/openid-configuration"
        );
        assert!(c.problem().is_none());
    }
}

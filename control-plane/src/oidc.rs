//! External issuers as nodes receive them in the snapshot.

use sluice_identity::OidcIssuerConfig;
use sluice_proto::v1;

/// The node's view of a configured external issuer. Role mappings stay in
/// the control plane: nodes need no REST roles.
pub fn to_proto(c: &OidcIssuerConfig) -> v1::OidcIssuer {
    v1::OidcIssuer {
        issuer: c.issuer.clone(),
        audience: c.audience.clone(),
        discovery_url: c.discovery_url.clone().unwrap_or_default(),
        jwks_url: c.jwks_url.clone().unwrap_or_default(),
        algorithms: c.algorithms.iter().map(|a| a.as_str().to_owned()).collect(),
        groups_claim: c.groups_claim.clone(),
        principal_kind: c
            .principal_kind
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default(),
        leeway_secs: c.leeway_secs,
        refresh_cooldown_secs: c.refresh_cooldown_secs,
        max_key_age_secs: c.max_key_age_secs,
    }
}

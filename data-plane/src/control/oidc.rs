//! External issuers from the snapshot, read strictly: anything not
//! understood drops the issuer (its tokens are then refused), never widens
//! what is accepted.

use sluice_identity::PrincipalKind;
use sluice_identity::oidc::{OidcIssuerConfig, SigningAlg};
use sluice_proto::v1;

/// The configuration of `p`, or why it cannot be used.
pub fn from_proto(p: &v1::OidcIssuer) -> Result<OidcIssuerConfig, String> {
    let mut c = OidcIssuerConfig::new(&p.issuer, &p.audience);
    c.discovery_url = non_empty(&p.discovery_url);
    c.jwks_url = non_empty(&p.jwks_url);
    c.algorithms = p
        .algorithms
        .iter()
        .map(|a| {
            SigningAlg::parse(a)
                .ok_or_else(|| format!("issuer {}: unknown algorithm {a:?}", p.issuer))
        })
        .collect::<Result<_, _>>()?;
    c.groups_claim.clone_from(&p.groups_claim);
    c.principal_kind = match p.principal_kind.as_str() {
        "" => None,
        "person" => Some(PrincipalKind::Person),
        "agent" => Some(PrincipalKind::Agent),
        "service" => Some(PrincipalKind::Service),
        other => {
            return Err(format!(
                "issuer {}: unknown principal kind {other:?}",
                p.issuer
            ));
        }
    };
    c.leeway_secs = p.leeway_secs;
    c.refresh_cooldown_secs = p.refresh_cooldown_secs;
    c.max_key_age_secs = p.max_key_age_secs;
    match c.problem() {
        Some(problem) => Err(problem),
        None => Ok(c),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn proto() -> v1::OidcIssuer {
        v1::OidcIssuer {
            issuer: "https://idp".into(),
            audience: "sluice".into(),
            algorithms: vec!["RS256".into()],
            groups_claim: "groups".into(),
            principal_kind: "agent".into(),
            leeway_secs: 30,
            refresh_cooldown_secs: 5,
            max_key_age_secs: 60,
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_issuer_is_read() {
        let c = from_proto(&proto()).unwrap();
        assert_eq!(c.algorithms, vec![SigningAlg::RS256]);
        assert_eq!(c.principal_kind, Some(PrincipalKind::Agent));
        assert_eq!(c.discovery_url, None);
    }

    #[test]
    fn anything_not_understood_drops_the_issuer() {
        for bad in [
            v1::OidcIssuer {
                algorithms: vec!["HS256".into()],
                ..proto()
            },
            v1::OidcIssuer {
                algorithms: vec![],
                ..proto()
            },
            v1::OidcIssuer {
                principal_kind: "root".into(),
                ..proto()
            },
            v1::OidcIssuer {
                audience: String::new(),
                ..proto()
            },
        ] {
            assert!(from_proto(&bad).is_err(), "{bad:?}");
        }
    }
}

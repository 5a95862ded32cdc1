//! Generated gRPC types and services of the `sluice.v1` package.
//!
//! Nodes and control-plane replicas talk only through these messages, so the
//! contract lives in one crate that both sides depend on.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Version 1 of the node ⇄ control-plane protocol.
pub mod v1 {
    tonic::include_proto!("sluice.v1");
}

impl v1::Target {
    /// The upstream user and credential source for an identity with
    /// `groups`: the first login whose group it holds, else the target's
    /// own. The node and the control plane both choose with this, so they
    /// agree on the role without trusting each other's choice.
    pub fn login_for(&self, groups: &[String]) -> (&str, &str) {
        self.logins
            .iter()
            .find(|l| groups.iter().any(|g| *g == l.group))
            .map_or((self.username.as_str(), self.credential.as_str()), |l| {
                (l.username.as_str(), l.credential.as_str())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn the_first_matching_login_wins_else_the_targets_own() {
        let login = |g: &str, u: &str| v1::Login {
            group: g.into(),
            username: u.into(),
            credential: "sealed".into(),
        };
        let t = v1::Target {
            username: "gateway".into(),
            credential: "env:PG".into(),
            logins: vec![login("agents", "agent_ro"), login("eng", "eng_rw")],
            ..Default::default()
        };
        let groups = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            t.login_for(&groups(&["eng", "agents"])),
            ("agent_ro", "sealed")
        );
        assert_eq!(t.login_for(&groups(&["eng"])), ("eng_rw", "sealed"));
        assert_eq!(t.login_for(&groups(&["ops"])), ("gateway", "env:PG"));
        assert_eq!(t.login_for(&[]), ("gateway", "env:PG"));
    }
}

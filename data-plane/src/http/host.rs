//! Which target a request names: by path (`/http/{target}/{path}`, always)
//! or, when the node has a gateway host suffix, by host name
//! (`{target}.{suffix}`, the path as-is), so clients whose base URL cannot
//! carry a prefix (SDKs, OpenAPI generators) reach a target unchanged.
//! Pure functions: the gateway calls [`route`] with the request's authority.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

/// The longest host name (RFC 1035).
const MAX_HOST: usize = 253;

/// The longest DNS label.
const MAX_LABEL: usize = 63;

/// The gateway's host suffix (`http.sluice.internal`): lowercase DNS labels
/// without leading or trailing dots, checked when the configuration is
/// read so a bad one stops the node instead of routing nothing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostSuffix(String);

/// A host suffix that is not a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// See the message.
    #[error("the gateway host suffix {0:?} is not a host name (DNS labels of a-z, 0-9 and -)")]
    Invalid(String),
}

impl TryFrom<String> for HostSuffix {
    type Error = HostError;

    fn try_from(s: String) -> Result<Self, HostError> {
        let bad = || HostError::Invalid(s.chars().take(64).collect());
        let normal = s.strip_prefix('.').unwrap_or(&s).to_ascii_lowercase();
        let labels_ok = normal.split('.').all(|l| {
            (1..=MAX_LABEL).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if normal.is_empty() || normal.len() > MAX_HOST || !labels_ok {
            return Err(bad());
        }
        Ok(Self(normal))
    }
}

impl HostSuffix {
    /// The suffix, lowercase, without a leading dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    /// The target's name.
    pub target: Cow<'a, str>,
    /// The path the policy decides and the upstream receives.
    pub path: &'a str,
}

/// Why a request names no target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Neither the host nor the path names one.
    #[error("requests go to /http/{{target}}/{{path}}")]
    NoTarget,
    /// The host is under the suffix but is not `{target}.{suffix}`.
    #[error("the host names no HTTP target: use {{target}}.{0}")]
    BadHost(String),
}

/// The target and path of a request to `host` (its authority, port
/// optional) for `path`: `{target}.{suffix}` routes by host name with the
/// path as-is; any other host (an address, the suffix itself, a host
/// outside it) uses `/http/{target}/{path}`.
pub fn route<'a>(
    host: Option<&'a str>,
    path: &'a str,
    suffix: Option<&HostSuffix>,
) -> Result<Route<'a>, RouteError> {
    if let (Some(suffix), Some(host)) = (suffix, host.map(host_name))
        && let Some(label) = under(host, suffix.as_str())
    {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(RouteError::BadHost(suffix.to_string()));
        }
        let target = if label.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(label.to_ascii_lowercase())
        } else {
            Cow::Borrowed(label)
        };
        return Ok(Route { target, path });
    }
    let rest = path.strip_prefix("/http/").ok_or(RouteError::NoTarget)?;
    let (target, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok(Route {
        target: Cow::Borrowed(target),
        path,
    })
}

/// The host of an authority: without the port and a trailing dot.
/// Bracketed IPv6 addresses are returned whole (they are under no suffix).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority;
    }
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// The part of `host` before `.{suffix}` (compared without regard to
/// case), if `host` is under `suffix`.
fn under<'a>(host: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = host.len().checked_sub(suffix.len() + 1)?;
    let (label, rest) = (host.get(..cut)?, host.get(cut..)?);
    let rest = rest.strip_prefix('.')?;
    rest.eq_ignore_ascii_case(suffix).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suffix(s: &str) -> HostSuffix {
        HostSuffix::try_from(s.to_owned()).unwrap()
    }

    fn routed<'a>(
        host: Option<&'a str>,
        path: &'a str,
        s: Option<&HostSuffix>,
    ) -> (String, &'a str) {
        let r = route(host, path, s).unwrap();
        (r.target.into_owned(), r.path)
    }

    #[test]
    fn suffixes_are_lowercase_host_names() {
        assert_eq!(
            suffix("http.sluice.internal").as_str(),
            "http.sluice.internal"
        );
        assert_eq!(
            suffix(".HTTP.Sluice.internal").as_str(),
            "http.sluice.internal"
        );
        assert_eq!(suffix("localhost").as_str(), "localhost");
        let (long_label, long_host) = ("a".repeat(64), "a.".repeat(130));
        for bad in [
            "",
            ".",
            "a..b",
            "a.",
            "-a.b",
            "a-.b",
            "a_b.c",
            "a b",
            "*.x",
            "x:80",
            long_label.as_str(),
            long_host.as_str(),
        ] {
            assert!(HostSuffix::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_host_under_the_suffix_names_the_target_and_keeps_the_path() {
        let s = suffix("http.sluice.internal");
        let s = Some(&s);
        for host in [
            "crm.http.sluice.internal",
            "crm.http.sluice.internal:6480",
            "crm.http.sluice.internal.",
            "crm.http.sluice.internal.:443",
            "CRM.HTTP.Sluice.Internal",
        ] {
            assert_eq!(
                routed(Some(host), "/customers/1", s),
                ("crm".to_owned(), "/customers/1"),
                "{host}"
            );
        }
        // The path is the upstream's, even when it looks like a prefix.
        assert_eq!(
            routed(Some("crm.http.sluice.internal"), "/http/bin/get", s),
            ("crm".to_owned(), "/http/bin/get")
        );
        assert_eq!(
            routed(Some("my_api-2.http.sluice.internal"), "/", s),
            ("my_api-2".to_owned(), "/")
        );
    }

    #[test]
    fn other_hosts_use_the_path_prefix() {
        let s = suffix("http.sluice.internal");
        for host in [
            None,
            Some("127.0.0.1:6480"),
            Some("[::1]:6480"),
            Some("http.sluice.internal"),
            Some("gateway.example.com"),
            Some("crmhttp.sluice.internal"),
            Some("crm.http.sluice.internal.evil.example"),
        ] {
            assert_eq!(
                routed(host, "/http/crm/customers", Some(&s)),
                ("crm".to_owned(), "/customers"),
                "{host:?}"
            );
            assert_eq!(
                route(host, "/customers", Some(&s)),
                Err(RouteError::NoTarget)
            );
        }
        // Without a suffix, the host is never read.
        assert_eq!(
            routed(Some("crm.http.sluice.internal"), "/http/bin", None),
            ("bin".to_owned(), "/")
        );
    }

    #[test]
    fn a_host_under_the_suffix_that_is_not_one_label_is_refused() {
        let s = suffix("http.sluice.internal");
        for host in [
            "a.b.http.sluice.internal",
            ".http.sluice.internal",
            "cr%6d.http.sluice.internal",
            "crm!.http.sluice.internal",
        ] {
            assert!(
                matches!(
                    route(Some(host), "/http/crm/x", Some(&s)),
                    Err(RouteError::BadHost(_))
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn hosts_are_split_from_their_ports() {
        assert_eq!(host_name("a.b:80"), "a.b");
        assert_eq!(host_name("a.b"), "a.b");
        assert_eq!(host_name("a.b."), "a.b");
        assert_eq!(host_name("a.b:x"), "a.b:x");
        assert_eq!(host_name("[::1]:80"), "[::1]:80");
        assert_eq!(under("é.x", "x"), Some("é"));
        assert_eq!(under("x", "x"), None);
        assert_eq!(under("", "x"), None);
    }
}

//! What crosses the gateway in headers: hop-by-hop headers stop at the
//! node (as RFC 9110 section 7.6.1 asks of a proxy), the agent's token never
//! reaches the upstream, and methods cannot be smuggled past the decision in
//! an override header.

use axum::http::{HeaderMap, HeaderName, header};

/// Headers that describe one connection, not the message (as names, so
/// removing them parses nothing).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("http2-settings"),
];

/// Headers that ask a server to treat the request as another method; the
/// decision covers the method on the request line only, so they are refused.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

/// Whether `name` is a method override header.
pub fn is_method_override(name: &HeaderName) -> bool {
    METHOD_OVERRIDES.contains(&name.as_str())
}

/// The first method override header present, if any.
pub fn method_override(headers: &HeaderMap) -> Option<&HeaderName> {
    headers.keys().find(|n| is_method_override(n))
}

/// Bytes of all header names and values, to bound what one request may
/// carry.
pub fn size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// The Sluice token from `Authorization: Bearer` or `Proxy-Authorization:
/// Bearer` (the first that is present).
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    [header::AUTHORIZATION, header::PROXY_AUTHORIZATION]
        .iter()
        .filter_map(|h| headers.get(h))
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
                .filter(|t| !t.is_empty())
        })
}

/// Removes hop-by-hop headers, those the `Connection` header names, and
/// every `Proxy-*` header.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for n in proxy {
        headers.remove(n);
    }
}

/// The request headers as the upstream receives them: no hop-by-hop
/// headers, no token, no `Host` (the upstream's own is used), no length
/// (the client's body is re-sent whole), and identity encoding asked for so
/// the response can be masked.
pub fn upstream_request(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    for h in [
        header::AUTHORIZATION,
        header::HOST,
        header::CONTENT_LENGTH,
        header::ACCEPT_ENCODING,
        header::COOKIE,
    ] {
        headers.remove(h);
    }
    headers.remove("forwarded");
    headers.remove("x-forwarded-for");
    headers.remove("x-forwarded-host");
    headers.insert(
        header::ACCEPT_ENCODING,
        header::HeaderValue::from_static("identity"),
    );
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_named_headers_stop_at_the_gateway() {
        let h = upstream_request(map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Bearer tok"),
            ("authorization", "Bearer tok"),
            ("accept-encoding", "gzip"),
            ("accept", "application/json"),
        ]));
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["accept"], "application/json");
        assert_eq!(h["accept-encoding"], "identity");
    }

    #[test]
    fn tokens_are_found_in_either_authorization_header() {
        assert_eq!(
            bearer_token(&map(&[("authorization", "Bearer abc")])).as_deref(),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&map(&[("proxy-authorization", "bearer xyz")])).as_deref(),
            Some("xyz")
        );
        assert_eq!(bearer_token(&map(&[("authorization", "Basic Zm9v")])), None);
        assert_eq!(bearer_token(&map(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn method_overrides_are_recognised_in_any_case() {
        let h = map(&[("X-HTTP-Method-Override", "DELETE")]);
        assert!(method_override(&h).is_some());
        assert!(method_override(&map(&[("x-method-override", "PUT")])).is_some());
        assert!(method_override(&map(&[("x-http-method", "PUT")])).is_some());
        assert!(method_override(&map(&[("x-other", "PUT")])).is_none());
    }
}

//! Redirects a route's annotations answer without contacting a backend, built as
//! ingress-nginx builds them: `app-root` (a server-level `if ($uri = /)` returning
//! `302 $scheme://$http_host<app-root>`, its nginx variables expanded), then, in the
//! location's rewrite phase, `temporal-redirect`/`permanent-redirect` (a fixed `return`)
//! and a `rewrite-target` that is an absolute URL (nginx's `rewrite` answers such a
//! replacement with a 302, captures substituted and the query string appended); then
//! the redirect to https (`ssl-redirect` / `force-ssl-redirect`, with
//! `preserve-trailing-slash`) and the `from-to-www-redirect` answer.
//!
//! Owns only the decision and the `Location` text; writing the response stays in
//! `service`. Variables are expanded by the one nginx-variable evaluator,
//! [`crate::routing::template`] (its URL dialect). Nothing here allocates unless a
//! redirect applies.

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::routing::template::RequestVars;
use crate::routing::{Policy, Route};

/// What the variables of a redirect target are expanded from, besides the request.
pub struct Facts<'a> {
    /// The request's host as sent (`Host`, else `:authority`), port included.
    pub http_host: &'a str,
    /// The normalised path (nginx's `$uri`).
    pub uri: &'a str,
    /// The request arrived over TLS (nginx's `$scheme`).
    pub tls: bool,
    pub client_ip: Option<IpAddr>,
    pub server_port: u16,
}

/// `app-root`: the `Location` for a request of exactly `/`, if the route sets one.
pub fn app_root(route: &Route, req: &RequestHeader, f: &Facts<'_>) -> Option<String> {
    if f.uri != "/" {
        return None;
    }
    let root = route.policy.app_root.as_ref()?;
    let scheme = if f.tls { "https" } else { "http" };
    let vars = RequestVars {
        method: &req.method,
        uri: &req.uri,
        headers: &req.headers,
        http_host: f.http_host,
        scheme,
        server_port: f.server_port,
        remote_addr: f.client_ip,
    };
    Some(format!("{scheme}://{}{}", f.http_host, root.expand(&vars)))
}

/// The location-level redirects, in nginx's order: the fixed `temporal-redirect` /
/// `permanent-redirect`, then an absolute `rewrite-target`. Returns status and
/// `Location`.
pub fn location(route: &Route, req: &RequestHeader, uri: &str) -> Option<(u16, String)> {
    if let Some(r) = &route.policy.redirect {
        return Some((r.code, r.location.to_string()));
    }
    let rw = route.rewrite.as_ref().filter(|rw| rw.is_redirect())?;
    rw.redirect(uri, req.uri.query()).map(|l| (302, l))
}

/// The Location of the redirect to https: ingress-nginx drops one trailing `/` of the
/// request URI (query included) unless `preserve-trailing-slash` is set.
pub fn https_location(host: &str, request_uri: &str, preserve_trailing_slash: bool) -> String {
    let uri = if preserve_trailing_slash {
        request_uri
    } else {
        request_uri.strip_suffix('/').unwrap_or(request_uri)
    };
    format!("https://{host}{uri}")
}

/// `from-to-www-redirect`: the Location for a request to the redirecting host (same
/// scheme, the other host, the request URI with one trailing `/` dropped, as
/// ingress-nginx's redirect server). `None` for every other route.
pub fn www_redirect(policy: &Policy, req: &RequestHeader, tls: bool) -> Option<String> {
    let to = policy.www_redirect.as_deref()?;
    let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = uri.strip_suffix('/').unwrap_or(uri);
    let scheme = if tls { "https" } else { "http" };
    Some(format!("{scheme}://{to}{uri}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations() {
        assert_eq!(
            https_location("a.example", "/x/", false),
            "https://a.example/x"
        );
        assert_eq!(https_location("a.example", "/", false), "https://a.example");
        assert_eq!(
            https_location("a.example", "/x/?q=1", false),
            "https://a.example/x/?q=1"
        );
        assert_eq!(
            https_location("a.example", "/x/", true),
            "https://a.example/x/"
        );
        let policy = Policy {
            www_redirect: Some("example.com".into()),
            ..Policy::default()
        };
        let r = RequestHeader::build("GET", b"/a/b/?x=1", None).unwrap();
        assert_eq!(
            www_redirect(&policy, &r, false).as_deref(),
            Some("http://example.com/a/b/?x=1")
        );
        let r = RequestHeader::build("GET", b"/a/", None).unwrap();
        assert_eq!(
            www_redirect(&policy, &r, true).as_deref(),
            Some("https://example.com/a")
        );
        assert!(www_redirect(&Policy::default(), &r, true).is_none());
    }
}

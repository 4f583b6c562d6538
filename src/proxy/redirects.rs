//! Redirects a route's annotations answer without contacting a backend, built as
//! ingress-nginx builds them: `app-root` (a server-level `if ($uri = /)` returning
//! `302 $scheme://$http_host<app-root>`, its nginx variables expanded), then, in the
//! location's rewrite phase, `temporal-redirect`/`permanent-redirect` (a fixed `return`)
//! and a `rewrite-target` that is an absolute URL (nginx's `rewrite` answers such a
//! replacement with a 302, captures substituted and the query string appended).
//!
//! Owns only the decision and the `Location` text; writing the response stays in
//! `service`. Variables are expanded by the one nginx-variable evaluator,
//! [`crate::routing::template`] (its URL dialect). Nothing here allocates unless a
//! redirect applies.

use std::net::IpAddr;

use pingora::http::RequestHeader;

use crate::routing::template::RequestVars;
use crate::routing::Route;

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

//! The request-policy phase of `request_filter`: everything an Ingress's annotations may
//! answer before a backend is chosen, in nginx's phase order. `app-root` (a server-level
//! rewrite), a denied location (503), CORS preflights, the location's own redirects,
//! ingress-nginx's redirect to https, `from-to-www-redirect`, then the rate and
//! connection limits (preaccess), the access lists, the declared body size and
//! authentication (access).
//!
//! Owns only the decisions and their order. It returns an [`Answer`] and `service`
//! writes it, so error pages, CORS headers on answers and the access log all stay in
//! one place. Along the way it records what later phases need in the request context:
//! the CORS origin the request earned, a held `limit-connections` slot and the result
//! of authentication.

use std::net::IpAddr;

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

use super::auth::{self, Denial};
use super::context::RequestCtx;
use super::cors;
use super::headers;
use super::limits::{Limiter, Refused, Verdict};
use super::redirects;

/// HTTP-01 challenges must reach the backend over plain HTTP.
const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

/// What the policy answers instead of proxying.
pub enum Answer {
    /// A status sluice answers itself (its page, or the custom error backend's).
    Status(u16),
    /// 413 for a declared body over `proxy-body-size`: the body is not read, so the
    /// connection closes after the answer rather than draining it.
    TooLarge,
    /// A redirect: status and `Location`.
    Redirect(u16, String),
    /// A CORS preflight's 204.
    Preflight(ResponseHeader),
    /// Authentication refused (status and headers such as `WWW-Authenticate`).
    Denied(Denial),
}

/// The request facts the policy reads besides the request head.
pub struct Facts<'a> {
    /// `Host`, else the HTTP/2 `:authority`, as sent.
    pub host: &'a str,
    /// The normalised path.
    pub path: &'a str,
    /// The client address every check uses (the real client once decided).
    pub client_ip: Option<IpAddr>,
    /// The port of the listener the request arrived on.
    pub server_port: u16,
}

/// Runs the policy of `ctx.route` (which, with `ctx.table` and `ctx.client`, is set);
/// `None`: go on to the backend.
pub async fn check(
    limiter: &Limiter,
    req: &RequestHeader,
    facts: &Facts<'_>,
    ctx: &mut RequestCtx,
) -> Result<Option<Answer>> {
    let (Some(table), Some(route)) = (ctx.table.clone(), ctx.route.clone()) else {
        return Ok(None);
    };
    let globals = &table.globals;
    // app-root: a server-level rewrite in ingress-nginx, before any location's.
    let redirect_facts = redirects::Facts {
        http_host: facts.host,
        uri: facts.path,
        tls: ctx.tls,
        client_ip: facts.client_ip,
        server_port: facts.server_port,
    };
    if let Some(location) = redirects::app_root(&route, req, &redirect_facts) {
        return Ok(Some(Answer::Redirect(302, location)));
    }
    // A denied location answers 503 in place of all its rules (ingress-nginx).
    if route.policy.denied.is_some() {
        return Ok(Some(Answer::Status(503)));
    }
    // CORS (nginx's location rewrite phase: after app-root, before the rest).
    ctx.cors_origin = cors::decide(&route, req);
    if cors::is_preflight(req, ctx.cors_origin.as_ref()) {
        if let (Some(c), Some(o)) = (route.policy.cors.as_ref(), &ctx.cors_origin) {
            return Ok(Some(Answer::Preflight(cors::preflight(c, o)?)));
        }
    }
    // The location's own rewrite-phase redirects come before ingress-nginx's https
    // redirect (Lua, at the end of that phase).
    if let Some((code, location)) = redirects::location(&route, req, facts.path) {
        return Ok(Some(Answer::Redirect(code, location)));
    }
    let https = ctx.tls
        || ctx
            .client
            .is_some_and(|c| headers::client_scheme(req, &c, ctx.tls) == "https");
    if route.ssl_redirect && !https && !facts.path.starts_with(ACME_CHALLENGE) {
        // ingress-nginx's redirect to https: same host (without the port) and URI.
        let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let bare_host = crate::routing::normalize_host(facts.host);
        let preserve = route.policy.preserve_trailing_slash;
        let location = redirects::https_location(&bare_host, target, preserve);
        return Ok(Some(Answer::Redirect(globals.http_redirect_code, location)));
    }
    // The rest of the Ingress's policy, in nginx's phase order: the rate limits
    // (preaccess), the access lists and authentication (access), the body size.
    let policy = &route.policy;
    if let Some(l) = redirects::www_redirect(policy, req, ctx.tls) {
        return Ok(Some(Answer::Redirect(globals.http_redirect_code, l)));
    }
    if let Some(limits) = &policy.limits {
        // nginx's preaccess phase: limit_req, then limit_conn.
        match limiter.check(limits, facts.client_ip) {
            Verdict::Pass(slot) => ctx.conn_slot = slot,
            Verdict::Refuse(why) => {
                let code = match why {
                    Refused::Rate => globals.limit_req_status,
                    Refused::Connections => globals.limit_conn_status,
                };
                return Ok(Some(Answer::Status(code)));
            }
        }
    }
    if policy.allow.is_some() || policy.deny.is_some() {
        let ip = facts.client_ip;
        let denied = policy
            .deny
            .as_ref()
            .is_some_and(|d| ip.is_some_and(|ip| d.contains(ip)));
        let allowed = policy
            .allow
            .as_ref()
            .is_none_or(|a| ip.is_some_and(|ip| a.contains(ip)));
        if denied || !allowed {
            return Ok(Some(Answer::Status(403)));
        }
    }
    if let Some(limit) = policy.body_limit {
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Ok(Some(Answer::TooLarge));
        }
    }
    // Authentication (access phase, after the access lists): basic, then auth-url.
    if policy.basic_auth.is_some() || policy.external_auth.is_some() || policy.denied.is_some() {
        let auth_facts = auth::RequestFacts {
            host: facts.host,
            tls: ctx.tls,
            client_ip: facts.client_ip,
            server_port: facts.server_port,
            request_id: &ctx.request_id,
            connect_timeout: globals.connect_timeout,
            read_timeout: globals.read_timeout,
        };
        if let Some(d) = auth::check(req, policy, &auth_facts, &mut ctx.auth).await {
            return Ok(Some(Answer::Denied(d)));
        }
    }
    Ok(None)
}

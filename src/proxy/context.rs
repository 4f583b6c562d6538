//! What one request carries through the proxy's phases: [`RequestCtx`] (the table
//! generation and route it was matched against, the client decided once, what the
//! policy and the balancer decided, the state the access log reads), and the facts
//! every phase reads from the session (peer and client address, host, listener port,
//! the request's nginx variables).
//!
//! Owns no behaviour: `service` runs the phases, `policy` and `respond` read and fill
//! the context.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use pingora::http::RequestHeader;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::proxy::Session;

use super::accesslog::Vars;
use super::balance::InflightGuard;
use super::custom_errors::Replacement;
use super::headers::{self, Client};
use super::limits::ConnGuard;
use crate::routing::{Route, RoutingTable};

/// Per-request state: everything later phases and the access log need.
pub struct RequestCtx {
    pub(super) started: Instant,
    pub(super) table: Option<Arc<RoutingTable>>,
    pub(super) route: Option<Arc<Route>>,
    pub(super) request_id: String,
    pub(super) tries: usize,
    /// Endpoints that failed to connect for this request, skipped on retry.
    pub(super) failed: Vec<SocketAddr>,
    pub(super) upstream_addr: Option<SocketAddr>,
    pub(super) upstream_started: Option<Instant>,
    pub(super) upstream_status: Option<u16>,
    /// Status sluice answered itself (404/503/...), for the access log.
    pub(super) own_status: Option<u16>,
    /// The request arrived over TLS.
    pub(super) tls: bool,
    /// Size of the request head, measured once for the header limit and the access log.
    pub(super) head_bytes: usize,
    /// The affinity cookie value to send back (new client, or its endpoint changed).
    pub(super) set_cookie: Option<String>,
    /// Counts this request against its endpoint while in flight (EWMA routes).
    pub(super) inflight: Option<InflightGuard>,
    /// Request body bytes seen so far (for `proxy-body-size` on chunked bodies).
    pub(super) body_bytes: u64,
    /// Counts this request as in flight for the shutdown drain.
    pub(super) _in_flight: crate::drain::InFlight,
    /// What authentication decided (user, headers for upstream and client).
    pub(super) auth: super::auth::AuthState,
    /// The `Access-Control-Allow-Origin` this request earned (`enable-cors`).
    pub(super) cors_origin: Option<http::HeaderValue>,
    /// A `limit-connections` slot, held until the request ends.
    pub(super) conn_slot: Option<ConnGuard>,
    /// Who sent the request (decided once in `request_filter`).
    pub(super) client: Option<Client>,
    /// A custom error page replacing the backend's response.
    pub(super) error_page: Option<Replacement>,
    // Request bodies (hardening, issue 11).
    /// The whole request body, read before the backend was contacted
    /// (`proxy-request-buffering: on`); replayed on every attempt.
    pub(super) buffered: Option<super::buffering::BufferedBody>,
    /// The upstream's response is being dropped for a `proxy-next-upstream` retry.
    pub(super) status_retry: bool,
}

/// The TCP peer.
pub(super) fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(PingoraAddr::as_inet)
        .map(|a| a.ip())
}

/// The client address every check and header uses: the real client address once
/// `request_filter` has decided it (`headers::resolve_client`), else the peer.
pub(super) fn client_ip(session: &Session, ctx: &RequestCtx) -> Option<IpAddr> {
    ctx.client.map_or_else(|| peer_ip(session), |c| c.ip)
}

/// Request-time nginx variables of this request.
pub(super) fn vars<'a>(session: &'a Session, ctx: &'a RequestCtx) -> Vars<'a> {
    let req = session.req_header();
    let scheme = match &ctx.client {
        Some(c) => headers::client_scheme(req, c, ctx.tls),
        None if ctx.tls => "https",
        None => "http",
    };
    Vars::request(
        req,
        client_ip(session, ctx),
        request_host(req).unwrap_or(""),
        scheme,
        server_port(session),
        ctx.route.as_deref(),
        &ctx.request_id,
    )
}

pub(super) fn server_port(session: &Session) -> u16 {
    session
        .server_addr()
        .and_then(PingoraAddr::as_inet)
        .map_or(0, |a| a.port())
}

/// The host a request is for: `Host`, else the h2 `:authority`.
pub(super) fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// Approximate size of the request head as received (nginx's header part of `$request_length`).
pub(super) fn header_bytes(req: &RequestHeader) -> usize {
    let target = req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    req.headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + target
        + req.method.as_str().len()
        + 12
}

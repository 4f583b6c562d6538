//! `proxy-next-upstream` at request time: whether a failed attempt is tried again.
//!
//! Owns the decision only; `service` counts attempts and Pingora redoes
//! `upstream_peer`. What ingress-nginx does and sluice reproduces:
//! - what counts as a failure is the route's list: `error` (refused or broken
//!   connections), `timeout`, `invalid_header` (a response head that does not parse),
//!   and `http_500/502/503/504/403/404/429` (the upstream answered that status; the
//!   response is dropped before anything of it reaches the client);
//! - `-tries` attempts in total (the first included; `0` = as many as endpoints) within
//!   `-timeout` since the request began;
//! - the next attempt prefers an endpoint this request has not failed on, but with one
//!   endpoint (or all of them failed) it is re-picked: ingress-nginx's Lua balancer
//!   does the same, so a backend failing twice succeeds on try 3;
//! - a request that may have reached the backend is retried only when it is idempotent
//!   or `non_idempotent` is listed, when no response went to the client yet, and when
//!   its body can be sent again: buffered (`proxy::buffering`), empty, or kept whole in
//!   Pingora's retry buffer while buffering is on. A body streamed with
//!   `proxy-request-buffering: off` is never resent (nginx's `request_body_no_buffering`).

use std::net::SocketAddr;
use std::time::Instant;

use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use crate::routing::{Endpoints, GlobalSettings, Route, UpstreamProtocol};

/// Why an attempt failed, in `proxy_next_upstream`'s terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Error,
    Timeout,
    InvalidHeader,
    Status(u16),
}

impl Failure {
    /// Classifies an upstream error (connect, send or response-head failures).
    pub fn of(e: &Error) -> Failure {
        match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                Failure::Timeout
            }
            ErrorType::InvalidHTTPHeader => Failure::InvalidHeader,
            _ => Failure::Error,
        }
    }
}

/// What the attempts so far were.
pub struct Attempts<'a> {
    /// Attempts made, this one included.
    pub tries: usize,
    /// Endpoints that failed this request.
    pub failed: &'a [SocketAddr],
    pub started: Instant,
}

/// Whether the route's `proxy-next-upstream` settings allow another attempt after
/// `failure` (the request-side conditions are [`request_replayable`]'s).
pub fn allowed(route: &Route, failure: Failure, a: &Attempts<'_>) -> bool {
    let n = route.next_upstream;
    let listed = match failure {
        Failure::Error => n.on_error,
        Failure::Timeout => n.on_timeout,
        Failure::InvalidHeader => n.invalid_header,
        Failure::Status(code) => n.statuses.contains(code),
    };
    let endpoints = match &route.backend.endpoints {
        Endpoints::Addrs(a) => a.len(),
        Endpoints::External { .. } => 3,
        Endpoints::Unavailable { .. } => 0,
    };
    let limit = if n.tries == 0 {
        endpoints
    } else {
        n.tries as usize
    };
    let in_time = n.timeout.is_none_or(|t| a.started.elapsed() < t);
    listed && endpoints > 0 && a.tries < limit && in_time
}

/// Whether the request can be sent again once it may have reached a backend: its
/// method allows it and its body is still whole here (see the module doc).
pub fn request_replayable(
    session: &Session,
    route: &Route,
    globals: &GlobalSettings,
    buffered: bool,
) -> bool {
    let method_ok =
        session.req_header().method.is_idempotent() || route.next_upstream.non_idempotent;
    if !method_ok || session.as_ref().retry_buffer_truncated() {
        return false;
    }
    if buffered || session.body_bytes_read() == 0 {
        return true;
    }
    let streamed = !route
        .policy
        .request_buffering
        .unwrap_or(globals.request_buffering)
        || matches!(
            route.protocol,
            UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs
        );
    !streamed
}

/// The error that drops a listed upstream response so the request is tried again.
pub fn status_error(code: u16) -> Box<Error> {
    let mut e = Error::explain(
        ErrorType::HTTPStatus(code),
        "proxy-next-upstream: upstream status listed for retry",
    )
    .into_up();
    e.set_retry(true);
    e
}

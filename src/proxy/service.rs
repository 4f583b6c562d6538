//! The `ProxyHttp` implementation: route by host and path, pick an endpoint round
//! robin, forward with ingress-nginx's headers, and answer failures as nginx does
//! (404 no route, 503 no endpoints, 502 unreachable, 504 upstream timeout).
//!
//! Connection failures are retried on another endpoint (ingress-nginx's default
//! `proxy-next-upstream: error timeout` with 3 tries): only failures to connect, where
//! nothing was sent, so a retry is always safe.
//!
//! This module runs the phases; the per-request state is `context`, the request-policy
//! phase (redirects, CORS, limits, access lists, body size, auth) is `policy`, and the
//! responses sluice writes itself are `respond`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorSource, ErrorType, Result};
use tracing::debug;

use super::accesslog::{self, Vars};
use super::balance::{self, Balancer, RequestInfo};
use super::context::{
    client_ip, header_bytes, peer_ip, request_host, server_port, vars, RequestCtx,
};
use super::cors;
use super::custom_errors::{self, Replacement};
use super::headers::{self, ForwardedFor};
use super::limits::Limiter;
use super::policy::{self, Answer};
use super::proxy_protocol;
use super::respond::{
    body_failed, no_final_response, own_error_page, own_response, respond, respond_with,
    respond_with_headers,
};
use super::retry;
use crate::routing::{
    normalize_path, Endpoints, LbPolicy, Match, SharedTable, UpstreamProtocol, UpstreamTls,
};

/// Tunables of the data plane that do not come from the table. Upstream timeouts do:
/// they are read per request from the table's ConfigMap-derived globals.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Endpoint choice and the balancing state shared by every worker.
    pub balancer: Arc<Balancer>,
    /// `limit-rps`/`-rpm`/`-connections` counters shared by every worker.
    pub limiter: Arc<Limiter>,
    /// Bytes of request headers accepted before answering 400 (nginx: 4 × 8k buffers).
    pub max_request_header_bytes: usize,
    pub access_log: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            balancer: Arc::new(Balancer::new(None)),
            limiter: Arc::new(Limiter::new()),
            max_request_header_bytes: 32 * 1024,
            access_log: true,
        }
    }
}

pub struct SluiceProxy {
    table: Arc<SharedTable>,
    options: ProxyOptions,
}

impl SluiceProxy {
    pub fn new(table: Arc<SharedTable>, options: ProxyOptions) -> SluiceProxy {
        SluiceProxy { table, options }
    }
}

impl SluiceProxy {
    /// Counts a finished request in the ingress-nginx metrics.
    fn record_metrics(&self, session: &Session, ctx: &RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.own_status)
            .unwrap_or(0);
        let route = ctx.route.as_deref();
        let head = match ctx.head_bytes {
            0 => header_bytes(session.req_header()),
            n => n,
        };
        crate::metrics::global().record_request(&crate::metrics::RequestRecord {
            host: route.map_or("", |r| &r.host),
            ingress: route.map_or("", |r| &r.ingress_name),
            namespace: route.map_or("", |r| &r.ingress_namespace),
            path: route.map_or("", |r| &r.path),
            service: route.map_or("", |r| &r.backend.service),
            method: session.req_header().method.as_str(),
            status,
            canary: "",
            duration_secs: ctx.started.elapsed().as_secs_f64(),
            upstream_secs: ctx
                .upstream_status
                .and(ctx.upstream_started)
                .map(|t| t.elapsed().as_secs_f64()),
            request_bytes: (head + session.body_bytes_read()) as u64,
            response_bytes: session.body_bytes_sent() as u64,
        });
    }

    /// Whether `proxy-next-upstream` allows another attempt after a failed one.
    fn may_retry(&self, ctx: &RequestCtx, failure: retry::Failure) -> bool {
        let attempts = retry::Attempts {
            tries: ctx.tries,
            failed: &ctx.failed,
            started: ctx.started,
        };
        ctx.route
            .as_ref()
            .is_some_and(|r| retry::allowed(r, failure, &attempts))
    }

    /// Whether the request may be sent again after reaching a backend.
    fn replayable(&self, session: &Session, ctx: &RequestCtx) -> bool {
        match (ctx.route.as_deref(), ctx.table.as_deref()) {
            (Some(r), Some(t)) => {
                no_final_response(session)
                    && retry::request_replayable(session, r, &t.globals, ctx.buffered.is_some())
            }
            _ => false,
        }
    }
}

#[async_trait]
impl ProxyHttp for SluiceProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            table: None,
            route: None,
            request_id: String::new(),
            tries: 0,
            failed: Vec::new(),
            upstream_addr: None,
            upstream_started: None,
            upstream_status: None,
            own_status: None,
            tls: false,
            head_bytes: 0,
            set_cookie: None,
            inflight: None,
            body_bytes: 0,
            _in_flight: crate::drain::InFlight::request(),
            auth: Default::default(),
            cors_origin: None,
            conn_slot: None,
            client: None,
            error_page: None,
            buffered: None,
            status_retry: false,
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Keep the client connection only when HTTP/1.x allows it: HTTP/1.0 needs an
        // explicit `Connection: keep-alive`, and `Connection: close` always closes;
        // never once shutdown has begun (keep-alive clients move to another replica).
        let req = session.req_header();
        let connection = req
            .headers
            .get(http::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let token = |t: &str| connection.split(',').any(|c| c.trim() == t);
        let wants_keepalive = match req.version {
            http::Version::HTTP_10 => token("keep-alive"),
            _ => !token("close"),
        };
        // Request framing and client limits (hardening): never turn keep-alive back on
        // where Pingora turned it off (Content-Length with Transfer-Encoding); close
        // after `keep-alive-requests` requests (Pingora counts down the reuses left,
        // which is unset on a connection's first request); `keep-alive: 0` closes.
        let table = self.table.load();
        let globals = &table.globals;
        if session.get_keepalive_reuses_remaining().is_none() {
            session.set_keepalive_reuses_remaining(Some(globals.keep_alive_requests - 1));
        }
        let idle = globals.keep_alive.as_secs();
        let keep = wants_keepalive
            && !crate::drain::draining()
            && idle > 0
            && session.get_keepalive().is_some();
        session.set_keepalive(keep.then_some(idle));
        // Responses come in request order; the framing guard hands Pingora a pipelined
        // request only once it is checked.
        session.set_pipelining_enabled(true);
        // nginx's client_header/body_timeout and send_timeout defaults.
        session.set_read_timeout(Some(Duration::from_secs(60)));
        session.set_write_timeout(Some(Duration::from_secs(60)));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let table = self.table.load();
        // client-body-timeout: each read of the body (HTTP/1; buffering times its own).
        session.set_read_timeout(Some(table.globals.client_body_timeout));
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let req = session.req_header();
        let proxied = proxy_protocol::proxied_source(session.digest());
        let client =
            headers::resolve_client(peer_ip(session), proxied, &req.headers, &table.globals);
        ctx.client = Some(client);
        let received_id = req
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128);
        ctx.request_id = match received_id {
            Some(id) => id.to_string(),
            None if table.globals.generate_request_id => headers::new_request_id(),
            None => String::new(),
        };
        ctx.head_bytes = header_bytes(req);
        if ctx.head_bytes > self.options.max_request_header_bytes
            // http2-max-field-size (issue 11): the h2 crate bounds only the whole list.
            || (session.is_http2()
                && super::h2limits::field_too_large(req, table.globals.http2_max_field_size))
        {
            respond(session, 400, ctx).await?;
            return Ok(true);
        }
        let Some(host) = request_host(req) else {
            respond(session, 400, ctx).await?;
            return Ok(true);
        };
        let path = match normalize_path(req.uri.path()) {
            Ok(p) => p,
            Err(_) => {
                respond(session, 400, ctx).await?;
                return Ok(true);
            }
        };
        // Client certificates (auth-tls-*): a server-level check in nginx, before any
        // location.
        if let Some(refusal) = super::client_cert::check(session, &table, host, ctx.tls) {
            ctx.table = Some(table);
            match refusal {
                super::client_cert::Refusal::Status(code) => respond(session, code, ctx).await?,
                super::client_cert::Refusal::Redirect(to) => {
                    respond_with(session, 302, ctx, Some(&to)).await?
                }
            }
            return Ok(true);
        }
        let route = match table.lookup(host, &path) {
            Match::Default(r) if custom_errors::catch_all_404(r, &table) => {
                ctx.table = Some(table);
                respond(session, 404, ctx).await?;
                return Ok(true);
            }
            Match::Rule(r) | Match::Default(r) => r.clone(),
            Match::NotFound => {
                ctx.table = Some(table);
                respond(session, 404, ctx).await?;
                return Ok(true);
            }
        };
        ctx.table = Some(table);
        ctx.route = Some(route);
        let facts = policy::Facts {
            host,
            path: &path,
            client_ip: client.ip,
            server_port: server_port(session),
        };
        if let Some(answer) = policy::check(&self.options.limiter, req, &facts, ctx).await? {
            match answer {
                Answer::Status(code) => respond(session, code, ctx).await?,
                Answer::TooLarge => {
                    session.set_keepalive(None);
                    respond(session, 413, ctx).await?
                }
                Answer::Redirect(code, location) => {
                    respond_with(session, code, ctx, Some(&location)).await?
                }
                Answer::Preflight(resp) => {
                    ctx.own_status = Some(204);
                    session.write_response_header(Box::new(resp), true).await?;
                }
                Answer::Denied(d) => {
                    respond_with_headers(session, d.status, ctx, &d.headers).await?
                }
            }
            return Ok(true);
        }
        let has_endpoints = ctx
            .route
            .as_ref()
            .is_some_and(|r| r.backend.has_endpoints());
        if !has_endpoints {
            // ingress-nginx's implicit root location: past its policy, unmatched.
            let implicit = ctx.route.as_ref().is_some_and(|r| r.implicit_root);
            respond(session, if implicit { 404 } else { 503 }, ctx).await?;
            return Ok(true);
        }
        let req = session.req_header();
        if let Some(alt) = ctx
            .route
            .as_ref()
            .and_then(|r| super::canary::choose(r, req))
        {
            ctx.route = Some(alt);
        }
        // proxy-request-buffering: the whole body before any backend is contacted.
        let plan = match (ctx.route.as_deref(), ctx.table.as_deref()) {
            (Some(r), Some(t)) => super::buffering::plan(session.req_header(), r, &t.globals),
            _ => None,
        };
        if let Some(plan) = plan {
            match super::buffering::read(session, &plan).await {
                Ok(body) => ctx.buffered = Some(body),
                Err(e) => return body_failed(session, ctx, e).await,
            }
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let client_ip = client_ip(session, ctx);
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        ctx.tries += 1;
        let addr = match &route.backend.endpoints {
            Endpoints::Addrs(_) => {
                let req = session.req_header();
                let info = RequestInfo {
                    req,
                    client_ip,
                    http_host: request_host(req).unwrap_or(""),
                };
                let balancer = &self.options.balancer;
                balancer.pick(route, &info, &ctx.failed).map(|p| {
                    if p.set_cookie.is_some() {
                        ctx.set_cookie = p.set_cookie;
                    }
                    if route.lb == LbPolicy::Ewma {
                        // Replacing the guard of a failed attempt releases it.
                        ctx.inflight = Some(balancer.track(p.addr));
                    }
                    p.addr
                })
            }
            Endpoints::External { host, port } => {
                // ExternalName: resolved when connecting, as nginx's resolver would.
                let found = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| {
                        Error::because(ErrorType::ConnectNoRoute, format!("resolving {host}"), e)
                    })?
                    .collect::<Vec<_>>();
                found
                    .iter()
                    .find(|a| !ctx.failed.contains(a))
                    .or(found.first())
                    .copied()
            }
            Endpoints::Unavailable { .. } => None,
        };
        let addr =
            addr.ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no endpoints"))?;
        ctx.upstream_addr = Some(addr);
        ctx.upstream_started = Some(Instant::now());
        // request_filter stored the table before any request reaches an upstream.
        let table = ctx
            .table
            .as_ref()
            .ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let globals = &table.globals;
        let protocol = route.protocol;
        let tls = matches!(protocol, UpstreamProtocol::Https | UpstreamProtocol::Grpcs);
        let settings = route.upstream_tls.as_deref();
        // SNI: the verified name when verifying (proxy-ssl-name, else the Service's DNS
        // name); otherwise proxy-ssl-name, else the request's host, as most backends expect.
        let sni = match settings {
            _ if !tls => String::new(),
            Some(t) if t.verify => match &t.name {
                Some(n) => n.to_string(),
                None => format!("{}.{}.svc", route.backend.service, route.backend.namespace),
            },
            // rustls never sends an IP address as SNI; Pingora cannot take an empty name.
            Some(t) if !t.send_sni => addr.ip().to_string(),
            Some(UpstreamTls { name: Some(n), .. }) => n.to_string(),
            _ => request_host(session.req_header())
                .map(|h| crate::routing::normalize_host(h).into_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| addr.ip().to_string()),
        };
        let mut peer = HttpPeer::new(addr, tls, sni);
        let o = &mut peer.options;
        // ingress-nginx does not verify backend certificates unless proxy-ssl-verify is on.
        let verify = settings.is_some_and(|t| t.verify);
        o.verify_cert = verify;
        o.verify_hostname = verify;
        if let Some(t) = settings.filter(|_| tls) {
            o.ca = t.ca.clone();
            peer.client_cert_key = t.client_cert.clone();
            peer.group_key = t.pool_group;
        }
        let o = &mut peer.options;
        if matches!(protocol, UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs) {
            o.set_http_version(2, 2);
        }
        let p = &route.policy;
        o.connection_timeout = Some(p.connect_timeout.unwrap_or(globals.connect_timeout));
        o.read_timeout = Some(p.read_timeout.unwrap_or(globals.read_timeout));
        o.write_timeout = Some(p.send_timeout.unwrap_or(globals.send_timeout));
        o.idle_timeout = Some(globals.upstream_keepalive_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let host = request_host(session.req_header()).unwrap_or("");
        let client = ctx.client.unwrap_or_else(|| {
            headers::resolve_client(
                peer_ip(session),
                None,
                &http::HeaderMap::new(),
                &Default::default(),
            )
        });
        if let Some(table) = ctx.table.as_ref() {
            let g = &table.globals;
            headers::apply(
                upstream,
                &ForwardedFor {
                    client,
                    host,
                    server_port: server_port(session),
                    tls: ctx.tls,
                    request_id: &ctx.request_id,
                },
                g,
            )?;
            super::client_cert::upstream_headers(session, table, host, ctx.tls, upstream)?;
            if !g.proxy_set_headers.is_empty() {
                headers::set_request_headers(upstream, &g.proxy_set_headers, &vars(session, ctx))?;
            }
        }
        super::auth::upstream_request(upstream, &ctx.auth)?;
        if ctx.buffered.is_some() {
            // The body is here already (sluice answered any 100-continue itself).
            upstream.remove_header(&http::header::EXPECT);
        }
        let Some(route) = ctx.route.as_ref() else {
            return Ok(());
        };
        if let Some(rw) = &route.rewrite {
            // nginx rewrites the normalised $uri; the query string is kept.
            let path = normalize_path(upstream.uri.path()).unwrap_or_default();
            if let Some(new_path) = rw.apply(&path) {
                let uri = match upstream.uri.query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                match uri.parse::<http::Uri>() {
                    Ok(u) => upstream.set_uri(u),
                    Err(e) => debug!(%e, uri, "rewrite produced an invalid URI; not rewritten"),
                }
            }
        }
        let p = &route.policy;
        if let Some(vhost) = p.upstream_vhost.as_deref() {
            upstream.insert_header(http::header::HOST, vhost)?;
        }
        if let Some(prefix) = p.x_forwarded_prefix.as_deref() {
            upstream.insert_header("x-forwarded-prefix", prefix)?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(buffered) = &ctx.buffered {
            // Pingora replays the tail of a read body from its retry buffer (see
            // `buffering`): send the whole body in its place, on every attempt.
            if body.is_some() {
                let whole = buffered.replay().await.map_err(|e| {
                    Error::because(ErrorType::InternalError, "replaying the request body", e)
                })?;
                *body = Some(whole);
            }
            return Ok(());
        }
        let Some(limit) = ctx.route.as_ref().and_then(|r| r.policy.body_limit) else {
            return Ok(());
        };
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            // A chunked (or lying) body that grows past the limit: 413, as nginx does.
            if ctx.body_bytes > limit {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over proxy-body-size",
                );
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // custom-http-errors: the error backend's page replaces a listed response.
        if let (Some(table), Some(route)) = (ctx.table.clone(), ctx.route.clone()) {
            let code = response.status.as_u16();
            if ctx.error_page.is_none() && custom_errors::intercepts(code, &route, &table) {
                if let Some(page) = own_error_page(session, ctx, &table, code).await {
                    let head = session.req_header().method == http::Method::HEAD;
                    match custom_errors::replace(response, page, head)? {
                        pending @ Replacement::Pending(_) => {
                            ctx.error_page = Some(pending);
                            return Err(custom_errors::intercepted());
                        }
                        r => ctx.error_page = Some(r),
                    }
                }
            }
        }
        if let (Some(value), Some(aff)) = (
            ctx.set_cookie.as_deref(),
            ctx.route.as_ref().and_then(|r| r.affinity.as_deref()),
        ) {
            let ua = session
                .req_header()
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let cookie = balance::set_cookie_header(aff, value, ctx.tls, ua);
            response.append_header(http::header::SET_COOKIE, cookie)?;
        }
        super::auth::response(response, &ctx.auth)?;
        cors::apply_for(response, ctx.route.as_deref(), ctx.cors_origin.as_ref())?;
        if ctx.tls {
            if let Some(hsts) = ctx.table.as_ref().and_then(|t| t.globals.hsts.as_deref()) {
                response.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts)?;
            }
        }
        if let Some(t) = ctx
            .table
            .as_ref()
            .filter(|t| !t.globals.add_headers.is_empty())
        {
            headers::set_response_headers(response, &t.globals.add_headers, &vars(session, ctx))?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        custom_errors::body_filter(&mut ctx.error_page, body, end_of_stream);
        Ok(None)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let code = upstream_response.status.as_u16();
        ctx.upstream_status = Some(code);
        if let (Some(addr), Some(started)) = (ctx.upstream_addr, ctx.upstream_started) {
            let ewma = ctx.route.as_ref().is_some_and(|r| r.lb == LbPolicy::Ewma);
            self.options.balancer.mark_ok(addr, started.elapsed(), ewma);
        }
        // proxy-next-upstream http_*: drop the response and try again, if allowed.
        if code >= 400
            && self.may_retry(ctx, retry::Failure::Status(code))
            && self.replayable(session, ctx)
        {
            ctx.status_retry = true;
            return Err(retry::status_error(code));
        }
        Ok(())
    }

    /// A client that went away mid-request is routine (load generators, browsers
    /// navigating away): not worth an error line. Other failures keep Pingora's log.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        e.etype() == &custom_errors::INTERCEPTED
            || e.esource() == &ErrorSource::Downstream
                && matches!(
                    e.etype(),
                    ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
                )
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(addr) = peer.address().as_inet() {
            ctx.failed.push(*addr);
            self.options.balancer.mark_failed(*addr);
        }
        // Nothing reached the upstream yet, so trying another endpoint is safe; whether
        // to is `proxy-next-upstream`'s call (`error` for refusals, `timeout`).
        if self.may_retry(ctx, retry::Failure::of(&e)) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if std::mem::take(&mut ctx.status_retry) {
            // upstream_response_filter dropped a listed status and decided to retry;
            // the endpoint answered, so it is only avoided by this request.
            if let Some(addr) = peer.address().as_inet() {
                ctx.failed.push(*addr);
            }
            e.set_retry(true);
            return e;
        }
        if e.esource() != &ErrorSource::Upstream {
            e.set_retry(false);
            return e;
        }
        if let Some(addr) = peer.address().as_inet() {
            ctx.failed.push(*addr);
            self.options.balancer.mark_failed(*addr);
        }
        let failure = retry::Failure::of(&e);
        let replayable = self.replayable(session, ctx);
        let retry = (replayable && self.may_retry(ctx, failure))
            // A pooled connection the upstream closed meanwhile: always safe to redo.
            || (client_reused
                && no_final_response(session)
                && !session.as_ref().retry_buffer_truncated()
                && ctx.tries < 8
                && failure != retry::Failure::Timeout);
        e.set_retry(retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // A bodiless backend response replaced by a custom error page.
        if let Some(Replacement::Pending(page)) = ctx.error_page.take() {
            if no_final_response(session) {
                let code = ctx.upstream_status.unwrap_or(page.status);
                ctx.error_page = Some(Replacement::Done);
                if let Ok((resp, body)) = own_response(session, ctx, code, Some(page), None) {
                    if let Err(err) = session.write_error_response(resp, body).await {
                        debug!(%err, "could not send error page");
                    }
                }
                return FailToProxy {
                    error_code: code,
                    can_reuse_downstream: false,
                };
            }
        }
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    ErrorType::ReadTimedout => 408,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 && no_final_response(session) {
            ctx.own_status = Some(code);
            let page = match ctx.table.clone() {
                Some(t) => own_error_page(session, ctx, &t, code).await,
                None => None,
            };
            if let Ok((mut resp, body)) = own_response(session, ctx, code, page, None) {
                let _ = cors::apply_for(&mut resp, ctx.route.as_deref(), ctx.cors_origin.as_ref());
                if let Err(err) = session.write_error_response(resp, body).await {
                    debug!(%err, "could not send error response");
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::metrics::global().upstream_connection(reused);
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(e) = e {
            debug!(error = %e, request_id = %ctx.request_id, "request failed");
        }
        self.record_metrics(session, ctx);
        let table = ctx.table.clone().unwrap_or_else(|| self.table.load());
        let route_on = ctx.route.as_ref().and_then(|r| r.policy.access_log) != Some(false);
        if !(self.options.access_log && table.globals.access_log && route_on) {
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.own_status)
            .unwrap_or(0);
        let upstream_addr = ctx.upstream_addr.map(|a| a.to_string());
        let line_vars = Vars {
            now: SystemTime::now(),
            status: Some(status),
            body_bytes_sent: session.body_bytes_sent(),
            // Measured in request_filter; requests that never got there are measured now.
            request_length: match ctx.head_bytes {
                0 => header_bytes(session.req_header()),
                n => n,
            } + session.body_bytes_read(),
            request_time: ctx.started.elapsed().as_secs_f64(),
            upstream_addr: upstream_addr.as_deref(),
            upstream_response_length: ctx
                .upstream_status
                .map(|_| session.upstream_body_bytes_received()),
            upstream_response_time: ctx.upstream_started.map(|t| t.elapsed().as_secs_f64()),
            upstream_status: ctx.upstream_status,
            ..vars(session, ctx)
        };
        let format = &table.globals.log_format;
        super::logwriter::write_line(|line| {
            accesslog::render(&format.template, &line_vars, format.escape, line)
        });
    }
}

//! Custom error pages (`custom-http-errors` with `default-backend` or
//! `--default-backend-service`): a response whose status is listed is replaced by the
//! page of the error backend, sent with the original status.
//!
//! Design. Pingora streams the upstream response, so the decision is made on its header:
//! - `response_filter` sees a listed status from a backend (HTTP/HTTPS backends only:
//!   ingress-nginx does not intercept gRPC either) and fetches the page right there with
//!   the pooled client of [`super::subrequest`] before anything reaches the client. The
//!   response header is replaced (original status, the page's `Content-Type`, its
//!   length) and [`body_filter`] drops the backend's body and writes the page at its end.
//! - A listed response that has no body at all (`Content-Length: 0`) produces no body
//!   callbacks in Pingora, so the page cannot be written in its place: the response is
//!   abandoned with [`INTERCEPTED`] before its header is written and `fail_to_proxy`
//!   writes the page (that client connection then closes).
//! - Responses sluice makes itself (503 without endpoints, 403, 413, 502, 504 and the
//!   catch-all 404 of `--default-backend-service`, see [`catch_all_404`]) ask for the page
//!   the same way before writing their own.
//!
//! The request to the error backend is ingress-nginx's: `GET /` with the original query
//! (nginx's `rewrite (.*) / break`; HEAD stays HEAD), the client's headers, `Host` as
//! the client sent it, and `X-Code`, `X-Format` (the client's `Accept`),
//! `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`
//! (of the route that failed) and `X-Request-ID`. The error backend is the Ingress's
//! `default-backend`, else `--default-backend-service`, tried on up to two endpoints
//! within [`PAGE_DEADLINE`], at most [`MAX_PAGE`] bytes. If it cannot answer, the
//! original response (or sluice's own page) is sent unchanged.
//!
//! Where sluice differs: ingress-nginx passes on the error backend's status ("the custom
//! backend is expected to return the correct HTTP status code"); sluice always answers
//! with the original status, so a misbehaving error backend cannot turn an error into a
//! 200. Only the page's `Content-Type` and body are used, not its other headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType};
use tracing::debug;

use super::subrequest;
use crate::routing::{Backend, Endpoints, Route, RoutingTable, UpstreamProtocol};

/// Time allowed for the error backend to answer.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(10);
/// Time allowed to open a connection to an error backend.
pub const PAGE_CONNECT: Duration = Duration::from_secs(5);
/// Largest error page accepted.
pub const MAX_PAGE: usize = 1024 * 1024;
/// The error that hands a bodiless intercepted response over to `fail_to_proxy`.
pub const INTERCEPTED: ErrorType = ErrorType::Custom("custom error page");

/// An error backend's answer.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// A page being written in place of a backend's response.
#[derive(Debug)]
pub enum Replacement {
    /// The header is replaced; the body goes out when the backend's body ends.
    Body(Bytes),
    /// Nothing replaced yet: `fail_to_proxy` writes this page.
    Pending(ErrorPage),
    /// Written.
    Done,
}

/// The request being answered, for the error backend.
#[derive(Debug)]
pub struct Origin<'a> {
    pub req: &'a RequestHeader,
    /// `Host` (or `:authority`) as received.
    pub host: &'a str,
    /// The route that failed (`None` for unmatched requests).
    pub route: Option<&'a Route>,
    pub request_id: &'a str,
}

/// The error backend for `code`, when the route's (else the ConfigMap's)
/// `custom-http-errors` lists it.
pub fn error_backend<'a>(
    code: u16,
    route: Option<&'a Route>,
    table: &'a RoutingTable,
) -> Option<&'a Arc<Backend>> {
    let codes = route
        .and_then(|r| r.policy.custom_http_errors.as_deref())
        .unwrap_or(&table.globals.custom_http_errors);
    if !codes.contains(&code) {
        return None;
    }
    route
        .and_then(|r| r.policy.default_backend.as_ref())
        .or(table.error_backend.as_ref())
}

/// Whether an unmatched request that `--default-backend-service` would serve is
/// sluice's own 404 instead (the ConfigMap lists 404): ingress-nginx's catch-all then
/// sends the request to the default backend with `X-Code: 404`; sluice asks it for the
/// 404 page with every `X-*` header and answers 404. Unmatched requests served by an
/// Ingress's `spec.defaultBackend` are proxied as usual.
pub fn catch_all_404(route: &Route, table: &RoutingTable) -> bool {
    route.ingress_name.is_empty()
        && table.globals.custom_http_errors.contains(&404)
        && table.error_backend.is_some()
}

/// The page for `code` if it is listed and the error backend answers (never for gRPC
/// routes: a gRPC client cannot read an error page).
pub async fn page_for(code: u16, table: &RoutingTable, origin: &Origin<'_>) -> Option<ErrorPage> {
    if origin
        .route
        .is_some_and(|r| matches!(r.protocol, UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs))
    {
        return None;
    }
    let backend = error_backend(code, origin.route, table)?;
    fetch(backend, code, origin).await
}

/// Whether a backend response with this status gets an error page (its route speaks
/// HTTP/1 to the backend). Fetching is [`page_for`].
pub fn intercepts(code: u16, route: &Route, table: &RoutingTable) -> bool {
    matches!(
        route.protocol,
        UpstreamProtocol::Http | UpstreamProtocol::Https
    ) && error_backend(code, Some(route), table).is_some()
}

/// Replaces a backend's response header by the page's. Returns what is left to do:
/// write the body at the end, or (when the backend's response has no body, so no body
/// callback will come) hand the page to `fail_to_proxy` by returning [`INTERCEPTED`].
pub fn replace(
    response: &mut ResponseHeader,
    page: ErrorPage,
    head: bool,
) -> pingora::Result<Replacement> {
    // Pingora reads no body (so calls no body filter) for these, as RFC 9112 says.
    let no_body = response.status == 304
        || response
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0")
            && response
                .headers
                .get(http::header::TRANSFER_ENCODING)
                .is_none();
    let bodiless = !head && no_body;
    if bodiless {
        return Ok(Replacement::Pending(page));
    }
    *response = header(response.status.as_u16(), &page)?;
    Ok(if head {
        Replacement::Done
    } else {
        Replacement::Body(page.body)
    })
}

/// The error for a bodiless intercepted response (see [`replace`]).
pub fn intercepted() -> Box<Error> {
    Error::explain(INTERCEPTED, "response replaced by a custom error page")
}

/// The response header for a page sent with `status`.
pub fn header(status: u16, page: &ErrorPage) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    let ct = page
        .content_type
        .clone()
        .unwrap_or(HeaderValue::from_static("text/html"));
    resp.insert_header(http::header::CONTENT_TYPE, ct)?;
    resp.insert_header(http::header::CONTENT_LENGTH, page.body.len().to_string())?;
    Ok(resp)
}

/// `response_body_filter`: drops the backend's body and writes the page at its end.
pub fn body_filter(state: &mut Option<Replacement>, body: &mut Option<Bytes>, end: bool) {
    let Some(Replacement::Body(_)) = state else {
        return;
    };
    *body = None;
    if end {
        if let Some(Replacement::Body(page)) = state.replace(Replacement::Done) {
            *body = Some(page);
        }
    }
}

/// Headers a client sent that must not be passed to the error backend.
fn skipped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "expect"
            | "host"
            | "x-code"
            | "x-format"
            | "x-original-uri"
            | "x-namespace"
            | "x-ingress-name"
            | "x-service-name"
            | "x-service-port"
            | "x-request-id"
    )
}

/// The headers of the request to the error backend.
pub fn request_headers(code: u16, o: &Origin<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in o.req.headers.iter() {
        if !skipped(name) {
            h.append(name.clone(), value.clone());
        }
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            if !value.is_empty() {
                h.insert(HeaderName::from_static(name), v);
            }
        }
    };
    set("host", o.host);
    set("x-code", &code.to_string());
    if let Some(accept) = o
        .req
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    {
        set("x-format", accept);
    }
    set(
        "x-original-uri",
        o.req.uri.path_and_query().map_or("/", |p| p.as_str()),
    );
    if let Some(r) = o.route {
        set("x-namespace", &r.ingress_namespace);
        set("x-ingress-name", &r.ingress_name);
        set("x-service-name", &r.backend.service);
        set("x-service-port", &r.backend.port);
    }
    set("x-request-id", o.request_id);
    h
}

/// Asks `backend` for the page of `code`.
pub async fn fetch(backend: &Backend, code: u16, o: &Origin<'_>) -> Option<ErrorPage> {
    let addrs: Vec<SocketAddr> = match &backend.endpoints {
        Endpoints::Addrs(a) if !a.is_empty() => {
            let start = backend.next_cursor();
            (0..a.len().min(2))
                .map(|i| a[(start + i) % a.len()])
                .collect()
        }
        Endpoints::External { host, port } => {
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(found) => found.take(2).collect(),
                Err(e) => {
                    debug!(%e, host, "error backend: cannot resolve");
                    return None;
                }
            }
        }
        _ => {
            debug!(backend = %backend.upstream_name, "error backend has no endpoints");
            return None;
        }
    };
    let method = if o.req.method == http::Method::HEAD {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let target = match o.req.uri.query() {
        Some(q) => format!("/?{q}"),
        None => "/".to_string(),
    };
    let headers = request_headers(code, o);
    for addr in addrs {
        let uri = match format!("http://{addr}{target}").parse() {
            Ok(uri) => uri,
            Err(e) => {
                debug!(error = %e, "error page request has no valid URI");
                return None;
            }
        };
        let request = subrequest::Request {
            method: method.clone(),
            uri,
            headers: headers.clone(),
        };
        let limits = subrequest::Limits {
            connect: PAGE_CONNECT,
            total: PAGE_DEADLINE,
            body: subrequest::BodyUse::Keep(MAX_PAGE),
        };
        match subrequest::send(request, limits).await {
            Ok(r) => {
                return Some(ErrorPage {
                    status: r.status.as_u16(),
                    content_type: r.headers.get(http::header::CONTENT_TYPE).cloned(),
                    body: r.body,
                })
            }
            Err(e) => debug!(error = %e, backend = %backend.upstream_name, "error backend failed"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{PathKind, Policy};

    fn route(codes: Option<&[u16]>, own: bool) -> Route {
        let mut r = Route::new(
            Arc::new(Backend::new(
                "shop",
                "web",
                "http",
                Endpoints::Addrs(vec![]),
            )),
            "shop",
            "web-ing",
            "/",
            PathKind::Prefix,
        );
        r.policy = Arc::new(Policy {
            custom_http_errors: codes.map(|c| c.into()),
            default_backend: own.then(|| {
                Arc::new(Backend::new(
                    "shop",
                    "errors",
                    "80",
                    Endpoints::Addrs(vec![]),
                ))
            }),
            ..Policy::default()
        });
        r
    }

    #[test]
    fn annotation_overrides_configmap_and_backend_choice() {
        let mut t = RoutingTable::default();
        t.globals.custom_http_errors = vec![404, 503].into();
        let global = Arc::new(Backend::new(
            "ingress",
            "default-http",
            "80",
            Endpoints::Addrs(vec![]),
        ));
        // No error backend at all: nothing to fetch from.
        assert!(error_backend(503, Some(&route(None, false)), &t).is_none());
        t.error_backend = Some(global);
        let svc = |b: Option<&Arc<Backend>>| b.map(|b| b.service.to_string());
        assert_eq!(
            svc(error_backend(503, Some(&route(None, false)), &t)).as_deref(),
            Some("default-http")
        );
        assert_eq!(svc(error_backend(500, Some(&route(None, false)), &t)), None);
        assert_eq!(
            svc(error_backend(500, Some(&route(Some(&[500]), true)), &t)).as_deref(),
            Some("errors")
        );
        assert_eq!(
            svc(error_backend(503, Some(&route(Some(&[500]), true)), &t)),
            None
        );
        assert_eq!(
            svc(error_backend(404, None, &t)).as_deref(),
            Some("default-http")
        );
    }

    #[test]
    fn error_backend_request_headers() {
        let mut req = RequestHeader::build("POST", b"/cart?id=7", None).unwrap();
        req.insert_header("Accept", "application/json").unwrap();
        req.insert_header("Cookie", "a=1").unwrap();
        req.insert_header("Content-Length", "10").unwrap();
        req.insert_header("X-Code", "spoofed").unwrap();
        let r = route(None, false);
        let h = request_headers(
            503,
            &Origin {
                req: &req,
                host: "shop.example",
                route: Some(&r),
                request_id: "rid",
            },
        );
        let g = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(g("x-code").as_deref(), Some("503"));
        assert_eq!(g("x-format").as_deref(), Some("application/json"));
        assert_eq!(g("x-original-uri").as_deref(), Some("/cart?id=7"));
        assert_eq!(g("x-namespace").as_deref(), Some("shop"));
        assert_eq!(g("x-ingress-name").as_deref(), Some("web-ing"));
        assert_eq!(g("x-service-name").as_deref(), Some("web"));
        assert_eq!(g("x-service-port").as_deref(), Some("http"));
        assert_eq!(g("x-request-id").as_deref(), Some("rid"));
        assert_eq!(g("host").as_deref(), Some("shop.example"));
        assert_eq!(g("cookie").as_deref(), Some("a=1"));
        assert_eq!(g("content-length"), None);
        assert_eq!(h.get_all("x-code").iter().count(), 1);
    }

    #[test]
    fn body_replacement() {
        let page = ErrorPage {
            status: 200,
            content_type: Some(HeaderValue::from_static("application/json")),
            body: Bytes::from_static(b"{\"e\":1}"),
        };
        let mut resp = ResponseHeader::build(503, None).unwrap();
        resp.insert_header("Content-Length", "5").unwrap();
        resp.insert_header("Set-Cookie", "x=1").unwrap();
        let mut state = Some(replace(&mut resp, page.clone(), false).unwrap());
        assert_eq!(resp.status, 503);
        assert_eq!(resp.headers["content-type"], "application/json");
        assert_eq!(resp.headers["content-length"], "7");
        assert!(resp.headers.get("set-cookie").is_none());
        let mut chunk = Some(Bytes::from_static(b"abc"));
        body_filter(&mut state, &mut chunk, false);
        assert_eq!(chunk, None);
        let mut chunk = Some(Bytes::from_static(b"de"));
        body_filter(&mut state, &mut chunk, true);
        assert_eq!(chunk.as_deref(), Some(&b"{\"e\":1}"[..]));
        // A bodiless response: left for fail_to_proxy.
        let mut resp = ResponseHeader::build(404, None).unwrap();
        resp.insert_header("Content-Length", "0").unwrap();
        assert!(matches!(
            replace(&mut resp, page.clone(), false).unwrap(),
            Replacement::Pending(_)
        ));
        assert_eq!(resp.status, 404);
        let mut resp = ResponseHeader::build(304, None).unwrap();
        assert!(matches!(
            replace(&mut resp, page.clone(), false).unwrap(),
            Replacement::Pending(_)
        ));
        // HEAD: only the header is replaced.
        let mut resp = ResponseHeader::build(503, None).unwrap();
        resp.insert_header("Content-Length", "0").unwrap();
        assert!(matches!(
            replace(&mut resp, page, true).unwrap(),
            Replacement::Done
        ));
        assert_eq!(resp.headers["content-type"], "application/json");
    }
}

//! The responses sluice writes itself (404, 503, redirects, 413, auth denials, ...):
//! the custom error backend's page when `custom-http-errors` lists the status, else
//! nginx's HTML page, with the ConfigMap's `add-headers` and the route's CORS headers.
//!
//! Owns only writing them; which status a request earns is decided by `service` and
//! `policy`.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tracing::debug;

use super::context::{request_host, vars, RequestCtx};
use super::cors;
use super::custom_errors::{self, Origin};
use super::errors;
use super::headers;
use crate::routing::RoutingTable;

/// Writes a response sluice generates itself, keeping the client connection open.
pub(super) async fn respond(
    session: &mut Session,
    status: u16,
    ctx: &mut RequestCtx,
) -> Result<()> {
    respond_with(session, status, ctx, None).await
}

/// Like [`respond`], with an optional `Location` (redirects).
pub(super) async fn respond_with(
    session: &mut Session,
    status: u16,
    ctx: &mut RequestCtx,
    location: Option<&str>,
) -> Result<()> {
    let location = location
        .map(http::HeaderValue::from_str)
        .transpose()
        .map_err(|e| Error::because(ErrorType::InternalError, "invalid Location", e))?;
    let headers: Vec<_> = location
        .map(|l| (http::header::LOCATION, l))
        .into_iter()
        .collect();
    respond_with_headers(session, status, ctx, &headers).await
}

/// Like [`respond`], with extra response headers (appended, so repeats are kept).
pub(super) async fn respond_with_headers(
    session: &mut Session,
    status: u16,
    ctx: &mut RequestCtx,
    headers: &[(http::HeaderName, http::HeaderValue)],
) -> Result<()> {
    ctx.own_status = Some(status);
    // Redirects keep nginx's own page; errors may get the error backend's.
    let redirect = headers.iter().any(|(n, _)| n == http::header::LOCATION);
    let page = match &ctx.table {
        Some(t) if !redirect => own_error_page(session, ctx, t, status).await,
        _ => None,
    };
    let (mut resp, body) = own_response(session, ctx, status, page, None)?;
    for (name, value) in headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    cors::apply_for(&mut resp, ctx.route.as_deref(), ctx.cors_origin.as_ref())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The error backend's page for a status sluice answers itself, if `custom-http-errors`
/// lists it.
pub(super) async fn own_error_page(
    session: &Session,
    ctx: &RequestCtx,
    table: &RoutingTable,
    status: u16,
) -> Option<custom_errors::ErrorPage> {
    let req = session.req_header();
    let origin = Origin {
        req,
        host: request_host(req).unwrap_or(""),
        route: ctx.route.as_deref(),
        request_id: &ctx.request_id,
    };
    custom_errors::page_for(status, table, &origin).await
}

/// A response sluice writes itself: the error backend's `page`, else nginx's HTML page;
/// with `Location` for redirects and the ConfigMap's `add-headers`.
pub(super) fn own_response(
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    page: Option<custom_errors::ErrorPage>,
    location: Option<&str>,
) -> Result<(ResponseHeader, bytes::Bytes)> {
    let (mut resp, body) = match page {
        Some(page) => (custom_errors::header(status, &page)?, page.body),
        None => {
            let body = errors::html_body(status);
            let mut resp = ResponseHeader::build(status, Some(5))?;
            resp.insert_header(http::header::CONTENT_TYPE, "text/html")?;
            resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
            (resp, body)
        }
    };
    if let Some(l) = location {
        resp.insert_header(http::header::LOCATION, l)?;
    }
    if let Some(t) = ctx
        .table
        .as_ref()
        .filter(|t| !t.globals.add_headers.is_empty())
    {
        headers::set_response_headers(&mut resp, &t.globals.add_headers, &vars(session, ctx))?;
    }
    Ok((resp, body))
}

/// No final response has gone out yet (a `100 Continue`, written before reading a
/// buffered body, is not one): an error page can still be sent, a retry still made.
pub(super) fn no_final_response(session: &Session) -> bool {
    session
        .response_written()
        .is_none_or(|r| r.status.is_informational() && r.status != 101)
}

/// Answers a request whose body could not be buffered, closing the connection (its
/// body is not read to the end): 413 over `proxy-body-size`, 408 after
/// `client-body-timeout`, 500 when the temporary file fails.
pub(super) async fn body_failed(
    session: &mut Session,
    ctx: &mut RequestCtx,
    e: super::buffering::Error,
) -> Result<bool> {
    use super::buffering::Error as E;
    let status = match e {
        E::TooLarge { .. } => 413,
        E::TimedOut(_) => 408,
        E::File(_) => 500,
        E::Short { .. } => 400,
        E::Client(e) => return Err(e.into_down()),
    };
    debug!(error = %e, status, "request body not buffered");
    session.set_keepalive(None);
    respond(session, status, ctx).await?;
    Ok(true)
}

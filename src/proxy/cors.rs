//! CORS at request time, as ingress-nginx's generated location does it
//! (`enable-cors`; the settings are parsed in `routing::cors`).
//!
//! - The request's CORS standing is decided once, right after routing: with
//!   `cors-allow-origin: *` every request qualifies (the value sent is `*`, even
//!   without an `Origin`); with a list, only a request whose `Origin` matches an entry
//!   (the value sent is that `Origin`, echoed). Anything else gets no CORS headers and
//!   is proxied untouched.
//! - A qualifying `OPTIONS` request is answered by sluice itself: 204 with the CORS
//!   headers, `Content-Type: text/plain charset=UTF-8` and `Content-Length: 0`; the
//!   backend never sees it. Like nginx's `if ($request_method = 'OPTIONS')`, this does
//!   not look for `Access-Control-Request-Method`. It happens where nginx's rewrite
//!   phase would: after `app-root`'s server-level redirect of `/`, but before the
//!   https redirect, `permanent-redirect`/`temporal-redirect`, the rate limits and
//!   the access lists (a preflight from a denied or limited client still gets 204).
//! - Every other response for a qualifying request — the backend's and sluice's own
//!   (308, 403, 413, limits, 502/503/504) — gets `Access-Control-Allow-Origin`,
//!   `-Allow-Methods`, `-Allow-Headers`, `-Max-Age`, and `-Allow-Credentials: true` /
//!   `-Expose-Headers` when configured, replacing any the backend sent (nginx's
//!   `more_set_headers`, which applies to every status). As in ingress-nginx, no
//!   `Vary: Origin` is added, and a request that does not qualify is left untouched
//!   (the backend's own CORS headers pass).
//! - One difference: when `cors-allow-credentials` is false or no `cors-expose-headers`
//!   is set, sluice also removes the backend's `Access-Control-Allow-Credentials` /
//!   `-Expose-Headers` from a qualifying response; ingress-nginx passes them, which
//!   would grant credentialed access next to the origin it echoed.

use http::{HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

use crate::routing::{Cors, Route};

/// The `Access-Control-Allow-Origin` this request earns on `route`, if any.
pub fn decide(route: &Route, req: &RequestHeader) -> Option<HeaderValue> {
    let cors = route.policy.cors.as_ref()?;
    cors.allow_origin(req.headers.get(http::header::ORIGIN))
}

/// Whether sluice answers this request itself with [`preflight`].
pub fn is_preflight(req: &RequestHeader, origin: Option<&HeaderValue>) -> bool {
    origin.is_some() && req.method == Method::OPTIONS
}

/// Sets the CORS headers on a response for a request that earned `origin`.
pub fn apply(resp: &mut ResponseHeader, cors: &Cors, origin: &HeaderValue) -> Result<()> {
    use http::header::*;
    resp.insert_header(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())?;
    if cors.allow_credentials {
        resp.insert_header(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        )?;
    } else {
        resp.remove_header(&ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    resp.insert_header(ACCESS_CONTROL_ALLOW_METHODS, cors.allow_methods.clone())?;
    resp.insert_header(ACCESS_CONTROL_ALLOW_HEADERS, cors.allow_headers.clone())?;
    match &cors.expose_headers {
        Some(e) => resp.insert_header(ACCESS_CONTROL_EXPOSE_HEADERS, e.clone())?,
        None => {
            resp.remove_header(&ACCESS_CONTROL_EXPOSE_HEADERS);
        }
    }
    resp.insert_header(ACCESS_CONTROL_MAX_AGE, cors.max_age.clone())?;
    Ok(())
}

/// [`apply`] when the request earned CORS headers on its route; otherwise nothing.
pub fn apply_for(
    resp: &mut ResponseHeader,
    route: Option<&Route>,
    origin: Option<&HeaderValue>,
) -> Result<()> {
    match (route.and_then(|r| r.policy.cors.as_ref()), origin) {
        (Some(cors), Some(origin)) => apply(resp, cors, origin),
        _ => Ok(()),
    }
}

/// The 204 answer to a preflight.
pub fn preflight(cors: &Cors, origin: &HeaderValue) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(204, Some(9))?;
    apply(&mut resp, cors, origin)?;
    resp.insert_header(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain charset=UTF-8"),
    )?;
    resp.insert_header(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"))?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::AllowOrigin;

    fn cors(credentials: bool, expose: Option<&'static str>) -> Cors {
        Cors {
            origins: AllowOrigin::Any,
            allow_methods: HeaderValue::from_static("GET, POST"),
            allow_headers: HeaderValue::from_static("X-A"),
            allow_credentials: credentials,
            expose_headers: expose.map(HeaderValue::from_static),
            max_age: HeaderValue::from_static("600"),
        }
    }

    #[test]
    fn headers_replace_the_backends() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("access-control-allow-origin", "https://evil.example")
            .unwrap();
        resp.insert_header("access-control-allow-credentials", "true")
            .unwrap();
        resp.insert_header("access-control-expose-headers", "X-Secret")
            .unwrap();
        apply(
            &mut resp,
            &cors(false, None),
            &HeaderValue::from_static("*"),
        )
        .unwrap();
        let h = &resp.headers;
        assert_eq!(h.get_all("access-control-allow-origin").iter().count(), 1);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(h.get("access-control-allow-credentials").is_none());
        assert!(h.get("access-control-expose-headers").is_none());
        assert_eq!(h["access-control-allow-methods"], "GET, POST");
        assert_eq!(h["access-control-max-age"], "600");
    }

    #[test]
    fn preflight_is_an_empty_204() {
        let origin = HeaderValue::from_static("https://a.example");
        let resp = preflight(&cors(true, Some("X-Total")), &origin).unwrap();
        let h = &resp.headers;
        assert_eq!(resp.status, 204);
        assert_eq!(h["access-control-allow-origin"], "https://a.example");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-expose-headers"], "X-Total");
        assert_eq!(h["content-length"], "0");
        assert_eq!(h["content-type"], "text/plain charset=UTF-8");
    }
}

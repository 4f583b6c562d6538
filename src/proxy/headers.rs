//! The request headers sent to backends, as ingress-nginx sets them (COMPAT §3).
//!
//! Forwarded headers from the client are not trusted (ingress-nginx's default with
//! `use-forwarded-headers: false`): `X-Forwarded-For` is replaced by the client
//! address and any value received moves to `X-Original-Forwarded-For`. Hop-by-hop
//! headers are stripped by Pingora's upstream request policy before this runs.

use std::net::IpAddr;

use pingora::http::RequestHeader;
use pingora::Result;

/// What a request's forwarded headers are computed from.
#[derive(Debug)]
pub struct ForwardedFor<'a> {
    pub client_ip: Option<IpAddr>,
    /// The `Host` the client asked for, port included if it gave one.
    pub host: &'a str,
    /// The port of the listener the request arrived on.
    pub server_port: u16,
    pub scheme: &'static str,
    pub request_id: &'a str,
}

/// Sets Host, X-Request-ID, X-Real-IP and the X-Forwarded-* family on the upstream request.
pub fn apply(req: &mut RequestHeader, f: &ForwardedFor<'_>) -> Result<()> {
    let client = f.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    if let Some(original) = req.headers.get("x-forwarded-for").cloned() {
        req.insert_header("X-Original-Forwarded-For", original)?;
    }
    // An h2 client sends :authority instead of Host; HTTP/1.1 backends need Host.
    req.insert_header(http::header::HOST, f.host)?;
    req.insert_header("X-Request-ID", f.request_id)?;
    req.insert_header("X-Real-IP", client.as_str())?;
    req.insert_header("X-Forwarded-For", client.as_str())?;
    req.insert_header("X-Forwarded-Host", f.host)?;
    req.insert_header("X-Forwarded-Port", f.server_port.to_string())?;
    req.insert_header("X-Forwarded-Proto", f.scheme)?;
    req.insert_header("X-Forwarded-Scheme", f.scheme)?;
    req.insert_header("X-Scheme", f.scheme)?;
    // httpoxy: never pass a client's Proxy header on (ingress-nginx clears it too).
    req.remove_header("Proxy");
    Ok(())
}

/// A new request id: 32 lower-case hex characters, as nginx's `$request_id`.
pub fn new_request_id() -> String {
    let v = fastrand::u128(..);
    format!("{v:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_replace_untrusted_values() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("X-Forwarded-For", "6.6.6.6").unwrap();
        req.insert_header("Proxy", "http://evil").unwrap();
        apply(
            &mut req,
            &ForwardedFor {
                client_ip: Some("192.0.2.7".parse().unwrap()),
                host: "app.example:8080",
                server_port: 8080,
                scheme: "http",
                request_id: "abc",
            },
        )
        .unwrap();
        let h = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h("x-forwarded-for").as_deref(), Some("192.0.2.7"));
        assert_eq!(h("x-original-forwarded-for").as_deref(), Some("6.6.6.6"));
        assert_eq!(h("x-real-ip").as_deref(), Some("192.0.2.7"));
        assert_eq!(h("host").as_deref(), Some("app.example:8080"));
        assert_eq!(h("x-forwarded-host").as_deref(), Some("app.example:8080"));
        assert_eq!(h("x-forwarded-port").as_deref(), Some("8080"));
        assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(h("x-scheme").as_deref(), Some("http"));
        assert_eq!(h("x-request-id").as_deref(), Some("abc"));
        assert_eq!(h("proxy"), None);
    }

    #[test]
    fn request_ids_are_32_hex() {
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_request_id());
    }
}

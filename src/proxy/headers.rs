//! The client address and the request headers sent to backends, as ingress-nginx sets
//! them (COMPAT §3, §5).
//!
//! [`resolve_client`] is the one place the client address is decided; access lists,
//! rate limits, `X-Real-IP`, `X-Forwarded-For`, hashing and the access log all use its
//! answer. It is the TCP peer unless nginx's realip module would replace it
//! (`use-forwarded-headers`, `enable-real-ip` or `use-proxy-protocol`) *and* the peer is
//! in `proxy-real-ip-cidr`: then it is the PROXY protocol source address, or the
//! rightmost address of `forwarded-for-header` that is not itself a trusted proxy
//! (nginx's `real_ip_recursive on`); a list that does not parse keeps the peer.
//!
//! Forwarded headers from the client are not believed by default: `X-Forwarded-For` is
//! replaced by the client address and any value received moves to
//! `X-Original-Forwarded-For`. With `use-forwarded-headers` and a trusted peer, the
//! received `X-Forwarded-Proto`/`-Host`/`-Port` are passed on (and `X-Forwarded-Host`
//! becomes the `Host` sent, as ingress-nginx's `$best_http_host`), and with
//! `compute-full-forwarded-for` the received list is passed on with the peer appended.
//! sluice differs from ingress-nginx in two safe ways: the X-Forwarded-* headers are
//! believed only from peers in `proxy-real-ip-cidr` (ingress-nginx believes them from
//! anyone once `use-forwarded-headers` is on), and `compute-full-forwarded-for` appends
//! only to a believed list (ingress-nginx appends to whatever the client sent).
//! Hop-by-hop headers are stripped by Pingora's upstream request policy before this runs.

use std::net::IpAddr;

use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

use super::accesslog::{render_header, Vars};
use crate::routing::{CidrSet, GlobalSettings, HeaderTemplate};

/// Who sent a request, as far as sluice believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client address (nginx's `$remote_addr` after the realip module).
    pub ip: Option<IpAddr>,
    /// What `compute-full-forwarded-for` appends: the PROXY protocol source, else the
    /// TCP peer (nginx's `$proxy_protocol_addr` / `$realip_remote_addr`).
    pub hop: Option<IpAddr>,
    /// `use-forwarded-headers` is on and the peer is trusted: its X-Forwarded-* count.
    pub forwarded_trusted: bool,
}

/// Decides the client address. `peer` is the TCP peer, `proxied` the source address of
/// the connection's PROXY protocol header, if any.
pub fn resolve_client(
    peer: Option<IpAddr>,
    proxied: Option<IpAddr>,
    headers: &HeaderMap,
    g: &GlobalSettings,
) -> Client {
    let trusted = peer.is_some_and(|p| g.proxy_real_ip_cidr.contains(p));
    let realip = g.use_forwarded_headers || g.enable_real_ip || g.use_proxy_protocol;
    let ip = if !(realip && trusted) {
        peer
    } else if g.use_proxy_protocol {
        proxied.or(peer)
    } else {
        forwarded_addr(headers, &g.forwarded_for_header, &g.proxy_real_ip_cidr).or(peer)
    };
    Client {
        ip,
        hop: proxied.or(peer),
        forwarded_trusted: g.use_forwarded_headers && trusted,
    }
}

/// nginx's `real_ip_recursive on`: walking the list from the right, the first address
/// that is not a trusted proxy, else the leftmost. `None` when absent or unparsable.
fn forwarded_addr(
    headers: &HeaderMap,
    name: &http::HeaderName,
    trusted: &CidrSet,
) -> Option<IpAddr> {
    let mut entries = Vec::new();
    for v in headers.get_all(name) {
        for item in v.to_str().ok()?.split(',') {
            let item = item.trim();
            if !item.is_empty() {
                entries.push(item);
            }
        }
    }
    let mut leftmost = None;
    for item in entries.iter().rev() {
        let ip: IpAddr = item.parse().ok()?;
        if !trusted.contains(ip) {
            return Some(ip);
        }
        leftmost = Some(ip);
    }
    leftmost
}

/// All values of a header joined with `, ` (nginx's `$http_x_forwarded_for`).
fn joined(headers: &HeaderMap, name: &http::HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = String::from_utf8_lossy(v.as_bytes());
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(&s);
            }
            None => out = Some(s.into_owned()),
        }
    }
    out.filter(|s| !s.trim().is_empty())
}

/// A believed `X-Forwarded-*` header's value, if the client sent a usable one.
fn believed<'a>(req: &'a RequestHeader, client: &Client, name: &str) -> Option<&'a str> {
    if !client.forwarded_trusted {
        return None;
    }
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The scheme the client used: `X-Forwarded-Proto` when believed, else the listener's
/// (nginx's `$pass_access_scheme`).
pub fn client_scheme<'a>(req: &'a RequestHeader, client: &Client, tls: bool) -> &'a str {
    believed(req, client, "x-forwarded-proto").unwrap_or(if tls { "https" } else { "http" })
}

/// What a request's forwarded headers are computed from.
#[derive(Debug)]
pub struct ForwardedFor<'a> {
    pub client: Client,
    /// The `Host` the client asked for, port included if it gave one.
    pub host: &'a str,
    /// The port of the listener the request arrived on.
    pub server_port: u16,
    /// Whether the request arrived over TLS.
    pub tls: bool,
    /// Empty: no `X-Request-ID` is sent.
    pub request_id: &'a str,
}

/// Sets Host, X-Request-ID, X-Real-IP and the X-Forwarded-* family on the upstream request.
///
/// Each distinct value is made into a `HeaderValue` once and cloned (a reference count)
/// where it repeats; the scheme is a static value. Names stay `&'static str` in the case
/// nginx sends them: Pingora keeps that case on the wire and parses a static string
/// without allocating for it.
pub fn apply(req: &mut RequestHeader, f: &ForwardedFor<'_>, g: &GlobalSettings) -> Result<()> {
    use http::HeaderValue;
    let invalid =
        |e| pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "forwarded header", e);
    let c = &f.client;
    let client = match c.ip {
        Some(ip) => HeaderValue::try_from(ip.to_string()).map_err(invalid)?,
        None => HeaderValue::from_static(""),
    };
    let received = joined(&req.headers, &g.forwarded_for_header);
    let forwarded_for = match (
        &received,
        c.forwarded_trusted && g.compute_full_forwarded_for,
    ) {
        (Some(list), true) => match c.hop {
            Some(hop) => HeaderValue::try_from(format!("{list}, {hop}")).map_err(invalid)?,
            None => HeaderValue::try_from(list.as_str()).map_err(invalid)?,
        },
        (None, true) => match c.hop {
            Some(h) => HeaderValue::try_from(h.to_string()).map_err(invalid)?,
            None => HeaderValue::from_static(""),
        },
        (_, false) => client.clone(),
    };
    let host = HeaderValue::try_from(believed(req, c, "x-forwarded-host").unwrap_or(f.host))
        .map_err(invalid)?;
    let port = match believed(req, c, "x-forwarded-port") {
        Some(p) => HeaderValue::try_from(p).map_err(invalid)?,
        None => HeaderValue::from(f.server_port),
    };
    let scheme = match believed(req, c, "x-forwarded-proto") {
        Some(s) => HeaderValue::try_from(s).map_err(invalid)?,
        None if f.tls => HeaderValue::from_static("https"),
        None => HeaderValue::from_static("http"),
    };
    if let Some(original) = received {
        req.insert_header("X-Original-Forwarded-For", original)?;
    }
    // An h2 client sends :authority instead of Host; HTTP/1.1 backends need Host.
    req.insert_header(http::header::HOST, host.clone())?;
    if f.request_id.is_empty() {
        req.remove_header("X-Request-ID");
    } else {
        req.insert_header("X-Request-ID", f.request_id)?;
    }
    req.insert_header("X-Real-IP", client)?;
    req.insert_header("X-Forwarded-For", forwarded_for)?;
    req.insert_header("X-Forwarded-Host", host)?;
    req.insert_header("X-Forwarded-Port", port)?;
    req.insert_header("X-Forwarded-Proto", scheme.clone())?;
    req.insert_header("X-Forwarded-Scheme", scheme.clone())?;
    req.insert_header("X-Scheme", scheme)?;
    // httpoxy: never pass a client's Proxy header on (ingress-nginx clears it too).
    req.remove_header("Proxy");
    Ok(())
}

/// `proxy-set-headers` on a request to a backend (after the headers above, so they win).
pub fn set_request_headers(
    req: &mut RequestHeader,
    templates: &[HeaderTemplate],
    vars: &Vars<'_>,
) -> Result<()> {
    for t in templates {
        if let Some(v) = header_value(t, vars) {
            req.insert_header(t.name.clone(), v)?;
        }
    }
    Ok(())
}

/// `add-headers` on a response to a client (backend's, error page or sluice's own).
pub fn set_response_headers(
    resp: &mut ResponseHeader,
    templates: &[HeaderTemplate],
    vars: &Vars<'_>,
) -> Result<()> {
    for t in templates {
        if let Some(v) = header_value(t, vars) {
            resp.insert_header(t.name.clone(), v)?;
        }
    }
    Ok(())
}

fn header_value(t: &HeaderTemplate, vars: &Vars<'_>) -> Option<http::HeaderValue> {
    match &t.literal {
        Some(v) => Some(v.clone()),
        None => render_header(&t.value, vars),
    }
}

/// A new request id: 32 lower-case hex characters, as nginx's `$request_id`.
pub fn new_request_id() -> String {
    let v = fastrand::u128(..);
    format!("{v:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn forwarded(req: &mut RequestHeader, client: Client, g: &GlobalSettings) {
        apply(
            req,
            &ForwardedFor {
                client,
                host: "app.example:8080",
                server_port: 8080,
                tls: false,
                request_id: "abc",
            },
            g,
        )
        .unwrap();
    }

    fn h(req: &RequestHeader, n: &str) -> Option<String> {
        req.headers.get(n).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn forwarded_headers_replace_untrusted_values() {
        let g = GlobalSettings::default();
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("X-Forwarded-For", "6.6.6.6").unwrap();
        req.insert_header("X-Forwarded-Proto", "https").unwrap();
        req.insert_header("X-Forwarded-Host", "evil.example")
            .unwrap();
        req.insert_header("Proxy", "http://evil").unwrap();
        let client = resolve_client(ip("192.0.2.7"), None, &req.headers, &g);
        assert_eq!(client.ip, ip("192.0.2.7"));
        forwarded(&mut req, client, &g);
        assert_eq!(h(&req, "x-forwarded-for").as_deref(), Some("192.0.2.7"));
        assert_eq!(
            h(&req, "x-original-forwarded-for").as_deref(),
            Some("6.6.6.6")
        );
        assert_eq!(h(&req, "x-real-ip").as_deref(), Some("192.0.2.7"));
        assert_eq!(h(&req, "host").as_deref(), Some("app.example:8080"));
        assert_eq!(
            h(&req, "x-forwarded-host").as_deref(),
            Some("app.example:8080")
        );
        assert_eq!(h(&req, "x-forwarded-port").as_deref(), Some("8080"));
        assert_eq!(h(&req, "x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(h(&req, "x-scheme").as_deref(), Some("http"));
        assert_eq!(h(&req, "x-request-id").as_deref(), Some("abc"));
        assert_eq!(h(&req, "proxy"), None);
    }

    #[test]
    fn trusted_forwarded_headers() {
        let g = GlobalSettings {
            use_forwarded_headers: true,
            compute_full_forwarded_for: true,
            proxy_real_ip_cidr: CidrSet::parse("10.0.0.0/8").unwrap(),
            ..GlobalSettings::default()
        };
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.append_header("X-Forwarded-For", "203.0.113.9, 10.1.1.1")
            .unwrap();
        req.append_header("X-Forwarded-For", "10.2.2.2").unwrap();
        req.insert_header("X-Forwarded-Proto", "https").unwrap();
        req.insert_header("X-Forwarded-Host", "shop.example")
            .unwrap();
        req.insert_header("X-Forwarded-Port", "443").unwrap();
        // From a trusted proxy: the rightmost untrusted address is the client.
        let client = resolve_client(ip("10.0.0.5"), None, &req.headers, &g);
        assert_eq!(client.ip, ip("203.0.113.9"));
        assert!(client.forwarded_trusted);
        let mut up = req.clone();
        forwarded(&mut up, client, &g);
        assert_eq!(
            h(&up, "x-forwarded-for").as_deref(),
            Some("203.0.113.9, 10.1.1.1, 10.2.2.2, 10.0.0.5")
        );
        assert_eq!(h(&up, "x-real-ip").as_deref(), Some("203.0.113.9"));
        assert_eq!(h(&up, "x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(h(&up, "host").as_deref(), Some("shop.example"));
        assert_eq!(h(&up, "x-forwarded-port").as_deref(), Some("443"));
        // From anyone else: nothing believed.
        let client = resolve_client(ip("198.51.100.1"), None, &req.headers, &g);
        assert_eq!(client.ip, ip("198.51.100.1"));
        let mut up = req.clone();
        forwarded(&mut up, client, &g);
        assert_eq!(h(&up, "x-forwarded-for").as_deref(), Some("198.51.100.1"));
        assert_eq!(h(&up, "x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(h(&up, "host").as_deref(), Some("app.example:8080"));
        // Every address trusted: the leftmost; garbage: the peer.
        req.remove_header("X-Forwarded-For");
        req.insert_header("X-Forwarded-For", "10.9.9.9, 10.1.1.1")
            .unwrap();
        let client = resolve_client(ip("10.0.0.5"), None, &req.headers, &g);
        assert_eq!(client.ip, ip("10.9.9.9"));
        req.insert_header("X-Forwarded-For", "1.2.3.4, nonsense")
            .unwrap();
        let client = resolve_client(ip("10.0.0.5"), None, &req.headers, &g);
        assert_eq!(client.ip, ip("10.0.0.5"));
    }

    #[test]
    fn real_ip_without_forwarded_headers_and_proxy_protocol() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("X-Client", "203.0.113.9").unwrap();
        req.insert_header("X-Forwarded-Proto", "https").unwrap();
        let g = GlobalSettings {
            enable_real_ip: true,
            forwarded_for_header: http::HeaderName::from_static("x-client"),
            ..GlobalSettings::default()
        };
        let client = resolve_client(ip("192.0.2.1"), None, &req.headers, &g);
        assert_eq!(client.ip, ip("203.0.113.9"));
        assert!(!client.forwarded_trusted);
        assert_eq!(client_scheme(&req, &client, false), "http");
        // The default proxy-real-ip-cidr (0.0.0.0/0) does not cover IPv6 peers.
        let client = resolve_client(ip("2001:db8::1"), None, &req.headers, &g);
        assert_eq!(client.ip, ip("2001:db8::1"));
        let g = GlobalSettings {
            use_proxy_protocol: true,
            proxy_real_ip_cidr: CidrSet::parse("10.0.0.0/8").unwrap(),
            ..GlobalSettings::default()
        };
        let client = resolve_client(ip("10.0.0.1"), ip("198.51.100.4"), &req.headers, &g);
        assert_eq!(client.ip, ip("198.51.100.4"));
        let client = resolve_client(ip("192.0.2.1"), ip("198.51.100.4"), &req.headers, &g);
        assert_eq!(client.ip, ip("192.0.2.1"));
    }

    #[test]
    fn no_request_id() {
        let g = GlobalSettings::default();
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("X-Request-ID", "").unwrap();
        apply(
            &mut req,
            &ForwardedFor {
                client: resolve_client(None, None, &HeaderMap::new(), &g),
                host: "h",
                server_port: 80,
                tls: true,
                request_id: "",
            },
            &g,
        )
        .unwrap();
        assert_eq!(h(&req, "x-request-id"), None);
        assert_eq!(h(&req, "x-forwarded-proto").as_deref(), Some("https"));
    }

    #[test]
    fn request_ids_are_32_hex() {
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_request_id());
    }
}

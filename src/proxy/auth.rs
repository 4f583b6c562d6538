//! Request-time authentication: HTTP basic auth and `auth-url` subrequests, run in
//! `request_filter` after the access lists and the body-size check (nginx's access
//! phase), before anything is proxied.
//!
//! Owns the decision for one request and what it leaves behind for the later phases:
//! the user name (the access log's `$remote_user`), the headers to set on the upstream
//! request and the auth service's cookies for the client. Choices:
//! - Basic auth: a missing or malformed `Authorization`, an unknown user or a wrong
//!   password all answer 401 with `WWW-Authenticate: Basic realm="<auth-realm>"`
//!   (the realm is empty by default, as in ingress-nginx). On success the
//!   `Authorization` header is not forwarded (ingress-nginx sets
//!   `proxy_set_header Authorization ""`).
//! - Slow hashes (bcrypt, SHA-crypt: milliseconds to seconds by design) are checked on
//!   tokio's blocking pool, never on a worker's event loop, with at most one check per
//!   CPU at a time (the rest wait), so a password-guessing client cannot starve the
//!   proxy. Successful checks are remembered for 10 minutes as an HMAC (key random per
//!   process) of the stored hash, user and password: a browser repeating its credentials
//!   on every request costs one bcrypt per 10 minutes, not one per request. Failures are
//!   never cached; a changed Secret changes the stored hash and so every key. The cache
//!   holds at most 10,000 entries (32-byte keys and a timestamp, well under 1 MiB);
//!   when it is full of live entries it is emptied. Only verified credentials enter
//!   it, so a client cannot fill it without valid passwords.
//!   Fast formats (apr1, MD5-crypt, DES, SHA-1, plain) are checked inline.
//! - `auth-url`: the subrequest carries the client's request headers (not its body;
//!   hop-by-hop headers, `Content-Length` and `Transfer-Encoding` dropped), `Host` set to
//!   the auth URL's host name (without port, as ingress-nginx), and `X-Original-URL`
//!   (`scheme://Host header/request URI`), `X-Original-Method`, `X-Original-URI`,
//!   `X-Auth-Request-Redirect` (`auth-request-redirect`, else the request URI, as
//!   ingress-nginx), `X-Sent-From: nginx-ingress-controller`, `X-Request-ID`,
//!   `X-Real-IP`, `X-Forwarded-For` (the client address), and sluice's own
//!   `X-Forwarded-Host`, `-Proto`, `-Port` and `X-Scheme`. ingress-nginx clears
//!   `X-Forwarded-Proto` and passes the client's `X-Forwarded-Host` through; sluice
//!   never passes a client's forwarded headers to the auth service, it sends the values
//!   it knows to be true. (`X-Original-URI` and `X-Scheme` go with every subrequest;
//!   ingress-nginx adds them only when `auth-method` is set.)
//! - Its answer: 2xx lets the request through, with each `auth-response-headers` header
//!   set on the upstream request from the auth response, or removed when the auth
//!   response lacks it (a client can never supply it itself). 401 is returned with the
//!   auth service's `WWW-Authenticate`, or, with `auth-signin`, becomes a 302 to the
//!   sign-in URL (`rd=` appended as ingress-nginx does). 403 is returned. Any other
//!   status, a timeout or an unreachable service answers 500. Time limits are the
//!   ConfigMap's `proxy-connect-timeout` and `proxy-read-timeout` (5 s / 60 s by
//!   default), as for nginx's auth location.
//! - The auth response's `Set-Cookie` headers are added to the client response when its
//!   status is one nginx's `add_header` applies to (2xx success, 3xx redirects), and to
//!   every response with `auth-always-set-cookie`.
//! - An Ingress whose auth settings are broken answers 503 before any of this
//!   (translation has warned).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use tokio::sync::Semaphore;
use tracing::warn;

use super::subrequest;
use crate::routing::auth::{decode_base64, BasicAuth, ExternalAuth, PasswordHash};
use crate::routing::template::RequestVars;
use crate::routing::{normalize_host, Policy};

/// What authentication decided for one request, for the later phases.
#[derive(Debug, Default)]
pub struct AuthState {
    /// The basic-auth user that passed.
    pub user: Option<String>,
    /// Basic auth passed: do not forward the credentials.
    strip_authorization: bool,
    /// `auth-response-headers`: the auth response's value, or `None` to remove it.
    upstream: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The auth response's `Set-Cookie` headers.
    cookies: Vec<HeaderValue>,
    always_set_cookie: bool,
}

impl AuthState {
    /// The access log's `$remote_user`.
    pub fn remote_user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }
}

/// A response sluice writes instead of proxying.
#[derive(Debug)]
pub struct Denial {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Denial {
    fn status(status: u16) -> Denial {
        Denial {
            status,
            headers: Vec::new(),
        }
    }
}

/// Facts about the request that the header map does not hold.
pub struct RequestFacts<'a> {
    /// The Host header (or `:authority`) as sent.
    pub host: &'a str,
    pub tls: bool,
    pub client_ip: Option<IpAddr>,
    /// The port of the listener the request arrived on.
    pub server_port: u16,
    pub request_id: &'a str,
    /// The ConfigMap's proxy timeouts, which bound the subrequest.
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// Runs the Ingress's authentication. `None`: proceed; `Some`: answer with the denial.
pub async fn check(
    req: &RequestHeader,
    policy: &Policy,
    facts: &RequestFacts<'_>,
    state: &mut AuthState,
) -> Option<Denial> {
    if policy.denied.is_some() {
        return Some(Denial::status(503));
    }
    if let Some(basic) = &policy.basic_auth {
        match check_basic(basic, req).await {
            Some(user) => {
                state.user = Some(user);
                state.strip_authorization = true;
            }
            None => {
                let challenge = HeaderValue::from_str(&basic.challenge())
                    .unwrap_or(HeaderValue::from_static("Basic realm=\"\""));
                return Some(Denial {
                    status: 401,
                    headers: vec![(header::WWW_AUTHENTICATE, challenge)],
                });
            }
        }
    }
    if let Some(ext) = &policy.external_auth {
        return check_external(ext, req, facts, state).await;
    }
    None
}

/// Headers for the upstream request (call after the forwarded headers are set).
pub fn upstream_request(upstream: &mut RequestHeader, state: &AuthState) -> Result<()> {
    if state.strip_authorization {
        upstream.remove_header(&header::AUTHORIZATION);
    }
    for (name, value) in &state.upstream {
        upstream.remove_header(name);
        if let Some(v) = value {
            upstream.insert_header(name.clone(), v.clone())?;
        }
    }
    Ok(())
}

/// The auth service's cookies on the client response.
pub fn response(resp: &mut ResponseHeader, state: &AuthState) -> Result<()> {
    if cookies_apply(resp.status.as_u16(), state.always_set_cookie) {
        for c in &state.cookies {
            resp.append_header(header::SET_COOKIE, c.clone())?;
        }
    }
    Ok(())
}

/// nginx's `add_header` (without `always`) only touches these statuses.
fn cookies_apply(status: u16, always: bool) -> bool {
    always
        || matches!(
            status,
            200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
        )
}

// ---- basic auth ----

/// `Authorization: Basic base64(user:password)` → (user, password), as nginx reads it:
/// scheme case-insensitive, a non-empty user, a colon.
fn credentials(req: &RequestHeader) -> Option<(String, Vec<u8>)> {
    let value = req
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = decode_base64(rest.trim())?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    if colon == 0 {
        return None;
    }
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// The user, when the credentials match.
async fn check_basic(basic: &BasicAuth, req: &RequestHeader) -> Option<String> {
    let (user, password) = credentials(req)?;
    let hash = basic.users.get(user.as_str())?;
    if !hash.is_slow() {
        return hash.verify(&password).then_some(user);
    }
    let key = VERIFIED.key(hash, &user, &password);
    if VERIFIED.contains(&key) {
        return Some(user);
    }
    let permit = SLOTS.clone().acquire_owned().await.ok()?;
    let hash: PasswordHash = hash.clone();
    let ok = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash.verify(&password)
    })
    .await
    .unwrap_or(false);
    if ok {
        VERIFIED.insert(key);
    }
    ok.then_some(user)
}

/// Slow verifications running at once: one per CPU.
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(Semaphore::new(cpus.max(1)))
});

static VERIFIED: LazyLock<VerifiedCache> = LazyLock::new(VerifiedCache::new);

/// Credentials that recently passed a slow check, as keyed hashes (never passwords).
struct VerifiedCache {
    key: ring::hmac::Key,
    seen: Mutex<HashMap<[u8; 32], Instant>>,
}

impl VerifiedCache {
    const TTL: Duration = Duration::from_secs(600);
    const MAX: usize = 10_000;

    fn new() -> VerifiedCache {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &fastrand_key()));
        VerifiedCache {
            key,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, hash: &PasswordHash, user: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        for part in [hash.identity().as_slice(), user.as_bytes(), password] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(key).is_some_and(|t| t.elapsed() < Self::TTL)
    }

    fn insert(&self, key: [u8; 32]) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= Self::MAX {
            seen.retain(|_, t| t.elapsed() < Self::TTL);
            if seen.len() >= Self::MAX {
                seen.clear();
            }
        }
        seen.insert(key, Instant::now());
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn verified_credentials_cache_stays_bounded() {
        let c = VerifiedCache::new();
        for i in 0..100_000u32 {
            let mut k = [0; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            c.insert(k);
        }
        let n = c.seen.lock().unwrap().len();
        assert!(n <= VerifiedCache::MAX, "{n}");
    }
}

fn fastrand_key() -> [u8; 32] {
    let mut k = [0; 32];
    k.iter_mut().for_each(|b| *b = fastrand::u8(..));
    k
}

// ---- auth-url ----

/// Request headers never passed to the auth service.
fn skipped(name: &HeaderName, connection_listed: &[String]) -> bool {
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
            | "proxy"
            | "http2-settings"
    ) || connection_listed.iter().any(|c| c == name.as_str())
}

async fn check_external(
    ext: &ExternalAuth,
    req: &RequestHeader,
    facts: &RequestFacts<'_>,
    state: &mut AuthState,
) -> Option<Denial> {
    let request_uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let scheme = if facts.tls { "https" } else { "http" };
    let host = normalize_host(facts.host);
    let remote = facts.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let vars = RequestVars {
        method: &req.method,
        uri: &req.uri,
        headers: &req.headers,
        http_host: facts.host,
        scheme,
        server_port: facts.server_port,
        remote_addr: facts.client_ip,
    };
    let url = ext.url.expand(&vars);
    let target = match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => u,
        _ => {
            warn!(url, "auth-url expands to an invalid URL; answering 500");
            return Some(Denial::status(500));
        }
    };

    let connection_listed: Vec<String> = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut headers = http::HeaderMap::new();
    let mut cookies: Vec<&str> = Vec::new();
    for (name, value) in &req.headers {
        if skipped(name, &connection_listed) {
            continue;
        }
        if name == header::COOKIE {
            // HTTP/2 may split cookies into several fields; HTTP/1.1 wants one.
            cookies.extend(value.to_str().ok());
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if !cookies.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
    let original_url = format!("{scheme}://{}{request_uri}", facts.host);
    let redirect = match &ext.request_redirect {
        Some(t) => t.expand(&vars),
        None => request_uri.to_string(),
    };
    let set = [
        ("host", target.host().unwrap_or("")),
        ("x-original-url", &original_url),
        ("x-original-method", req.method.as_str()),
        ("x-original-uri", request_uri),
        ("x-auth-request-redirect", &redirect),
        ("x-sent-from", "nginx-ingress-controller"),
        ("x-request-id", facts.request_id),
        ("x-real-ip", &remote),
        ("x-forwarded-for", &remote),
        ("x-forwarded-host", facts.host),
        ("x-forwarded-proto", scheme),
        ("x-forwarded-port", &facts.server_port.to_string()),
        ("x-scheme", scheme),
    ];
    for (name, value) in set {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }

    let request = subrequest::Request {
        method: ext.method.clone(),
        uri: target,
        headers,
    };
    let limits = subrequest::Limits {
        connect: facts.connect_timeout,
        total: facts.read_timeout,
        body: subrequest::BodyUse::Drain,
    };
    let resp = match subrequest::send(request, limits).await {
        Ok(r) => r,
        Err(e) => {
            warn!(url, error = %e, request_id = facts.request_id, "auth-url subrequest failed; answering 500");
            return Some(Denial::status(500));
        }
    };
    let auth_cookies: Vec<HeaderValue> = resp
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let with_cookies = |status: u16, mut headers: Vec<(HeaderName, HeaderValue)>| {
        if cookies_apply(status, ext.always_set_cookie) {
            headers.extend(auth_cookies.iter().map(|c| (header::SET_COOKIE, c.clone())));
        }
        Some(Denial { status, headers })
    };
    match resp.status.as_u16() {
        200..=299 => {
            state.upstream = ext
                .response_headers
                .iter()
                .map(|n| (n.clone(), resp.headers.get(n).cloned()))
                .collect();
            state.always_set_cookie = ext.always_set_cookie;
            state.cookies = auth_cookies;
            None
        }
        401 => match &ext.signin {
            Some(signin) => {
                let mut location = signin.expand(&vars);
                if location.starts_with('/') {
                    // nginx's absolute_redirect: same scheme and host.
                    location = format!("{scheme}://{host}{location}");
                }
                match HeaderValue::from_str(&location) {
                    Ok(l) => with_cookies(302, vec![(header::LOCATION, l)]),
                    Err(_) => {
                        warn!(
                            location,
                            "auth-signin expands to an invalid Location; answering 500"
                        );
                        Some(Denial::status(500))
                    }
                }
            }
            None => {
                let challenge: Vec<_> = resp
                    .headers
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .map(|v| (header::WWW_AUTHENTICATE, v.clone()))
                    .collect();
                with_cookies(401, challenge)
            }
        },
        403 => with_cookies(403, Vec::new()),
        other => {
            warn!(
                url,
                status = other,
                request_id = facts.request_id,
                "auth-url answered neither 2xx, 401 nor 403; answering 500"
            );
            with_cookies(500, Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        if let Some(a) = auth {
            r.insert_header("authorization", a).unwrap();
        }
        r
    }

    #[test]
    fn credentials_as_nginx_reads_them() {
        // alice:pa:ss
        assert_eq!(
            credentials(&req(Some("Basic YWxpY2U6cGE6c3M="))),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            credentials(&req(Some("basic   YWxpY2U6cGE6c3M"))),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        // no colon, empty user, another scheme, garbage
        assert_eq!(credentials(&req(Some("Basic YWxpY2U="))), None);
        assert_eq!(credentials(&req(Some("Basic OnB3"))), None);
        assert_eq!(credentials(&req(Some("Bearer YWxpY2U6cGE6c3M="))), None);
        assert_eq!(credentials(&req(Some("Basic !!!"))), None);
        assert_eq!(credentials(&req(None)), None);
    }

    #[test]
    fn verified_cache_keys_depend_on_everything() {
        let c = VerifiedCache::new();
        let h1 = PasswordHash::parse("{PLAIN}a").unwrap();
        let h2 = PasswordHash::parse("{PLAIN}b").unwrap();
        let k = c.key(&h1, "alice", b"a");
        assert_ne!(k, c.key(&h2, "alice", b"a"));
        assert_ne!(k, c.key(&h1, "alicea", b""));
        assert_ne!(k, c.key(&h1, "alice", b"b"));
        assert!(!c.contains(&k));
        c.insert(k);
        assert!(c.contains(&k));
    }

    #[tokio::test]
    async fn slow_hashes_verify_off_the_event_loop_and_are_cached() {
        // htpasswd -nbB -C 5 alice secret
        let mut users = HashMap::new();
        users.insert(
            "alice".into(),
            PasswordHash::parse("$2y$05$Dsb/m5yYZE8KTcPh2yur7.GVHzmHZ6kJYnwq8KPjWwrcXbpS.WbP.")
                .unwrap(),
        );
        let basic = BasicAuth {
            realm: "r".into(),
            secret: "ns/s".into(),
            users,
        };
        let good = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:secret")
        );
        let bad = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:wrong")
        );
        assert_eq!(
            check_basic(&basic, &req(Some(&good))).await.as_deref(),
            Some("alice")
        );
        let key = VERIFIED.key(&basic.users["alice"], "alice", b"secret");
        assert!(VERIFIED.contains(&key));
        assert_eq!(
            check_basic(&basic, &req(Some(&good))).await.as_deref(),
            Some("alice")
        );
        assert_eq!(check_basic(&basic, &req(Some(&bad))).await, None);
        let key = VERIFIED.key(&basic.users["alice"], "alice", b"wrong");
        assert!(!VERIFIED.contains(&key), "failures are never cached");
    }
}

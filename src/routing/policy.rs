//! Per-Ingress request policy from annotations: what happens to a request between
//! matching and proxying (redirects, access lists, size limits, rewriting, timeouts,
//! the Host sent upstream).
//!
//! Owns the parsed, immutable form of those annotations. One `Policy` is shared by every
//! route of the Ingress that set them (annotations apply to their own Ingress's paths
//! only, COMPAT §3); translation builds it once, the proxy only reads it. Regexes are
//! compiled and CIDRs parsed here, never per request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

use super::auth::{BasicAuth, ExternalAuth};
use super::table::Backend;

/// Why an address list or a regex path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An entry of an address list that is neither an address nor a CIDR.
    #[error("{0:?} is not an IP address or CIDR")]
    NotAnAddress(Box<str>),
    /// An address list without an entry.
    #[error("the list is empty")]
    EmptyList,
    /// A path that does not compile as a regex; the detail is the regex crate's.
    #[error("not a valid regex ({0})")]
    BadRegex(Box<str>),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Request handling set by one Ingress's annotations. `Default` is ingress-nginx's
/// behaviour with no annotation.
#[derive(Debug, Default)]
pub struct Policy {
    /// `permanent-redirect` / `temporal-redirect`: every request answers this redirect.
    pub redirect: Option<Redirect>,
    /// `app-root`: a request for exactly `/` is redirected (302) to
    /// `$scheme://$http_host` + this path, its nginx variables expanded.
    pub app_root: Option<super::template::Template>,
    /// `whitelist-source-range` / `allowlist-source-range`: only these clients (403 else).
    pub allow: Option<CidrSet>,
    /// `denylist-source-range`: these clients get 403.
    pub deny: Option<CidrSet>,
    /// `proxy-body-size`: request bodies above this many bytes get 413 (`None` =
    /// unlimited). `Some` by default: 1 MiB, as nginx's `client_max_body_size`.
    pub body_limit: Option<u64>,
    /// `proxy-connect/read/send-timeout`: per-Ingress overrides of the ConfigMap values.
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    /// `upstream-vhost`: the `Host` sent to the backend.
    pub upstream_vhost: Option<Box<str>>,
    /// `x-forwarded-prefix`: sent as `X-Forwarded-Prefix`.
    pub x_forwarded_prefix: Option<Box<str>>,

    // Authentication (`auth-type`/`auth-secret`/`auth-secret-type`/`auth-realm`,
    // `auth-url` and its companions; see `routing::auth`). Basic runs first, then the
    // subrequest; both must pass.
    /// `auth-type: basic`: credentials checked against the Secret's htpasswd entries.
    pub basic_auth: Option<BasicAuth>,
    /// `auth-url`: a subrequest to an auth service decides.
    pub external_auth: Option<ExternalAuth>,
    /// ingress-nginx's "location denied": an annotation names a Secret that does not
    /// exist or cannot be used, or authentication was asked for and cannot be honoured.
    /// Every request answers 503 before any other rule of the location runs (nginx's
    /// `return 503` in its place). Says why.
    pub denied: Option<Box<str>>,
    // CORS and rate limits (`enable-cors`, `cors-*`; `limit-*`).
    /// `enable-cors: "true"` with its `cors-*` settings (`None`: no CORS handling).
    pub cors: Option<super::cors::Cors>,
    /// `limit-rps` / `-rpm` / `-connections` (`None`: the Ingress sets no limit).
    pub limits: Option<super::limits::RateLimits>,
    // Canary and host-level routing (`default-backend`, `preserve-trailing-slash`,
    // `from-to-www-redirect`).
    /// `default-backend`: a Service of the Ingress's namespace (its first port) that
    /// answers instead when the rule's Service has no endpoints. Translation already
    /// swaps it in for such routes; `custom-http-errors` sends intercepted errors here.
    pub default_backend: Option<Arc<Backend>>,
    /// `preserve-trailing-slash`: keep a trailing `/` in the https redirect's Location
    /// (ingress-nginx strips one by default).
    pub preserve_trailing_slash: bool,
    /// `from-to-www-redirect`: this route only redirects, to the same URI on this host
    /// (a synthetic route on `www.<host>`, or on `<host>` for a `www.` rule).
    pub www_redirect: Option<Box<str>>,
    // Custom error pages and the access log (issue 6, items 2 and 6).
    /// `custom-http-errors`: statuses whose responses are replaced by the error
    /// backend's page (sorted). `None`: the ConfigMap's list applies.
    pub custom_http_errors: Option<Box<[u16]>>,
    /// `enable-access-log`: `Some(false)` silences this Ingress's requests.
    pub access_log: Option<bool>,
    // Request bodies and connection caps (hardening, issue 11).
    /// `proxy-request-buffering`: `Some(false)` streams bodies; `None`: the ConfigMap's.
    pub request_buffering: Option<bool>,
    /// `client-body-buffer-size`: body bytes kept in memory before spilling to a
    /// temporary file; `None`: the ConfigMap's.
    pub client_body_buffer_size: Option<u64>,
}

impl Policy {
    /// No limits at all (routes sluice makes itself, tests).
    pub fn unrestricted() -> Policy {
        Policy::default()
    }
}

/// A fixed redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub location: Box<str>,
    pub code: u16,
}

/// A set of IPv4/IPv6 networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    pub nets: Vec<IpNet>,
}

impl CidrSet {
    /// Parses nginx's comma-separated list of addresses and CIDRs.
    pub fn parse(list: &str) -> Result<CidrSet> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(Error::NotAnAddress(item.into())),
                },
            };
            nets.push(net);
        }
        if nets.is_empty() {
            return Err(Error::EmptyList);
        }
        Ok(CidrSet { nets })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// `rewrite-target`: the route's path as a regex and the replacement with `$n`.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The rule's path, case-insensitive and anchored at the start (as the location).
    pub regex: Regex,
    pub target: Box<str>,
}

impl Rewrite {
    /// The new path for a normalised request path (the query string is kept by the
    /// caller). `$1`…`$9` and `${n}` take capture groups; a missing group is empty, as
    /// in nginx. A path the regex does not match (cannot happen for a route that matched)
    /// is left alone.
    pub fn apply(&self, path: &str) -> Option<String> {
        if self.is_redirect() {
            return None;
        }
        let mut out = self.substitute(path)?;
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        Some(out)
    }

    /// A target that is an absolute URL: nginx's `rewrite` answers it with a 302
    /// instead of rewriting (COMPAT §7).
    pub fn is_redirect(&self) -> bool {
        let t = self.target.as_bytes();
        let starts =
            |p: &str| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p.as_bytes());
        starts("http://") || starts("https://")
    }

    /// The `Location` of an absolute target for a normalised request path: captures
    /// substituted, then the request's query string appended (after `&` when the
    /// target has its own), as nginx's `rewrite ... redirect` does.
    pub fn redirect(&self, path: &str, query: Option<&str>) -> Option<String> {
        if !self.is_redirect() {
            return None;
        }
        let mut out = self.substitute(path)?;
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        Some(out)
    }

    /// The target with `$n` / `${n}` replaced by the captures of `path`.
    fn substitute(&self, path: &str) -> Option<String> {
        let caps = self.regex.captures(path)?;
        let mut out = String::with_capacity(self.target.len() + path.len());
        let t = self.target.as_bytes();
        let mut i = 0;
        while i < t.len() {
            if t[i] == b'$' {
                let (digits, skip) = if t.get(i + 1) == Some(&b'{') {
                    let end = self.target[i + 2..].find('}').map(|e| i + 2 + e);
                    match end {
                        Some(e) => (&self.target[i + 2..e], e + 1 - i),
                        None => ("", 0),
                    }
                } else {
                    let n = t[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                    (&self.target[i + 1..i + 1 + n.min(1)], 1 + n.min(1))
                };
                if let Ok(n) = digits.parse::<usize>() {
                    out.push_str(caps.get(n).map_or("", |m| m.as_str()));
                    i += skip;
                    continue;
                }
            }
            let ch = self.target[i..].chars().next().unwrap_or('$');
            out.push(ch);
            i += ch.len_utf8();
        }
        Some(out)
    }
}

/// Compiles an Ingress path the way ingress-nginx's regex locations read it:
/// case-insensitive, anchored at the start.
pub fn path_regex(path: &str) -> Result<Regex> {
    regex::RegexBuilder::new(&format!("^(?:{path})"))
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            // regex's message spans lines (pattern, caret, error); keep the error.
            let msg = e.to_string();
            let last = msg
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Error::BadRegex(last.trim().trim_start_matches("error: ").into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_examples_from_ingress_nginx_docs() {
        let r = Rewrite {
            regex: path_regex("/something(/|$)(.*)").unwrap(),
            target: "/$2".into(),
        };
        assert_eq!(r.apply("/something").as_deref(), Some("/"));
        assert_eq!(r.apply("/something/").as_deref(), Some("/"));
        assert_eq!(r.apply("/something/new").as_deref(), Some("/new"));
        assert_eq!(r.apply("/SOMETHING/new").as_deref(), Some("/new"));
        let r = Rewrite {
            regex: path_regex("/api(/|$)(.*)").unwrap(),
            target: "/v2/${2}x$1a".into(),
        };
        assert_eq!(r.apply("/api/users").as_deref(), Some("/v2/usersx/a"));
        let r = Rewrite {
            regex: path_regex("/app").unwrap(),
            target: "/".into(),
        };
        assert_eq!(r.apply("/app/x").as_deref(), Some("/"));
        let r = Rewrite {
            regex: path_regex("/original/(.*)").unwrap(),
            target: "https://other.example/$1".into(),
        };
        assert!(r.is_redirect());
        assert_eq!(r.apply("/original/a"), None);
        assert_eq!(
            r.redirect("/original/a/b", Some("x=1")).as_deref(),
            Some("https://other.example/a/b?x=1")
        );
        let r = Rewrite {
            regex: path_regex("/").unwrap(),
            target: "HTTP://other.example/?from=$1".into(),
        };
        assert_eq!(
            r.redirect("/z", Some("y=2")).as_deref(),
            Some("HTTP://other.example/?from=&y=2")
        );
    }

    #[test]
    fn cidr_sets() {
        let s = CidrSet::parse("10.0.0.0/8, 192.168.1.7,2001:db8::/32").unwrap();
        assert!(s.contains("10.1.2.3".parse().unwrap()));
        assert!(s.contains("192.168.1.7".parse().unwrap()));
        assert!(!s.contains("192.168.1.8".parse().unwrap()));
        assert!(s.contains("2001:db8::1".parse().unwrap()));
        assert!(s.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(CidrSet::parse("10.0.0.0/33").is_err());
        assert!(CidrSet::parse("").is_err());
    }
}

//! Balancing annotations: `load-balance`, `upstream-hash-by`, `affinity` with
//! `affinity-mode` and every `session-cookie-*` key, and `proxy-next-upstream*`.
//!
//! Choices written down (the README repeats them):
//! - `upstream-hash-by` wins over `load-balance`, as in ingress-nginx; an expression
//!   that does not parse warns and leaves the Ingress on its `load-balance` policy.
//! - `affinity: cookie` wins over both for requests that carry a valid cookie; new
//!   clients are placed by the route's policy (`persistent`) or by a random token on
//!   the hash ring (`balanced`). `session-cookie-path` defaults to the rule's path.
//! - `proxy-next-upstream`: every nginx value applies (`error`, `timeout`,
//!   `invalid_header`, `http_500/502/503/504/403/404/429`, `non_idempotent`, `off`);
//!   `proxy::retry` decides each attempt.
//! - Bad values warn and keep the default for that key only.

use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;

use super::super::object::namespace_of;
use super::super::object::raw_annotation;
use super::super::values::{parse_load_balance, parse_next_upstream, parse_timeout};
use super::super::{ObjKind, Warning};
use crate::routing::{AffinityMode, CookieAffinity, HashKey, LbPolicy, NextUpstream};

/// An Ingress's balancing settings; the cookie path is filled in per rule.
#[derive(Debug, Clone)]
pub struct Balancing {
    pub lb: LbPolicy,
    pub affinity: Option<CookieAffinity>,
    /// `session-cookie-path` was given (else each rule's path is used).
    pub cookie_path_set: bool,
    pub next_upstream: NextUpstream,
}

/// Parses the balancing annotations of one Ingress over the ConfigMap defaults.
pub fn parse(
    ing: &Ingress,
    default_lb: &LbPolicy,
    default_next: NextUpstream,
    warnings: &mut Vec<Warning>,
) -> Balancing {
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let mut warn = |msg: String| {
        warnings.push(Warning::new(
            ObjKind::Ingress,
            ns,
            name,
            "InvalidAnnotation",
            msg,
        ));
    };
    let get = |key: &str| raw_annotation(ing, key).map(str::trim);
    use super::super::object::ANNOTATION_PREFIX as P;

    let mut lb = default_lb.clone();
    if let Some(v) = get("load-balance") {
        match parse_load_balance(v) {
            Some(p) => lb = p,
            None => warn(format!(
                "{P}load-balance: {v:?} is not round_robin or ewma; using the default"
            )),
        }
    }
    if let Some(v) = get("upstream-hash-by").filter(|v| !v.is_empty()) {
        match HashKey::parse(v) {
            Ok(k) => lb = LbPolicy::Hash(k),
            Err(e) => warn(format!("{P}upstream-hash-by: {e}; not hashing")),
        }
    }

    let mut affinity = None;
    let mut cookie_path_set = false;
    match get("affinity") {
        None | Some("") => {}
        Some(v) if v.eq_ignore_ascii_case("cookie") => {
            let mut a = CookieAffinity::new(AffinityMode::Balanced, "INGRESSCOOKIE");
            match get("affinity-mode") {
                None | Some("") => {}
                Some(m) if m.eq_ignore_ascii_case("balanced") => {}
                Some(m) if m.eq_ignore_ascii_case("persistent") => {
                    a.mode = AffinityMode::Persistent
                }
                Some(m) => warn(format!(
                    "{P}affinity-mode: {m:?} is not balanced or persistent; using balanced"
                )),
            }
            if let Some(n) = get("session-cookie-name").filter(|n| !n.is_empty()) {
                if is_token(n) {
                    a.name = n.into();
                } else {
                    warn(format!("{P}session-cookie-name: {n:?} is not a valid cookie name; using INGRESSCOOKIE"));
                }
            }
            if let Some(p) = get("session-cookie-path").filter(|p| !p.is_empty()) {
                if p.starts_with('/') && is_cookie_value(p) {
                    a.path = p.into();
                    cookie_path_set = true;
                } else {
                    warn(format!(
                        "{P}session-cookie-path: {p:?} is not a path; using the rule's path"
                    ));
                }
            }
            let mut secs = |key: &str, slot: &mut Option<Duration>| {
                if let Some(v) = get(key).filter(|v| !v.is_empty()) {
                    match v.parse::<u64>() {
                        Ok(n) => *slot = Some(Duration::from_secs(n)),
                        Err(_) => warn(format!(
                            "{P}{key}: {v:?} is not a number of seconds; ignored"
                        )),
                    }
                }
            };
            secs("session-cookie-expires", &mut a.expires);
            secs("session-cookie-max-age", &mut a.max_age);
            if let Some(s) = get("session-cookie-samesite").filter(|s| !s.is_empty()) {
                match s.to_ascii_lowercase().as_str() {
                    "none" => a.samesite = Some("None".into()),
                    "lax" => a.samesite = Some("Lax".into()),
                    "strict" => a.samesite = Some("Strict".into()),
                    _ => warn(format!(
                        "{P}session-cookie-samesite: {s:?} is not None, Lax or Strict; ignored"
                    )),
                }
            }
            let mut flag = |key: &str, slot: &mut bool| {
                if let Some(v) = get(key) {
                    match super::super::values::parse_bool(v) {
                        Some(b) => *slot = b,
                        None => warn(format!("{P}{key}: {v:?} is not true or false; ignored")),
                    }
                }
            };
            flag(
                "session-cookie-conditional-samesite-none",
                &mut a.conditional_samesite_none,
            );
            flag("session-cookie-secure", &mut a.secure);
            flag("session-cookie-change-on-failure", &mut a.change_on_failure);
            if let Some(d) = get("session-cookie-domain").filter(|d| !d.is_empty()) {
                if is_cookie_value(d) && !d.contains(';') {
                    a.domain = Some(d.into());
                } else {
                    warn(format!(
                        "{P}session-cookie-domain: {d:?} is not a domain; ignored"
                    ));
                }
            }
            affinity = Some(a);
        }
        Some(v) => warn(format!(
            "{P}affinity: {v:?} is not supported (only cookie); no affinity"
        )),
    }

    let mut next = default_next;
    if let Some(v) = get("proxy-next-upstream") {
        match parse_next_upstream(v, next) {
            Ok(n) => next = n,
            Err(e) => warn(format!("{P}proxy-next-upstream: {e}; using the default")),
        }
    }
    if let Some(v) = get("proxy-next-upstream-tries") {
        match v.parse::<u32>() {
            Ok(n) => next.tries = n,
            Err(_) => warn(format!(
                "{P}proxy-next-upstream-tries: {v:?} is not a number; using {}",
                next.tries
            )),
        }
    }
    if let Some(v) = get("proxy-next-upstream-timeout") {
        match parse_timeout(v) {
            Some(t) => next.timeout = t,
            None => warn(format!(
                "{P}proxy-next-upstream-timeout: {v:?} is not a number of seconds; ignored"
            )),
        }
    }
    Balancing {
        lb,
        affinity,
        cookie_path_set,
        next_upstream: next,
    }
}

/// RFC 6265 token (cookie names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'(' | b')'
                        | b'<'
                        | b'>'
                        | b'@'
                        | b','
                        | b';'
                        | b':'
                        | b'\\'
                        | b'"'
                        | b'/'
                        | b'['
                        | b']'
                        | b'?'
                        | b'='
                        | b'{'
                        | b'}'
                )
        })
}

/// Safe inside a `Set-Cookie` attribute: visible ASCII, no `;` or `,`.
fn is_cookie_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_upstream_tokens() {
        let d = NextUpstream::default();
        let n = parse_next_upstream("error timeout http_502 http_429 invalid_header", d).unwrap();
        assert!(n.on_error && n.on_timeout && !n.non_idempotent && n.invalid_header);
        assert!(n.statuses.contains(502) && n.statuses.contains(429));
        assert!(!n.statuses.contains(500) && !n.statuses.contains(200));
        let n = parse_next_upstream("off", d).unwrap();
        assert!(!n.on_error && !n.on_timeout && n.statuses.is_empty());
        assert!(parse_next_upstream("http_418", d).is_err());
        assert!(parse_next_upstream("error bogus", d).is_err());
        assert!(parse_next_upstream("off error", d).is_err());
    }

    #[test]
    fn cookie_names() {
        assert!(is_token("INGRESSCOOKIE"));
        assert!(!is_token("bad name"));
        assert!(!is_token("a;b"));
    }
}

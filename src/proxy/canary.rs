//! Canary routing at request time: whether a request goes to the canary alternative of
//! its route. Reads the affinity cookie (and its canary mark, which `balance` owns with
//! the rest of cookie affinity); `balance` never calls back into this module.
//!
//! The canary decision reproduces ingress-nginx's `route_to_alternative_balancer`:
//! 1. session affinity first: with cookie affinity on the route, a client whose affinity
//!    cookie was issued by the main backend stays there, one whose cookie was issued by
//!    the canary stays on the canary. ingress-nginx tells them apart by the backend key
//!    it appends to the value (`value|backend`); sluice appends [`CANARY_MARK`] to the
//!    canary's cookie values (main cookies keep their format, so no client loses its
//!    endpoint when a canary appears). Under `affinity-canary-behavior: legacy` the
//!    canary has no affinity, so only main cookies pin.
//! 2. `canary-by-header`: with `canary-by-header-value`, that exact value selects the
//!    canary; else with `canary-by-header-pattern`, a regex match does (unanchored,
//!    case-sensitive, as `ngx.re.match`); else `always` selects the canary and `never`
//!    the main backend. Any other value, or no header, falls through.
//! 3. `canary-by-cookie`: `always` / `never` as for the header (the cookie read by
//!    [`crate::routing::cookie`], name case-insensitive as nginx's `$cookie_`); any
//!    other value falls through.
//! 4. `canary-weight`: a fair draw (`fastrand`) of 1..=total, canary when ≤ weight.
//!
//! A canary whose Service has no endpoints is never attached (translation), so such
//! requests stay on the main backend, as ingress-nginx (which has no balancer for it).
//! A main route without endpoints answers 503 before any canary rule runs, as there.

use std::sync::Arc;

use pingora::http::RequestHeader;

use super::balance::CANARY_MARK;
use crate::routing::cookie;
use crate::routing::{AffinityMode, Canary, Route};

/// The canary route when the request should go there (else the main route stays).
pub fn choose(route: &Route, req: &RequestHeader) -> Option<Arc<Route>> {
    let canary = route.canary.as_ref()?;
    to_canary(route, canary, req, || fastrand::u32(..)).then(|| canary.route.clone())
}

/// ingress-nginx's order: affinity, header, cookie, weight. `draw` yields random u32s.
fn to_canary(
    route: &Route,
    canary: &Canary,
    req: &RequestHeader,
    mut draw: impl FnMut() -> u32,
) -> bool {
    if let Some(aff) = &route.affinity {
        if let Some(v) = cookie::get(&req.headers, &aff.name) {
            if let Some(inner) = v.strip_suffix(CANARY_MARK) {
                if canary.route.affinity.is_some() && main_format(aff.mode, inner) {
                    return true;
                }
            } else if main_format(aff.mode, v) {
                return false;
            }
        }
    }
    let rules = &canary.rules;
    if let Some(value) = rules.header.as_ref().and_then(|h| req.headers.get(h)) {
        let value = value.as_bytes();
        if let Some(want) = &rules.header_value {
            if value == want.as_bytes() {
                return true;
            }
        } else if let Some(pattern) = &rules.header_pattern {
            if std::str::from_utf8(value).is_ok_and(|v| pattern.is_match(v)) {
                return true;
            }
        } else if value == b"always" {
            return true;
        } else if value == b"never" {
            return false;
        }
    }
    if let Some(value) = rules
        .cookie
        .as_deref()
        .and_then(|c| cookie::get(&req.headers, c))
    {
        match value {
            "always" => return true,
            "never" => return false,
            _ => {}
        }
    }
    if rules.weight == 0 {
        return false;
    }
    // math.random(total) <= weight, without modulo bias.
    let total = rules.weight_total.max(1);
    let zone = u32::MAX - u32::MAX % total;
    loop {
        let r = draw();
        if r < zone {
            return r % total < rules.weight;
        }
    }
}

/// Whether a cookie value has the shape the balancer issues in `mode` (a balanced
/// token of 32 hex digits, a persistent endpoint id of 16).
fn main_format(mode: AffinityMode, v: &str) -> bool {
    let len = match mode {
        AffinityMode::Balanced => 32,
        AffinityMode::Persistent => 16,
    };
    v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Backend, CanaryRules, CookieAffinity, Endpoints, PathKind};

    fn routes(rules: CanaryRules, affinity: Option<AffinityMode>) -> Route {
        let backend = |s: &str| {
            Arc::new(Backend::new(
                "ns",
                s,
                "80",
                Endpoints::Addrs(vec!["10.0.0.1:80".parse().unwrap()]),
            ))
        };
        let mut main = Route::new(backend("main"), "ns", "ing", "/", PathKind::Prefix);
        main.affinity = affinity.map(|mode| Arc::new(CookieAffinity::new(mode, "S")));
        let mut alt = main.clone();
        alt.backend = backend("canary");
        alt.is_canary = true;
        main.canary = Some(Arc::new(Canary {
            route: Arc::new(alt),
            rules,
            ingress: "ns/canary".into(),
        }));
        main
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn goes(route: &Route, h: &[(&str, &str)]) -> bool {
        choose(route, &req(h)).is_some()
    }

    #[test]
    fn header_then_cookie_then_weight() {
        let rules = CanaryRules {
            header: Some(http::HeaderName::from_static("x-canary")),
            cookie: Some("canary".into()),
            weight: 0,
            weight_total: 100,
            ..CanaryRules::default()
        };
        let r = routes(rules, None);
        assert!(goes(&r, &[("X-Canary", "always")]));
        assert!(!goes(
            &r,
            &[("x-canary", "never"), ("cookie", "canary=always")]
        ));
        assert!(goes(
            &r,
            &[("x-canary", "other"), ("cookie", "a=b; CANARY=always")]
        ));
        assert!(!goes(&r, &[("cookie", "canary=never")]));
        assert!(!goes(&r, &[("cookie", "canary=maybe")]));
        assert!(!goes(&r, &[]));
    }

    #[test]
    fn header_value_and_pattern() {
        let value = CanaryRules {
            header: Some(http::HeaderName::from_static("x-user")),
            header_value: Some("beta".into()),
            // Ignored when a value is set, as in ingress-nginx.
            header_pattern: Some(regex::Regex::new("^a").unwrap()),
            weight_total: 100,
            ..CanaryRules::default()
        };
        let r = routes(value, None);
        assert!(goes(&r, &[("x-user", "beta")]));
        assert!(!goes(&r, &[("x-user", "Beta")]));
        assert!(!goes(&r, &[("x-user", "always")]));
        assert!(!goes(&r, &[("x-user", "alpha")]));
        let pattern = CanaryRules {
            header: Some(http::HeaderName::from_static("x-user")),
            header_pattern: Some(regex::Regex::new("^(alice|bob)$").unwrap()),
            weight_total: 100,
            ..CanaryRules::default()
        };
        let r = routes(pattern, None);
        assert!(goes(&r, &[("x-user", "bob")]));
        assert!(!goes(&r, &[("x-user", "carol")]));
        assert!(!goes(&r, &[("x-user", "always")]));
    }

    #[test]
    fn weight_draw_is_exact_over_the_whole_range() {
        let rules = CanaryRules {
            weight: 20,
            weight_total: 100,
            ..CanaryRules::default()
        };
        let r = routes(rules, None);
        let canary = r.canary.as_ref().unwrap();
        let h = req(&[]);
        // Every residue once: exactly 20 of 100.
        let mut n = 0u32;
        let hits = (0..100)
            .filter(|_| {
                to_canary(&r, canary, &h, || {
                    n += 1;
                    n - 1
                })
            })
            .count();
        assert_eq!(hits, 20);
        // Draws in the biased tail are rejected and redrawn.
        let mut seq = [u32::MAX, 7].into_iter();
        assert!(to_canary(&r, canary, &h, || seq.next().unwrap()));
        let all = CanaryRules {
            weight: 100,
            weight_total: 100,
            ..CanaryRules::default()
        };
        let r = routes(all, None);
        assert!((0..200).all(|_| goes(&r, &[])));
    }

    #[test]
    fn affinity_cookies_pin_main_or_canary() {
        let rules = CanaryRules {
            weight: 100,
            weight_total: 100,
            header: Some(http::HeaderName::from_static("x-canary")),
            ..CanaryRules::default()
        };
        let r = routes(rules, Some(AffinityMode::Balanced));
        let token = "0123456789abcdef0123456789abcdef";
        // A main cookie beats even `always` and weight 100, as in ingress-nginx.
        assert!(!goes(
            &r,
            &[("cookie", &format!("S={token}")), ("x-canary", "always")]
        ));
        assert!(goes(&r, &[("cookie", &format!("S={token}{CANARY_MARK}"))]));
        // Garbage is no affinity: the rules decide.
        assert!(goes(&r, &[("cookie", "S=garbage")]));
    }
}

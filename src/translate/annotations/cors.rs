//! `enable-cors` and the `cors-*` annotations → [`Cors`].
//!
//! Defaults and validation are ingress-nginx's (v1.12+): origin entries
//! `scheme://host[:port]`, `scheme://*.host[:port]` (one label), `null` or `*`
//! (comma-separated; any `*` makes the whole list `*`); methods are letters, headers
//! letters, digits, `-` and `_`, expose-headers also `*`; max-age an integer.
//!
//! Where a bad value would make ingress-nginx grant more than was asked (its fallbacks
//! are `*` for a list that fails validation, the full default method and header lists,
//! credentials on), sluice never widens:
//! - a bad `cors-allow-origin` entry is dropped (the others still apply; none left
//!   means no CORS headers at all);
//! - a bad `cors-allow-methods`, `cors-allow-headers` or `cors-allow-credentials`
//!   turns CORS off for that Ingress (requests pass through untouched, so browsers
//!   refuse cross-origin reads);
//! - a bad `cors-expose-headers` exposes nothing, a bad `cors-max-age` keeps 1728000,
//!   a bad `enable-cors` means off.
//!
//! Each warns (`InvalidAnnotation`, naming the key and the value). An empty
//! `cors-allow-origin` is the same as none (`*`), as in ingress-nginx.

use http::HeaderValue;
use k8s_openapi::api::networking::v1::Ingress;

use super::super::object::namespace_of;
use super::super::object::raw_annotation;
use super::super::values::parse_bool;
use super::super::{ObjKind, Warning};
use crate::routing::{AllowOrigin, Cors, OriginPattern};

/// ingress-nginx's defaults.
pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: i64 = 1_728_000;

use super::super::object::ANNOTATION_PREFIX as P;

/// Parses the CORS annotations of one Ingress (`None`: CORS off).
pub fn parse(ing: &Ingress, warnings: &mut Vec<Warning>) -> Option<Cors> {
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let mut warn = |msg: String| {
        warnings.push(Warning::new(
            ObjKind::Ingress,
            ns,
            name,
            "InvalidAnnotation",
            msg,
        ))
    };
    let get = |key: &str| raw_annotation(ing, key).map(str::trim);

    let enabled = match get("enable-cors") {
        None => false,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            warn(format!(
                "{P}enable-cors: {v:?} is not true or false; CORS stays off"
            ));
            false
        }),
    };
    if !enabled {
        return None;
    }

    let origins = match get("cors-allow-origin").filter(|v| !v.is_empty()) {
        None => AllowOrigin::Any,
        Some(v) => {
            let mut list = Vec::new();
            let mut any = false;
            for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if entry == "*" {
                    any = true;
                } else if valid_origin(entry) {
                    list.push(OriginPattern::new(entry));
                } else {
                    warn(format!(
                        "{P}cors-allow-origin: entry {entry:?} of {v:?} is not scheme://host[:port], scheme://*.host[:port], null or *; that entry is ignored"
                    ));
                }
            }
            if any {
                AllowOrigin::Any
            } else {
                if list.is_empty() {
                    warn(format!(
                        "{P}cors-allow-origin: {v:?} names no valid origin; no request gets CORS headers"
                    ));
                }
                AllowOrigin::List(list)
            }
        }
    };

    // Keys whose bad value would otherwise widen what cross-origin pages may do.
    let mut off = false;
    let mut listed = |key: &str, default: &str, ok: fn(&str) -> bool, what: &str| match get(key)
        .filter(|v| !v.is_empty())
    {
        None => Some(HeaderValue::from_str(default).expect("a valid default")),
        Some(v) => match HeaderValue::from_str(v).ok().filter(|_| ok(v)) {
            Some(h) => Some(h),
            None => {
                warn(format!(
                    "{P}{key}: {v:?} is not {what}; CORS is off for this Ingress until it is fixed"
                ));
                off = true;
                None
            }
        },
    };
    let allow_methods = listed(
        "cors-allow-methods",
        DEFAULT_METHODS,
        valid_methods,
        "a comma-separated list of methods",
    );
    let allow_headers = listed(
        "cors-allow-headers",
        DEFAULT_HEADERS,
        valid_headers,
        "a comma-separated list of header names",
    );
    let allow_credentials = match get("cors-allow-credentials") {
        None => true,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            warn(format!(
                "{P}cors-allow-credentials: {v:?} is not true or false; CORS is off for this Ingress until it is fixed"
            ));
            off = true;
            false
        }),
    };
    let expose_headers = match get("cors-expose-headers").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match HeaderValue::from_str(v).ok().filter(|_| valid_expose(v)) {
            Some(h) => Some(h),
            None => {
                warn(format!(
                    "{P}cors-expose-headers: {v:?} is not a comma-separated list of header names or *; no headers are exposed"
                ));
                None
            }
        },
    };
    let max_age = match get("cors-max-age") {
        None => DEFAULT_MAX_AGE,
        Some(v) => v.parse::<i64>().unwrap_or_else(|_| {
            warn(format!(
                "{P}cors-max-age: {v:?} is not a whole number of seconds; using {DEFAULT_MAX_AGE}"
            ));
            DEFAULT_MAX_AGE
        }),
    };
    if off {
        return None;
    }
    Some(Cors {
        origins,
        allow_methods: allow_methods?,
        allow_headers: allow_headers?,
        allow_credentials,
        expose_headers,
        max_age: HeaderValue::from(max_age),
    })
}

/// ingress-nginx's `^([a-z]+://(\*\.)?[A-Za-z0-9\-.]*(:\d+)?|\*|null)?$` for one entry.
fn valid_origin(entry: &str) -> bool {
    if entry == "null" {
        return true;
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return false;
    };
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    let rest = rest.strip_prefix("*.").unwrap_or(rest);
    let (host, port) = match rest.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Items of a comma-separated list (spaces ignored, as ingress-nginx's validator
/// removes them), each non-empty and made of `ok` bytes.
fn valid_list(v: &str, ok: fn(u8) -> bool) -> bool {
    let items: Vec<&str> = v.split(',').map(str::trim).collect();
    // A trailing comma is accepted by ingress-nginx's regex; an empty item elsewhere is not.
    let (last, rest) = items.split_last().expect("split yields one item");
    !v.trim().is_empty()
        && rest.iter().all(|i| !i.is_empty() && i.bytes().all(ok))
        && last.bytes().all(ok)
        && !(last.is_empty() && rest.is_empty())
}

fn valid_methods(v: &str) -> bool {
    valid_list(v, |b| b.is_ascii_alphabetic())
}

fn valid_headers(v: &str) -> bool {
    valid_list(v, |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_expose(v: &str) -> bool {
    let items: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    !items.is_empty()
        && items.iter().all(|i| {
            *i == "*"
                || i.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for ok in [
            "https://a.example",
            "http://a.example:8080",
            "https://*.example.com",
            "tauri://localhost",
            "null",
            "https://",
        ] {
            assert!(valid_origin(ok), "{ok}");
        }
        for bad in [
            "a.example",
            "HTTPS://a.example",
            "https://a.example/",
            "https://a.*.example",
            "https://*a.example",
            "https://a.example:",
            "https://a.example:80a",
            "https://user@a.example",
            "$http_origin",
        ] {
            assert!(!valid_origin(bad), "{bad}");
        }
    }

    #[test]
    fn lists() {
        assert!(valid_methods("GET, POST,PUT"));
        assert!(valid_methods("GET,"));
        assert!(!valid_methods("GET;POST"));
        assert!(!valid_methods("GET,,POST"));
        assert!(!valid_methods(","));
        assert!(!valid_methods("*"));
        assert!(valid_headers("X-Custom_1, Authorization"));
        assert!(!valid_headers("X-Custom: 1"));
        assert!(!valid_headers("*"));
        assert!(valid_expose("*, X-Total"));
        assert!(!valid_expose("X Total"));
    }
}

//! Request-policy annotations → [`Policy`]: redirects (`permanent-redirect`,
//! `temporal-redirect`, their `-code`s, `app-root`), access lists
//! (`whitelist-source-range` / `allowlist-source-range`, `denylist-source-range`),
//! `proxy-body-size`, the per-Ingress proxy timeouts, `upstream-vhost`,
//! `x-forwarded-prefix`; plus `use-regex` and `rewrite-target`, which the path rules read.
//!
//! `proxy-request-buffering` (`on`/`off`) and `client-body-buffer-size` (a size) override
//! the ConfigMap's request buffering (see `proxy::buffering`). The response-side keys
//! `proxy-buffering` and `proxy-buffer-size` are validated and accepted but do not change
//! behaviour: sluice streams responses (nginx's `proxy-buffering: off`);
//! `proxy-http-version` must be `1.1` (Pingora speaks HTTP/1.1 or 2 upstream; `1.0` warns
//! and 1.1 is used).
//!
//! A bad value warns (`InvalidAnnotation`, naming key and value). Where ignoring it would
//! widen access (a broken allow or deny list), the Ingress's paths answer 403 instead:
//! failing closed is the only safe default. Elsewhere the annotation is ignored.

use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;

use super::super::error::{Error, Result};
use super::super::object::namespace_of;
use super::super::object::raw_annotation;
use super::super::values::{parse_bool, parse_on_off, parse_seconds, parse_size};
use super::super::{ObjKind, Warning};
use crate::routing::template::{Dialect, Template};
use crate::routing::{CidrSet, Policy, Redirect};

/// What the Ingress's path rules need besides the [`Policy`].
#[derive(Debug, Default)]
pub struct PathOptions {
    /// `use-regex: "true"`.
    pub use_regex: bool,
    /// `rewrite-target`.
    pub rewrite_target: Option<Box<str>>,
}

/// Parses the policy annotations of one Ingress.
pub fn parse(ing: &Ingress, warnings: &mut Vec<Warning>) -> (Policy, PathOptions) {
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
    use super::super::object::ANNOTATION_PREFIX as P;
    let mut policy = Policy {
        body_limit: Some(1024 * 1024),
        ..Policy::default()
    };
    let mut paths = PathOptions::default();

    if let Some(v) = get("use-regex") {
        match parse_bool(v) {
            Some(b) => paths.use_regex = b,
            None => warn(format!("{P}use-regex: {v:?} is not true or false; ignored")),
        }
    }
    if let Some(v) = get("rewrite-target").filter(|v| !v.is_empty()) {
        if is_uri_text(v) {
            paths.rewrite_target = Some(v.into());
        } else {
            warn(format!(
                "{P}rewrite-target: {v:?} is not a URI path; ignored"
            ));
        }
    }

    let code =
        |key: &str, default: u16, allowed: &[u16], warn: &mut dyn FnMut(String)| match get(key) {
            None => default,
            Some(v) => match v.parse::<u16>() {
                Ok(c) if allowed.contains(&c) => c,
                _ => {
                    warn(format!(
                        "{P}{key}: {v:?} is not one of {allowed:?}; using {default}"
                    ));
                    default
                }
            },
        };
    // ingress-nginx reads temporal-redirect first: with both set, the temporal one wins.
    let (key, default_code) = match get("temporal-redirect").filter(|v| !v.is_empty()) {
        Some(_) => ("temporal-redirect", 302),
        None => ("permanent-redirect", 301),
    };
    if let Some(v) = get(key).filter(|v| !v.is_empty()) {
        let c = code(
            &format!("{key}-code"),
            default_code,
            &[301, 302, 303, 307, 308],
            &mut warn,
        );
        match redirect_target(v) {
            Ok(l) => {
                policy.redirect = Some(Redirect {
                    location: l,
                    code: c,
                })
            }
            Err(e) => warn(format!("{P}{key}: {e}; ignored")),
        }
    }
    if let Some(v) = get("app-root").filter(|v| !v.is_empty()) {
        // nginx interpolates variables in the target (`/login$is_args$args`).
        let parsed = (v.starts_with('/') && v.len() > 1 && is_uri_text(v))
            .then(|| Template::parse_in(v, Dialect::Url));
        if let Some(Ok(t)) = parsed {
            policy.app_root = Some(t);
        } else if let Some(Err(e)) = parsed {
            warn(format!("{P}app-root: {v:?}: {e}; ignored"));
        } else {
            warn(format!(
                "{P}app-root: {v:?} is not an absolute path other than /; ignored"
            ));
        }
    }

    // Access lists: broken means closed (403), never open.
    let allow = get("allowlist-source-range").or_else(|| get("whitelist-source-range"));
    if let Some(v) = allow {
        match CidrSet::parse(v) {
            Ok(s) => policy.allow = Some(s),
            Err(e) => {
                warn(format!("{P}allowlist-source-range: {e}; every client is refused (403) until it is fixed"));
                policy.allow = Some(CidrSet::default());
            }
        }
    }
    if let Some(v) = get("denylist-source-range") {
        match CidrSet::parse(v) {
            Ok(s) => policy.deny = Some(s),
            Err(e) => {
                warn(format!("{P}denylist-source-range: {e}; every client is refused (403) until it is fixed"));
                policy.allow = Some(CidrSet::default());
            }
        }
    }

    if let Some(v) = get("proxy-body-size") {
        match parse_size(v) {
            Some(0) => policy.body_limit = None,
            Some(n) => policy.body_limit = Some(n),
            None => warn(format!(
                "{P}proxy-body-size: {v:?} is not a size (e.g. 8m, 512k, 0); using 1m"
            )),
        }
    }
    let mut secs = |key: &str, slot: &mut Option<Duration>| {
        if let Some(v) = get(key) {
            match parse_seconds(v) {
                Some(d) => *slot = Some(d),
                None => warn(format!(
                    "{P}{key}: {v:?} is not a number of seconds; using the ConfigMap value"
                )),
            }
        }
    };
    secs("proxy-connect-timeout", &mut policy.connect_timeout);
    secs("proxy-read-timeout", &mut policy.read_timeout);
    secs("proxy-send-timeout", &mut policy.send_timeout);

    if let Some(v) = get("upstream-vhost").filter(|v| !v.is_empty()) {
        if http::HeaderValue::from_str(v).is_ok() && !v.contains(|c: char| c.is_whitespace()) {
            policy.upstream_vhost = Some(v.into());
        } else {
            warn(format!(
                "{P}upstream-vhost: {v:?} is not a host name; ignored"
            ));
        }
    }
    if let Some(v) = get("x-forwarded-prefix").filter(|v| !v.is_empty()) {
        if http::HeaderValue::from_str(v).is_ok() {
            policy.x_forwarded_prefix = Some(v.into());
        } else {
            warn(format!(
                "{P}x-forwarded-prefix: {v:?} is not a valid header value; ignored"
            ));
        }
    }
    // Request bodies (hardening, issue 11).
    if let Some(v) = get("proxy-request-buffering") {
        match parse_on_off(v) {
            Some(b) => policy.request_buffering = Some(b),
            None => warn(format!(
                "{P}proxy-request-buffering: {v:?} is not on or off; using the ConfigMap value"
            )),
        }
    }
    if let Some(v) = get("client-body-buffer-size") {
        match parse_size(v) {
            Some(n) => policy.client_body_buffer_size = Some(n),
            None => warn(format!(
                "{P}client-body-buffer-size: {v:?} is not a size; using the ConfigMap value"
            )),
        }
    }
    // Accepted for compatibility (see the module doc); bad values still warn.
    if let Some(v) = get("proxy-buffering") {
        if parse_on_off(v).is_none() {
            warn(format!(
                "{P}proxy-buffering: {v:?} is not on or off; ignored"
            ));
        }
    }
    if let Some(v) = get("proxy-buffer-size") {
        if parse_size(v).is_none() {
            warn(format!(
                "{P}proxy-buffer-size: {v:?} is not a size; ignored"
            ));
        }
    }
    if let Some(v) = get("proxy-http-version") {
        if v != "1.1" {
            warn(format!(
                "{P}proxy-http-version: {v:?}: sluice speaks HTTP/1.1 to backends; using 1.1"
            ));
        }
    }
    (policy, paths)
}

/// Visible ASCII without spaces, quotes or control characters: safe in a URI and in a
/// `Location` header.
fn is_uri_text(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'\\' | b'`'))
}

/// A redirect target: an absolute `http(s)://` URL or an absolute path.
fn redirect_target(v: &str) -> Result<Box<str>> {
    if !is_uri_text(v) {
        return Err(Error::InvalidValue(format!("{v:?} is not a URL")));
    }
    if v.starts_with('/') || v.starts_with("http://") || v.starts_with("https://") {
        Ok(v.into())
    } else {
        Err(Error::InvalidValue(format!(
            "{v:?} is not an http(s) URL or an absolute path"
        )))
    }
}

//! Authentication annotations → the auth fields of [`Policy`]: `auth-type: basic` with
//! `auth-secret`, `auth-secret-type` and `auth-realm`; `auth-url` with `auth-method`,
//! `auth-signin`, `auth-signin-redirect-param`, `auth-response-headers`,
//! `auth-request-redirect` and `auth-always-set-cookie`.
//!
//! Authentication must never fail open. Whenever the annotations ask for it and it cannot
//! be honoured, the Ingress's paths answer 503 with a warning (ingress-nginx denies such
//! locations with 503 too): a missing or unreadable Secret (named in the warning, reason
//! `InvalidAuthSecret`), a Secret without the `auth` key, an `auth-type` other than
//! `basic` (`digest` included: sluice does not implement it), an unknown
//! `auth-secret-type`, an unparsable `auth-url`, `auth-method`, `auth-signin` or
//! `auth-response-headers`. sluice is stricter than ingress-nginx in one case:
//! `auth-secret` without `auth-type` is also 503 (ingress-nginx silently serves the paths
//! unauthenticated). Where the safe default is obvious the annotation alone is dropped
//! with a warning: a bad `auth-realm` (the empty realm is used), `auth-request-redirect`
//! (the default `$request_uri`), `auth-always-set-cookie` (off).
//!
//! The Secret: a bare name is in the Ingress's namespace; `ns/name` names another one,
//! as ingress-nginx allowed until `allow-cross-namespace-resources` became false by
//! default. `stringData` is read as well as `data` (standalone manifests are not
//! normalised by an API server). With `auth-file` (the default) the key `auth` holds an
//! htpasswd file (`user:hash` lines, `#` comments, the first line of a user wins); with
//! `auth-map` every key is a user and its value the hash. Entries whose hash sluice
//! cannot use are dropped with one warning naming the users (never the hashes); a Secret
//! left with no usable entry still enforces authentication: every request gets 401.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;

use super::super::error::{Error, Result};
use super::super::object::namespace_of;
use super::super::object::raw_annotation;
use super::super::values::parse_bool;
use super::super::{ObjKind, Warning};
use crate::routing::auth::{signin_with_redirect, BasicAuth, ExternalAuth, PasswordHash};
use crate::routing::template::{Dialect, Template};
use crate::routing::Policy;

use super::super::object::ANNOTATION_PREFIX as P;

/// The methods ingress-nginx accepts for `auth-method`.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// Parses the authentication annotations of one Ingress into `policy`.
pub fn parse(
    ing: &Ingress,
    secrets: &HashMap<(&str, &str), &Secret>,
    policy: &mut Policy,
    warnings: &mut Vec<Warning>,
) {
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let mut warn = |reason: &'static str, msg: String| {
        warnings.push(Warning::new(ObjKind::Ingress, ns, name, reason, msg));
    };
    let mut broken: Vec<String> = Vec::new();

    match basic(ing, ns, secrets, &mut warn) {
        Ok(b) => policy.basic_auth = b,
        Err(why) => broken.push(why.to_string()),
    }
    match external(ing, &mut warn) {
        Ok(e) => policy.external_auth = e,
        Err(why) => broken.push(why.to_string()),
    }
    if !broken.is_empty() {
        policy.denied = Some(broken.join("; ").into());
    }
}

type Warn<'a> = dyn FnMut(&'static str, String) + 'a;

/// `auth-type: basic`. `Err` = the paths must answer 503 (already warned).
fn basic(
    ing: &Ingress,
    ns: &str,
    secrets: &HashMap<(&str, &str), &Secret>,
    warn: &mut Warn<'_>,
) -> Result<Option<BasicAuth>> {
    let get = |key: &str| raw_annotation(ing, key).map(str::trim);
    let secret_ref = get("auth-secret").filter(|s| !s.is_empty());
    let mut deny = |reason: &'static str, why: String| {
        let why = format!("{why}; its paths answer 503 until it is fixed");
        warn(reason, why.clone());
        Err(Error::Denied(why))
    };
    match get("auth-type") {
        None if secret_ref.is_some() => {
            return deny(
                "InvalidAnnotation",
                format!("{P}auth-secret is set without {P}auth-type (ingress-nginx would serve the paths unauthenticated)"),
            )
        }
        None => return Ok(None),
        Some(t) if t.eq_ignore_ascii_case("basic") => {}
        Some(t) => {
            return deny(
                "InvalidAnnotation",
                format!("{P}auth-type: {t:?} is not supported (only basic)"),
            )
        }
    }
    let Some(secret_ref) = secret_ref else {
        return deny(
            "InvalidAnnotation",
            format!("{P}auth-type: basic needs {P}auth-secret"),
        );
    };
    let (sns, sname) = secret_ref.split_once('/').unwrap_or((ns, secret_ref));
    if sns.is_empty() || sname.is_empty() || sname.contains('/') {
        return deny(
            "InvalidAnnotation",
            format!("{P}auth-secret: {secret_ref:?} is not a Secret name or namespace/name"),
        );
    }
    let map_type = match get("auth-secret-type") {
        None | Some("") | Some("auth-file") => false,
        Some("auth-map") => true,
        Some(t) => {
            return deny(
                "InvalidAnnotation",
                format!("{P}auth-secret-type: {t:?} is not auth-file or auth-map"),
            )
        }
    };
    let Some(secret) = secrets.get(&(sns, sname)) else {
        return deny(
            "InvalidAuthSecret",
            format!("{P}auth-secret: Secret {sns}/{sname} not found"),
        );
    };
    let data = secret_data(secret);
    let mut entries: Vec<(String, String)> = Vec::new();
    if map_type {
        for (user, value) in &data {
            match std::str::from_utf8(value) {
                Ok(v) => entries.push((user.clone(), v.trim_end().to_string())),
                Err(_) => entries.push((user.clone(), String::new())),
            }
        }
        entries.sort();
    } else {
        let Some(file) = data.get("auth") else {
            return deny(
                "InvalidAuthSecret",
                format!("Secret {sns}/{sname} has no key auth (the htpasswd file {P}auth-secret-type: auth-file reads)"),
            );
        };
        let Ok(file) = std::str::from_utf8(file) else {
            return deny(
                "InvalidAuthSecret",
                format!("Secret {sns}/{sname}: key auth is not text"),
            );
        };
        for line in file.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, rest) = line.split_once(':').unwrap_or((line, ""));
            // nginx ends the hash at the next ':' (htpasswd comments may follow).
            let hash = rest.split(':').next().unwrap_or("");
            entries.push((user.to_string(), hash.to_string()));
        }
    }

    let mut users = HashMap::new();
    let mut dropped: Vec<String> = Vec::new();
    for (user, hash) in entries {
        if user.is_empty() {
            dropped.push("(an entry without a user name)".into());
            continue;
        }
        if users.contains_key(user.as_str()) {
            continue;
        }
        match PasswordHash::parse(&hash) {
            Ok(h) => {
                users.insert(user.into_boxed_str(), h);
            }
            Err(e) => dropped.push(format!("{user}: {e}")),
        }
    }
    if !dropped.is_empty() {
        warn(
            "InvalidAuthSecret",
            format!(
                "Secret {sns}/{sname}: entries ignored (these users cannot log in): {}",
                dropped.join("; ")
            ),
        );
    }
    if users.is_empty() {
        warn(
            "InvalidAuthSecret",
            format!("Secret {sns}/{sname} holds no usable user; every request to the Ingress's paths gets 401"),
        );
    }
    let realm = match get("auth-realm") {
        None => "",
        Some(r) if r.chars().all(|c| !c.is_control() && c != '"' && c != '\\') => r,
        Some(r) => {
            warn(
                "InvalidAnnotation",
                format!("{P}auth-realm: {r:?} contains quotes, backslashes or control characters; using the empty realm"),
            );
            ""
        }
    };
    Ok(Some(BasicAuth {
        realm: realm.into(),
        secret: format!("{sns}/{sname}").into(),
        users,
    }))
}

/// A Secret's values: `data`, overridden by `stringData` as the API server would.
fn secret_data(secret: &Secret) -> HashMap<String, Vec<u8>> {
    let mut out: HashMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// `auth-url` and companions. `Err` = the paths must answer 503 (already warned).
fn external(ing: &Ingress, warn: &mut Warn<'_>) -> Result<Option<ExternalAuth>> {
    let get = |key: &str| raw_annotation(ing, key).map(str::trim);
    let companions = [
        "auth-method",
        "auth-signin",
        "auth-signin-redirect-param",
        "auth-response-headers",
        "auth-request-redirect",
        "auth-always-set-cookie",
    ];
    let Some(url) = get("auth-url").filter(|u| !u.is_empty()) else {
        let set: Vec<String> = companions
            .iter()
            .filter(|k| get(k).is_some())
            .map(|k| format!("{P}{k}"))
            .collect();
        if !set.is_empty() {
            warn(
                "InvalidAnnotation",
                format!("{} ignored: {P}auth-url is not set", set.join(", ")),
            );
        }
        return Ok(None);
    };
    let mut deny = |why: String| {
        let why = format!("{why}; its paths answer 503 until it is fixed");
        warn("InvalidAnnotation", why.clone());
        Err(Error::Denied(why))
    };
    let url_t = match http_url(url) {
        Ok(t) => t,
        Err(e) => return deny(format!("{P}auth-url: {url:?} {e}")),
    };
    let method = match get("auth-method").filter(|m| !m.is_empty()) {
        None => http::Method::GET,
        Some(m) if METHODS.contains(&m) => m.parse().unwrap_or(http::Method::GET),
        Some(m) => {
            return deny(format!(
                "{P}auth-method: {m:?} is not one of {}",
                METHODS.join(", ")
            ))
        }
    };
    let param = match get("auth-signin-redirect-param").filter(|p| !p.is_empty()) {
        None => "rd",
        Some(p)
            if p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            p
        }
        Some(p) => {
            return deny(format!(
                "{P}auth-signin-redirect-param: {p:?} is not a query parameter name"
            ))
        }
    };
    let signin = match get("auth-signin").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let ok = s.starts_with('/') || http_url(s).is_ok();
            match Template::parse_in(&signin_with_redirect(s, param), Dialect::Url) {
                Ok(t) if ok && is_uri_text(s) => Some(t),
                Ok(_) => {
                    return deny(format!(
                        "{P}auth-signin: {s:?} is not an http(s) URL or an absolute path"
                    ))
                }
                Err(e) => return deny(format!("{P}auth-signin: {s:?}: {e}")),
            }
        }
    };
    let mut response_headers = Vec::new();
    if let Some(list) = get("auth-response-headers") {
        for h in list.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let valid = h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) if valid => response_headers.push(n),
                _ => {
                    return deny(format!(
                        "{P}auth-response-headers: {h:?} is not a header name"
                    ))
                }
            }
        }
    }
    let request_redirect = match get("auth-request-redirect").filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => match Template::parse_in(r, Dialect::Url) {
            Ok(t) if is_uri_text(r) => Some(t),
            _ => {
                warn(
                    "InvalidAnnotation",
                    format!("{P}auth-request-redirect: {r:?} is not a URL; sending $request_uri"),
                );
                None
            }
        },
    };
    let always_set_cookie = match get("auth-always-set-cookie") {
        None => false,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            warn(
                "InvalidAnnotation",
                format!("{P}auth-always-set-cookie: {v:?} is not true or false; using false"),
            );
            false
        }),
    };
    Ok(Some(ExternalAuth {
        url: url_t,
        method,
        signin,
        response_headers,
        request_redirect,
        always_set_cookie,
    }))
}

/// An `http://` or `https://` URL with a host, possibly holding nginx variables.
fn http_url(url: &str) -> Result<Template> {
    if !is_uri_text(url) {
        return Err(Error::InvalidValue(
            "contains spaces, quotes or control characters".into(),
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| Error::InvalidValue("is not an http:// or https:// URL".into()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(Error::InvalidValue("has no host".into()));
    }
    let t =
        Template::parse_in(url, Dialect::Url).map_err(|e| Error::InvalidValue(e.to_string()))?;
    // A literal URL must be one hyper can send to.
    if !url.contains('$') {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Error::InvalidValue(format!("is not a URL: {e}")))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(Error::InvalidValue("has no host".into()));
        }
    }
    Ok(t)
}

/// Visible ASCII without quotes, angle brackets, backslashes or backquotes.
fn is_uri_text(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'\\' | b'`'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn ingress(annotations: &[(&str, &str)]) -> Ingress {
        let mut ing = Ingress::default();
        ing.metadata.name = Some("web".into());
        ing.metadata.namespace = Some("shop".into());
        ing.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (format!("{P}{k}"), v.to_string()))
                .collect(),
        );
        ing
    }

    fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some(ns.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        );
        s
    }

    fn run(ann: &[(&str, &str)], secrets: &[&Secret]) -> (Policy, Vec<Warning>) {
        let map: HashMap<(&str, &str), &Secret> = secrets
            .iter()
            .map(|s| {
                (
                    (
                        s.metadata.namespace.as_deref().unwrap(),
                        s.metadata.name.as_deref().unwrap(),
                    ),
                    *s,
                )
            })
            .collect();
        let mut policy = Policy::default();
        let mut w = Vec::new();
        parse(&ingress(ann), &map, &mut policy, &mut w);
        (policy, w)
    }

    #[test]
    fn htpasswd_file_and_map() {
        let file = secret(
            "shop",
            "users",
            &[(
                "auth",
                "# comment\nalice:{PLAIN}a:comment\r\nbob:$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe\nalice:{PLAIN}second\nmallory:garbage\n",
            )],
        );
        let (p, w) = run(
            &[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("auth-realm", "Staff only"),
            ],
            &[&file],
        );
        let b = p.basic_auth.unwrap();
        assert_eq!(&*b.realm, "Staff only");
        assert_eq!(b.challenge(), "Basic realm=\"Staff only\"");
        assert!(b.users["alice"].verify(b"a"), "the first alice wins");
        assert_eq!(b.users.len(), 2);
        assert!(p.denied.is_none());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].message.contains("mallory"), "{w:?}");
        assert!(!w[0].message.contains("garbage"), "never the hash: {w:?}");

        let map = secret(
            "other",
            "m",
            &[("carol", "{PLAIN}c\n"), ("dave", "{PLAIN}d")],
        );
        let (p, w) = run(
            &[
                ("auth-type", "basic"),
                ("auth-secret", "other/m"),
                ("auth-secret-type", "auth-map"),
            ],
            &[&map],
        );
        assert!(w.is_empty(), "{w:?}");
        let b = p.basic_auth.unwrap();
        assert_eq!(&*b.realm, "");
        assert!(b.users["carol"].verify(b"c"));
        assert!(b.users["dave"].verify(b"d"));
    }

    #[test]
    fn fails_closed() {
        let no_key = secret("shop", "nokey", &[("users", "alice:{PLAIN}a")]);
        for ann in [
            vec![("auth-type", "basic"), ("auth-secret", "missing")],
            vec![("auth-type", "basic"), ("auth-secret", "nokey")],
            vec![("auth-type", "basic")],
            vec![("auth-type", "digest"), ("auth-secret", "nokey")],
            vec![("auth-secret", "nokey")],
            vec![
                ("auth-type", "basic"),
                ("auth-secret", "nokey"),
                ("auth-secret-type", "auth-other"),
            ],
            vec![("auth-url", "ftp://auth")],
            vec![("auth-url", "http://auth/$nope")],
            vec![("auth-url", "http://auth/"), ("auth-method", "BREW")],
            vec![
                ("auth-url", "http://auth/"),
                ("auth-response-headers", "X-Ok, X Bad"),
            ],
            vec![
                ("auth-url", "http://auth/"),
                ("auth-signin", "javascript:x"),
            ],
        ] {
            let (p, w) = run(&ann, &[&no_key]);
            assert!(p.denied.is_some(), "{ann:?} must fail closed");
            assert!(!w.is_empty(), "{ann:?} must warn");
        }
        let (p, w) = run(&[("auth-type", "basic"), ("auth-secret", "missing")], &[]);
        assert!(
            w[0].message.contains("Secret shop/missing not found"),
            "{w:?}"
        );
        assert_eq!(w[0].reason, "InvalidAuthSecret");
        assert!(p.denied.is_some());
    }

    #[test]
    fn external_auth() {
        let (p, w) = run(
            &[
                ("auth-url", "https://auth.example/check?h=$host"),
                ("auth-method", "POST"),
                ("auth-signin", "https://login.example/start"),
                ("auth-response-headers", "X-User, X-Email"),
                ("auth-always-set-cookie", "true"),
            ],
            &[],
        );
        assert!(w.is_empty(), "{w:?}");
        let e = p.external_auth.unwrap();
        assert_eq!(e.method, http::Method::POST);
        assert_eq!(e.url.to_string(), "https://auth.example/check?h=${host}");
        assert_eq!(
            e.signin.unwrap().to_string(),
            "https://login.example/start?rd=${scheme}://${http_host}${escaped_request_uri}"
        );
        assert_eq!(e.response_headers, vec!["x-user", "x-email"]);
        assert!(e.always_set_cookie);
        // Companions without auth-url: warned, nothing enforced, nothing broken.
        let (p, w) = run(&[("auth-signin", "https://login.example/")], &[]);
        assert!(p.external_auth.is_none() && p.denied.is_none());
        assert_eq!(w.len(), 1);
    }
}

//! Reading one object: its namespace, its `nginx.ingress.kubernetes.io/*` annotations
//! (the prefix is defined here once), and the checks the API server makes on Ingress
//! hosts, paths and backends. The one home of these helpers for `ingress.rs`, the
//! annotation parsers and `sluice check`; it imports only [`super::values`] and the
//! warning type, so no parser depends on another through it.

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::error::{Error, Result};
use super::values::parse_bool;
use super::{ObjKind, Warning};
use crate::routing::PathKind;

/// The namespace of an object, defaulting to `default` as kubectl does.
pub fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

/// The prefix of ingress-nginx's annotations: the one definition every parser uses.
pub const ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// One `nginx.ingress.kubernetes.io/<key>` annotation parsed with `parse`; a value it
/// rejects keeps `default` and warns, naming the annotation, the value and what `parse`
/// expected (its `Err`).
pub(super) fn annotation<T: std::fmt::Debug + Copy>(
    ing: &Ingress,
    key: &str,
    default: T,
    parse: impl Fn(&str) -> Result<T, &'static str>,
    warnings: &mut Vec<Warning>,
) -> T {
    let full = format!("{ANNOTATION_PREFIX}{key}");
    let Some(raw) = ing.metadata.annotations.as_ref().and_then(|a| a.get(&full)) else {
        return default;
    };
    parse(raw).unwrap_or_else(|expected| {
        warnings.push(Warning::new(
            ObjKind::Ingress,
            namespace_of(&ing.metadata),
            ing.metadata.name.as_deref().unwrap_or(""),
            "InvalidAnnotation",
            format!("{full}: {raw:?} is not {expected}; using {default:?}"),
        ));
        default
    })
}

/// The raw value of `nginx.ingress.kubernetes.io/<key>`, if set.
pub(super) fn raw_annotation<'a>(ing: &'a Ingress, key: &str) -> Option<&'a str> {
    ing.metadata
        .annotations
        .as_ref()?
        .get(&format!("{ANNOTATION_PREFIX}{key}"))
        .map(String::as_str)
}

/// A boolean annotation (`true`/`false`, any case) over `default`; a bad value warns.
pub(super) fn bool_annotation(
    ing: &Ingress,
    key: &str,
    default: bool,
    warnings: &mut Vec<Warning>,
) -> bool {
    let parse = |raw: &str| parse_bool(raw).ok_or("true or false");
    annotation(ing, key, default, parse, warnings)
}

/// The key two rules clash on: Prefix `/foo` and `/foo/` are the same rule.
pub(super) fn canonical(kind: PathKind, path: &str) -> String {
    match kind {
        PathKind::Exact => path.to_string(),
        PathKind::Prefix => path.trim_end_matches('/').to_string(),
    }
}

/// The Service an Ingress backend names; a `resource` backend or an empty one warns.
pub(super) fn service_of<'b>(
    backend: &'b IngressBackend,
    (kind, ns, name): (ObjKind, &str, &str),
    warnings: &mut Vec<Warning>,
) -> Option<&'b k8s_openapi::api::networking::v1::IngressServiceBackend> {
    if let Some(svc) = &backend.service {
        return Some(svc);
    }
    let (reason, message) = if let Some(r) = &backend.resource {
        (
            "ResourceBackendIgnored",
            format!(
                "resource backend {}/{} is not proxied; the path is treated as absent",
                r.kind, r.name
            ),
        )
    } else {
        (
            "InvalidBackend",
            "backend names neither a service nor a resource".to_string(),
        )
    };
    warnings.push(Warning::new(kind, ns, name, reason, message));
    None
}

/// Checks a path as the API server would and resolves its kind.
pub(super) fn validate_path(path_type: &str, path: &str) -> Result<PathKind> {
    let kind = match path_type {
        "Exact" => PathKind::Exact,
        "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
        other => return Err(Error::InvalidPath(format!("unknown pathType {other:?}"))),
    };
    if path.is_empty() {
        return if path_type == "ImplementationSpecific" {
            Ok(kind)
        } else {
            Err(Error::InvalidPath("path is required".into()))
        };
    }
    if !path.starts_with('/') {
        return Err(Error::InvalidPath(
            "path must be absolute (start with /)".into(),
        ));
    }
    if path_type != "ImplementationSpecific" {
        for bad in ["//", "/./", "/../", "%2f", "%2F"] {
            if path.contains(bad) {
                return Err(Error::InvalidPath(format!("path must not contain {bad:?}")));
            }
        }
        if path.ends_with("/..") || path.ends_with("/.") {
            return Err(Error::InvalidPath(
                "path must not end with /. or /..".into(),
            ));
        }
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(Error::InvalidPath(
            "path contains spaces or control characters".into(),
        ));
    }
    Ok(kind)
}

/// A DNS-1123 subdomain, optionally with a single leading `*.` wildcard label.
pub(super) fn validate_host(host: &str) -> Result<()> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err(Error::InvalidHost("not a valid DNS name".into()));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(Error::InvalidHost(format!(
                "label {label:?} is not a valid DNS label (wildcards must be a single leading *.)"
            )));
        }
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(Error::InvalidHost(
            "must be a DNS name, not an IP address".into(),
        ));
    }
    Ok(())
}

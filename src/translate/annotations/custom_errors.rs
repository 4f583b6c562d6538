//! `custom-http-errors`, `default-backend` and `enable-access-log` → [`Policy`].
//!
//! - `custom-http-errors`: a comma list of codes (300–599) whose responses, from the
//!   backend or from sluice itself, are replaced by the error backend's page; it replaces
//!   the ConfigMap's list for this Ingress. Entries that are not codes are skipped with a
//!   warning; a list with no valid code leaves the ConfigMap's in force.
//! - `default-backend`: the name of a Service in the Ingress's namespace (its first port,
//!   as ingress-nginx uses) that serves this Ingress's error pages instead of
//!   `--default-backend-service`. A missing Service warns (`BackendUnavailable`) and the
//!   original responses are kept. Serving requests of a route whose Service has no
//!   endpoints from it (ingress-nginx's other use of the annotation) is not done here.
//! - `enable-access-log: "false"` silences the access log for this Ingress's requests.

use k8s_openapi::api::networking::v1::Ingress;

use super::super::backends::{namespace_of, BackendIndex};
use super::super::configmap::parse_bool;
use super::super::headers::parse_codes;
use super::super::ingress::raw_annotation;
use super::super::{ObjKind, Warning};
use crate::routing::Policy;

const P: &str = "nginx.ingress.kubernetes.io/";

/// Parses the annotations of one Ingress into `policy`.
pub fn parse(
    ing: &Ingress,
    policy: &mut Policy,
    backends: &mut BackendIndex<'_>,
    warnings: &mut Vec<Warning>,
) {
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let warn = |warnings: &mut Vec<Warning>, msg: String| {
        warnings.push(Warning::new(
            ObjKind::Ingress,
            ns,
            name,
            "InvalidAnnotation",
            msg,
        ))
    };
    if let Some(v) = raw_annotation(ing, "custom-http-errors") {
        let (codes, bad) = parse_codes(v);
        if !bad.is_empty() {
            warn(
                warnings,
                format!(
                    "{P}custom-http-errors: skipped {}: not HTTP error codes (300-599)",
                    bad.join(", ")
                ),
            );
        }
        if !codes.is_empty() {
            policy.custom_http_errors = Some(codes.into());
        }
    }
    if let Some(v) = raw_annotation(ing, "default-backend").map(str::trim) {
        if v.is_empty() || v.contains('/') {
            warn(
                warnings,
                format!("{P}default-backend: {v:?} is not the name of a Service in namespace {ns}; ignored"),
            );
        } else {
            let port = backends.first_port(ns, v);
            let backend =
                backends.resolve(ns, v, port.as_ref(), (ObjKind::Ingress, ns, name), warnings);
            policy.default_backend = Some(backend);
        }
    }
    if let Some(v) = raw_annotation(ing, "enable-access-log") {
        match parse_bool(v) {
            Some(b) => policy.access_log = Some(b),
            None => warn(
                warnings,
                format!("{P}enable-access-log: {v:?} is not true or false; ignored"),
            ),
        }
    }
}

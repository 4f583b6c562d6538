//! `custom-http-errors` and `enable-access-log` → [`Policy`]; the error pages also use
//! `default-backend`, which `upstream.rs` parses (one parser for both of its uses).
//!
//! - `custom-http-errors`: a comma list of codes (300–599) whose responses, from the
//!   backend or from sluice itself, are replaced by the error backend's page; it replaces
//!   the ConfigMap's list for this Ingress. Entries that are not codes are skipped with a
//!   warning; a list with no valid code leaves the ConfigMap's in force.
//! - `default-backend` (see `upstream.rs`): when set, it serves this Ingress's error pages
//!   instead of `--default-backend-service`; a missing Service is ignored with a warning.
//! - `enable-access-log: "false"` silences the access log for this Ingress's requests.

use k8s_openapi::api::networking::v1::Ingress;

use super::super::headers::parse_codes;
use super::super::object::namespace_of;
use super::super::object::raw_annotation;
use super::super::values::parse_bool;
use super::super::{ObjKind, Warning};
use crate::routing::Policy;

use super::super::object::ANNOTATION_PREFIX as P;

/// Parses the annotations of one Ingress into `policy`.
pub fn parse(ing: &Ingress, policy: &mut Policy, warnings: &mut Vec<Warning>) {
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
    // `default-backend` itself is parsed by `upstream::default_backend` (one parser for
    // both of its uses: Services without endpoints and the error pages).
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

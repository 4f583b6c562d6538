//! `limit-rps`, `limit-rpm`, `limit-connections`, `limit-burst-multiplier` and
//! `limit-allowlist` (alias `limit-whitelist`) → [`RateLimits`].
//!
//! As in ingress-nginx: `0` (or no annotation) means no limit; `burst` is the rate
//! times the multiplier (default 5); every path of the Ingress shares one set of
//! counters, keyed by client address.
//!
//! Bad values never fail open (ingress-nginx drops every limit of the Ingress when
//! one of them does not parse): a `limit-rps`, `limit-rpm` or `limit-connections`
//! that is not a whole number ≥ 0 makes every request to the Ingress's paths answer
//! `limit-req-status-code` until it is fixed; a bad allowlist exempts nobody; a bad
//! multiplier keeps the default 5. Each warns (`InvalidAnnotation`).

use k8s_openapi::api::networking::v1::Ingress;

use super::super::object::namespace_of;
use super::super::object::raw_annotation;
use super::super::{ObjKind, Warning};
use crate::routing::balance::stable_hash;
use crate::routing::{CidrSet, Rate, RateLimits};

/// ingress-nginx's `limit-burst-multiplier` default.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;

use super::super::object::ANNOTATION_PREFIX as P;

/// Parses the limit annotations of one Ingress (`None`: no limit applies).
pub fn parse(ing: &Ingress, warnings: &mut Vec<Warning>) -> Option<RateLimits> {
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

    let mut broken = false;
    let mut count = |key: &str| {
        match get(key) {
        None => 0,
        Some(v) => v.parse::<u32>().unwrap_or_else(|_| {
            warn(format!(
                "{P}{key}: {v:?} is not a whole number; every request to this Ingress is refused (limit-req-status-code) until it is fixed"
            ));
            broken = true;
            0
        }),
    }
    };
    let rps = count("limit-rps");
    let rpm = count("limit-rpm");
    let connections = count("limit-connections");
    let multiplier = match get("limit-burst-multiplier") {
        None => DEFAULT_BURST_MULTIPLIER,
        Some(v) => v.parse::<u32>().unwrap_or_else(|_| {
            warn(format!(
                "{P}limit-burst-multiplier: {v:?} is not a whole number; using {DEFAULT_BURST_MULTIPLIER}"
            ));
            DEFAULT_BURST_MULTIPLIER
        }),
    };
    let limits = RateLimits {
        zone: stable_hash(format!("{ns}/{name}").as_bytes()),
        rps: (rps > 0).then(|| Rate::per_second(rps, multiplier)),
        rpm: (rpm > 0).then(|| Rate::per_minute(rpm, multiplier)),
        connections,
        exempt: None,
        broken,
    };
    if !limits.is_active() {
        return None;
    }
    let (key, list) = match get("limit-allowlist") {
        Some(v) => ("limit-allowlist", Some(v)),
        None => ("limit-whitelist", get("limit-whitelist")),
    };
    let exempt = list.and_then(|v| match CidrSet::parse(v) {
        Ok(s) => Some(s),
        Err(e) => {
            warn(format!(
                "{P}{key}: {e}; no client is exempt from the limits until it is fixed"
            ));
            None
        }
    });
    Some(RateLimits { exempt, ..limits })
}

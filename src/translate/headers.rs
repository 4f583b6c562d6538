//! ConfigMap keys for forwarded headers, the client address, request ids, extra
//! headers, the access log and custom error pages → [`GlobalSettings`]:
//! `use-forwarded-headers`, `compute-full-forwarded-for`, `forwarded-for-header`,
//! `proxy-real-ip-cidr`, `enable-real-ip`, `use-proxy-protocol`, `generate-request-id`,
//! `proxy-set-headers`, `add-headers`, `enable-access-log`, `log-format-upstream`,
//! `log-format-escape-json`, `log-format-escape-none`, `custom-http-errors`.
//!
//! Choices where ingress-nginx is ambiguous or sluice differs:
//! - A `proxy-real-ip-cidr` that does not parse trusts no peer (ingress-nginx's default
//!   `0.0.0.0/0` would trust every IPv4 peer): a typo must not widen trust.
//! - `proxy-set-headers` / `add-headers` name a ConfigMap as `namespace/name`; a bare name
//!   means the controller ConfigMap's namespace. Each of its keys is a header, each value
//!   text with nginx variables (`$remote_addr`, `$http_*`, ...). A bad header is skipped
//!   with a warning; a missing ConfigMap sets none.
//! - Unknown variables in `log-format-upstream` are logged as `-` (nginx would refuse the
//!   whole configuration); the warning names them.
//! - `custom-http-errors` entries must be codes from 300 to 599; others are skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;

use super::input::config_map_ref;
use super::object::namespace_of;
use super::values::parse_bool;
use super::{ObjKind, Warning};
use crate::config::ObjectRef;
use crate::routing::{CidrSet, GlobalSettings, HeaderTemplate, LogEscape, LogFormat, Template};

/// Reads this family's keys from the controller ConfigMap's `data` into `g`.
pub fn apply(
    g: &mut GlobalSettings,
    data: &BTreeMap<String, String>,
    config_maps: &[Arc<ConfigMap>],
    me: &ObjectRef,
    warnings: &mut Vec<Warning>,
) {
    let mut warn = |msg: String| {
        warnings.push(Warning::new(
            ObjKind::ConfigMap,
            &me.namespace,
            &me.name,
            "InvalidConfigValue",
            msg,
        ))
    };
    let flag = |key: &str, slot: &mut bool, warn: &mut dyn FnMut(String)| {
        if let Some(raw) = data.get(key) {
            match parse_bool(raw) {
                Some(b) => *slot = b,
                None => warn(format!(
                    "{key}: {raw:?} is not true or false; keeping {slot}"
                )),
            }
        }
    };
    flag(
        "use-forwarded-headers",
        &mut g.use_forwarded_headers,
        &mut warn,
    );
    flag(
        "compute-full-forwarded-for",
        &mut g.compute_full_forwarded_for,
        &mut warn,
    );
    flag("enable-real-ip", &mut g.enable_real_ip, &mut warn);
    flag("use-proxy-protocol", &mut g.use_proxy_protocol, &mut warn);
    flag("generate-request-id", &mut g.generate_request_id, &mut warn);
    flag("enable-access-log", &mut g.access_log, &mut warn);

    if let Some(raw) = data.get("forwarded-for-header") {
        match http::HeaderName::from_bytes(raw.trim().as_bytes()) {
            Ok(h) => g.forwarded_for_header = h,
            Err(_) => warn(format!(
                "forwarded-for-header: {raw:?} is not a header name; keeping X-Forwarded-For"
            )),
        }
    }
    if let Some(raw) = data.get("proxy-real-ip-cidr") {
        match CidrSet::parse(raw) {
            Ok(s) => g.proxy_real_ip_cidr = s,
            Err(e) => {
                warn(format!(
                    "proxy-real-ip-cidr: {e}; no peer is trusted about the client address until it is fixed"
                ));
                g.proxy_real_ip_cidr = CidrSet::default();
            }
        }
    }

    for (key, slot) in [
        ("proxy-set-headers", &mut g.proxy_set_headers),
        ("add-headers", &mut g.add_headers),
    ] {
        let Some(raw) = data.get(key).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let Some(target) = config_map_ref(raw, &me.namespace) else {
            warn(format!(
                "{key}: {raw:?} is not namespace/name of a ConfigMap; ignored"
            ));
            continue;
        };
        let Some(cm) = config_maps.iter().find(|c| {
            namespace_of(&c.metadata) == target.namespace
                && c.metadata.name.as_deref() == Some(&target.name)
        }) else {
            warn(format!(
                "{key}: ConfigMap {target} not found; no headers set until it exists"
            ));
            continue;
        };
        let mut headers = Vec::new();
        for (name, value) in cm.data.iter().flatten() {
            match HeaderTemplate::parse(name, value) {
                Ok(h) => {
                    let unknown = h.value.unknown();
                    if !unknown.is_empty() {
                        warn(format!(
                            "{key}: header {name} in ConfigMap {target} uses variables sluice does not know (${}); they are left empty",
                            unknown.join(", $")
                        ));
                    }
                    headers.push(h);
                }
                Err(e) => warn(format!(
                    "{key}: ConfigMap {target}: {e}; that header is skipped"
                )),
            }
        }
        *slot = headers.into();
    }

    let mut json = false;
    let mut none = false;
    flag("log-format-escape-json", &mut json, &mut warn);
    flag("log-format-escape-none", &mut none, &mut warn);
    let escape = if json {
        LogEscape::Json
    } else if none {
        LogEscape::None
    } else {
        LogEscape::Default
    };
    let template = match data.get("log-format-upstream").map(|v| v.trim()) {
        Some(v) if !v.is_empty() => {
            let t = Template::parse(v);
            let unknown = t.unknown();
            if !unknown.is_empty() {
                warn(format!(
                    "log-format-upstream: sluice does not know ${}; logged as -",
                    unknown.join(", $")
                ));
            }
            t
        }
        _ => LogFormat::default().template,
    };
    g.log_format = Arc::new(LogFormat { template, escape });

    if let Some(raw) = data.get("custom-http-errors") {
        let (codes, bad) = parse_codes(raw);
        if !bad.is_empty() {
            warn(format!(
                "custom-http-errors: skipped {}: not HTTP error codes (300-599)",
                bad.join(", ")
            ));
        }
        g.custom_http_errors = codes.into();
    }
}

/// A comma-separated list of status codes (300–599): the sorted, de-duplicated codes
/// and the entries that are not codes.
pub fn parse_codes(raw: &str) -> (Vec<u16>, Vec<String>) {
    let mut codes = Vec::new();
    let mut bad = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<u16>() {
            Ok(c) if (300..=599).contains(&c) => codes.push(c),
            _ => bad.push(format!("{item:?}")),
        }
    }
    codes.sort_unstable();
    codes.dedup();
    (codes, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            parse_codes("503, 404,404 ,x,200,600"),
            (
                vec![404, 503],
                vec!["\"x\"".into(), "\"200\"".into(), "\"600\"".into()]
            )
        );
    }

    #[test]
    fn broken_trust_list_trusts_nobody() {
        let cm: ConfigMap = serde_yaml_ng::from_str(
            "metadata: {name: c, namespace: ingress}\ndata: {proxy-real-ip-cidr: '10.0.0.0/8, nope', use-forwarded-headers: 'true'}",
        )
        .unwrap();
        let me: ObjectRef = "ingress/c".parse().unwrap();
        let mut warnings = Vec::new();
        let g = super::super::configmap::globals(&[Arc::new(cm)], Some(&me), &mut warnings);
        assert!(g.use_forwarded_headers);
        assert!(g.proxy_real_ip_cidr.nets.is_empty());
        assert!(!g.proxy_real_ip_cidr.contains("10.1.1.1".parse().unwrap()));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("no peer is trusted"));
    }
}

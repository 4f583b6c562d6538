//! The controller ConfigMap (`--configmap ns/name`, ingress-nginx's key names) →
//! [`GlobalSettings`]: upstream timeouts, redirects, HSTS and `worker-shutdown-timeout`. A value that does not parse keeps the default and warns, naming
//! the key and the value. Keys sluice does not implement yet are left for the
//! annotation/ConfigMap work to report.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;

use super::object::namespace_of;
use super::values::{parse_bool, parse_nginx_time, parse_seconds};
use super::{ObjKind, Warning};
use crate::config::ObjectRef;
use crate::routing::GlobalSettings;

/// Reads the settings from the named ConfigMap, if present in the snapshot.
pub fn globals(
    config_maps: &[std::sync::Arc<ConfigMap>],
    name: Option<&ObjectRef>,
    warnings: &mut Vec<Warning>,
) -> GlobalSettings {
    let mut g = GlobalSettings::default();
    let Some(name) = name else { return g };
    let Some(cm) = config_maps.iter().find(|c| {
        namespace_of(&c.metadata) == name.namespace
            && c.metadata.name.as_deref() == Some(&name.name)
    }) else {
        return g;
    };
    let empty = BTreeMap::new();
    let data = cm.data.as_ref().unwrap_or(&empty);
    let mut seconds = |key: &str, slot: &mut Duration| {
        let Some(raw) = data.get(key) else { return };
        match parse_seconds(raw) {
            Some(d) => *slot = d,
            None => warnings.push(Warning::new(
                ObjKind::ConfigMap,
                &name.namespace,
                &name.name,
                "InvalidConfigValue",
                format!(
                    "{key}: {raw:?} is not a number of seconds; keeping {}s",
                    slot.as_secs()
                ),
            )),
        }
    };
    seconds("proxy-connect-timeout", &mut g.connect_timeout);
    seconds("proxy-read-timeout", &mut g.read_timeout);
    seconds("proxy-send-timeout", &mut g.send_timeout);
    seconds(
        "upstream-keepalive-timeout",
        &mut g.upstream_keepalive_timeout,
    );
    let mut invalid = |key: &str, raw: &str, keeping: String| {
        warnings.push(Warning::new(
            ObjKind::ConfigMap,
            &name.namespace,
            &name.name,
            "InvalidConfigValue",
            format!("{key}: {raw:?} is not valid; keeping {keeping}"),
        ))
    };
    let flag = |key: &str, default: bool, invalid: &mut dyn FnMut(&str, &str, String)| match data
        .get(key)
    {
        None => default,
        Some(raw) => parse_bool(raw).unwrap_or_else(|| {
            invalid(key, raw, default.to_string());
            default
        }),
    };
    g.ssl_redirect = flag("ssl-redirect", g.ssl_redirect, &mut invalid);
    if let Some(raw) = data.get("http-redirect-code") {
        match raw.trim().parse::<u16>() {
            Ok(c @ (301 | 302 | 307 | 308)) => g.http_redirect_code = c,
            _ => invalid("http-redirect-code", raw, g.http_redirect_code.to_string()),
        }
    }
    use super::values::{parse_load_balance, parse_next_upstream, parse_timeout};
    if let Some(raw) = data.get("load-balance") {
        match parse_load_balance(raw) {
            Some(p) => g.load_balance = p,
            None => invalid("load-balance", raw, "round_robin".into()),
        }
    }
    if let Some(raw) = data.get("proxy-next-upstream") {
        match parse_next_upstream(raw, g.next_upstream) {
            Ok((n, _)) => g.next_upstream = n,
            Err(_) => invalid("proxy-next-upstream", raw, "error timeout".into()),
        }
    }
    if let Some(raw) = data.get("proxy-next-upstream-tries") {
        match raw.trim().parse::<u32>() {
            Ok(n) => g.next_upstream.tries = n,
            Err(_) => invalid("proxy-next-upstream-tries", raw, "3".into()),
        }
    }
    if let Some(raw) = data.get("proxy-next-upstream-timeout") {
        match parse_timeout(raw) {
            Some(t) => g.next_upstream.timeout = t,
            None => invalid("proxy-next-upstream-timeout", raw, "0".into()),
        }
    }
    if let Some(raw) = data.get("upstream-keepalive-connections") {
        match raw.trim().parse::<usize>() {
            Ok(n) if n <= 100_000 => g.upstream_keepalive_connections = n,
            _ => invalid("upstream-keepalive-connections", raw, "320".into()),
        }
    }
    // nginx's limit_req_status / limit_conn_status take 400-599.
    let mut status = |key: &str, slot: &mut u16| {
        if let Some(raw) = data.get(key) {
            match raw.trim().parse::<u16>() {
                Ok(c @ 400..=599) => *slot = c,
                _ => invalid(key, raw, slot.to_string()),
            }
        }
    };
    status("limit-req-status-code", &mut g.limit_req_status);
    status("limit-conn-status-code", &mut g.limit_conn_status);
    let hsts = flag("hsts", true, &mut invalid);
    let include_subdomains = flag("hsts-include-subdomains", true, &mut invalid);
    let preload = flag("hsts-preload", false, &mut invalid);
    let mut max_age = 31_536_000u64;
    if let Some(raw) = data.get("hsts-max-age") {
        match raw.trim().parse::<u64>() {
            Ok(v) => max_age = v,
            Err(_) => invalid("hsts-max-age", raw, max_age.to_string()),
        }
    }
    if let Some(raw) = data.get("worker-shutdown-timeout") {
        match parse_nginx_time(raw) {
            Some(d) => g.worker_shutdown_timeout = d,
            None => invalid(
                "worker-shutdown-timeout",
                raw,
                format!("{}s", g.worker_shutdown_timeout.as_secs()),
            ),
        }
    }
    g.hsts = hsts.then(|| {
        let mut v = format!("max-age={max_age}");
        if include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if preload {
            v.push_str("; preload");
        }
        v.into()
    });
    super::headers::apply(&mut g, data, config_maps, name, warnings);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_time() {
        let s = Duration::from_secs;
        assert_eq!(parse_nginx_time("240s"), Some(s(240)));
        assert_eq!(parse_nginx_time(" 240 "), Some(s(240)));
        assert_eq!(parse_nginx_time("4m"), Some(s(240)));
        assert_eq!(parse_nginx_time("1m30s"), Some(s(90)));
        assert_eq!(parse_nginx_time("1h 30m"), Some(s(5400)));
        assert_eq!(
            parse_nginx_time("1500ms"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_nginx_time("0s"), Some(Duration::ZERO));
        for bad in ["", "s", "-5s", "5x", "5 s s", "2d", "ten"] {
            assert_eq!(parse_nginx_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn worker_shutdown_timeout_from_the_configmap() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let name = ObjectRef {
            namespace: "ingress".into(),
            name: "controller".into(),
        };
        let cm = |v: &str| {
            std::sync::Arc::new(ConfigMap {
                metadata: ObjectMeta {
                    name: Some("controller".into()),
                    namespace: Some("ingress".into()),
                    ..Default::default()
                },
                data: Some([("worker-shutdown-timeout".to_string(), v.to_string())].into()),
                ..Default::default()
            })
        };
        let mut warnings = Vec::new();
        assert_eq!(
            globals(&[], Some(&name), &mut warnings).worker_shutdown_timeout,
            Duration::from_secs(240)
        );
        let g = globals(&[cm("30s")], Some(&name), &mut warnings);
        assert_eq!(g.worker_shutdown_timeout, Duration::from_secs(30));
        assert!(warnings.is_empty(), "{warnings:?}");
        let g = globals(&[cm("soon")], Some(&name), &mut warnings);
        assert_eq!(g.worker_shutdown_timeout, Duration::from_secs(240));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn limit_status_codes() {
        let cm = |data: &[(&str, &str)]| {
            let mut c = ConfigMap::default();
            c.metadata.name = Some("cfg".into());
            c.metadata.namespace = Some("ns".into());
            c.data = Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            std::sync::Arc::new(c)
        };
        let name: ObjectRef = "ns/cfg".parse().unwrap();
        let mut warnings = Vec::new();
        let g = globals(&[cm(&[])], Some(&name), &mut warnings);
        assert_eq!((g.limit_req_status, g.limit_conn_status), (503, 503));
        let set = [
            ("limit-req-status-code", "429"),
            ("limit-conn-status-code", "420"),
        ];
        let g = globals(&[cm(&set)], Some(&name), &mut warnings);
        assert_eq!((g.limit_req_status, g.limit_conn_status), (429, 420));
        assert!(warnings.is_empty());
        let bad = [
            ("limit-req-status-code", "200"),
            ("limit-conn-status-code", "busy"),
        ];
        let g = globals(&[cm(&bad)], Some(&name), &mut warnings);
        assert_eq!((g.limit_req_status, g.limit_conn_status), (503, 503));
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_seconds(" 60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_seconds("0"), None);
        assert_eq!(parse_seconds("soon"), None);
    }
}

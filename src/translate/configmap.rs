//! The controller ConfigMap (`--configmap ns/name`, ingress-nginx's key names) →
//! [`GlobalSettings`]: upstream timeouts, redirects, HSTS, `worker-shutdown-timeout`,
//! request buffering, `client-body-timeout` and `max-worker-connections`. A value that does not parse keeps the default and warns, naming
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
            Ok(n) => g.next_upstream = n,
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
    // Request bodies and connection caps (hardening, issue 11).
    let mut invalid = |key: &str, raw: &str, keeping: String| {
        warnings.push(Warning::new(
            ObjKind::ConfigMap,
            &name.namespace,
            &name.name,
            "InvalidConfigValue",
            format!("{key}: {raw:?} is not valid; keeping {keeping}"),
        ))
    };
    framing_limits(&mut g, data, &mut invalid);
    tls_sessions(&mut g, data, &mut invalid);
    // HTTP/2 limits (hardening, issue 11).
    http2_limits(&mut g, data, &mut invalid);
    use super::values::{parse_on_off, parse_size};
    if let Some(raw) = data.get("proxy-request-buffering") {
        match parse_on_off(raw) {
            Some(b) => g.request_buffering = b,
            None => invalid("proxy-request-buffering", raw, "on".into()),
        }
    }
    if let Some(raw) = data.get("client-body-buffer-size") {
        match parse_size(raw) {
            Some(n) => g.client_body_buffer_size = n,
            None => invalid("client-body-buffer-size", raw, "8k".into()),
        }
    }
    if let Some(raw) = data.get("client-body-timeout") {
        match parse_seconds(raw) {
            Some(d) => g.client_body_timeout = d,
            None => invalid("client-body-timeout", raw, "60".into()),
        }
    }
    if let Some(raw) = data.get("max-worker-connections") {
        match raw.trim().parse::<usize>() {
            Ok(n) => g.max_worker_connections = n,
            Err(_) => invalid("max-worker-connections", raw, "16384".into()),
        }
    }
    g
}

/// Request framing and client limits (hardening): `client-header-timeout`,
/// `client-header-buffer-size`, `large-client-header-buffers`, `keep-alive`,
/// `keep-alive-requests`, with nginx's value syntax.
fn framing_limits(
    g: &mut GlobalSettings,
    data: &BTreeMap<String, String>,
    invalid: &mut dyn FnMut(&str, &str, String),
) {
    if let Some(raw) = data.get("client-header-timeout") {
        match parse_nginx_time(raw).filter(|d| !d.is_zero()) {
            Some(d) => g.client_header_timeout = d,
            None => invalid("client-header-timeout", raw, "60s".into()),
        }
    }
    if let Some(raw) = data.get("keep-alive") {
        match parse_nginx_time(raw) {
            Some(d) => g.keep_alive = d,
            None => invalid("keep-alive", raw, "75s".into()),
        }
    }
    if let Some(raw) = data.get("keep-alive-requests") {
        match raw.trim().parse::<u32>() {
            Ok(n) if n > 0 => g.keep_alive_requests = n,
            _ => invalid("keep-alive-requests", raw, "1000".into()),
        }
    }
    if let Some(raw) = data.get("client-header-buffer-size") {
        match parse_nginx_size(raw).filter(|n| (64..=1 << 20).contains(n)) {
            Some(n) => g.client_header_buffer_size = n,
            None => invalid("client-header-buffer-size", raw, "1k".into()),
        }
    }
    if let Some(raw) = data.get("large-client-header-buffers") {
        let mut it = raw.split_whitespace();
        let parsed = match (it.next(), it.next(), it.next()) {
            (Some(n), Some(size), None) => n
                .parse::<usize>()
                .ok()
                .zip(parse_nginx_size(size))
                .filter(|&(n, size)| n > 0 && size >= 128 && n * size <= 1 << 20),
            _ => None,
        };
        match parsed {
            Some(v) => g.large_client_header_buffers = v,
            None => invalid("large-client-header-buffers", raw, "4 8k".into()),
        }
    }
}

/// TLS session resumption (`proxy::tls`): `ssl-session-cache`, `ssl-session-timeout`,
/// `ssl-session-tickets`, applied live.
fn tls_sessions(
    g: &mut GlobalSettings,
    data: &BTreeMap<String, String>,
    invalid: &mut dyn FnMut(&str, &str, String),
) {
    for (key, slot) in [
        ("ssl-session-cache", &mut g.ssl_session_cache),
        ("ssl-session-tickets", &mut g.ssl_session_tickets),
    ] {
        if let Some(raw) = data.get(key) {
            match parse_bool(raw) {
                Some(b) => *slot = b,
                None => invalid(key, raw, slot.to_string()),
            }
        }
    }
    if let Some(raw) = data.get("ssl-session-timeout") {
        match parse_nginx_time(raw).filter(|d| !d.is_zero()) {
            Some(d) => g.ssl_session_timeout = d,
            None => invalid("ssl-session-timeout", raw, "10m".into()),
        }
    }
}

/// An nginx size: bytes, or with `k`/`m` (either case).
pub fn parse_nginx_size(raw: &str) -> Option<usize> {
    let v = raw.trim();
    let (digits, unit) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1024),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        _ => (v, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// `http2-max-concurrent-streams`, `http2-max-header-size`, `http2-max-field-size`
/// (nginx sizes), and `keep-alive` as the h2 idle timeout.
/// An empty value (ingress-nginx's default for the two deprecated size keys) keeps
/// the default.
fn http2_limits(
    g: &mut GlobalSettings,
    data: &BTreeMap<String, String>,
    invalid: &mut dyn FnMut(&str, &str, String),
) {
    use super::values::parse_size;
    let set = |key: &str| data.get(key).filter(|v| !v.trim().is_empty());
    if let Some(raw) = set("http2-max-concurrent-streams") {
        match raw.trim().parse::<u32>() {
            Ok(n @ 1..) => g.http2_max_concurrent_streams = n,
            _ => invalid("http2-max-concurrent-streams", raw, "128".into()),
        }
    }
    // At least 1k: h2spec's and browsers' ordinary requests must fit; at most 16m.
    for (key, slot) in [
        ("http2-max-header-size", &mut g.http2_max_header_size),
        ("http2-max-field-size", &mut g.http2_max_field_size),
    ] {
        if let Some(raw) = set(key) {
            match parse_size(raw) {
                Some(n @ 1024..=16_777_216) => *slot = n as u32,
                _ => invalid(key, raw, slot.to_string()),
            }
        }
    }
    // `keep-alive` is parsed once (framing_limits, which runs first); nginx applies it
    // to h2 connections without open streams too. Zero (no HTTP/1 keep-alive) keeps
    // the default rather than closing h2 connections between streams at once.
    if !g.keep_alive.is_zero() {
        g.http2_idle_timeout = g.keep_alive;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The globals of ConfigMap `ns/cfg` holding `data`; warnings are appended.
    fn mk_globals(data: &[(&str, &str)], warnings: &mut Vec<Warning>) -> GlobalSettings {
        let mut c = ConfigMap::default();
        c.metadata.name = Some("cfg".into());
        c.metadata.namespace = Some("ns".into());
        c.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let name: ObjectRef = "ns/cfg".parse().unwrap();
        globals(&[std::sync::Arc::new(c)], Some(&name), warnings)
    }

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
        let mut warnings = Vec::new();
        let g = mk_globals(&[], &mut warnings);
        assert_eq!((g.limit_req_status, g.limit_conn_status), (503, 503));
        let set = [
            ("limit-req-status-code", "429"),
            ("limit-conn-status-code", "420"),
        ];
        let g = mk_globals(&set, &mut warnings);
        assert_eq!((g.limit_req_status, g.limit_conn_status), (429, 420));
        assert!(warnings.is_empty());
        let bad = [
            ("limit-req-status-code", "200"),
            ("limit-conn-status-code", "busy"),
        ];
        let g = mk_globals(&bad, &mut warnings);
        assert_eq!((g.limit_req_status, g.limit_conn_status), (503, 503));
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn request_body_and_connection_keys() {
        let mut warnings = Vec::new();
        let g = mk_globals(&[], &mut warnings);
        assert!(g.request_buffering);
        assert_eq!(g.client_body_buffer_size, 8 * 1024);
        assert_eq!(g.client_body_timeout, Duration::from_secs(60));
        assert_eq!(g.max_worker_connections, 16384);
        let set = [
            ("proxy-request-buffering", "off"),
            ("client-body-buffer-size", "64k"),
            ("client-body-timeout", "5"),
            ("max-worker-connections", "0"),
        ];
        let g = mk_globals(&set, &mut warnings);
        assert!(!g.request_buffering);
        assert_eq!(g.client_body_buffer_size, 64 * 1024);
        assert_eq!(g.client_body_timeout, Duration::from_secs(5));
        assert_eq!(g.max_worker_connections, 0);
        assert!(warnings.is_empty(), "{warnings:?}");
        let bad = [
            ("proxy-request-buffering", "yes"),
            ("client-body-buffer-size", "big"),
            ("client-body-timeout", "0"),
            ("max-worker-connections", "-1"),
        ];
        let g = mk_globals(&bad, &mut warnings);
        assert!(g.request_buffering);
        assert_eq!(g.max_worker_connections, 16384);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_seconds(" 60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_seconds("0"), None);
        assert_eq!(parse_seconds("soon"), None);
    }

    #[test]
    fn framing_limits_from_the_configmap() {
        let mut warnings = Vec::new();
        let g = mk_globals(&[], &mut warnings);
        assert_eq!(g.client_header_timeout, Duration::from_secs(60));
        assert_eq!(g.large_client_header_buffers, (4, 8192));
        assert_eq!(g.client_header_buffer_size, 1024);
        assert_eq!(g.keep_alive, Duration::from_secs(75));
        assert_eq!(g.keep_alive_requests, 1000);
        let g = mk_globals(
            &[
                ("client-header-timeout", "2s"),
                ("large-client-header-buffers", "8 16k"),
                ("client-header-buffer-size", "2k"),
                ("keep-alive", "0"),
                ("keep-alive-requests", "3"),
            ],
            &mut warnings,
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(g.client_header_timeout, Duration::from_secs(2));
        assert_eq!(g.large_client_header_buffers, (8, 16384));
        assert_eq!(g.client_header_buffer_size, 2048);
        assert_eq!(g.keep_alive, Duration::ZERO);
        assert_eq!(g.keep_alive_requests, 3);
        let g = mk_globals(
            &[
                ("client-header-timeout", "0"),
                ("large-client-header-buffers", "4"),
                ("client-header-buffer-size", "lots"),
                ("keep-alive", "forever"),
                ("keep-alive-requests", "0"),
            ],
            &mut warnings,
        );
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        assert_eq!(g.client_header_timeout, Duration::from_secs(60));
        assert_eq!(g.large_client_header_buffers, (4, 8192));
    }

    // HTTP/2 limits (hardening, issue 11).
    #[test]
    fn http2_limits() {
        let mut warnings = Vec::new();
        let g = mk_globals(&[], &mut warnings);
        assert_eq!(
            (
                g.http2_max_concurrent_streams,
                g.http2_max_header_size,
                g.http2_max_field_size
            ),
            (128, 32 * 1024, 8 * 1024)
        );
        assert_eq!(g.http2_idle_timeout, Duration::from_secs(75));
        // ingress-nginx's default for the two size keys is the empty string.
        let g = mk_globals(
            &[
                ("http2-max-concurrent-streams", "64"),
                ("http2-max-header-size", "16k"),
                ("http2-max-field-size", ""),
                ("keep-alive", "30s"),
            ],
            &mut warnings,
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            (
                g.http2_max_concurrent_streams,
                g.http2_max_header_size,
                g.http2_max_field_size
            ),
            (64, 16 * 1024, 8 * 1024)
        );
        assert_eq!(g.http2_idle_timeout, Duration::from_secs(30));
        let g = mk_globals(
            &[
                ("http2-max-concurrent-streams", "0"),
                ("http2-max-header-size", "100"),
                ("http2-max-field-size", "lots"),
                ("keep-alive", "-1"),
            ],
            &mut warnings,
        );
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert_eq!(g.http2_max_concurrent_streams, 128);
        assert_eq!(g.http2_max_header_size, 32 * 1024);
    }
}

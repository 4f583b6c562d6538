//! What `sluice check` tells a migrating user about each annotation key, beyond
//! [`super::support`]: how a supported key differs from ingress-nginx ([`DIFFERS`]),
//! why a known key is not supported ([`UNSUPPORTED`]), and which keys ingress-nginx
//! knows at all ([`INGRESS_NGINX_KEYS`]), so a key that is none of them is reported as
//! `unknown` (a typo, most likely) with the nearest real key.
//!
//! Only text lives here: nothing in translation or the proxy reads these tables. Keep
//! them in step with the parsers: a key that becomes supported leaves [`UNSUPPORTED`]
//! (a unit test fails until it does), and a parser that accepts a value without
//! applying it says so here and warns with reason `AnnotationNotApplied`.
//!
//! [`INGRESS_NGINX_KEYS`] is written down from ingress-nginx's annotation reference
//! (`docs/user-guide/nginx-configuration/annotations.md`, v1.x) plus keys its parsers
//! read that the reference table leaves out, and a few removed keys that old manifests
//! still carry.

/// Supported keys (without the prefix) whose behaviour differs from ingress-nginx, and how.
pub const DIFFERS: &[(&str, &str)] = &[
    (
        "affinity-mode",
        "persistent cookies survive restarts and agree across replicas only when every replica runs with the same --session-cookie-key",
    ),
    (
        "auth-tls-error-page",
        "a URL or a path, answered with a 302 to it (nginx: an internal redirect for a path)",
    ),
    (
        "auth-tls-match-cn",
        "a regex on the subject DN (`CN=...,O=...`, as nginx's $ssl_client_s_dn); one that does not compile makes the host answer 403",
    ),
    (
        "auth-tls-secret",
        "host-level (the oldest Ingress of the host that sets it; its server-alias names too); an exact host under a wildcard host with client certificates needs them as well (sluice sends its unmatched paths to the wildcard's rules); a missing or unusable Secret makes the host answer 403 (never unverified)",
    ),
    (
        "client-body-buffer-size",
        "bodies above it go to an unlinked temporary file in $TMPDIR (nginx: client_body_temp_path)",
    ),
    (
        "custom-http-errors",
        "the client keeps the original status (ingress-nginx's `error_page N = @custom` returns the error backend's status instead): a deliberate difference",
    ),
    (
        "proxy-buffer-size",
        "accepted, no effect: sluice streams responses",
    ),
    (
        "proxy-buffering",
        "accepted, no effect: sluice always streams responses (as `off`)",
    ),
    (
        "proxy-http-version",
        "only 1.1 (Pingora speaks HTTP/1.1 or 2 upstream); 1.0 warns",
    ),
    (
        "proxy-next-upstream",
        "every value applies; a request is retried only before any response reached the client and while its body can be replayed: a chunked body over 64 KiB streams with buffering on (nginx would buffer it) and is not retried",
    ),
    (
        "proxy-request-buffering",
        "`on` buffers bodies with a content-length; chunked bodies (and HTTP/2 bodies without content-length) and gRPC are streamed as with `off`",
    ),
    (
        "proxy-ssl-ciphers",
        "accepted, not applied (rustls offers only its own strong cipher suites)",
    ),
    (
        "proxy-ssl-protocols",
        "only TLSv1.2 and TLSv1.3 exist in sluice and both are offered, whatever the list says",
    ),
    (
        "proxy-ssl-server-name",
        "`off` sends no SNI only while proxy-ssl-verify is off (the verified name is always sent)",
    ),
    (
        "proxy-ssl-verify",
        "the backend certificate must name proxy-ssl-name, else <service>.<namespace>.svc (nginx checks its internal upstream name); verification that cannot be set up answers 503",
    ),
    (
        "proxy-ssl-verify-depth",
        "accepted, not applied (the whole chain is verified)",
    ),
    (
        "session-cookie-path",
        "required on regex hosts as in ingress-nginx; without it the cookie gets Path=/ and a warning",
    ),
];

/// Known ingress-nginx keys sluice does not implement, with the reason where one helps.
/// Keys not listed here (nor supported) are reported as "not implemented in sluice".
pub const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "add-base-url",
        "removed from ingress-nginx long ago; ignored there too",
    ),
    (
        "base-url-scheme",
        "removed from ingress-nginx long ago; ignored there too",
    ),
    (
        "enable-influxdb",
        "InfluxDB export was removed from ingress-nginx; sluice has none",
    ),
    (
        "enable-modsecurity",
        "sluice has no web application firewall: ModSecurity rules are not run",
    ),
    ("enable-opentelemetry", "no tracing in sluice yet"),
    (
        "enable-opentracing",
        "OpenTracing was removed from ingress-nginx; sluice has none",
    ),
    (
        "enable-owasp-core-rules",
        "sluice has no web application firewall: ModSecurity rules are not run",
    ),
    (
        "enable-rewrite-log",
        "nginx's rewrite debug log has no counterpart",
    ),
    (
        "global-rate-limit",
        "global (memcached) rate limiting is not implemented",
    ),
    (
        "global-rate-limit-ignored-cidrs",
        "global (memcached) rate limiting is not implemented",
    ),
    (
        "global-rate-limit-key",
        "global (memcached) rate limiting is not implemented",
    ),
    (
        "global-rate-limit-window",
        "global (memcached) rate limiting is not implemented",
    ),
    (
        "grpc-backend",
        "removed from ingress-nginx; use backend-protocol: GRPC",
    ),
    (
        "http2-push-preload",
        "HTTP/2 server push is obsolete (browsers dropped it)",
    ),
    (
        "influxdb-host",
        "InfluxDB export was removed from ingress-nginx; sluice has none",
    ),
    (
        "influxdb-measurement",
        "InfluxDB export was removed from ingress-nginx; sluice has none",
    ),
    (
        "influxdb-port",
        "InfluxDB export was removed from ingress-nginx; sluice has none",
    ),
    (
        "influxdb-server-name",
        "InfluxDB export was removed from ingress-nginx; sluice has none",
    ),
    ("mirror-host", "request mirroring is not implemented"),
    (
        "mirror-request-body",
        "request mirroring is not implemented",
    ),
    (
        "mirror-target",
        "request mirroring is not implemented: no copy of the traffic is sent",
    ),
    (
        "modsecurity-transaction-id",
        "sluice has no web application firewall: ModSecurity rules are not run",
    ),
    ("opentelemetry-operation-name", "no tracing in sluice yet"),
    (
        "opentelemetry-trust-incoming-span",
        "no tracing in sluice yet",
    ),
    (
        "opentracing-trust-incoming-span",
        "OpenTracing was removed from ingress-nginx; sluice has none",
    ),
    (
        "proxy-buffers-number",
        "nginx buffer tuning: sluice streams bodies",
    ),
    (
        "proxy-max-temp-file-size",
        "nginx buffer tuning: sluice streams bodies and never spools to disk",
    ),
    (
        "secure-backends",
        "removed from ingress-nginx; use backend-protocol: HTTPS",
    ),
    (
        "secure-verify-ca-secret",
        "removed from ingress-nginx; use proxy-ssl-secret and proxy-ssl-verify",
    ),
    (
        "session-cookie-hash",
        "removed from ingress-nginx; ignored there too",
    ),
    (
        "ssl-ciphers",
        "sluice's TLS (rustls) offers a fixed set of strong TLS 1.2/1.3 suites",
    ),
    (
        "ssl-prefer-server-ciphers",
        "sluice's TLS (rustls) offers a fixed set of strong TLS 1.2/1.3 suites",
    ),
    (
        "upstream-fail-timeout",
        "removed from ingress-nginx; sluice's passive health needs no setting",
    ),
    (
        "upstream-max-fails",
        "removed from ingress-nginx; sluice's passive health needs no setting",
    ),
];

/// Every annotation key (without the prefix) ingress-nginx reads or once read.
pub const INGRESS_NGINX_KEYS: &[&str] = &[
    "add-base-url",
    "affinity",
    "affinity-canary-behavior",
    "affinity-mode",
    "allowlist-source-range",
    "app-root",
    "auth-always-set-cookie",
    "auth-cache-duration",
    "auth-cache-key",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-share-vars",
    "auth-keepalive-timeout",
    "auth-method",
    "auth-proxy-set-headers",
    "auth-realm",
    "auth-request-redirect",
    "auth-response-headers",
    "auth-secret",
    "auth-secret-type",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-snippet",
    "auth-tls-error-page",
    "auth-tls-match-cn",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-type",
    "auth-url",
    "backend-protocol",
    "base-url-scheme",
    "canary",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "canary-weight",
    "canary-weight-total",
    "client-body-buffer-size",
    "configuration-snippet",
    "connection-proxy-header",
    "cors-allow-credentials",
    "cors-allow-headers",
    "cors-allow-methods",
    "cors-allow-origin",
    "cors-expose-headers",
    "cors-max-age",
    "custom-headers",
    "custom-http-errors",
    "default-backend",
    "denylist-source-range",
    "disable-proxy-intercept-errors",
    "enable-access-log",
    "enable-cors",
    "enable-global-auth",
    "enable-influxdb",
    "enable-modsecurity",
    "enable-opentelemetry",
    "enable-opentracing",
    "enable-owasp-core-rules",
    "enable-rewrite-log",
    "force-ssl-redirect",
    "from-to-www-redirect",
    "global-rate-limit",
    "global-rate-limit-ignored-cidrs",
    "global-rate-limit-key",
    "global-rate-limit-window",
    "grpc-backend",
    "http2-push-preload",
    "influxdb-host",
    "influxdb-measurement",
    "influxdb-port",
    "influxdb-server-name",
    "limit-allowlist",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-rate",
    "limit-rate-after",
    "limit-rpm",
    "limit-rps",
    "limit-whitelist",
    "load-balance",
    "mirror-host",
    "mirror-request-body",
    "mirror-target",
    "modsecurity-snippet",
    "modsecurity-transaction-id",
    "opentelemetry-operation-name",
    "opentelemetry-trust-incoming-span",
    "opentracing-trust-incoming-span",
    "permanent-redirect",
    "permanent-redirect-code",
    "preserve-trailing-slash",
    "proxy-body-size",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-buffers-number",
    "proxy-connect-timeout",
    "proxy-cookie-domain",
    "proxy-cookie-path",
    "proxy-http-version",
    "proxy-max-temp-file-size",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "proxy-next-upstream-tries",
    "proxy-read-timeout",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-request-buffering",
    "proxy-send-timeout",
    "proxy-ssl-ciphers",
    "proxy-ssl-name",
    "proxy-ssl-protocols",
    "proxy-ssl-secret",
    "proxy-ssl-server-name",
    "proxy-ssl-verify",
    "proxy-ssl-verify-depth",
    "rewrite-target",
    "satisfy",
    "secure-backends",
    "secure-verify-ca-secret",
    "server-alias",
    "server-snippet",
    "service-upstream",
    "session-cookie-change-on-failure",
    "session-cookie-conditional-samesite-none",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-hash",
    "session-cookie-max-age",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-samesite",
    "session-cookie-secure",
    "ssl-ciphers",
    "ssl-passthrough",
    "ssl-prefer-server-ciphers",
    "ssl-redirect",
    "stream-snippet",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-fail-timeout",
    "upstream-hash-by",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "upstream-max-fails",
    "upstream-vhost",
    "use-port-in-redirects",
    "use-regex",
    "whitelist-source-range",
    "x-forwarded-prefix",
];

/// ConfigMap keys sluice reads whose behaviour differs from ingress-nginx, and how.
pub const CONFIGMAP_DIFFERS: &[(&str, &str)] = &[
    (
        "proxy-next-upstream",
        "invalid_header and http_* are accepted and not applied",
    ),
    (
        "upstream-keepalive-connections",
        "read once at start (Pingora sizes its pool then): a change needs a restart",
    ),
    ("upstream-keepalive-requests", "not applied"),
];

fn lookup<'a>(table: &'a [(&str, &'a str)], key: &str) -> Option<&'a str> {
    table
        .binary_search_by(|(k, _)| (*k).cmp(key))
        .ok()
        .map(|i| table[i].1)
}

/// How a supported key differs from ingress-nginx, if it does.
pub fn differs(key: &str) -> Option<&'static str> {
    lookup(DIFFERS, key)
}

/// Why a known key is not supported, where a reason is written down.
pub fn unsupported_reason(key: &str) -> Option<&'static str> {
    lookup(UNSUPPORTED, key)
}

/// How a ConfigMap key differs from ingress-nginx, if it does.
pub fn configmap_differs(key: &str) -> Option<&'static str> {
    lookup(CONFIGMAP_DIFFERS, key)
}

/// Whether ingress-nginx knows the key (without the prefix).
pub fn is_ingress_nginx_key(key: &str) -> bool {
    INGRESS_NGINX_KEYS.binary_search(&key).is_ok()
}

/// The ingress-nginx key nearest to a misspelt one (at most two edits away).
pub fn nearest_key(key: &str) -> Option<&'static str> {
    INGRESS_NGINX_KEYS
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (strsim's), as annotation keys are ASCII; a
/// non-ASCII letter in a hand-written key counts as its UTF-8 bytes.
pub fn edit_distance(a: &str, b: &str) -> usize {
    // `generic_levenshtein` takes its inputs by reference to something iterable, which
    // a `&[u8]` is not behind one more reference: hence the copies (short keys, and
    // only for keys sluice does not know).
    strsim::generic_levenshtein(&a.as_bytes().to_vec(), &b.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::super::{support, Support, SUPPORTED};
    use super::*;

    fn sorted(keys: impl Iterator<Item = &'static str>) -> bool {
        let keys: Vec<_> = keys.collect();
        keys.windows(2).all(|w| w[0] < w[1])
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(sorted(DIFFERS.iter().map(|(k, _)| *k)));
        assert!(sorted(UNSUPPORTED.iter().map(|(k, _)| *k)));
        assert!(sorted(INGRESS_NGINX_KEYS.iter().copied()));
        assert!(sorted(CONFIGMAP_DIFFERS.iter().map(|(k, _)| *k)));
    }

    #[test]
    fn differs_only_for_supported_keys() {
        for (k, _) in DIFFERS {
            assert_eq!(support(k), Support::Supported, "{k} is in DIFFERS");
        }
    }

    #[test]
    fn unsupported_reasons_only_for_unsupported_known_keys() {
        for (k, _) in UNSUPPORTED {
            assert_eq!(
                support(k),
                Support::Unsupported,
                "{k} is now supported or refused: remove it from notes::UNSUPPORTED"
            );
            assert!(is_ingress_nginx_key(k), "{k} is not an ingress-nginx key");
        }
    }

    #[test]
    fn every_supported_key_is_an_ingress_nginx_key() {
        for k in SUPPORTED {
            assert!(
                is_ingress_nginx_key(k),
                "{k} is supported but missing from notes::INGRESS_NGINX_KEYS"
            );
        }
    }

    #[test]
    fn typos_find_their_key() {
        assert_eq!(nearest_key("rewrite-traget"), Some("rewrite-target"));
        assert_eq!(nearest_key("proxy-body-szie"), Some("proxy-body-size"));
        assert_eq!(nearest_key("ssl-redirects"), Some("ssl-redirect"));
        assert_eq!(nearest_key("completely-made-up"), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        // Over bytes: the two bytes of a non-ASCII letter are two edits.
        assert_eq!(edit_distance("c\u{f6}rs", "cors"), 2);
    }
}

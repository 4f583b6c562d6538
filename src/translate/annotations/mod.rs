//! Typed parsers for `nginx.ingress.kubernetes.io/*` annotations, one module per family,
//! and the registry of which keys sluice implements, refuses or does not support.
//!
//! Owns turning annotation text into route settings, once per translation: nothing here
//! runs per request. A bad value warns, naming the annotation and the value, and affects
//! only the Ingress that carries it. Keys that would inject raw nginx configuration
//! (`*-snippet`) are never executed: the Ingress is served without them and a
//! `RefusedAnnotation` warning names them. Any other key sluice does not implement
//! gives one `UnsupportedAnnotation` warning per Ingress, never silence.

pub mod auth;
pub mod auth_tls;
pub mod balance;
pub mod canary;
pub mod cors;
pub mod custom_errors;
pub mod hosts;
pub mod limits;
pub mod notes;
pub mod passthrough;
pub mod policy;
pub mod proxy_ssl;
pub mod upstream;

use k8s_openapi::api::networking::v1::Ingress;

use super::object::{namespace_of, ANNOTATION_PREFIX};
use super::{ObjKind, Warning};

/// Keys (after the prefix) that sluice reads.
pub const SUPPORTED: &[&str] = &[
    "affinity",
    "affinity-canary-behavior",
    "affinity-mode",
    "allowlist-source-range",
    "app-root",
    "auth-always-set-cookie",
    "auth-method",
    "auth-realm",
    "auth-request-redirect",
    "auth-response-headers",
    "auth-secret",
    "auth-secret-type",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-tls-error-page",
    "auth-tls-match-cn",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-type",
    "auth-url",
    "backend-protocol",
    "canary",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "canary-weight",
    "canary-weight-total",
    "client-body-buffer-size",
    "cors-allow-credentials",
    "cors-allow-headers",
    "cors-allow-methods",
    "cors-allow-origin",
    "cors-expose-headers",
    "cors-max-age",
    "custom-http-errors",
    "default-backend",
    "denylist-source-range",
    "enable-access-log",
    "enable-cors",
    "force-ssl-redirect",
    "from-to-www-redirect",
    "limit-allowlist",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-rpm",
    "limit-rps",
    "limit-whitelist",
    "load-balance",
    "permanent-redirect",
    "permanent-redirect-code",
    "preserve-trailing-slash",
    "proxy-body-size",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-connect-timeout",
    "proxy-http-version",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "proxy-next-upstream-tries",
    "proxy-read-timeout",
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
    "server-alias",
    "service-upstream",
    "session-cookie-change-on-failure",
    "session-cookie-conditional-samesite-none",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-samesite",
    "session-cookie-secure",
    "ssl-passthrough",
    "ssl-redirect",
    "temporal-redirect",
    "temporal-redirect-code",
    "upstream-hash-by",
    "upstream-vhost",
    "use-regex",
    "whitelist-source-range",
    "x-forwarded-prefix",
];

/// How sluice treats one annotation key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Supported,
    /// Raw nginx configuration: never executed.
    Refused,
    Unsupported,
}

/// Classifies a key (without the prefix).
pub fn support(key: &str) -> Support {
    if key.ends_with("-snippet") || key == "configuration-snippet" {
        Support::Refused
    } else if SUPPORTED.binary_search(&key).is_ok() {
        Support::Supported
    } else {
        Support::Unsupported
    }
}

/// Warns about refused and unsupported keys of one Ingress (one warning of each kind).
pub fn check_keys(ing: &Ingress, warnings: &mut Vec<Warning>) {
    let Some(annotations) = ing.metadata.annotations.as_ref() else {
        return;
    };
    let (mut refused, mut unsupported) = (Vec::new(), Vec::new());
    for key in annotations.keys() {
        let Some(short) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        match support(short) {
            Support::Supported => {}
            Support::Refused => refused.push(key.as_str()),
            Support::Unsupported => unsupported.push(key.as_str()),
        }
    }
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    if !refused.is_empty() {
        warnings.push(Warning::new(
            ObjKind::Ingress,
            ns,
            name,
            "RefusedAnnotation",
            format!(
                "{} never executed: sluice does not run raw nginx configuration; the Ingress is served without it",
                refused.join(", ")
            ),
        ));
    }
    if !unsupported.is_empty() {
        warnings.push(Warning::new(
            ObjKind::Ingress,
            ns,
            name,
            "UnsupportedAnnotation",
            format!(
                "{} not supported by sluice; ignored",
                unsupported.join(", ")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_list_is_sorted_for_binary_search() {
        assert!(SUPPORTED.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn classification() {
        assert_eq!(support("rewrite-target"), Support::Supported);
        assert_eq!(support("configuration-snippet"), Support::Refused);
        assert_eq!(support("server-snippet"), Support::Refused);
        assert_eq!(support("auth-snippet"), Support::Refused);
        assert_eq!(support("modsecurity-snippet"), Support::Refused);
        assert_eq!(support("mirror-target"), Support::Unsupported);
    }
}

//! `auth-tls-*`: client-certificate authentication, parsed into a host-level
//! [`ClientAuth`] (see `routing::client_auth`).
//!
//! Owns `auth-tls-secret` (`ns/name` or a bare name; the Secret's `ca.crt`, with
//! `ca.crl` honoured when present), `-verify-client` (`on`, the default, `optional`,
//! `optional_no_ca`, `off`), `-verify-depth` (default 1), `-error-page`,
//! `-pass-certificate-to-upstream` and `-match-cn`. The CA becomes a rustls
//! `WebPkiClientVerifier` here, once per translation, with the aws-lc-rs provider.
//!
//! Failing closed: a missing Secret, a `ca.crt` or `ca.crl` that does not parse, or an
//! `auth-tls-match-cn` that is not a regex keep the policy as broken, so the host
//! answers 403 and is never served unverified; each warns (`InvalidAuthTlsSecret`,
//! `InvalidAnnotation`). Values that only weaken nothing when ignored (a bad
//! `-verify-depth`, `-error-page`) warn and keep the default. The other keys without
//! `auth-tls-secret` do nothing, as in ingress-nginx, and say so.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use super::super::error::{Error, Result};
use super::super::object::{namespace_of, raw_annotation, ANNOTATION_PREFIX as P};
use super::super::values::parse_bool;
use super::super::{ObjKind, Warning};
use super::proxy_ssl::{der_chain, load_secret, secret_field};
use crate::routing::{ClientAuth, Trust, VerifyClient};

const KEYS: &[&str] = &[
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-match-cn",
];

/// Parses the `auth-tls-*` annotations of one Ingress: `None` without `auth-tls-secret`.
pub fn parse(
    ing: &Ingress,
    secrets: &HashMap<(&str, &str), &Secret>,
    warnings: &mut Vec<Warning>,
) -> Option<Arc<ClientAuth>> {
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let mut warn = |reason: &'static str, msg: String| {
        warnings.push(Warning::new(ObjKind::Ingress, ns, name, reason, msg));
    };
    let get = |key: &str| raw_annotation(ing, key).map(str::trim);
    let Some(secret_ref) = get("auth-tls-secret").filter(|v| !v.is_empty()) else {
        let set: Vec<String> = KEYS
            .iter()
            .filter(|k| get(k).is_some())
            .map(|k| format!("{P}{k}"))
            .collect();
        if !set.is_empty() {
            warn(
                "AnnotationNotApplied",
                format!(
                    "{} ignored: client certificates need {P}auth-tls-secret",
                    set.join(", ")
                ),
            );
        }
        return None;
    };

    let mode = match get("auth-tls-verify-client") {
        None => VerifyClient::On,
        Some(v) => match v {
            "on" => VerifyClient::On,
            "optional" => VerifyClient::Optional,
            "optional_no_ca" => VerifyClient::OptionalNoCa,
            "off" => VerifyClient::Off,
            _ => {
                warn(
                    "InvalidAnnotation",
                    format!("{P}auth-tls-verify-client: {v:?} is not on, optional, optional_no_ca or off; using on"),
                );
                VerifyClient::On
            }
        },
    };
    let depth = match get("auth-tls-verify-depth") {
        None => 1,
        Some(v) => match v.parse::<usize>() {
            Ok(d) if (1..=100).contains(&d) => d,
            _ => {
                warn(
                    "InvalidAnnotation",
                    format!(
                        "{P}auth-tls-verify-depth: {v:?} is not a depth from 1 to 100; using 1"
                    ),
                );
                1
            }
        },
    };
    let error_page = match get("auth-tls-error-page").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) if is_error_page(v) => Some(v.into()),
        Some(v) => {
            warn(
                "InvalidAnnotation",
                format!("{P}auth-tls-error-page: {v:?} is not an http(s) URL or a path; a bad certificate answers 400"),
            );
            None
        }
    };
    let pass_certificate = match get("auth-tls-pass-certificate-to-upstream") {
        None => false,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            warn(
                "InvalidAnnotation",
                format!("{P}auth-tls-pass-certificate-to-upstream: {v:?} is not true or false; using false"),
            );
            false
        }),
    };
    let mut broken: Option<String> = None;
    let match_cn = match get("auth-tls-match-cn").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match regex::Regex::new(v) {
            Ok(r) => Some(r),
            Err(e) => {
                let why = format!(
                    "{P}auth-tls-match-cn: {v:?} is not a regex ({e}); the host answers 403"
                );
                warn("InvalidAnnotation", why.clone());
                broken = Some(why);
                None
            }
        },
    };

    let loaded = load_secret(secrets, ns, secret_ref, load);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (mode, depth).hash(&mut h);
    let trust = match loaded {
        Ok((trust, content)) => {
            content.hash(&mut h);
            Ok(trust)
        }
        Err(e) => {
            let why = format!("{P}auth-tls-secret: {e}; the host answers 403");
            warn("InvalidAuthTlsSecret", why.clone());
            Err(why)
        }
    };
    let trust = match (trust, broken) {
        (Ok(t), None) => Ok(t),
        (Err(why), _) | (Ok(_), Some(why)) => {
            why.hash(&mut h);
            Err(why.into())
        }
    };
    Some(Arc::new(ClientAuth {
        mode,
        depth,
        error_page,
        pass_certificate,
        match_cn,
        trust,
        id: h.finish(),
    }))
}

/// Gives `auth` to the rule hosts of `ing` that no older Ingress gave a policy (a
/// younger Ingress's differing policy is ignored with `AuthTlsConflict`). Rules
/// without a host get none: client certificates are a setting of named hosts.
pub fn assign(
    ing: &Ingress,
    auth: &Arc<ClientAuth>,
    table: &mut crate::routing::ClientAuthTable,
    warnings: &mut Vec<Warning>,
) {
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    for rule in ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
        let Some(host) = rule.host.as_deref() else {
            continue;
        };
        if super::super::object::validate_host(host).is_err() {
            continue;
        }
        if !table.insert(host, auth) && table.lookup(host).is_some_and(|a| a.id != auth.id) {
            warnings.push(Warning::new(
                ObjKind::Ingress,
                ns,
                name,
                "AuthTlsConflict",
                format!("{P}auth-tls-* ignored for host {host}: an older Ingress sets the host's client-certificate authentication"),
            ));
        }
    }
}

/// A `server-alias` name is another `server_name` of the host's nginx server, so it
/// gets the host's client-certificate policy too (else the alias would bypass it).
pub fn cover_aliases(plan: &super::hosts::HostPlan, table: &mut crate::routing::ClientAuthTable) {
    let pairs: Vec<(Arc<ClientAuth>, String)> = plan
        .alias_pairs()
        .filter_map(|(host, alias)| {
            let auth = table.lookup(&host.to_string())?;
            Some((auth.clone(), alias.to_string()))
        })
        .collect();
    for (auth, alias) in pairs {
        table.insert(&alias, &auth);
    }
}

/// ingress-nginx's check of `auth-tls-error-page`: an http(s) URL or a path.
fn is_error_page(v: &str) -> bool {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let ok_chars = |s: &str| !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    match rest {
        Some(r) => !r.is_empty() && ok_chars(r),
        None => v.starts_with('/') && ok_chars(v),
    }
}

/// `ca.crt` (and `ca.crl`) → the verifier, plus the bytes that identify them.
fn load(secret: &Secret) -> Result<(Arc<Trust>, Vec<u8>)> {
    let bad = |why: String| Error::Secret(why);
    let ca = secret_field(secret, "ca.crt").ok_or_else(|| bad("has no ca.crt".into()))?;
    let ders = der_chain(ca, "ca.crt")?;
    let mut roots = RootCertStore::empty();
    for der in &ders {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| bad(format!("ca.crt: not a usable CA certificate: {e}")))?;
    }
    let mut content = ca.to_vec();
    let roots = Arc::new(roots);
    let mut builder = WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        crate::routing::certs::crypto_provider(),
    )
    .allow_unauthenticated();
    if let Some(crl) = secret_field(secret, "ca.crl") {
        let crls: Vec<CertificateRevocationListDer<'static>> =
            CertificateRevocationListDer::pem_slice_iter(crl)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad(format!("ca.crl is not valid PEM: {e}")))?;
        if crls.is_empty() {
            return Err(bad("ca.crl holds no CRL".into()));
        }
        // nginx (OpenSSL) rejects a chain whose CRL has expired.
        builder = builder.with_crls(crls).enforce_revocation_expiration();
        content.extend_from_slice(crl);
    }
    let verifier = builder
        .build()
        .map_err(|e| bad(format!("ca.crt/ca.crl: {e}")))?;
    Ok((Arc::new(Trust { verifier, roots }), content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages() {
        assert!(is_error_page("https://login.example/mtls-help"));
        assert!(is_error_page("/help"));
        assert!(!is_error_page("javascript:alert(1)"));
        assert!(!is_error_page("https://"));
        assert!(!is_error_page("/a b"));
    }
}

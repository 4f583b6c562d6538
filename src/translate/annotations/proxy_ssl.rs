//! `proxy-ssl-*`: how sluice speaks TLS to HTTPS and GRPCS backends.
//!
//! Owns `proxy-ssl-secret`, `-verify`, `-name`, `-server-name`, `-protocols`,
//! `-verify-depth` and `-ciphers`. Choices where nginx and rustls differ, written down
//! here and in the README:
//! - Verification is off unless `proxy-ssl-verify: "on"`, as in ingress-nginx. When on,
//!   the chain must lead to `ca.crt` of `proxy-ssl-secret` and the certificate must name
//!   `proxy-ssl-name`, or, when that is unset, `<service>.<namespace>.svc` (nginx would
//!   check `$proxy_host`, the upstream's internal name, which no real certificate
//!   carries; the Service's DNS name is what cluster CAs issue).
//! - SNI: the verified name when verifying; otherwise `proxy-ssl-name`, else the request
//!   host. `proxy-ssl-server-name: "off"` sends no SNI, but only without verification,
//!   because rustls checks the name it sends.
//! - `tls.crt` + `tls.key` in the Secret are presented as the client certificate (mTLS),
//!   verification or not. The Secret may live in another namespace (`ns/name`), as
//!   ingress-nginx allows; a bare name means the Ingress's namespace.
//! - rustls speaks TLS 1.2 and 1.3 only: `proxy-ssl-protocols` naming neither is
//!   warned about; the list is otherwise accepted and both versions are offered.
//!   `-verify-depth` and `-ciphers` are accepted and not applied (webpki checks the
//!   whole chain; rustls's cipher suites are all strong).
//! - A `proxy-ssl-secret` that is missing or unusable, or verification requested but
//!   impossible (no usable `ca.crt`): the Ingress's paths answer 503 with a warning
//!   (ingress-nginx's "location denied") rather than silently trusting anyone or
//!   connecting without the client certificate.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use pingora::utils::tls::{CertKey, WrappedX509};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::super::error::{Error, Result};
use super::super::object::namespace_of;
use super::super::object::raw_annotation;
use super::super::{ObjKind, Warning};
use crate::routing::UpstreamTls;

/// What the annotations ask for: nothing, a TLS setting, or verification that cannot be
/// honoured (the paths must answer 503; the string says why).
pub enum ProxySsl {
    Default,
    Settings(Arc<UpstreamTls>),
    Broken(String),
}

/// Parses the `proxy-ssl-*` annotations of one Ingress.
pub fn parse(
    ing: &Ingress,
    secrets: &HashMap<(&str, &str), &Secret>,
    warnings: &mut Vec<Warning>,
) -> ProxySsl {
    let ns = namespace_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let mut warn = |reason, msg: String| {
        warnings.push(Warning::new(ObjKind::Ingress, ns, name, reason, msg));
    };
    let get = |key: &str| raw_annotation(ing, key).map(str::trim);
    let on_off = |key: &str, warn: &mut dyn FnMut(&'static str, String)| match get(key) {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("false") => Some(false),
        Some(v) => {
            warn(
                "InvalidAnnotation",
                format!("nginx.ingress.kubernetes.io/{key}: {v:?} is not on or off; using off"),
            );
            Some(false)
        }
    };
    let verify = on_off("proxy-ssl-verify", &mut warn);
    let server_name = on_off("proxy-ssl-server-name", &mut warn);
    let ssl_name = get("proxy-ssl-name").filter(|n| !n.is_empty());
    let secret_ref = get("proxy-ssl-secret").filter(|n| !n.is_empty());
    if let Some(p) = get("proxy-ssl-protocols") {
        let offered = p
            .split_ascii_whitespace()
            .any(|v| v == "TLSv1.2" || v == "TLSv1.3");
        if !offered {
            warn(
                "InvalidAnnotation",
                format!("nginx.ingress.kubernetes.io/proxy-ssl-protocols: {p:?} names neither TLSv1.2 nor TLSv1.3, the only versions sluice speaks; offering both"),
            );
        }
    }
    if verify.is_none() && server_name.is_none() && ssl_name.is_none() && secret_ref.is_none() {
        return ProxySsl::Default;
    }
    let verify = verify.unwrap_or(false);

    let (mut ca, mut client_cert) = (None, None);
    if let Some(r) = secret_ref {
        let (sns, sname) = secret_name(ns, r);
        match load_secret(secrets, ns, r, load) {
            Ok((c, k)) => {
                ca = c;
                client_cert = k;
                if verify && ca.is_none() {
                    let why = format!("proxy-ssl-verify is on but Secret {sns}/{sname} has no ca.crt; its paths answer 503");
                    warn("InvalidProxySslSecret", why.clone());
                    return ProxySsl::Broken(why);
                }
            }
            // ingress-nginx denies the location (503) whether or not it verifies.
            Err(e) => {
                let why = format!("proxy-ssl-secret: {e}; its paths answer 503");
                warn("InvalidProxySslSecret", why.clone());
                return ProxySsl::Broken(why);
            }
        }
    } else if verify {
        let why =
            "proxy-ssl-verify is on but no proxy-ssl-secret names the CA; its paths answer 503"
                .to_string();
        warn("InvalidProxySslSecret", why.clone());
        return ProxySsl::Broken(why);
    }
    if verify && server_name == Some(false) {
        warn(
            "AnnotationNotApplied",
            "nginx.ingress.kubernetes.io/proxy-ssl-server-name: off is ignored while proxy-ssl-verify is on (the verified name is sent as SNI)".into(),
        );
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(ca) = &ca {
        for c in ca.iter() {
            c.borrow_raw_cert().hash(&mut h);
        }
    }
    ProxySsl::Settings(Arc::new(UpstreamTls {
        verify,
        name: ssl_name.map(Into::into),
        send_sni: verify || server_name != Some(false),
        ca,
        client_cert,
        pool_group: h.finish(),
    }))
}

type Loaded = (
    Option<Arc<pingora::protocols::tls::CaType>>,
    Option<Arc<CertKey>>,
);

/// A Secret reference as ingress-nginx reads it: `ns/name`, or a bare name in the
/// Ingress's namespace `ns`.
pub(super) fn secret_name<'a>(ns: &'a str, r: &'a str) -> (&'a str, &'a str) {
    r.split_once('/').unwrap_or((ns, r))
}

/// Reads the Secret a reference names (see [`secret_name`]) with `load`; the error
/// (not found, or what `load` refused) names the Secret.
pub(super) fn load_secret<T>(
    secrets: &HashMap<(&str, &str), &Secret>,
    ns: &str,
    r: &str,
    load: impl FnOnce(&Secret) -> Result<T>,
) -> Result<T> {
    let (sns, sname) = secret_name(ns, r);
    let secret = secrets
        .get(&(sns, sname))
        .ok_or_else(|| Error::Secret(format!("Secret {sns}/{sname} not found")))?;
    load(secret).map_err(|e| Error::Secret(format!("Secret {sns}/{sname}: {e}")))
}

/// A non-empty data field of a Secret.
pub(super) fn secret_field<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
        .filter(|b| !b.is_empty())
}

/// `ca.crt` (trust roots) and `tls.crt` + `tls.key` (client certificate), each optional
/// but never half-present or unparsable.
fn load(secret: &Secret) -> Result<Loaded> {
    let field = |k: &str| secret_field(secret, k);
    let ca = match field("ca.crt") {
        None => None,
        Some(pem) => {
            let certs = der_chain(pem, "ca.crt")?;
            Some(Arc::from(
                certs
                    .into_iter()
                    .map(|d| WrappedX509::new(d, pingora::utils::tls::parse_x509))
                    .collect::<Vec<_>>(),
            ))
        }
    };
    let client = match (field("tls.crt"), field("tls.key")) {
        (None, None) => None,
        (Some(crt), Some(key)) => {
            // parse_pem also checks that the key belongs to the certificate.
            super::super::tls::parse_pem(crt, key)?;
            let chain = der_chain(crt, "tls.crt")?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| Error::Secret(format!("tls.key: {e}")))?;
            Some(Arc::new(CertKey::new(chain, key.secret_der().to_vec())))
        }
        _ => {
            return Err(Error::Secret(
                "tls.crt and tls.key must both be present or both absent".into(),
            ))
        }
    };
    if ca.is_none() && client.is_none() {
        return Err(Error::Secret(
            "holds none of ca.crt, tls.crt, tls.key".into(),
        ));
    }
    Ok((ca, client))
}

/// PEM certificates → DER, each checked to parse (Pingora's wrapper panics otherwise).
pub(super) fn der_chain(pem: &[u8], field: &str) -> Result<Vec<Vec<u8>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Secret(format!("{field} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Secret(format!("{field} holds no certificate")));
    }
    for c in &certs {
        x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| Error::Secret(format!("{field}: cannot read a certificate: {e}")))?;
    }
    Ok(certs.into_iter().map(|c| c.as_ref().to_vec()).collect())
}

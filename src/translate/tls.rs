//! TLS Secrets → parsed certificates, and which certificate serves which host.
//!
//! Owns COMPAT §3's certificate rules: the Secret named by the `tls` entry that lists a
//! host (the oldest Ingress's entry wins, as for every host-level setting); a Secret that
//! is missing, of the wrong type, unparsable, whose key does not match, or that does not
//! cover the host leaves the host on the default certificate, with a warning. Expired
//! certificates are served and warned about. PEM is parsed once here (rustls-pki-types),
//! never at handshake time; ECDSA, RSA and Ed25519 keys, full chains.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{Error, Result};
use super::object::namespace_of;
use super::{ObjKind, Warning};
use crate::config::ObjectRef;
use crate::routing::certs::covers;
use crate::routing::CertTable;

/// A certificate and key from one Secret, parsed and checked.
#[derive(Debug, Clone)]
pub struct ParsedCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names the certificate covers (SANs, else the CN), lower-cased.
    pub sans: Vec<String>,
    /// `notAfter` as seconds since the epoch.
    pub not_after: i64,
}

/// Parses a `kubernetes.io/tls` Secret.
pub fn parse_secret(secret: &Secret) -> Result<ParsedCert> {
    let ty = secret.type_.as_deref().unwrap_or("Opaque");
    if ty != "kubernetes.io/tls" {
        return Err(Error::Secret(format!(
            "type is {ty}, not kubernetes.io/tls"
        )));
    }
    let field = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| Error::Secret(format!("{k} is missing or empty")))
    };
    let (crt, key) = (field("tls.crt")?, field("tls.key")?);
    parse_pem(crt, key)
}

/// Parses a PEM certificate chain and key and checks that they belong together.
pub fn parse_pem(crt: &[u8], key: &[u8]) -> Result<ParsedCert> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Secret(format!("tls.crt is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Secret("tls.crt holds no certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| Error::Secret(format!("tls.key: {e}")))?;
    // The check loads the key with ring where ring can: its key object lives on the Rust
    // heap and is freed for reuse, where aws-lc-rs's stays in the C heap's RSS after it
    // is dropped. Keys only aws-lc-rs reads (P-521) are checked with aws-lc-rs.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key.clone_key())
        .or_else(|_| crate::routing::certs::signing_key(&key))
        .map_err(|e| Error::Secret(format!("tls.key: unsupported key: {e}")))?;
    let algorithm = signer.algorithm();
    let mut certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| {
        Error::Secret("tls.key does not match the certificate in tls.crt".to_string())
    })?;
    // Checked: keep the DER, load the key again at its first handshake (memory).
    certified.key = Arc::new(crate::routing::certs::LazySigningKey::new(key, algorithm));
    let (sans, not_after) = names_and_expiry(
        certified
            .end_entity_cert()
            .map_err(|e| Error::Secret(e.to_string()))?,
    )?;
    Ok(ParsedCert {
        key: Arc::new(certified),
        sans,
        not_after,
    })
}

fn names_and_expiry(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64)> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| Error::Secret(format!("tls.crt: cannot read the certificate: {e}")))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            if let GeneralName::DNSName(n) = name {
                sans.push(n.to_ascii_lowercase());
            }
        }
    }
    if sans.is_empty() {
        // Legacy certificates name the host only in the CN.
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                sans.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok((sans, cert.validity().not_after.timestamp()))
}

/// What translation learns from the `tls` sections.
#[derive(Debug, Default)]
pub struct TlsOutcome {
    pub certs: CertTable,
    /// Hosts (as written, `*.x` included) that some served Ingress lists under `tls`.
    pub tls_hosts: std::collections::HashSet<String>,
    /// (host, Secret namespace, Secret name, notAfter) for every host given a certificate.
    pub expiry: Vec<(String, String, String, i64)>,
}

/// Assigns certificates to hosts. `served` must be oldest first. `now` is the current
/// time in seconds (an input, so translation stays free of the clock).
pub fn build(
    served: &[&Ingress],
    secrets: &[Arc<Secret>],
    default_ssl_certificate: Option<&ObjectRef>,
    now: i64,
    warnings: &mut Vec<Warning>,
) -> TlsOutcome {
    let by_name: HashMap<(&str, &str), &Secret> = secrets
        .iter()
        .filter_map(|s| {
            Some((
                (namespace_of(&s.metadata), s.metadata.name.as_deref()?),
                s.as_ref(),
            ))
        })
        .collect();
    let mut parsed: HashMap<(String, String), Result<ParsedCert>> = HashMap::new();
    let mut parse = |ns: &str, name: &str| -> Result<ParsedCert> {
        parsed
            .entry((ns.to_string(), name.to_string()))
            .or_insert_with(|| match by_name.get(&(ns, name)) {
                Some(s) => parse_secret(s),
                None => Err(Error::Secret("Secret not found".to_string())),
            })
            .clone()
    };
    let mut out = TlsOutcome::default();
    for ing in served {
        let ns = namespace_of(&ing.metadata);
        let name = ing.metadata.name.as_deref().unwrap_or("");
        let warn = |warnings: &mut Vec<Warning>, reason, msg: String| {
            warnings.push(Warning::new(ObjKind::Ingress, ns, name, reason, msg))
        };
        for tls in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            let hosts: Vec<String> = tls
                .hosts
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            let fresh: Vec<&String> = hosts
                .iter()
                .filter(|h| !out.tls_hosts.contains(*h))
                .collect();
            if fresh.is_empty() {
                continue;
            }
            for h in &fresh {
                out.tls_hosts.insert((*h).clone());
            }
            let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                warn(
                    warnings,
                    "TlsNoSecret",
                    format!(
                        "tls entry for {} names no secretName; serving the default certificate",
                        join(&fresh)
                    ),
                );
                continue;
            };
            let cert = match parse(ns, secret) {
                Ok(c) => c,
                Err(e) => {
                    warn(
                        warnings,
                        "InvalidTlsSecret",
                        format!(
                            "Secret {ns}/{secret}: {e}; serving the default certificate for {}",
                            join(&fresh)
                        ),
                    );
                    continue;
                }
            };
            if cert.not_after < now {
                warn(
                    warnings,
                    "CertificateExpired",
                    format!(
                        "Secret {ns}/{secret}: certificate expired; still serving it for {}",
                        join(&fresh)
                    ),
                );
            }
            for h in fresh {
                if covers(&cert.sans, h) {
                    out.certs.insert_host(h, &cert.key);
                    out.expiry.push((
                        h.to_string(),
                        ns.to_string(),
                        secret.to_string(),
                        cert.not_after,
                    ));
                } else {
                    warn(warnings, "CertificateHostMismatch", format!("Secret {ns}/{secret} does not cover {h} (it covers {}); serving the default certificate for it", cert.sans.join(", ")));
                }
            }
            out.certs.insert_sans(&cert.sans, &cert.key);
        }
    }
    if let Some(d) = default_ssl_certificate {
        match parse(&d.namespace, &d.name) {
            Ok(c) => out.certs.default = Some(c.key),
            Err(e) => warnings.push(Warning::new(
                ObjKind::Secret,
                &d.namespace,
                &d.name,
                "InvalidTlsSecret",
                format!(
                    "--default-ssl-certificate {d}: {e}; serving the generated fake certificate"
                ),
            )),
        }
    }
    out
}

fn join(hosts: &[&String]) -> String {
    hosts
        .iter()
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

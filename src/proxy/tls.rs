//! TLS termination: the rustls certificate resolver that reads the current table at
//! handshake time, and the generated fallback certificate.
//!
//! The resolver loads the table once per handshake (one atomic increment) and does
//! hash lookups only: certificates were parsed during translation, so a rotated Secret
//! is served from the next handshake while open connections keep their session.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::routing::SharedTable;

/// Picks the certificate for a handshake from the current table.
#[derive(Debug)]
pub struct CertResolver {
    table: Arc<SharedTable>,
    fallback: Arc<CertifiedKey>,
}

impl CertResolver {
    pub fn new(table: Arc<SharedTable>, fallback: Arc<CertifiedKey>) -> CertResolver {
        CertResolver { table, fallback }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        hello
            .server_name()
            .and_then(|sni| table.certs.resolve(sni))
            .or_else(|| table.certs.default.clone())
            .or_else(|| Some(self.fallback.clone()))
    }
}

/// ingress-nginx's default certificate: self-signed, generated at start.
pub const FAKE_CERT_CN: &str = "Kubernetes Ingress Controller Fake Certificate";

/// Generates the fallback certificate (ECDSA P-256, CN [`FAKE_CERT_CN`], SAN `ingress.local`).
pub fn fake_certificate() -> Result<Arc<CertifiedKey>, String> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
        .map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FAKE_CERT_CN);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme Co");
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signer,
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fake_certificate_is_usable() {
        let ck = super::fake_certificate().unwrap();
        assert!(ck.keys_match().is_ok());
    }
}

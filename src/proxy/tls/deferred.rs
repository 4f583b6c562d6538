//! The handshake side of client certificates: ask for one (naming the CA, as nginx
//! does), check that the client holds its key, and leave the verdict on the chain to
//! the request.
//!
//! nginx's `ssl_verify_client on` completes the handshake whatever the client sends
//! and answers a missing or bad certificate with 400 at the HTTP level (or the
//! `auth-tls-error-page` redirect); `optional_no_ca` passes some failures on in
//! `ssl-client-verify`. rustls would instead abort the handshake, so the verifier here
//! accepts any chain and [`crate::proxy::client_cert`] verifies it against the
//! host's CA right after the handshake (the result rides in the TLS digest). The
//! signature over the handshake is still checked here: a client cannot present a
//! certificate whose key it does not hold.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// Wraps the CA's `WebPkiClientVerifier`: same CA names and signature checks, chain
/// verification deferred.
#[derive(Debug)]
pub struct Deferred {
    inner: Arc<dyn ClientCertVerifier>,
}

impl Deferred {
    pub fn new(inner: Arc<dyn ClientCertVerifier>) -> Deferred {
        Deferred { inner }
    }
}

impl ClientCertVerifier for Deferred {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// A client without a certificate completes the handshake (the request decides).
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

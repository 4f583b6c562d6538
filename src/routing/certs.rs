//! The certificates of one table, indexed for the TLS handshake: exact SNI names first,
//! then one-label wildcards, then any certificate whose SANs cover the name, then the
//! table's default certificate. Parsed once during translation; the handshake only
//! does hash lookups.
//!
//! It also owns the one choice of crypto for downstream TLS: aws-lc-rs, about twice
//! ring's speed for ECDSA P-256 signing and several times for RSA-2048 (issue 12).
//! Keys are loaded through [`signing_key`] so the signatures of the handshake, not
//! only its key exchange, use it.
//!
//! A served certificate's key is held as its DER bytes ([`LazySigningKey`]) and made
//! into aws-lc-rs's key object at its first handshake: translation loads it once to
//! check it (and that it matches the certificate), then drops it. A loaded aws-lc-rs
//! key costs about 3 KB more than its DER, so 10,000 certificates that are mostly idle
//! cost about 30 MB less; the price is one key load (tens of µs) at the first
//! handshake of each host after a table rebuild.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::PrivateKeyDer;

/// The crypto provider of every server-side TLS config sluice builds.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Loads a certificate's private key for signing with [`crypto_provider`].
pub fn signing_key(der: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
    crypto_provider()
        .key_provider
        .load_private_key(der.clone_key())
}

/// A private key kept as DER and loaded for signing at first use (see the module doc).
pub struct LazySigningKey {
    der: PrivateKeyDer<'static>,
    algorithm: rustls::SignatureAlgorithm,
    loaded: OnceLock<Option<Arc<dyn SigningKey>>>,
}

impl LazySigningKey {
    /// `algorithm` is the loaded key's (rustls asks for it without signing).
    pub fn new(der: PrivateKeyDer<'static>, algorithm: rustls::SignatureAlgorithm) -> Self {
        LazySigningKey {
            der,
            algorithm,
            loaded: OnceLock::new(),
        }
    }

    /// The loaded key; `None` only if a key that loaded during translation no longer
    /// does (the handshake then fails as for a key with no usable scheme).
    fn key(&self) -> Option<&Arc<dyn SigningKey>> {
        self.loaded
            .get_or_init(|| signing_key(&self.der).ok())
            .as_ref()
    }
}

impl std::fmt::Debug for LazySigningKey {
    // Never the key bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazySigningKey")
            .field("algorithm", &self.algorithm)
            .field("loaded", &self.loaded.get().is_some())
            .finish()
    }
}

impl SigningKey for LazySigningKey {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        self.key()?.choose_scheme(offered)
    }

    fn public_key(&self) -> Option<rustls_pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.key()?.public_key()
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.algorithm
    }
}

use super::matcher::normalize_host;

#[derive(Debug, Default)]
pub struct CertTable {
    /// Hosts from Ingress `tls` entries (`*.parent` stored under `parent` in `wildcard`).
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// Every loaded certificate by the names its SANs list.
    san_exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    san_wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `--default-ssl-certificate`, when given and valid.
    pub default: Option<Arc<CertifiedKey>>,
}

fn put(map: &mut HashMap<Box<str>, Arc<CertifiedKey>>, name: &str, key: &Arc<CertifiedKey>) {
    map.entry(name.into()).or_insert_with(|| key.clone());
}

impl CertTable {
    /// Serves `key` for a host named in a `tls` entry (first one wins).
    pub fn insert_host(&mut self, host: &str, key: &Arc<CertifiedKey>) {
        match host.strip_prefix("*.") {
            Some(parent) => put(&mut self.wildcard, parent, key),
            None => put(&mut self.exact, host, key),
        }
    }

    /// Makes `key` a candidate for every name its SANs cover.
    pub fn insert_sans(&mut self, sans: &[String], key: &Arc<CertifiedKey>) {
        for san in sans {
            match san.strip_prefix("*.") {
                Some(parent) => put(&mut self.san_wildcard, parent, key),
                None => put(&mut self.san_exact, san, key),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The certificate for an SNI name, or `None` for the default.
    pub fn resolve(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let host = normalize_host(sni);
        let parent = host.split_once('.').map(|(_, p)| p);
        self.exact
            .get(host.as_ref())
            .or_else(|| parent.and_then(|p| self.wildcard.get(p)))
            .or_else(|| self.san_exact.get(host.as_ref()))
            .or_else(|| parent.and_then(|p| self.san_wildcard.get(p)))
            .cloned()
    }
}

/// Whether a certificate's SAN list covers `host` (wildcards cover exactly one label).
pub fn covers(sans: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    sans.iter().any(|san| {
        if *san == host {
            return true;
        }
        match (san.strip_prefix("*."), host.split_once('.')) {
            (Some(parent), Some((label, rest))) => {
                label != "*" && !label.is_empty() && rest == parent
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_key_loads_at_its_first_handshake_and_signs() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = PrivateKeyDer::try_from(kp.serialize_der()).unwrap();
        let lazy = LazySigningKey::new(der, rustls::SignatureAlgorithm::ECDSA);
        assert!(lazy.loaded.get().is_none(), "not loaded before a handshake");
        assert!(
            !format!("{lazy:?}").contains("der"),
            "the key bytes are never shown"
        );
        assert!(lazy
            .choose_scheme(&[rustls::SignatureScheme::RSA_PSS_SHA256])
            .is_none());
        assert!(
            lazy.loaded.get().is_some_and(|k| k.is_some()),
            "loaded once"
        );
        let signer = lazy
            .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
            .expect("an ECDSA P-256 key signs ECDSA_NISTP256_SHA256");
        assert!(!signer.sign(b"hello").unwrap().is_empty());
        assert_eq!(
            lazy.public_key(),
            signing_key(&lazy.der).unwrap().public_key()
        );
    }

    #[test]
    fn san_coverage() {
        let sans = vec!["a.example".to_string(), "*.wild.example".to_string()];
        assert!(covers(&sans, "a.example"));
        assert!(covers(&sans, "A.example"));
        assert!(covers(&sans, "x.wild.example"));
        assert!(!covers(&sans, "y.x.wild.example"));
        assert!(!covers(&sans, "wild.example"));
        assert!(!covers(&sans, "b.example"));
        // A wildcard tls host is covered only by the same wildcard.
        assert!(covers(&sans, "*.wild.example"));
        assert!(!covers(&["a.wild.example".to_string()], "*.wild.example"));
    }
}

//! The certificates of one table, indexed for the TLS handshake: exact SNI names first,
//! then one-label wildcards, then any certificate whose SANs cover the name, then the
//! table's default certificate. Parsed once during translation; the handshake only
//! does hash lookups.
//!
//! It also owns the one choice of crypto for downstream TLS: aws-lc-rs, about twice
//! ring's speed for ECDSA P-256 signing and several times for RSA-2048 (issue 12).
//! Keys are loaded through [`signing_key`] so the signatures of the handshake, not
//! only its key exchange, use it.

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

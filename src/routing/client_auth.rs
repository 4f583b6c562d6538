//! Client-certificate authentication per host (ingress-nginx's `auth-tls-*`), as
//! translation leaves it for the data plane: the verify mode, the CA as a ready rustls
//! verifier, and the request-level rules (`auth-tls-match-cn`, `-error-page`,
//! `-pass-certificate-to-upstream`).
//!
//! Host-level, as ingress-nginx's `ssl_verify_client` is a `server` setting: the oldest
//! Ingress of a host that names `auth-tls-secret` decides for every path of the host.
//! [`ClientAuthTable::lookup`] finds it by SNI at handshake time and by `Host` per
//! request (exact names, then one-label wildcards: an exact host under a client-auth
//! wildcard takes the wildcard's policy, because the router sends its unmatched paths
//! to the wildcard's rules, which must not be reachable unverified; `server-alias`
//! names carry their host's policy). A policy whose Secret or regex is
//! unusable is kept as [`ClientAuth::trust`] = `Err`: the host answers 403 and is never
//! served unverified.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::RootCertStore;

use super::matcher::normalize_host;

/// `auth-tls-verify-client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyClient {
    /// A valid certificate is required (400 otherwise).
    On,
    /// A certificate is asked for; none passes, a bad one is 400.
    Optional,
    /// A certificate is asked for and not required to chain to the CA (the request
    /// passes with `FAILED:` in `ssl-client-verify`).
    OptionalNoCa,
    /// No certificate is asked for.
    Off,
}

impl VerifyClient {
    /// Whether the handshake asks the client for a certificate.
    pub fn asks(self) -> bool {
        self != VerifyClient::Off
    }
}

/// The CA of `auth-tls-secret`, ready for handshakes.
pub struct Trust {
    /// `ca.crt` (and `ca.crl` when present), with the aws-lc-rs provider; unauthenticated
    /// clients allowed, since the request, not the handshake, decides (nginx answers
    /// a missing or bad certificate with 400 after the handshake).
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The trust anchors, for the `auth-tls-verify-depth` path-length check.
    pub roots: Arc<RootCertStore>,
}

/// One host's client-certificate policy.
pub struct ClientAuth {
    pub mode: VerifyClient,
    /// `auth-tls-verify-depth`: intermediates allowed between the client certificate
    /// and the CA (OpenSSL's verify depth; ingress-nginx's default 1).
    pub depth: usize,
    /// `auth-tls-error-page`: where a missing or bad certificate is redirected (302)
    /// instead of the 400.
    pub error_page: Option<Box<str>>,
    /// `auth-tls-pass-certificate-to-upstream`: send `ssl-client-cert`.
    pub pass_certificate: bool,
    /// `auth-tls-match-cn`: the subject DN must match (403 otherwise).
    pub match_cn: Option<regex::Regex>,
    /// The CA, or why the policy cannot be honoured (the host answers 403).
    pub trust: Result<Arc<Trust>, Box<str>>,
    /// Identifies what the handshake and the verification depend on (CA, CRL, mode,
    /// depth) across table generations: connections verified under one id serve only
    /// hosts with the same id, and the handshake config of an id is reused.
    pub id: u64,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("mode", &self.mode)
            .field("depth", &self.depth)
            .field("error_page", &self.error_page)
            .field("pass_certificate", &self.pass_certificate)
            .field("match_cn", &self.match_cn.as_ref().map(|r| r.as_str()))
            .field("trust", &self.trust.as_ref().map(|_| "CA"))
            .field("id", &self.id)
            .finish()
    }
}

impl ClientAuth {
    /// The verifier the handshake must use, when it asks for a certificate at all.
    pub fn handshake_trust(&self) -> Option<&Arc<Trust>> {
        self.trust.as_ref().ok().filter(|_| self.mode.asks())
    }
}

/// Client-certificate policies by host.
#[derive(Debug, Default)]
pub struct ClientAuthTable {
    exact: HashMap<Box<str>, Arc<ClientAuth>>,
    /// `*.parent` stored under `parent`.
    wildcard: HashMap<Box<str>, Arc<ClientAuth>>,
}

impl ClientAuthTable {
    /// Sets the policy of a host as written in a rule (`*.x` included), unless an
    /// older Ingress already set one. Returns whether it was set.
    pub fn insert(&mut self, host: &str, auth: &Arc<ClientAuth>) -> bool {
        let (map, key) = match host.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent),
            None => (&mut self.exact, host),
        };
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.into(), auth.clone());
        true
    }

    /// The policy for an SNI name or a `Host` header (port and case ignored).
    pub fn lookup(&self, host: &str) -> Option<&Arc<ClientAuth>> {
        if self.is_empty() {
            return None;
        }
        let host = normalize_host(host);
        self.exact.get(host.as_ref()).or_else(|| {
            let (_, parent) = host.split_once('.')?;
            self.wildcard.get(parent)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// Every policy of the table (a policy shared by several hosts repeats).
    pub fn policies(&self) -> impl Iterator<Item = &Arc<ClientAuth>> {
        self.exact.values().chain(self.wildcard.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(id: u64) -> Arc<ClientAuth> {
        Arc::new(ClientAuth {
            mode: VerifyClient::On,
            depth: 1,
            error_page: None,
            pass_certificate: false,
            match_cn: None,
            trust: Err("no CA".into()),
            id,
        })
    }

    #[test]
    fn lookup_by_exact_name_then_one_label_wildcard() {
        let mut t = ClientAuthTable::default();
        assert!(t.insert("a.example", &broken(1)));
        assert!(
            !t.insert("a.example", &broken(9)),
            "the oldest Ingress wins"
        );
        assert!(t.insert("*.wild.example", &broken(2)));
        assert_eq!(t.lookup("A.Example:443").map(|a| a.id), Some(1));
        assert_eq!(t.lookup("x.wild.example").map(|a| a.id), Some(2));
        assert!(t.lookup("y.x.wild.example").is_none());
        assert!(t.lookup("wild.example").is_none());
        assert!(t.lookup("b.example").is_none());
        assert!(broken(1).handshake_trust().is_none());
    }
}

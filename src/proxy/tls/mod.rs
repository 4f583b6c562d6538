//! TLS termination: the one rustls `ServerConfig` every worker shares, the certificate
//! resolver that reads the current table at handshake time, session resumption, and
//! the generated fallback certificate.
//!
//! The resolver loads the table once per handshake (one atomic increment) and does
//! hash lookups only: certificates were parsed during translation, so a rotated Secret
//! is served from the next handshake while open connections keep their session.
//!
//! Resumption works whichever worker takes the connection, because the config (and so
//! its session cache and ticket keys) is built once per process rather than once per
//! listener as Pingora's `TlsSettings` does; [`terminate`] runs the handshake with it.
//! As ingress-nginx: the session cache is on (`ssl-session-cache`, 10 minutes,
//! `ssl-session-timeout`), session tickets are off unless `ssl-session-tickets` is true
//! (for forward secrecy); both ConfigMap keys apply live. The ticket keys are rustls's
//! rotating in-process keys: replicas do not share them (not yet: a Secret-held key).
//!
//! Client certificates (`auth-tls-*`) are per host, but rustls asks for them before it
//! knows the SNI to a verifier that never sees it: [`terminate`] reads the SNI from
//! the ClientHello first ([`sni`]) and picks [`TlsConfigs::for_policy`] or the base
//! config, so hosts without client auth are never asked for a certificate.

mod deferred;
pub mod passthrough;
pub mod sni;
pub mod terminate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::routing::certs::{crypto_provider, signing_key};
use crate::routing::{ClientAuth, SharedTable, Trust};

/// Sessions the shared cache holds: nginx's `ssl-session-cache-size` default of 10 MB
/// holds about 40,000.
pub const SESSION_CACHE_ENTRIES: usize = 40_000;

/// The process's TLS server configs: the one every host without client certificates
/// uses, and one per distinct client-certificate policy (`auth-tls-*`), built on the
/// first handshake that needs it and kept while the table still has the policy.
///
/// All share the certificate resolver, ALPN and versions ([`build`]). Each has its own
/// session cache and ticket key, so a session made under one client-auth policy (or
/// none) never resumes under another; a resumed session keeps its client certificate,
/// which is verified again against the host's current CA.
pub struct TlsConfigs {
    table: Arc<SharedTable>,
    fallback: Arc<CertifiedKey>,
    base: Arc<ServerConfig>,
    by_policy: Mutex<HashMap<u64, Arc<ServerConfig>>>,
}

/// Builds the process's TLS server configs: TLS 1.2 and 1.3, h2 then http/1.1 by ALPN,
/// certificates from the current table, one session cache and one ticketer per config.
pub fn server_config(
    table: Arc<SharedTable>,
    fallback: Arc<CertifiedKey>,
) -> Result<Arc<TlsConfigs>, rustls::Error> {
    Ok(Arc::new(TlsConfigs {
        base: build(&table, &fallback, None)?,
        table,
        fallback,
        by_policy: Mutex::new(HashMap::new()),
    }))
}

impl TlsConfigs {
    /// The config of hosts without client certificates: no certificate is asked for.
    pub fn base(&self) -> &Arc<ServerConfig> {
        &self.base
    }

    /// The config that asks for a client certificate of `auth`'s CA.
    pub fn for_policy(
        &self,
        auth: &ClientAuth,
        trust: &Arc<Trust>,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut map = self.by_policy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&auth.id) {
            return Ok(c.clone());
        }
        // Policies the table no longer has go before a new one comes in, so the map
        // holds at most the current table's policies.
        let table = self.table.load();
        let live: HashSet<u64> = table.client_auth.policies().map(|a| a.id).collect();
        map.retain(|id, _| live.contains(id));
        let verifier = Arc::new(deferred::Deferred::new(trust.verifier.clone()));
        let config = build(&self.table, &self.fallback, Some(verifier))?;
        map.insert(auth.id, config.clone());
        Ok(config)
    }
}

/// One server config; `verifier` asks for client certificates.
fn build(
    table: &Arc<SharedTable>,
    fallback: &Arc<CertifiedKey>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(CertResolver::new(table.clone(), fallback.clone())));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::new(SessionCache::new(table.clone(), SESSION_CACHE_ENTRIES));
    config.ticketer = Arc::new(LiveTicketer {
        table: table.clone(),
        inner: rustls::crypto::aws_lc_rs::Ticketer::new()?,
    });
    Ok(Arc::new(config))
}

/// Issues and accepts session tickets only while `ssl-session-tickets` is on.
#[derive(Debug)]
struct LiveTicketer {
    table: Arc<SharedTable>,
    inner: Arc<dyn ProducesTickets>,
}

impl ProducesTickets for LiveTicketer {
    fn enabled(&self) -> bool {
        self.table.load().globals.ssl_session_tickets
    }
    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.enabled().then(|| self.inner.decrypt(cipher)).flatten()
    }
}

/// The shared server-side session cache: bounded (oldest out first), entries expire
/// after `ssl-session-timeout`, and nothing is stored or found while
/// `ssl-session-cache` is off. TLS 1.2 session IDs and TLS 1.3 stateful tickets both
/// land here.
#[derive(Debug)]
struct SessionCache {
    table: Arc<SharedTable>,
    capacity: usize,
    inner: Mutex<Sessions>,
}

#[derive(Debug, Default)]
struct Sessions {
    map: std::collections::HashMap<Vec<u8>, (u64, Vec<u8>)>,
    order: VecDeque<Vec<u8>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SessionCache {
    fn new(table: Arc<SharedTable>, capacity: usize) -> SessionCache {
        SessionCache {
            table,
            capacity,
            inner: Mutex::new(Sessions::default()),
        }
    }

    /// The session timeout while the cache is on.
    fn live(&self) -> Option<Duration> {
        let table = self.table.load();
        table
            .globals
            .ssl_session_cache
            .then_some(table.globals.ssl_session_timeout)
    }

    fn lookup(&self, key: &[u8], remove: bool) -> Option<Vec<u8>> {
        let timeout = self.live()?;
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (born, _) = s.map.get(key)?;
        if now_secs().saturating_sub(*born) > timeout.as_secs() {
            s.map.remove(key);
            return None;
        }
        if remove {
            s.map.remove(key).map(|(_, v)| v)
        } else {
            s.map.get(key).map(|(_, v)| v.clone())
        }
    }
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        if self.live().is_none() {
            return false;
        }
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Keys removed by take() or expiry leave stale entries in `order`; they are
        // skipped here, so the map never exceeds the capacity.
        while s.map.len() >= self.capacity {
            match s.order.pop_front() {
                Some(old) => {
                    s.map.remove(&old);
                }
                None => break,
            }
        }
        if s.order.len() >= 2 * self.capacity {
            let Sessions { map, order } = &mut *s;
            order.retain(|k| map.contains_key(k));
        }
        s.order.push_back(key.clone());
        s.map.insert(key, (now_secs(), value));
        true
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup(key, false)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup(key, true)
    }
    fn can_cache(&self) -> bool {
        self.live().is_some()
    }
}

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

/// Why the fallback certificate could not be made (at start; sluice then exits).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Key(#[from] rustls::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Generates the fallback certificate (ECDSA P-256, CN [`FAKE_CERT_CN`], SAN `ingress.local`).
pub fn fake_certificate() -> Result<Arc<CertifiedKey>> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FAKE_CERT_CN);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme Co");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = signing_key(&der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signer,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{GlobalSettings, RoutingTable};

    fn mk_table(globals: GlobalSettings) -> Arc<SharedTable> {
        let table = SharedTable::new();
        table.publish(RoutingTable {
            globals,
            ..RoutingTable::default()
        });
        table
    }

    #[test]
    fn fake_certificate_is_usable() {
        let ck = super::fake_certificate().unwrap();
        assert!(ck.keys_match().is_ok());
    }

    #[test]
    fn session_cache_is_bounded_and_obeys_the_configmap() {
        let cache = SessionCache::new(mk_table(GlobalSettings::default()), 3);
        for i in 0..5u8 {
            assert!(cache.put(vec![i], vec![i; 4]));
        }
        // The two oldest went out first.
        assert_eq!(cache.get(&[0]), None);
        assert_eq!(cache.get(&[1]), None);
        assert_eq!(cache.get(&[4]), Some(vec![4; 4]));
        assert_eq!(cache.take(&[4]), Some(vec![4; 4]));
        assert_eq!(cache.get(&[4]), None);

        let off = SessionCache::new(
            mk_table(GlobalSettings {
                ssl_session_cache: false,
                ..GlobalSettings::default()
            }),
            3,
        );
        assert!(!off.can_cache());
        assert!(!off.put(vec![1], vec![1]));
        assert_eq!(off.get(&[1]), None);
    }

    #[test]
    fn tickets_follow_the_configmap() {
        let ticketer = |on| LiveTicketer {
            table: mk_table(GlobalSettings {
                ssl_session_tickets: on,
                ..GlobalSettings::default()
            }),
            inner: rustls::crypto::aws_lc_rs::Ticketer::new().unwrap(),
        };
        assert!(
            !ticketer(false).enabled(),
            "off by default, as ingress-nginx"
        );
        let on = ticketer(true);
        let sealed = on.encrypt(b"session").unwrap();
        assert_eq!(on.decrypt(&sealed).as_deref(), Some(&b"session"[..]));
    }
}

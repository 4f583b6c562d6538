//! The TLS handshake of the HTTPS listener, run by sluice rather than by Pingora's
//! listener so that every worker uses the one shared `ServerConfig` (and so one session
//! cache and one set of ticket keys: a session resumes whichever worker the kernel
//! gives the connection to). Pingora 0.9's `TlsSettings` builds a config per listener
//! with no hook for either.
//!
//! The HTTPS port is an ordinary TCP listener; [`TlsTerminate`] tells its connections
//! from the HTTP port's by the local port, reads the PROXY header first when
//! `use-proxy-protocol` is on, then runs the handshake with Pingora's own acceptor
//! (the same `TlsStream` and digests as before, so ALPN, h2 and `ssl_digest` work
//! unchanged). The handshake is bounded by the same 60 s Pingora's listener used.
//!
//! When the table has client-auth hosts, it first reads the ClientHello's SNI
//! ([`super::sni`]; the bytes are given back to the stream) and picks the config from
//! the current table: a host with client certificates (`auth-tls-*`) gets its
//! policy's config, which asks for one, and the certificate is verified right after
//! the handshake into the TLS digest ([`crate::proxy::client_cert`]); every other
//! connection gets the base config and is never asked for a certificate.
//!
//! With SSL passthrough hosts in the table the SNI is read as well, and a connection
//! naming one is handed to [`super::passthrough`] (no TLS work at all); an unknown SNI
//! or none goes to termination. The peek is inside the handshake bound (60 s) and
//! reads at most `sni::MAX_HELLO` bytes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::listeners::TlsAccept;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tracing::debug;

use super::TlsConfigs;
use crate::routing::{ClientAuth, SharedTable, Trust};

/// The longest a client may take over its handshake (Pingora's listener bound).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Wraps the HTTP application: connections to `tls_port` are TLS-terminated first.
pub struct TlsTerminate<A> {
    inner: Arc<A>,
    configs: Arc<TlsConfigs>,
    acceptor: Acceptor,
    tls_port: u16,
    table: Arc<SharedTable>,
}

impl<A> TlsTerminate<A> {
    pub fn new(inner: A, configs: Arc<TlsConfigs>, tls_port: u16, table: Arc<SharedTable>) -> Self {
        TlsTerminate {
            inner: Arc::new(inner),
            acceptor: Acceptor::from_server_config(configs.base().clone()),
            configs,
            tls_port,
            table,
        }
    }

    fn is_tls_port(&self, stream: &Stream) -> bool {
        stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()))
            == Some(self.tls_port)
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsTerminate<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if stream.get_ssl_digest().is_some() || !self.is_tls_port(&stream) {
            return self.inner.process_new(stream, shutdown).await;
        }
        // The listener hands over its own L4 stream; anything else is not ours to
        // terminate.
        let mut l4: L4Stream = match stream.into_any().downcast::<L4Stream>() {
            Ok(s) => *s,
            Err(_) => {
                debug!("closing connection: not a TCP stream on the HTTPS port");
                return None;
            }
        };
        let handshake = async {
            // Without client-auth or passthrough hosts every connection takes the base
            // config: the ClientHello is not read twice.
            let (proxy_protocol, by_sni) = {
                let table = self.table.load();
                (
                    table.globals.use_proxy_protocol,
                    !table.client_auth.is_empty() || !table.passthrough.is_empty(),
                )
            };
            if proxy_protocol {
                if let Err(e) = crate::proxy::proxy_protocol::accept_header(&mut l4).await {
                    debug!(error = %e, "closing TLS connection: use-proxy-protocol is on");
                    return None;
                }
            }
            let sni = if by_sni {
                match super::sni::peek_sni(&mut l4).await {
                    Ok(sni) => sni,
                    Err(e) => {
                        debug!(error = %e, "closing TLS connection: reading the ClientHello");
                        return None;
                    }
                }
            } else {
                None
            };
            let table = self.table.load();
            if let Some(backend) = sni.as_deref().and_then(|h| table.passthrough.get(h)) {
                let connect = table.globals.connect_timeout;
                return Some(Next::Splice(Box::new(l4), backend.clone(), connect));
            }
            let policy = sni
                .as_deref()
                .and_then(|h| table.client_auth.lookup(h))
                .and_then(|a| a.handshake_trust().map(|t| (a.clone(), t.clone())));
            drop(table);
            let handshake = match policy {
                None => self.acceptor.tls_handshake(l4).await,
                Some((auth, trust)) => {
                    let config = match self.configs.for_policy(&auth, &trust) {
                        Ok(c) => c,
                        Err(e) => {
                            debug!(error = %e, "closing TLS connection: client-auth config");
                            return None;
                        }
                    };
                    let acceptor = Acceptor::from_server_config(config);
                    let capture = Capture { auth, trust };
                    pingora::protocols::tls::server::handshake_with_callback(
                        &acceptor, l4, &capture,
                    )
                    .await
                }
            };
            match handshake {
                Ok(tls) => Some(Next::Tls(tls)),
                Err(e) => {
                    debug!(error = %e, "TLS handshake failed");
                    None
                }
            }
        };
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Some(Next::Tls(tls))) => tls,
            Ok(Some(Next::Splice(l4, backend, connect))) => {
                super::passthrough::splice(*l4, backend, connect).await;
                return None;
            }
            Ok(None) => return None,
            Err(_) => {
                debug!("closing connection: TLS handshake timed out");
                return None;
            }
        };
        self.inner.process_new(Box::new(tls), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// What a connection on the HTTPS port becomes once its start has been read.
enum Next<T> {
    /// Terminated: the HTTP application serves it.
    Tls(T),
    /// A passthrough host's: spliced raw to the backend (connect timeout with it).
    Splice(Box<L4Stream>, Arc<crate::routing::Backend>, Duration),
}

/// Verifies the client's certificate once the handshake is done; the result rides in
/// the TLS digest's extension for every request of the connection.
struct Capture {
    auth: Arc<ClientAuth>,
    trust: Arc<Trust>,
}

#[async_trait]
impl TlsAccept for Capture {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let peer =
            crate::proxy::client_cert::verify(&self.auth, &self.trust, tls.peer_cert_chain_der());
        Some(Arc::new(peer))
    }
}

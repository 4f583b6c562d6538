//! A small pooled HTTP/1.1 client for requests sluice makes on its own behalf: today the
//! `auth-url` subrequests, and whatever else needs one later (custom error pages).
//!
//! Owns connection pooling, TLS and time limits for those requests; callers get the
//! response head (status and headers) only. Choices:
//! - One pool per worker thread. Each Pingora worker is a single-threaded runtime, and a
//!   pooled connection is driven by a task on the runtime that opened it, so a per-thread
//!   client keeps every connection on its own runtime. Idle connections live 60 s.
//! - `https://` URLs: rustls (ring), SNI sent, the server certificate **not verified**,
//!   as nginx's `proxy_ssl_verify off` default for ingress-nginx's auth location, so
//!   in-cluster auth services with private certificates keep working.
//! - Time limits: connecting within `connect_timeout`, the whole exchange (connect,
//!   request, response head, body) within `timeout`. At most 64 KiB of the response
//!   body is read (and thrown away) so the connection can be reused; a larger body
//!   closes it instead.
//! - Bounds: at most 4 clients per worker thread (one per distinct connect timeout), each
//!   keeping at most 64 idle connections per host for 60 s. Hosts come from `auth-url`;
//!   one that interpolates request data (`$host`) makes them traffic-driven, and then
//!   every such host costs at most 64 idle connections for 60 s.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The head of a subrequest's response.
#[derive(Debug)]
pub struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
}

/// Why a subrequest produced no response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Most response-body bytes read to keep a connection reusable.
const MAX_DRAIN: usize = 64 * 1024;

thread_local! {
    /// This thread's clients, by connect timeout (in practice one).
    static CLIENTS: RefCell<Vec<(Duration, HttpClient)>> = const { RefCell::new(Vec::new()) };
}

fn client(connect_timeout: Duration) -> Result<HttpClient, Error> {
    CLIENTS.with(|clients| {
        let mut clients = clients.borrow_mut();
        if let Some((_, c)) = clients.iter().find(|(t, _)| *t == connect_timeout) {
            return Ok(c.clone());
        }
        let c = build(connect_timeout)?;
        if clients.len() >= 4 {
            clients.remove(0);
        }
        clients.push((connect_timeout, c.clone()));
        Ok(c)
    })
}

fn build(connect_timeout: Duration) -> Result<HttpClient, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Failed(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .pool_timer(TokioTimer::new())
        .build(https))
}

/// Sends a bodiless request to an absolute `http(s)://` URI and returns the response head.
pub async fn send(
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<Response, Error> {
    let client = client(connect_timeout)?;
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let exchange = async move {
        let resp = client
            .request(req)
            .await
            .map_err(|e| Error::Failed(error_chain(&e)))?;
        let (parts, body) = resp.into_parts();
        // Drain (bounded) so the connection goes back to the pool.
        let _ = Limited::new(body, MAX_DRAIN).collect().await;
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(timeout)),
    }
}

/// "connection refused" rather than hyper-util's bare "client error (Connect)".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Accepts any server certificate (signatures are still checked, so the handshake is
/// with whoever holds the presented key).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! The one HTTP/1.1 client for requests sluice makes on its own behalf while handling a
//! client's request: `auth-url` subrequests and custom error pages. Owns connection
//! pooling, TLS and the time and size limits of those requests.
//!
//! Choices:
//! - One pool per worker thread. Each Pingora worker is a single-threaded runtime, and a
//!   pooled connection is driven by a task on the runtime that opened it, so a per-thread
//!   client keeps every connection on its own runtime. Idle connections live
//!   [`POOL_IDLE`], at most [`POOL_IDLE_PER_HOST`] per host.
//! - At most 4 clients per worker thread, one per distinct connect timeout (in practice
//!   one or two). Hosts come from `auth-url` and the error backends' endpoints; an
//!   `auth-url` that interpolates request data (`$host`) makes them traffic-driven, and
//!   then every such host costs at most [`POOL_IDLE_PER_HOST`] idle connections for
//!   [`POOL_IDLE`].
//! - `https://` URLs: rustls (ring), SNI sent, the server certificate **not verified**,
//!   as nginx's `proxy_ssl_verify off` default for ingress-nginx's auth location, so
//!   in-cluster auth services with private certificates keep working.
//! - Time limits: connecting within [`Limits::connect`], the whole exchange (connect,
//!   request, response head, body) within [`Limits::total`].
//! - Bodies: [`BodyUse::Drain`] reads at most 64 KiB and throws it away so the
//!   connection can be reused (a larger body closes it instead); [`BodyUse::Keep`]
//!   returns the body and fails when it grows past its limit.

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

/// Idle pooled connections kept per host and client.
pub const POOL_IDLE_PER_HOST: usize = 64;
/// How long an idle pooled connection is kept.
pub const POOL_IDLE: Duration = Duration::from_secs(60);
/// Most response-body bytes read (and thrown away) to keep a connection reusable.
const MAX_DRAIN: usize = 64 * 1024;
/// Clients kept per worker thread, one per connect timeout.
const MAX_CLIENTS: usize = 4;

/// What a request asks for.
#[derive(Debug)]
pub struct Request {
    pub method: http::Method,
    /// Absolute `http://` or `https://` URI.
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
}

/// What to do with the response body.
#[derive(Debug, Clone, Copy)]
pub enum BodyUse {
    /// Read at most 64 KiB and drop it: only the head matters.
    Drain,
    /// Return the body; more than this many bytes is [`Error::Body`].
    Keep(usize),
}

/// The bounds of one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    pub total: Duration,
    pub body: BodyUse,
}

/// A response: its head, and its body when [`BodyUse::Keep`] asked for it.
#[derive(Debug)]
pub struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Why a request produced no response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target does not make a URI (a malformed path or query).
    #[error("bad URI: {0}")]
    Uri(#[from] http::uri::InvalidUri),
    /// The client's TLS settings were refused (not expected with rustls's defaults).
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// Connecting, sending or reading the response head failed; `detail` is the whole
    /// error chain ("connection refused" rather than hyper-util's bare "client error").
    #[error("request to {target} failed: {detail}")]
    Request { target: String, detail: String },
    /// The body failed midway or grew past the caller's limit.
    #[error("reading the answer of {target}: {detail}")]
    Body { target: String, detail: String },
    /// No whole answer within the caller's deadline.
    #[error("{target} did not answer within {deadline:?}")]
    Timeout { target: String, deadline: Duration },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

thread_local! {
    /// This thread's clients, by connect timeout.
    static CLIENTS: RefCell<Vec<(Duration, HttpClient)>> = const { RefCell::new(Vec::new()) };
}

fn client(connect_timeout: Duration) -> Result<HttpClient> {
    CLIENTS.with(|clients| {
        let mut clients = clients.borrow_mut();
        if let Some((_, c)) = clients.iter().find(|(t, _)| *t == connect_timeout) {
            return Ok(c.clone());
        }
        let c = build(connect_timeout)?;
        if clients.len() >= MAX_CLIENTS {
            clients.remove(0);
        }
        clients.push((connect_timeout, c.clone()));
        Ok(c)
    })
}

fn build(connect_timeout: Duration) -> Result<HttpClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
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
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}

/// Sends a bodiless request and reads its answer within `limits`.
pub async fn send(request: Request, limits: Limits) -> Result<Response> {
    let client = client(limits.connect)?;
    // For errors only: a refcounted clone, formatted when something fails.
    let uri = request.uri.clone();
    let target = move || {
        uri.authority()
            .map_or_else(|| uri.to_string(), |a| a.to_string())
    };
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.method_mut() = request.method;
    *req.uri_mut() = request.uri;
    *req.headers_mut() = request.headers;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| Error::Request {
            target: target(),
            detail: error_chain(&e),
        })?;
        let (parts, body) = resp.into_parts();
        let body = match limits.body {
            BodyUse::Drain => {
                let _ = Limited::new(body, MAX_DRAIN).collect().await;
                Bytes::new()
            }
            BodyUse::Keep(max) => Limited::new(body, max)
                .collect()
                .await
                .map_err(|e| Error::Body {
                    target: target(),
                    detail: error_chain(&*e),
                })?
                .to_bytes(),
        };
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(limits.total, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            target: target(),
            deadline: limits.total,
        }),
    }
}

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
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection HTTP server answering each request with `answer`.
    async fn server(answer: &'static [u8]) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                if s.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    fn get(addr: SocketAddr, path: &str) -> Request {
        Request {
            method: http::Method::GET,
            uri: format!("http://{addr}{path}").parse().unwrap(),
            headers: http::HeaderMap::new(),
        }
    }

    fn limits(total: Duration, body: BodyUse) -> Limits {
        Limits {
            connect: Duration::from_secs(1),
            total,
            body,
        }
    }

    #[tokio::test]
    async fn reads_answers_and_reuses_the_connection() {
        let addr = server(
            b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nno",
        )
        .await;
        // The server accepts one connection only: the later requests must reuse it,
        // whether the body was kept or drained.
        for body in [BodyUse::Keep(1024), BodyUse::Drain, BodyUse::Keep(1024)] {
            let r = send(get(addr, "/?a=1"), limits(Duration::from_secs(2), body))
                .await
                .unwrap();
            assert_eq!(r.status, 404);
            assert_eq!(r.headers["content-type"], "text/plain");
            let want: &[u8] = if matches!(body, BodyUse::Drain) {
                b""
            } else {
                b"no"
            };
            assert_eq!(&r.body[..], want);
        }
    }

    #[tokio::test]
    async fn bounded_body_and_time() {
        let big = server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789").await;
        let e = send(
            get(big, "/"),
            limits(Duration::from_secs(2), BodyUse::Keep(4)),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Body { .. }), "{e}");
        assert!(e.to_string().contains("reading"), "{e}");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap();
        let e = send(
            get(silent, "/"),
            limits(Duration::from_millis(200), BodyUse::Drain),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("did not answer"), "{e}");
        drop(l);
    }

    #[tokio::test]
    async fn refused_connection_names_the_cause() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = send(
            get(addr, "/"),
            limits(Duration::from_secs(2), BodyUse::Drain),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Request { .. }), "{e}");
        assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
    }
}

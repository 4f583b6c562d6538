//! A small HTTP/1.1 client for requests sluice makes on its own behalf while handling a
//! client's request (today: fetching custom error pages from the error backend).
//!
//! Pooled: one hyper client per proxy worker thread (each worker is a single-threaded
//! runtime, so a pooled connection is only ever used by the thread that opened it), at
//! most [`POOL_IDLE_PER_HOST`] idle connections per address, dropped after
//! [`POOL_IDLE`]. Bounded: connecting may take [`CONNECT_TIMEOUT`], the whole exchange
//! the caller's deadline, and a body larger than the caller's limit is an error, so a
//! slow or huge answer can never hold a client's request for long. Addresses are the
//! error backends' endpoints from the table, so the pool is bounded by objects, not by
//! traffic: at most 8 idle connections per endpoint and worker.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections kept per address and worker.
pub const POOL_IDLE_PER_HOST: usize = 8;
/// How long an idle pooled connection is kept.
pub const POOL_IDLE: Duration = Duration::from_secs(60);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

thread_local! {
    static CLIENT: RefCell<Option<HttpClient>> = const { RefCell::new(None) };
}

fn client() -> HttpClient {
    CLIENT.with(|c| {
        c.borrow_mut()
            .get_or_insert_with(|| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
                connector.set_nodelay(true);
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(POOL_IDLE)
                    .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .build(connector)
            })
            .clone()
    })
}

/// Why a request produced no response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target does not make a URI (a malformed path or query).
    #[error("bad URI: {0}")]
    Uri(#[from] http::uri::InvalidUri),
    /// Connecting, sending or reading the response head failed.
    #[error("request to {addr} failed: {error}")]
    Request {
        addr: SocketAddr,
        error: hyper_util::client::legacy::Error,
    },
    /// The body failed midway or grew past the caller's limit.
    #[error("reading the answer of {addr}: {error}")]
    Body {
        addr: SocketAddr,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No whole answer within the caller's deadline.
    #[error("{addr} did not answer within {deadline:?}")]
    Timeout {
        addr: SocketAddr,
        deadline: Duration,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A response read whole.
#[derive(Debug)]
pub struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Sends a bodyless request (`method` `path_and_query` with `headers`, which should
/// include `Host`) to `addr` and reads the answer, within `deadline` and at most
/// `max_body` bytes of body.
pub async fn send(
    addr: SocketAddr,
    method: http::Method,
    path_and_query: &str,
    headers: http::HeaderMap,
    deadline: Duration,
    max_body: usize,
) -> Result<Response> {
    let uri: http::Uri = format!("http://{addr}{path_and_query}").parse()?;
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let exchange = async {
        let resp = client()
            .request(req)
            .await
            .map_err(|error| Error::Request { addr, error })?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, max_body)
            .collect()
            .await
            .map_err(|error| Error::Body { addr, error })?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| Error::Timeout { addr, deadline })?
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[tokio::test]
    async fn reads_answers_and_reuses_the_connection() {
        let addr = server(
            b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nno",
        )
        .await;
        for _ in 0..3 {
            // The server accepts one connection only: the later requests must reuse it.
            let r = send(
                addr,
                http::Method::GET,
                "/?a=1",
                http::HeaderMap::new(),
                Duration::from_secs(2),
                1024,
            )
            .await
            .unwrap();
            assert_eq!(r.status, 404);
            assert_eq!(r.headers["content-type"], "text/plain");
            assert_eq!(&r.body[..], b"no");
        }
    }

    #[tokio::test]
    async fn bounded_body_and_time() {
        let big = server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789").await;
        let e = send(
            big,
            http::Method::GET,
            "/",
            http::HeaderMap::new(),
            Duration::from_secs(2),
            4,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Body { .. }), "{e}");
        assert!(e.to_string().contains("reading"), "{e}");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap();
        let e = send(
            silent,
            http::Method::GET,
            "/",
            http::HeaderMap::new(),
            Duration::from_millis(200),
            4,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("did not answer"), "{e}");
        drop(l);
    }
}

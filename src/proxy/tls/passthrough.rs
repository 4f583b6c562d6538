//! SSL passthrough: a connection whose ClientHello names a passthrough host
//! (`RoutingTable::passthrough`) is spliced raw to one of the host's backend endpoints.
//! sluice does no TLS work on it: the client sees the backend's certificate.
//!
//! The ClientHello bytes already read for the SNI were given back to the stream
//! (`sni::peek_sni`), so the copy replays them first. Endpoints are picked round robin
//! from the backend of the table current at accept time; a refused or timed-out
//! connect (the ConfigMap's `proxy-connect-timeout`) tries the next endpoint, at most
//! [`MAX_TRIES`] in all. An idle splice (nothing moved either way) is closed after
//! [`IDLE_TIMEOUT`]: ingress-nginx's `proxy-stream-timeout` default of 600 s, generous
//! because passthrough carries long-lived TLS sessions (Argo CD's gRPC streams). The
//! connection is counted by `Draining` and `ConnectionCap`, which wrap `TlsTerminate`.

use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use crate::routing::{Backend, Endpoints};

/// The longest a spliced connection may move no byte either way (ingress-nginx's
/// `proxy-stream-timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Endpoints tried per connection (ingress-nginx's `proxy-next-upstream-tries`).
pub const MAX_TRIES: usize = 3;

/// Connects to an endpoint of `backend`: round robin, the next one on failure.
async fn connect(backend: &Backend, connect_timeout: Duration) -> Option<TcpStream> {
    let attempt = |target: String| async move {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(target.as_str())).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                debug!(%target, error = %e, "passthrough connect failed");
                None
            }
            Err(_) => {
                debug!(%target, "passthrough connect timed out");
                None
            }
        }
    };
    match &backend.endpoints {
        Endpoints::Addrs(addrs) if !addrs.is_empty() => {
            let start = backend.next_cursor();
            for i in 0..addrs.len().min(MAX_TRIES) {
                let addr = addrs[(start + i) % addrs.len()];
                if let Some(s) = attempt(addr.to_string()).await {
                    return Some(s);
                }
            }
            None
        }
        Endpoints::External { host, port } => attempt(format!("{host}:{port}")).await,
        _ => None,
    }
}

/// Splices `client` (PROXY header already read, ClientHello rewound) to `backend`.
pub async fn splice(mut client: L4Stream, backend: Arc<Backend>, connect_timeout: Duration) {
    let Some(mut upstream) = connect(&backend, connect_timeout).await else {
        debug!(backend = %backend.upstream_name, "closing passthrough connection: no endpoint reachable");
        return;
    };
    let _ = upstream.set_nodelay(true);
    if let Err(e) = copy_idle(&mut client, &mut upstream, IDLE_TIMEOUT).await {
        debug!(error = %e, "passthrough connection ended");
    }
}

/// Copies both ways until both sides are done (a half-close is passed on), or until
/// nothing has moved for `idle`.
pub async fn copy_idle<A, B>(a: &mut A, b: &mut B, idle: Duration) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ra, mut wa) = tokio::io::split(a);
    let (mut rb, mut wb) = tokio::io::split(b);
    let (mut buf_a, mut buf_b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        tokio::select! {
            r = ra.read(&mut buf_a), if !a_done => {
                let n = r?;
                if n == 0 {
                    a_done = true;
                    let _ = wb.shutdown().await;
                } else {
                    tokio::time::timeout(idle, wb.write_all(&buf_a[..n])).await
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                }
            }
            r = rb.read(&mut buf_b), if !b_done => {
                let n = r?;
                if n == 0 {
                    b_done = true;
                    let _ = wa.shutdown().await;
                } else {
                    tokio::time::timeout(idle, wa.write_all(&buf_b[..n])).await
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                }
            }
            _ = tokio::time::sleep(idle) => {
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
            }
        }
    }
    Ok(())
}

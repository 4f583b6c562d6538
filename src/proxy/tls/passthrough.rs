//! SSL passthrough: a connection whose ClientHello names a passthrough host
//! (`RoutingTable::passthrough`) is spliced raw to one of the host's backend endpoints.
//! sluice does no TLS work on it: the client sees the backend's certificate and ALPN.
//!
//! The ClientHello bytes already read for the SNI were given back to the stream
//! (`sni::peek_sni`), so the copy replays them first; a PROXY header
//! (`use-proxy-protocol`) was read before them and is not passed on (ingress-nginx sends
//! none to passthrough backends either). Endpoints are picked round robin from the
//! backend of the table current at accept time, so endpoint changes apply to new
//! connections and an open splice is never cut by one; ingress-nginx dials the
//! Service's ClusterIP instead and lets kube-proxy balance. A refused or timed-out
//! connect (the ConfigMap's `proxy-connect-timeout`) tries the next endpoint, at most
//! [`MAX_TRIES`] in all; when none answers, the client's connection is closed.
//!
//! The two directions are copied side by side, each write flushed (Pingora's client
//! stream buffers writes), and a half-close is passed on. An idle splice (nothing
//! moved either way) is closed after [`IDLE_TIMEOUT`], 600 s as nginx's
//! `proxy-stream-timeout` default, generous because passthrough carries long-lived
//! TLS sessions (Argo CD's gRPC streams); ingress-nginx's Go passthrough proxy has none.
//! The connection is counted by `Draining` and `ConnectionCap`, which wrap
//! `TlsTerminate`: a SIGTERM drain waits for it as for a WebSocket. It is not in the
//! access log or the request metrics (nor is it in ingress-nginx).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    match &backend.endpoints {
        Endpoints::Addrs(addrs) if !addrs.is_empty() => {
            let start = backend.next_cursor();
            for i in 0..addrs.len().min(MAX_TRIES) {
                let addr = addrs[(start + i) % addrs.len()];
                if let Some(s) = dial(addr, connect_timeout).await {
                    return Some(s);
                }
            }
            None
        }
        Endpoints::External { host, port } => dial(format!("{host}:{port}"), connect_timeout).await,
        _ => None,
    }
}

/// One connect, bounded by `connect_timeout`; a failure is logged at debug.
async fn dial<T>(target: T, connect_timeout: Duration) -> Option<TcpStream>
where
    T: tokio::net::ToSocketAddrs + std::fmt::Display,
{
    let shown = target.to_string();
    match tokio::time::timeout(connect_timeout, TcpStream::connect(target)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            debug!(target = %shown, error = %e, "passthrough connect failed");
            None
        }
        Err(_) => {
            debug!(target = %shown, "passthrough connect timed out");
            None
        }
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

/// Copies both ways until both sides are done (a half-close is passed on), until
/// either side fails, or until nothing has moved either way for `idle`.
///
/// The two directions run side by side (one may wait on a full socket buffer while
/// the other keeps moving: a copy loop that does both in turn can stall both peers),
/// and every write is flushed: the client's stream is Pingora's, which buffers writes.
pub async fn copy_idle<A, B>(a: &mut A, b: &mut B, idle: Duration) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    // Milliseconds since `start` of the last byte moved, either way.
    let last = AtomicU64::new(0);
    let (mut ra, mut wa) = tokio::io::split(a);
    let (mut rb, mut wb) = tokio::io::split(b);
    let both = async {
        tokio::try_join!(
            pipe(&mut ra, &mut wb, start, &last),
            pipe(&mut rb, &mut wa, start, &last)
        )
    };
    let watchdog = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let quiet = start.elapsed().saturating_sub(since);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        r = both => r.map(|_| ()),
        _ = watchdog => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
    }
}

/// One direction: `r` to `w` until `r` ends, then a half-close of `w`.
async fn pipe<R, W>(r: &mut R, w: &mut W, start: Instant, last: &AtomicU64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // The peer may be gone already; the other direction decides.
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_at_once_and_passes_half_closes() {
        // Small pipes, and a backend that reads only once it has written everything:
        // the client's bytes wait on a full buffer while the backend's must keep
        // moving. Copying both ways in turn would stall the pair.
        let (mut client, mut a) = tokio::io::duplex(1024);
        let (mut b, mut backend) = tokio::io::duplex(1024);
        let splice =
            tokio::spawn(async move { copy_idle(&mut a, &mut b, Duration::from_secs(5)).await });
        let up: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let down: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let client_side = tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(&mut client);
            let write = async {
                w.write_all(&up2).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let read = r.read_to_end(&mut got);
            let (_, n) = tokio::join!(write, read);
            n.unwrap();
            got
        });
        // The backend writes everything before it reads a byte.
        let backend_side = tokio::spawn(async move {
            backend.write_all(&down2).await.unwrap();
            backend.shutdown().await.unwrap();
            let mut got = Vec::new();
            backend.read_to_end(&mut got).await.unwrap();
            got
        });
        let timeout = Duration::from_secs(10);
        let at_client = tokio::time::timeout(timeout, client_side).await.unwrap();
        let at_backend = tokio::time::timeout(timeout, backend_side).await.unwrap();
        assert!(at_client.unwrap() == down, "backend → client bytes differ");
        assert!(at_backend.unwrap() == up, "client → backend bytes differ");
        tokio::time::timeout(timeout, splice)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn an_idle_splice_is_closed_and_traffic_keeps_it_open() {
        let idle = Duration::from_millis(300);
        let (mut client, mut a) = tokio::io::duplex(1024);
        let (mut b, mut backend) = tokio::io::duplex(1024);
        let started = Instant::now();
        let splice = tokio::spawn(async move { copy_idle(&mut a, &mut b, idle).await });
        // A byte every 100 ms for 900 ms: three idle periods, never idle for one.
        for _ in 0..9 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            backend.read_exact(&mut one).await.unwrap();
        }
        assert!(!splice.is_finished(), "closed while traffic was moving");
        let r = tokio::time::timeout(Duration::from_secs(5), splice)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(900) + idle);
        // Both peers see the end.
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    }
}

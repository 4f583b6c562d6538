//! The admin listener: `/healthz` (the process is alive) and `/readyz` (200 only once
//! the first complete routing table is published and the proxy listener accepts). Runs on the control-plane runtime,
//! apart from the proxy's workers, so a saturated data plane still answers probes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::routing::SharedTable;

/// Whether the data plane accepts connections; set once by [`watch_listener`].
#[derive(Debug, Default)]
pub struct Readiness {
    listening: AtomicBool,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness::default())
    }

    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

/// Pingora binds its listeners on its own runtime with no hook to observe it, so probe
/// the proxy port until it accepts, then mark the process as listening.
pub async fn watch_listener(addr: SocketAddr, readiness: Arc<Readiness>) {
    let mut probe = addr;
    if probe.ip().is_unspecified() {
        probe.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    while tokio::net::TcpStream::connect(probe).await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    readiness.listening.store(true, Ordering::Release);
    info!(%addr, "proxy listener accepting");
}

fn answer(table: &SharedTable, readiness: &Readiness, path: &str) -> (StatusCode, String) {
    match path {
        "/healthz" => (StatusCode::OK, "ok\n".into()),
        "/readyz" if !readiness.is_listening() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: proxy listener not accepting yet\n".into(),
        ),
        "/readyz" if table.is_ready() => (
            StatusCode::OK,
            format!("ready: generation {}\n", table.load().generation),
        ),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no routing table published yet\n".into(),
        ),
        "/metrics" => (StatusCode::OK, crate::metrics::global().encode()),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Binds the admin listener (failing early if the address is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves admin requests until the runtime stops.
pub async fn serve(listener: TcpListener, table: Arc<SharedTable>, readiness: Arc<Readiness>) {
    info!(addr = ?listener.local_addr().ok(), "admin listener up");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "admin accept failed");
                continue;
            }
        };
        let (table, readiness) = (table.clone(), readiness.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, body) = answer(&table, &readiness, req.uri().path());
                let resp = Response::builder()
                    .status(status)
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from(body)))
                    .expect("static response");
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "admin connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::RoutingTable;

    #[test]
    fn readiness_follows_first_publish() {
        let t = SharedTable::new();
        let r = Readiness::default();
        r.listening.store(true, Ordering::Release);
        assert_eq!(answer(&t, &r, "/healthz").0, StatusCode::OK);
        assert_eq!(answer(&t, &r, "/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        t.publish(RoutingTable::default());
        assert_eq!(answer(&t, &r, "/readyz").0, StatusCode::OK);
        r.listening.store(false, Ordering::Release);
        assert_eq!(answer(&t, &r, "/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
    }
}

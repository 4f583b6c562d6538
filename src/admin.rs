//! The admin listener: `/healthz` (the process is alive) and `/readyz` (200 only once
//! the first complete routing table is published and the proxy listener accepts, and
//! until shutdown begins). Runs on the control-plane runtime, apart from the proxy's
//! workers, so a saturated data plane still answers probes.
//!
//! The admin socket is bound with `SO_REUSEPORT`, so a process started with
//! `--upgrade` can bind the same port while the old one still holds it; the old one
//! closes its admin listener once it has handed its proxy sockets over (see
//! [`crate::drain`]). A fresh (non-upgrade) start first checks the port with a plain
//! bind, so a port held by anything, another sluice included, is a clear error.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::routing::SharedTable;

/// Whether the data plane accepts connections (set once by [`watch_listener`]) and
/// whether shutdown has begun.
#[derive(Debug, Default)]
pub struct Readiness {
    listening: AtomicBool,
    draining: AtomicBool,
    close_admin: Notify,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness::default())
    }

    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Shutdown has begun: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops accepting admin connections (the sockets were handed to a new process,
    /// which answers the probes now). Connections already open are still answered.
    pub fn close_admin(&self) {
        self.close_admin.notify_one();
    }
}

/// Marks the process as listening once the proxy port accepts.
///
/// Pingora 0.9.1 gives no signal after its listeners are bound: each listening service
/// binds inside its own start task, and its `ServiceReadyNotifier` fires before that.
/// The last signal it does give is `ExecutionPhase::Running`, sent once every service
/// task has been started, which the caller turns into `started`. So this waits for
/// `started` and only then connects to the port, retrying with a short backoff for the
/// moment between that phase and the bind (normally the first or second connect).
pub async fn watch_listener(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    started: impl std::future::Future<Output = ()>,
) {
    let mut probe = addr;
    if probe.ip().is_unspecified() {
        probe.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    started.await;
    let mut pause = std::time::Duration::from_millis(1);
    while tokio::net::TcpStream::connect(probe).await.is_err() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
    readiness.listening.store(true, Ordering::Release);
    info!(%addr, "proxy listener accepting");
}

fn answer(table: &SharedTable, readiness: &Readiness, path: &str) -> (StatusCode, String) {
    match path {
        "/healthz" => (StatusCode::OK, "ok\n".into()),
        "/readyz" if readiness.is_draining() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".into(),
        ),
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

/// Binds the admin listener with `SO_REUSEPORT`. Unless `upgrade` (a new process
/// taking over from a running one, which holds the port), a plain bind first fails
/// early if anything listens on the address.
pub async fn bind(addr: SocketAddr, upgrade: bool) -> std::io::Result<TcpListener> {
    let socket = || match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    if !upgrade {
        let probe = socket()?;
        probe.set_reuseaddr(true)?;
        probe.bind(addr)?;
    }
    let sock = socket()?;
    sock.set_reuseaddr(true)?;
    sock.set_reuseport(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// Serves admin requests until the runtime stops or [`Readiness::close_admin`].
pub async fn serve(listener: TcpListener, table: Arc<SharedTable>, readiness: Arc<Readiness>) {
    info!(addr = ?listener.local_addr().ok(), "admin listener up");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = readiness.close_admin.notified() => {
                info!("admin listener closed");
                return;
            }
        };
        let (stream, peer) = match accepted {
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

    #[test]
    fn draining_is_not_ready_but_alive() {
        let t = SharedTable::new();
        t.publish(RoutingTable::default());
        let r = Readiness::default();
        r.listening.store(true, Ordering::Release);
        assert_eq!(answer(&t, &r, "/readyz").0, StatusCode::OK);
        r.set_draining();
        assert_eq!(answer(&t, &r, "/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer(&t, &r, "/healthz").0, StatusCode::OK);
    }

    #[tokio::test]
    async fn admin_port_is_shared_only_for_an_upgrade() {
        let first = bind("127.0.0.1:0".parse().unwrap(), false).await.unwrap();
        let addr = first.local_addr().unwrap();
        assert!(
            bind(addr, false).await.is_err(),
            "a second fresh start must fail"
        );
        let second = bind(addr, true)
            .await
            .expect("an upgrade binds beside the old process");
        drop((first, second));
    }
}

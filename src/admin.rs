//! The admin listener: `/healthz` (the process is alive) and `/readyz` (200 only once
//! the first complete routing table is published). Runs on the control-plane runtime,
//! apart from the proxy's workers, so a saturated data plane still answers probes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::routing::SharedTable;

fn answer(table: &SharedTable, path: &str) -> (StatusCode, String) {
    match path {
        "/healthz" => (StatusCode::OK, "ok\n".into()),
        "/readyz" if table.is_ready() => (
            StatusCode::OK,
            format!("ready: generation {}\n", table.load().generation),
        ),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no routing table published yet\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Binds the admin listener (failing early if the address is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves admin requests until the runtime stops.
pub async fn serve(listener: TcpListener, table: Arc<SharedTable>) {
    info!(addr = ?listener.local_addr().ok(), "admin listener up");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "admin accept failed");
                continue;
            }
        };
        let table = table.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, body) = answer(&table, req.uri().path());
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
        assert_eq!(answer(&t, "/healthz").0, StatusCode::OK);
        assert_eq!(answer(&t, "/readyz").0, StatusCode::SERVICE_UNAVAILABLE);
        t.publish(RoutingTable::default());
        assert_eq!(answer(&t, "/readyz").0, StatusCode::OK);
    }
}

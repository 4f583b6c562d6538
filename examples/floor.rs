//! The bare-Pingora floor of the benchmarks (e2e/bench/proxy.sh): a `ProxyHttp` with one
//! fixed peer and nothing else, set up exactly as `sluice` sets up its workers (one
//! single-threaded service per worker, each with its own `SO_REUSEPORT` listener,
//! mimalloc, the release profile's thin LTO, the same server options and upstream
//! keep-alive pool size). What it costs per request is Pingora's own price; what sluice
//! costs above it is sluice's.
//!
//! ```sh
//! cargo build --release --example floor
//! target/release/examples/floor --listen 127.0.0.1:19013 --upstream 127.0.0.1:19000 --workers 2
//! ```

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::apps::HttpServerOptions;
use pingora::listeners::TcpSocketOptions;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// Listen address (HTTP/1.1 and h2c), shared by every worker through SO_REUSEPORT.
    #[arg(long, default_value = "127.0.0.1:19013")]
    listen: SocketAddr,
    /// The one upstream every request goes to.
    #[arg(long, default_value = "127.0.0.1:19000")]
    upstream: SocketAddr,
    /// Workers (default: the number of CPUs), as sluice's `--workers`.
    #[arg(long)]
    workers: Option<usize>,
    /// Upstream keep-alive pool size per worker (sluice: the ConfigMap's
    /// upstream-keepalive-connections, 320 by default).
    #[arg(long, default_value_t = 320)]
    pool: usize,
}

struct Floor {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// Same trick as sluice's `worker_addr`: a distinct spelling per worker, so each gets
/// its own SO_REUSEPORT socket from Pingora.
fn worker_addr(addr: SocketAddr, n: usize) -> String {
    format!("{}:{}{}", addr.ip(), "0".repeat(n), addr.port())
}

fn main() {
    let args = Args::parse();
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let conf = ServerConf {
        threads: 1,
        upstream_keepalive_pool_size: args.pool,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    for worker in 0..workers {
        let mut proxy = pingora::proxy::http_proxy(
            &server.configuration,
            Floor {
                upstream: args.upstream,
            },
        );
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
        let mut service =
            pingora::services::listening::Service::new(format!("floor-{worker}"), proxy);
        service.threads = Some(1);
        let mut sock = TcpSocketOptions::default();
        sock.so_reuseport = Some(true);
        service.add_tcp_with_settings(&worker_addr(args.listen, worker), sock);
        server.add_service(service);
    }
    eprintln!(
        "floor listening on {} -> {}, {workers} workers",
        args.listen, args.upstream
    );
    server.run_forever();
}
